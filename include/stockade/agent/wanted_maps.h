// SPDX-License-Identifier: Apache-2.0
//
// What the maps should hold: the reconciler's result, MapSync's input.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_WANTED_MAPS_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_WANTED_MAPS_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "maps/abi.h"
#include "stockade/net/addresses.h"
#include "stockade/policy/policy_entries.h"

namespace stockade {

struct WantedEndpoint {
  endpoint_key key;
  endpoint_info info;  // policy_revision is MapSync's to set
};

struct WantedMaps {
  std::vector<WantedEndpoint> endpoints;
  std::vector<std::pair<IpPrefix, uint32_t>> ipcache;  // prefix -> identity
  // Every entry the policy maps must hold; with policy_scope, only those
  // among its keys (PolicyEntryDelta).
  std::vector<PolicyEntry> policy;
  // The only policy keys that may have to change: the rest of the maps is
  // taken to be as wanted. Only when policy_complete().
  std::optional<std::vector<policy_key>> policy_scope;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_WANTED_MAPS_H_
