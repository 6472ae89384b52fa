// SPDX-License-Identifier: Apache-2.0
//
// Where the agent's view becomes map writes. MapSync holds what the maps
// should contain and brings them there in an order that never opens the
// network and never cuts it wrongly while a change is half done:
//   1. new or changed policy denies, then allows (a missing deny is never
//      filled by a wider allow);
//   2. new or changed ipcache entries (new identities resolve only once their
//      policy is in place);
//   3. new or changed endpoints, with their policy revision bumped when
//      their policy or their peers' identities changed, so established flows
//      are checked again;
//   4. stale endpoints, ipcache and policy entries are removed last.
// A write that fails stops the sync before anything is removed: a full map
// leaves the old policy in force, never an allow. Each step's writes go in
// batches (one syscall for many entries, in order), so a bulk load of 100k
// rules is not 200k syscalls.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_MAP_SYNC_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_MAP_SYNC_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "maps/abi.h"
#include "stockade/net/addresses.h"
#include "stockade/agent/wanted_maps.h"
#include "stockade/datapath/datapath.h"
#include "stockade/policy/policy_entries.h"

namespace stockade {

struct SyncStats {
  int written = 0;
  int removed = 0;
  int revisions_bumped = 0;
};

class MapSync {
 public:
  explicit MapSync(Datapath& datapath) : dp_(datapath) {}

  // Reads what the maps hold now, once: a predecessor's state is adopted,
  // not rewritten. Later syncs diff against a mirror of what was written, so
  // a sync costs syscalls only for what changed.
  [[nodiscard]] absl::Status Adopt();
  [[nodiscard]] absl::StatusOr<SyncStats> Apply(const WantedMaps& wanted);
  // Whether the policy maps hold what the last sync wanted, written and
  // removed in full: then the next sync may name only what changed.
  bool policy_complete() const { return policy_complete_; }

 private:
  Datapath& dp_;
  uint32_t next_revision_ = 1;
  bool policy_complete_ = false;
  // The ipcache as the last sync that completed it wanted it: an equal
  // wanted ipcache needs no diff.
  bool ipcache_complete_ = false;
  std::vector<std::pair<IpPrefix, uint32_t>> ipcache_synced_;
  // Mirrors of the maps, keyed by the key structs' bytes.
  PolicyEntryMap policy_now_;
  absl::flat_hash_map<ipcache_key, ipcache_value, ByteHash<ipcache_key>, ByteEq<ipcache_key>> ipcache_now_;
  absl::flat_hash_map<endpoint_key, endpoint_info, ByteHash<endpoint_key>, ByteEq<endpoint_key>> endpoints_now_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_MAP_SYNC_H_
