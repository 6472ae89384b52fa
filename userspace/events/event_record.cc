// SPDX-License-Identifier: Apache-2.0
#include "stockade/events/event_record.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace stockade {
namespace {

std::array<uint8_t, 17> KeyOf(uint8_t family, const uint8_t address[16]) {
  std::array<uint8_t, 17> key;
  key[0] = family;
  std::memcpy(key.data() + 1, address, 16);
  return key;
}

std::string LabelsJson(const LabelSet& labels) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  // Nothing upstream promises UTF-8 labels (yaml-cpp passes bytes through); the default
  // handler would throw on the event path, so bad bytes become U+FFFD.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool IsIcmp(uint8_t protocol) { return protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6; }

// The rendering of one second, kept: at a million events a second,
// formatting the date each time would cost more than the rest of the record.
struct SecondCache {
  int64_t second = -1;
  char text[24] = {};  // "2026-11-26T10:51:17"
};

void AppendTime(int64_t unix_ns, std::string& out) {
  thread_local SecondCache cache;
  int64_t second = unix_ns / 1000000000, nanos = unix_ns % 1000000000;
  if (nanos < 0) {
    second -= 1;
    nanos += 1000000000;
  }
  if (second != cache.second) {
    time_t t = static_cast<time_t>(second);
    tm utc{};
    gmtime_r(&t, &utc);
    strftime(cache.text, sizeof(cache.text), "%Y-%m-%dT%H:%M:%S", &utc);
    cache.second = second;
  }
  char frac[12];
  frac[0] = '.';
  for (int i = 9; i >= 1; --i) {
    frac[i] = static_cast<char>('0' + nanos % 10);
    nanos /= 10;
  }
  frac[10] = 'Z';
  out.append(cache.text);
  out.append(frac, 11);
}

void AppendQuoted(std::string& out, std::string_view text) {
  // Names and reasons here are plain; anything else goes through the JSON library.
  bool plain = std::all_of(text.begin(), text.end(),
                           [](char c) { return c >= 0x20 && c != '"' && c != '\\' && static_cast<unsigned char>(c) < 0x7f; });
  if (plain) {
    out.push_back('"');
    out.append(text);
    out.push_back('"');
  } else {
    out.append(nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

// inet_ntop formats IPv4 with sprintf; this is the hot path of every event.
void AppendIp(std::string& out, uint8_t family, const uint8_t address[16]) {
  if (family != STOCKADE_AF_INET) {
    AppendQuoted(out, FormatAddress(family, address));
    return;
  }
  char text[18];
  size_t n = 0;
  text[n++] = '"';
  for (int i = 0; i < 4; ++i) {
    uint8_t b = address[i];
    if (b >= 100) text[n++] = static_cast<char>('0' + b / 100);
    if (b >= 10) text[n++] = static_cast<char>('0' + b / 10 % 10);
    text[n++] = static_cast<char>('0' + b % 10);
    text[n++] = i < 3 ? '.' : '"';
  }
  out.append(text, n);
}

void AppendPeer(std::string& out, const EventRecord& e, bool source) {
  const drop_event& r = e.raw;
  const EventWorkload* w = source ? e.source() : e.destination();
  uint32_t identity = source ? e.source_identity() : e.destination_identity();
  out.append("{\"ip\":");
  if (r.family == STOCKADE_AF_INET || r.family == STOCKADE_AF_INET6) {
    AppendIp(out, r.family, source ? r.saddr : r.daddr);
  } else {
    out.append("null");
  }
  out.append(",\"port\":");
  if (IsIcmp(r.protocol) || r.family == 0) {
    out.append("null");
  } else {
    absl::StrAppend(&out, source ? e.source_port() : e.destination_port());
  }
  absl::StrAppend(&out, ",\"identity\":", identity, ",\"container\":");
  if (w) {
    AppendQuoted(out, w->container);
    if (!w->host.empty()) {
      out.append(",\"host\":");
      AppendQuoted(out, w->host);
    }
    out.append(",\"labels\":");
    out.append(w->labels_json);
  } else {
    out.append("null,\"labels\":");
    out.append(e.context ? e.context->IdentityLabelsJson(identity) : "{}");
  }
  out.push_back('}');
}

}  // namespace

void EventContext::AddWorkload(const IpAddress& address, EventWorkload workload) {
  workload.labels_json = LabelsJson(workload.labels);
  by_address_[KeyOf(address.family, address.bytes.data())] =
      std::make_shared<const EventWorkload>(std::move(workload));
}

SharedStrings::Shard& SharedStrings::Writable(uint32_t id) {
  std::shared_ptr<Shard>& shard = shards_[id % kShards];
  // Only this copy can make more owners of the shard: a count of 1 stays 1
  // while it writes, whatever the event thread does with its own copies.
  if (!shard) {
    shard = std::make_shared<Shard>();
  } else if (shard.use_count() > 1) {
    shard = std::make_shared<Shard>(*shard);
  }
  return *shard;
}

void SharedStrings::Set(uint32_t id, std::string value) { Writable(id)[id] = std::move(value); }

void SharedStrings::Erase(uint32_t id) {
  if (Find(id) != nullptr) Writable(id).erase(id);
}

const std::string* SharedStrings::Find(uint32_t id) const {
  const std::shared_ptr<Shard>& shard = shards_[id % kShards];
  if (!shard) return nullptr;
  auto it = shard->find(id);
  return it == shard->end() ? nullptr : &it->second;
}

void EventContext::AddIdentityLabels(uint32_t identity, const LabelSet& labels) {
  identity_labels_json_.Set(identity, LabelsJson(labels));
}

void EventContext::AddCidrIdentity(uint32_t identity, const IpPrefix& prefix) {
  // A prefix's text is digits, dots, colons and a slash: nothing to escape.
  identity_labels_json_.Set(identity, absl::StrCat(R"({"cidr":")", prefix.ToString(), R"("})"));
}

bool EventContext::FollowIdentities(const IdentityTable& table, const std::function<bool()>& pause) {
  const FollowedTable now{.next_id = table.next_id, .identities = table.labels.size() + table.cidrs.size()};
  if (!identities_rebuild_) {
    // Each allocation moves next_id by one and adds one identity: when the
    // count grew by as much as next_id did, nothing was released.
    const FollowedTable* was = identities_followed_ ? &*identities_followed_ : nullptr;
    if (was && now.next_id >= was->next_id && now.identities - was->identities == now.next_id - was->next_id) {
      if (now.next_id == was->next_id) return true;
      for (const auto& [labels, id] : table.labels)
        if (id >= was->next_id) AddIdentityLabels(id, labels);
      for (const auto& [prefix, id] : table.cidrs)
        if (id >= was->next_id) AddCidrIdentity(id, prefix);
      identities_followed_ = now;
      return true;
    }
    ClearIdentityLabels();
    for (uint32_t reserved : kReservedIdentities)
      AddIdentityLabels(reserved, {{"reserved", FormatIdentity(reserved)}});
    for (const auto& [labels, id] : table.labels) AddIdentityLabels(id, labels);  // one a workload: few
    identities_rebuild_ = Rebuild{.from = now};
  }
  Rebuild& rebuild = *identities_rebuild_;
  size_t done = 0;
  for (auto it = rebuild.next_cidr ? table.cidrs.lower_bound(*rebuild.next_cidr) : table.cidrs.begin();
       it != table.cidrs.end(); ++it) {
    if (++done % kFollowChunk == 0 && pause && pause()) {
      rebuild.next_cidr = it->first;
      return false;
    }
    if (it->second < rebuild.from.next_id) AddCidrIdentity(it->second, it->first);
  }
  identities_followed_ = rebuild.from;
  identities_rebuild_.reset();
  // What was allocated while it paused, as growth (or all again after a release).
  return FollowIdentities(table, pause);
}

const std::string& EventContext::IdentityLabelsJson(uint32_t identity) const {
  static const std::string kEmpty = "{}";
  const std::string* json = identity_labels_json_.Find(identity);
  return json == nullptr ? kEmpty : *json;
}

void EventContext::AddRule(uint32_t rule_id, std::string origin) { rules_.Set(rule_id, std::move(origin)); }

const EventWorkload* EventContext::WorkloadAt(uint8_t family, const uint8_t address[16]) const {
  auto it = by_address_.find(KeyOf(family, address));
  return it == by_address_.end() ? nullptr : it->second.get();
}

const std::string* EventContext::RuleOrigin(uint32_t rule_id) const { return rules_.Find(rule_id); }

const EventWorkload* EventRecord::source() const {
  return context && raw.family ? context->WorkloadAt(raw.family, raw.saddr) : nullptr;
}

const EventWorkload* EventRecord::destination() const {
  return context && raw.family ? context->WorkloadAt(raw.family, raw.daddr) : nullptr;
}

// The program's local end is the destination of what it receives and the source of what it sends.
uint32_t EventRecord::source_identity() const {
  return raw.direction == DIR_INGRESS ? raw.remote_identity : raw.local_identity;
}

uint32_t EventRecord::destination_identity() const {
  return raw.direction == DIR_INGRESS ? raw.local_identity : raw.remote_identity;
}

uint16_t EventRecord::source_port() const { return IsIcmp(raw.protocol) || !raw.family ? 0 : ntohs(raw.sport); }

uint16_t EventRecord::destination_port() const { return IsIcmp(raw.protocol) || !raw.family ? 0 : ntohs(raw.dport); }

std::string EventRecord::Rule() const {
  if (raw.rule_id != 0) {
    const std::string* origin = context ? context->RuleOrigin(raw.rule_id) : nullptr;
    return origin ? *origin : absl::StrCat("rule ", raw.rule_id);
  }
  // No rule matched: the endpoint is selected by a policy in this direction and nothing allows the flow.
  if (raw.reason == DROP_POLICY_DENIED) return "default deny";
  // A flow allowed without a rule: no policy selects the endpoint in this direction.
  return raw.verdict == VERDICT_FORWARDED ? "not enforced" : "";
}

std::string_view VerdictName(uint8_t verdict) {
  switch (verdict) {
    case VERDICT_DROPPED: return "DROPPED";
    case VERDICT_AUDIT: return "AUDIT";
    default: return "FORWARDED";
  }
}

std::string_view DirectionName(uint8_t direction) { return direction == DIR_INGRESS ? "ingress" : "egress"; }

std::string ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case 0: return "arp";
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_ICMPV6: return "icmpv6";
    default: return absl::StrCat("proto ", protocol);
  }
}

std::string FormatRfc3339Nanos(int64_t unix_ns) {
  std::string out;
  AppendTime(unix_ns, out);
  return out;
}

void AppendEventJson(const EventRecord& e, std::string& out) {
  const drop_event& r = e.raw;
  out.append("{\"type\":\"event\",\"time\":\"");
  AppendTime(e.time_ns, out);
  out.append("\",\"verdict\":\"");
  out.append(VerdictName(r.verdict));
  out.append("\",\"reason\":\"");
  out.append(DropReasonName(r.reason));
  absl::StrAppend(&out, "\",\"count\":", r.count);
  out.append(",\"direction\":\"");
  out.append(DirectionName(r.direction));
  out.append("\",\"protocol\":");
  AppendQuoted(out, ProtocolName(r.protocol));
  if (IsIcmp(r.protocol)) absl::StrAppend(&out, ",\"icmp_type\":", ntohs(r.sport), ",\"icmp_code\":", ntohs(r.dport));
  if (r.protocol == IPPROTO_TCP) absl::StrAppend(&out, ",\"tcp_flags\":", r.tcp_flags);
  const EventWorkload* local = r.direction == DIR_INGRESS ? e.destination() : e.source();
  out.append(",\"interface\":");
  if (local && !local->interface.empty()) {
    AppendQuoted(out, local->interface);
  } else {
    absl::StrAppend(&out, "\"if", r.ifindex, "\"");
  }
  absl::StrAppend(&out, ",\"ifindex\":", r.ifindex, ",\"packet_length\":", r.packet_length,
                  ",\"rule_id\":", r.rule_id, ",\"rule\":");
  AppendQuoted(out, e.Rule());
  out.append(",\"source\":");
  AppendPeer(out, e, true);
  out.append(",\"destination\":");
  AppendPeer(out, e, false);
  if (local && !local->network.empty()) {
    out.append(",\"network\":");
    AppendQuoted(out, local->network);
  }
  out.push_back('}');
}

}  // namespace stockade
