// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/map_sync.h"

#include <cstring>

#include "absl/container/flat_hash_set.h"

namespace stockade {
namespace {

// Map keys as hashable byte strings: the structs have explicit padding, zeroed.
template <typename T>
std::string Bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
bool SameBytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename K>
K FromBytes(const std::string& bytes) {
  K k;
  std::memcpy(&k, bytes.data(), sizeof(K));
  return k;
}

}  // namespace

absl::Status MapSync::Adopt() {
  policy_now_.clear();
  ipcache_now_.clear();
  endpoints_now_.clear();
  for (PolicyMap* map : {&dp_.policy_exact(), &dp_.policy_prefixes()}) {
    if (auto s = map->ForEach([&](const policy_key& k, const policy_value& v) { policy_now_[Bytes(k)] = v; });
        !s.ok())
      return s;
  }
  if (auto s = dp_.ipcache().ForEach([&](const ipcache_key& k, const ipcache_value& v) { ipcache_now_[Bytes(k)] = v; });
      !s.ok())
    return s;
  return dp_.endpoints().ForEach([&](const endpoint_key& k, const endpoint_info& info) {
    endpoints_now_[Bytes(k)] = info;
    if (info.policy_revision >= next_revision_) next_revision_ = info.policy_revision + 1;
  });
}

absl::StatusOr<SyncStats> MapSync::Apply(const WantedMaps& wanted) {
  SyncStats stats;

  // 1. Policy: denies first, then allows.
  absl::flat_hash_set<uint32_t> locals_changed;
  absl::flat_hash_set<std::string> policy_wanted;
  for (uint8_t action : {POLICY_ACTION_DENY, POLICY_ACTION_ALLOW}) {
    for (const PolicyEntry& e : wanted.policy) {
      if (e.value.action != action) continue;
      std::string key = Bytes(e.key);
      policy_wanted.insert(key);
      auto it = policy_now_.find(key);
      if (it != policy_now_.end() && SameBytes(it->second, e.value)) continue;
      if (auto s = dp_.WritePolicy(e.key, e.value); !s.ok()) return s;
      policy_now_[key] = e.value;
      locals_changed.insert(e.key.local_identity);
      ++stats.written;
    }
  }
  std::vector<std::string> policy_stale;
  for (const auto& [key, value] : policy_now_) {
    if (policy_wanted.contains(key)) continue;
    policy_stale.push_back(key);
    locals_changed.insert(FromBytes<policy_key>(key).local_identity);
  }

  // 2. ipcache.
  bool peers_changed = false;
  absl::flat_hash_set<std::string> ipcache_wanted;
  for (const auto& [prefix, identity] : wanted.ipcache) {
    ipcache_key k = prefix.ToIpcacheKey();
    std::string key = Bytes(k);
    ipcache_wanted.insert(key);
    auto it = ipcache_now_.find(key);
    ipcache_value v{identity, 0};
    if (it != ipcache_now_.end() && SameBytes(it->second, v)) continue;
    if (auto s = dp_.ipcache().Update(k, v); !s.ok()) return s;
    // A new address too: it was the world until now, and the datapath may
    // remember a deny of it (bpf/lib/denied.h).
    peers_changed = true;
    ipcache_now_[key] = v;
    ++stats.written;
  }
  std::vector<std::string> ipcache_stale;
  for (const auto& [key, value] : ipcache_now_) {
    if (ipcache_wanted.contains(key)) continue;
    ipcache_stale.push_back(key);
    peers_changed = true;
  }

  // 3. Endpoints, revision bumped where their verdicts may have changed.
  bool bumped_any = false;
  uint32_t revision = next_revision_;
  absl::flat_hash_set<std::string> endpoints_wanted;
  for (const WantedEndpoint& w : wanted.endpoints) {
    std::string key = Bytes(w.key);
    endpoints_wanted.insert(key);
    endpoint_info info = w.info;
    auto it = endpoints_now_.find(key);
    bool known = it != endpoints_now_.end();
    bool policy_moved = peers_changed || locals_changed.contains(info.identity) ||
                        (known && (it->second.identity != info.identity || it->second.flags != info.flags));
    info.policy_revision = known ? it->second.policy_revision : revision;
    if (known && policy_moved) {
      info.policy_revision = revision;
      bumped_any = true;
      ++stats.revisions_bumped;
    }
    if (known && SameBytes(it->second, info)) continue;
    if (auto s = dp_.endpoints().Update(w.key, info); !s.ok()) return s;
    endpoints_now_[key] = info;
    ++stats.written;
  }
  if (bumped_any || !wanted.endpoints.empty()) next_revision_ = revision + 1;

  // 4. Stale entries, last.
  std::vector<std::string> endpoints_stale;
  for (const auto& [key, value] : endpoints_now_)
    if (!endpoints_wanted.contains(key)) endpoints_stale.push_back(key);
  for (const std::string& key : endpoints_stale) {
    if (auto s = dp_.endpoints().Delete(FromBytes<endpoint_key>(key)); !s.ok()) return s.status();
    endpoints_now_.erase(key);
    ++stats.removed;
  }
  for (const std::string& key : ipcache_stale) {
    if (auto s = dp_.ipcache().Delete(FromBytes<ipcache_key>(key)); !s.ok()) return s.status();
    ipcache_now_.erase(key);
    ++stats.removed;
  }
  for (const std::string& key : policy_stale) {
    if (auto s = dp_.DeletePolicy(FromBytes<policy_key>(key)); !s.ok()) return s;
    policy_now_.erase(key);
    ++stats.removed;
  }
  return stats;
}

}  // namespace stockade
