// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/map_sync.h"

#include <cstring>

#include "absl/container/flat_hash_set.h"

namespace stockade {
namespace {

// Writes `entries` to the two policy maps (exact ports in the hash, port
// prefixes in the trie), batched, recording in `mirror` what reached a map.
absl::Status WritePolicyEntries(Datapath& dp, const std::vector<PolicyEntry>& entries, PolicyEntryMap& mirror,
                                absl::flat_hash_set<uint32_t>& locals_changed, SyncStats& stats) {
  for (bool exact : {true, false}) {
    std::vector<policy_key> keys;
    std::vector<policy_value> values;
    for (const PolicyEntry& e : entries) {
      if ((e.key.prefixlen == POLICY_PREFIX_FULL) != exact) continue;
      keys.push_back(e.key);
      values.push_back(e.value);
    }
    size_t written = 0;
    absl::Status s = (exact ? dp.policy_exact() : dp.policy_prefixes()).UpdateBatch(keys, values, written);
    for (size_t i = 0; i < written; ++i) {
      mirror[keys[i]] = values[i];
      locals_changed.insert(keys[i].local_identity);
    }
    stats.written += written;
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MapSync::Adopt() {
  // What a predecessor left is known only once a full sync diffed it.
  policy_complete_ = false;
  ipcache_complete_ = false;
  policy_now_.clear();
  ipcache_now_.clear();
  endpoints_now_.clear();
  for (PolicyMap* map : {&dp_.policy_exact(), &dp_.policy_prefixes()}) {
    if (auto s = map->ForEach([&](const policy_key& k, const policy_value& v) { policy_now_[k] = v; }); !s.ok())
      return s;
  }
  if (auto s = dp_.ipcache().ForEach([&](const ipcache_key& k, const ipcache_value& v) { ipcache_now_[k] = v; });
      !s.ok())
    return s;
  return dp_.endpoints().ForEach([&](const endpoint_key& k, const endpoint_info& info) {
    endpoints_now_[k] = info;
    if (info.policy_revision >= next_revision_) next_revision_ = info.policy_revision + 1;
  });
}

absl::StatusOr<SyncStats> MapSync::Apply(const WantedMaps& wanted) {
  SyncStats stats;

  // 1. Policy: denies first, then allows.
  if (wanted.policy_scope && !policy_complete_)
    return absl::FailedPreconditionError(
        "policy maps: a sync of the changed keys alone needs the last sync complete; give every entry");
  policy_complete_ = false;
  absl::flat_hash_set<uint32_t> locals_changed;
  PolicyEntryDiff policy =
      DiffPolicyEntries(policy_now_, wanted.policy, wanted.policy_scope ? &*wanted.policy_scope : nullptr);
  for (const std::vector<PolicyEntry>* entries : {&policy.denies, &policy.allows})
    if (auto s = WritePolicyEntries(dp_, *entries, policy_now_, locals_changed, stats); !s.ok()) return s;
  for (const policy_key& key : policy.stale) locals_changed.insert(key.local_identity);

  // 2. ipcache. Unchanged since a sync that completed: nothing to diff (at
  // 100k CIDR identities the diff was most of a policy edit's sync).
  const bool ipcache_same = ipcache_complete_ && wanted.ipcache == ipcache_synced_;
  if (!ipcache_same) ipcache_complete_ = false;
  bool peers_changed = false;
  std::vector<ipcache_key> ipcache_stale;
  if (!ipcache_same) {
    absl::flat_hash_set<ipcache_key, ByteHash<ipcache_key>, ByteEq<ipcache_key>> ipcache_wanted;
    ipcache_wanted.reserve(wanted.ipcache.size());
    std::vector<ipcache_key> ipcache_keys;
    std::vector<ipcache_value> ipcache_values;
    for (const auto& [prefix, identity] : wanted.ipcache) {
      ipcache_key k = prefix.ToIpcacheKey();
      ipcache_wanted.insert(k);
      auto it = ipcache_now_.find(k);
      ipcache_value v{identity, 0};
      if (it != ipcache_now_.end() && ByteEq<ipcache_value>{}(it->second, v)) continue;
      // A new address too: it was the world until now, and the datapath may
      // remember a deny of it (bpf/lib/denied.h).
      peers_changed = true;
      ipcache_keys.push_back(k);
      ipcache_values.push_back(v);
    }
    size_t written = 0;
    absl::Status ipcache_written = dp_.ipcache().UpdateBatch(ipcache_keys, ipcache_values, written);
    for (size_t i = 0; i < written; ++i) ipcache_now_[ipcache_keys[i]] = ipcache_values[i];
    stats.written += written;
    if (!ipcache_written.ok()) return ipcache_written;
    for (const auto& [key, value] : ipcache_now_) {
      if (ipcache_wanted.contains(key)) continue;
      ipcache_stale.push_back(key);
      peers_changed = true;
    }
  }

  // 3. Endpoints, revision bumped where their verdicts may have changed.
  bool bumped_any = false;
  uint32_t revision = next_revision_;
  absl::flat_hash_set<endpoint_key, ByteHash<endpoint_key>, ByteEq<endpoint_key>> endpoints_wanted;
  for (const WantedEndpoint& w : wanted.endpoints) {
    endpoints_wanted.insert(w.key);
    endpoint_info info = w.info;
    auto it = endpoints_now_.find(w.key);
    bool known = it != endpoints_now_.end();
    bool policy_moved = peers_changed || locals_changed.contains(info.identity) ||
                        (known && (it->second.identity != info.identity || it->second.flags != info.flags));
    info.policy_revision = known ? it->second.policy_revision : revision;
    if (known && policy_moved) {
      info.policy_revision = revision;
      bumped_any = true;
      ++stats.revisions_bumped;
    }
    if (known && ByteEq<endpoint_info>{}(it->second, info)) continue;
    if (auto s = dp_.endpoints().Update(w.key, info); !s.ok()) return s;
    endpoints_now_[w.key] = info;
    ++stats.written;
  }
  if (bumped_any || !wanted.endpoints.empty()) next_revision_ = revision + 1;

  // 4. Stale entries, last.
  std::vector<endpoint_key> endpoints_stale;
  for (const auto& [key, value] : endpoints_now_)
    if (!endpoints_wanted.contains(key)) endpoints_stale.push_back(key);
  for (const endpoint_key& key : endpoints_stale) {
    if (auto s = dp_.endpoints().Delete(key); !s.ok()) return s.status();
    endpoints_now_.erase(key);
    ++stats.removed;
  }
  size_t deleted = 0;
  absl::Status ipcache_deleted = dp_.ipcache().DeleteBatch(ipcache_stale, deleted);
  for (size_t i = 0; i < deleted; ++i) ipcache_now_.erase(ipcache_stale[i]);
  stats.removed += deleted;
  if (!ipcache_deleted.ok()) return ipcache_deleted;
  if (!ipcache_same) {
    ipcache_synced_ = wanted.ipcache;
    ipcache_complete_ = true;
  }
  for (bool exact : {true, false}) {
    std::vector<policy_key> keys;
    for (const policy_key& key : policy.stale)
      if ((key.prefixlen == POLICY_PREFIX_FULL) == exact) keys.push_back(key);
    absl::Status s = (exact ? dp_.policy_exact() : dp_.policy_prefixes()).DeleteBatch(keys, deleted);
    for (size_t i = 0; i < deleted; ++i) policy_now_.erase(keys[i]);
    stats.removed += deleted;
    if (!s.ok()) return s;
  }
  policy_complete_ = true;
  return stats;
}

}  // namespace stockade
