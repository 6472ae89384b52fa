// SPDX-License-Identifier: Apache-2.0
//
// Reads drop events from the datapath's ring buffer. One reader per ring
// buffer; it is woken by the kernel (epoll inside libbpf), never polls busily.
#ifndef STOCKADE_INCLUDE_STOCKADE_DATAPATH_EVENT_READER_H_
#define STOCKADE_INCLUDE_STOCKADE_DATAPATH_EVENT_READER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "maps/abi.h"

struct ring_buffer;

namespace stockade {

class EventReader {
 public:
  using Callback = std::function<void(const drop_event&)>;

  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EventReader>> Open(int ringbuf_fd, Callback callback);
  ~EventReader();
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Waits up to `timeout` for events and hands each to the callback; returns how many.
  [[nodiscard]] absl::StatusOr<int> Poll(std::chrono::milliseconds timeout);
  // Hands over whatever is there without waiting.
  [[nodiscard]] absl::StatusOr<int> Drain();
  // Hands over at most `max` records without waiting, so a reader under a
  // steady stream gets to do something else between batches.
  [[nodiscard]] absl::StatusOr<int> DrainUpTo(int max);
  // Readable when records wait: for a caller's own epoll set (then Drain()).
  int epoll_fd() const;
  // Records that were not a drop_event (a size mismatch: another build wrote them).
  uint64_t malformed() const { return malformed_; }

 private:
  explicit EventReader(Callback callback) : callback_(std::move(callback)) {}
  static int OnRecord(void* self, void* data, size_t size);

  Callback callback_;
  ring_buffer* ring_ = nullptr;
  uint64_t malformed_ = 0;
  int budget_ = -1;  // records DrainUpTo may still hand over; -1: no limit
};

// One line for an operator: "DROPPED POLICY_DENIED egress tcp 10.0.0.2:40000 -> 10.0.0.3:80 rule 7 (x3)".
std::string FormatDropEvent(const drop_event& event);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DATAPATH_EVENT_READER_H_
