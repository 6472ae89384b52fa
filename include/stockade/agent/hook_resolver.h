// SPDX-License-Identifier: Apache-2.0
//
// Finds where to hook a container's interface: the host-side veth peer for
// bridge networks, the interface itself inside the container's namespace for
// macvlan and overlay networks.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_HOOK_RESOLVER_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_HOOK_RESOLVER_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "maps/abi.h"

namespace stockade {

enum class HookPlacement {
  kHostPeer,     // bridge networks: the veth's other end, in the agent's namespace
  kInContainer,  // macvlan, overlay: the container's own interface
};

struct ResolvedHook {
  endpoint_key key{};          // the endpoints map key the program will look up
  uint8_t role = HOOK_ROLE_HOST_VETH;
  std::string netns_path;      // where to attach; empty: the agent's own namespace
  uint32_t ifindex = 0;        // in that namespace
  std::string ifname;
  std::string container_ifname;
  std::array<uint8_t, 16> ipv6_link_local{};  // the container interface's, zero if none
};

// `container_netns` is a path such as /proc/<pid>/ns/net; `mac` names the
// container's interface on the network in question.
[[nodiscard]] absl::StatusOr<ResolvedHook> ResolveHook(const std::string& container_netns,
                                                       const std::array<uint8_t, 6>& mac, HookPlacement placement);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_HOOK_RESOLVER_H_
