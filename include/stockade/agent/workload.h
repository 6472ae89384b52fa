// SPDX-License-Identifier: Apache-2.0
//
// A workload is what gets an identity and endpoints: a Docker container or a
// static endpoint from a file. Sources (Docker, the static file) produce
// workloads; the agent resolves their interfaces to hooks and their labels
// to identities.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_WORKLOAD_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_WORKLOAD_H_

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "stockade/net/addresses.h"
#include "stockade/agent/hook_resolver.h"

namespace stockade {

using Labels = absl::flat_hash_map<std::string, std::string>;

struct WorkloadInterface {
  std::string network;        // Docker network name, or "static"
  std::string driver;         // bridge, macvlan, overlay, ipvlan, static
  std::string netns_path;     // the workload's namespace: /proc/<pid>/ns/net, /run/netns/<name>
  std::optional<std::array<uint8_t, 6>> mac;  // names the interface; read from `ifname` when absent
  std::string ifname;         // static endpoints: the interface inside netns_path
  std::optional<IpAddress> ipv4;
  std::optional<IpAddress> ipv6;
  HookPlacement placement = HookPlacement::kHostPeer;
};

struct Workload {
  std::string id;    // Docker container id, or "static/<name>"
  std::string name;  // container name or static name
  std::string source;  // "docker" or "static"
  Labels labels;       // as the container has them (image labels merged in)
  Labels image_labels; // what the image set: these grant no identity
  // The Docker networks it has an interface on: each an implicit identity
  // label, network.<name> (labels.h). Empty for static endpoints.
  std::vector<std::string> networks;
  bool host_network = false;  // shares the host's stack: carries the host identity
  bool no_network = false;    // --network none: no interface, nothing to enforce
  // --network container:<id>: it has no interface of its own but shares the
  // owner's, so the owner's record, identity and policy decide its traffic.
  std::string shares_network_of;
  std::vector<WorkloadInterface> interfaces;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_WORKLOAD_H_
