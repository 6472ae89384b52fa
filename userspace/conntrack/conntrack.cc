// SPDX-License-Identifier: Apache-2.0
#include "stockade/conntrack/conntrack.h"

#include <cstring>
#include <vector>

namespace stockade {

ct4_key NarrowConntrackKey(const ct_key& key) {
  ct4_key narrow{};
  narrow.netns_cookie = key.netns_cookie;
  std::memcpy(&narrow.addr_a, key.addr_a, sizeof(narrow.addr_a));
  std::memcpy(&narrow.addr_b, key.addr_b, sizeof(narrow.addr_b));
  narrow.port_a = key.port_a;
  narrow.port_b = key.port_b;
  narrow.ifindex = key.ifindex;
  narrow.protocol = key.protocol;
  narrow.icmp_echo = key.icmp_echo;
  return narrow;
}

ct_key WidenConntrackKey(const ct4_key& key) {
  ct_key wide{};
  std::memcpy(wide.addr_a, &key.addr_a, sizeof(key.addr_a));  // IPv4 in the first 4 bytes, as in a flow tuple
  std::memcpy(wide.addr_b, &key.addr_b, sizeof(key.addr_b));
  wide.port_a = key.port_a;
  wide.port_b = key.port_b;
  wide.ifindex = key.ifindex;
  wide.netns_cookie = key.netns_cookie;
  wide.protocol = key.protocol;
  wide.family = STOCKADE_AF_INET;
  wide.icmp_echo = key.icmp_echo;
  return wide;
}

namespace {

std::string BytesOf(const ct4_key& key) { return std::string(reinterpret_cast<const char*>(&key), sizeof(key)); }

}  // namespace

void Conntrack::AddPending(const Pending& pending, ct_entry& entry) {
  entry.packets += pending.packets;
  entry.bytes += pending.bytes;
  entry.tcp_flags_seen |= pending.tcp_flags_seen;
}

absl::StatusOr<absl::flat_hash_map<std::string, Conntrack::Pending>> Conntrack::PendingInFlowCache() const {
  absl::flat_hash_map<std::string, Pending> pending;
  for (uint32_t index = 0; index < STOCKADE_FLOW_CACHE_SLOTS; ++index) {
    auto slots = flow_cache_.LookupAllCpus(index);
    if (!slots.ok()) return slots.status();
    for (const flow_cache_slot& slot : *slots) {
      if (slot.packets == 0) continue;
      Pending& p = pending[BytesOf(slot.key)];
      p.packets += slot.packets;
      p.bytes += slot.bytes;
      p.tcp_flags_seen |= slot.tcp_flags_seen;
    }
  }
  return pending;
}

absl::StatusOr<std::optional<ct_entry>> Conntrack::Lookup(const ct_key& key) const {
  if (key.family != STOCKADE_AF_INET) return wide_.Lookup(key);
  ct4_key narrow = NarrowConntrackKey(key);
  auto entry = ipv4_.Lookup(narrow);
  if (!entry.ok() || !entry->has_value()) return entry;
  auto pending = PendingInFlowCache();
  if (!pending.ok()) return pending.status();
  if (auto it = pending->find(BytesOf(narrow)); it != pending->end()) AddPending(it->second, **entry);
  return entry;
}

absl::Status Conntrack::Update(const ct_key& key, const ct_entry& entry) {
  if (key.family == STOCKADE_AF_INET) return ipv4_.Update(NarrowConntrackKey(key), entry);
  return wide_.Update(key, entry);
}

absl::Status Conntrack::ForEach(const std::function<void(const ct_key&, const ct_entry&)>& fn) const {
  auto pending = PendingInFlowCache();
  if (!pending.ok()) return pending.status();
  absl::Status s = ipv4_.ForEach([&](const ct4_key& k, const ct_entry& e) {
    auto it = pending->find(BytesOf(k));
    if (it == pending->end()) return fn(WidenConntrackKey(k), e);
    ct_entry with_pending = e;
    AddPending(it->second, with_pending);
    fn(WidenConntrackKey(k), with_pending);
  });
  if (!s.ok()) return s;
  return wide_.ForEach(fn);
}

absl::StatusOr<size_t> Conntrack::Count() const {
  auto ipv4 = ipv4_.Count();
  if (!ipv4.ok()) return ipv4.status();
  auto wide = wide_.Count();
  if (!wide.ok()) return wide.status();
  return *ipv4 + *wide;
}

absl::Status Conntrack::Clear() {
  if (absl::Status s = ipv4_.Clear(); !s.ok()) return s;
  if (absl::Status s = wide_.Clear(); !s.ok()) return s;
  // A slot would pass its flow for the rest of its second without the entry.
  for (uint32_t index = 0; index < STOCKADE_FLOW_CACHE_SLOTS; ++index) {
    if (absl::Status s = flow_cache_.Zero(index); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> Conntrack::MoveIpv4FlowsFromWideMap() {
  std::vector<std::pair<ct_key, ct_entry>> ipv4;
  absl::Status s = wide_.ForEach([&](const ct_key& k, const ct_entry& e) {
    if (k.family == STOCKADE_AF_INET) ipv4.emplace_back(k, e);
  });
  if (!s.ok()) return s;
  for (const auto& [key, entry] : ipv4) {
    // An entry the new programs made meanwhile is newer: it stays.
    absl::Status moved = ipv4_.Update(NarrowConntrackKey(key), entry, BPF_NOEXIST);
    if (!moved.ok() && !absl::IsAlreadyExists(moved)) return moved;
    auto deleted = wide_.Delete(key);
    if (!deleted.ok()) return deleted.status();
  }
  return ipv4.size();
}

}  // namespace stockade
