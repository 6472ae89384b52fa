// SPDX-License-Identifier: Apache-2.0
#include "stockade/datapath/event_reader.h"

#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "stockade/net/addresses.h"
#include "stockade/os/errno_status.h"

namespace stockade {
namespace {
// What OnRecord answers libbpf when DrainUpTo's budget is spent.
constexpr int kBudgetSpent = -E2BIG;
}  // namespace

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::Open(int ringbuf_fd, Callback callback) {
  std::unique_ptr<EventReader> reader(new EventReader(std::move(callback)));
  reader->ring_ = ring_buffer__new(ringbuf_fd, &EventReader::OnRecord, reader.get(), nullptr);
  if (!reader->ring_) return ErrnoStatus(errno, "open events ring buffer");
  return reader;
}

EventReader::~EventReader() { ring_buffer__free(ring_); }

int EventReader::OnRecord(void* self, void* data, size_t size) {
  auto* reader = static_cast<EventReader*>(self);
  if (size < sizeof(drop_event)) {
    ++reader->malformed_;
    return 0;
  }
  reader->callback_(*static_cast<const drop_event*>(data));
  // A negative answer makes libbpf stop after this record, which it has consumed.
  if (reader->budget_ > 0 && --reader->budget_ == 0) return kBudgetSpent;
  return 0;
}

absl::StatusOr<int> EventReader::Poll(std::chrono::milliseconds timeout) {
  int n = ring_buffer__poll(ring_, static_cast<int>(timeout.count()));
  if (n < 0 && n != -EINTR) return ErrnoStatus(-n, "poll events ring buffer");
  return n < 0 ? 0 : n;
}

absl::StatusOr<int> EventReader::DrainUpTo(int max) {
  budget_ = max;
  int n = ring_buffer__consume(ring_);
  int handed = max - budget_;
  budget_ = -1;
  if (n < 0 && n != kBudgetSpent) return ErrnoStatus(-n, "read events ring buffer");
  return handed;
}

int EventReader::epoll_fd() const { return ring_buffer__epoll_fd(ring_); }

absl::StatusOr<int> EventReader::Drain() {
  int n = ring_buffer__consume(ring_);
  if (n < 0) return ErrnoStatus(-n, "read events ring buffer");
  return n;
}

std::string FormatDropEvent(const drop_event& e) {
  const char* verdict = e.verdict == VERDICT_AUDIT ? "AUDIT" : e.verdict == VERDICT_DROPPED ? "DROPPED" : "FORWARDED";
  const char* dir = e.direction == DIR_INGRESS ? "ingress" : "egress";
  std::string proto;
  switch (e.protocol) {
    case 0: proto = "arp"; break;
    case IPPROTO_TCP: proto = "tcp"; break;
    case IPPROTO_UDP: proto = "udp"; break;
    case IPPROTO_ICMP: proto = "icmp"; break;
    case IPPROTO_ICMPV6: proto = "icmpv6"; break;
    default: proto = absl::StrCat("proto ", e.protocol);
  }
  std::string src = FormatAddress(e.family, e.saddr), dst = FormatAddress(e.family, e.daddr);
  std::string flow;
  if (e.protocol == IPPROTO_ICMP || e.protocol == IPPROTO_ICMPV6) {
    flow = absl::StrFormat("%s -> %s type %d code %d", src, dst, ntohs(e.sport), ntohs(e.dport));
  } else if (e.family == STOCKADE_AF_INET6) {
    flow = absl::StrFormat("[%s]:%d -> [%s]:%d", src, ntohs(e.sport), dst, ntohs(e.dport));
  } else {
    flow = absl::StrFormat("%s:%d -> %s:%d", src, ntohs(e.sport), dst, ntohs(e.dport));
  }
  return absl::StrFormat("%s %s %s %s %s ifindex %u identity %u -> %u rule %u (x%u)", verdict,
                         DropReasonName(e.reason), dir, proto, flow, e.ifindex, e.local_identity,
                         e.remote_identity, e.rule_id, e.count);
}

}  // namespace stockade
