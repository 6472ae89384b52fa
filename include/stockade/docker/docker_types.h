// SPDX-License-Identifier: Apache-2.0
//
// What the agent needs to know of Docker's objects, as typed values parsed
// from Engine API responses (API v1.41, dockerd 20.10 and later). Only the
// fields the agent acts on are kept.
#ifndef STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_TYPES_H_
#define STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_TYPES_H_

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "stockade/net/addresses.h"

namespace stockade {

using DockerLabels = absl::flat_hash_map<std::string, std::string>;

// One entry of GET /containers/json?all=1.
struct ContainerSummary {
  std::string id;
  std::string name;   // without the leading '/'
  std::string state;  // "created", "running", "paused", "restarting", "exited", "dead", ...
  std::string image_id;
  DockerLabels labels;
};

// A container's endpoint on one network (NetworkSettings.Networks.<name>).
// While the container is not running the endpoint and addresses are empty.
struct NetworkAttachment {
  std::string network_name;
  std::string network_id;
  std::string endpoint_id;
  std::optional<IpAddress> ipv4;  // IPAddress
  uint8_t ipv4_prefix_length = 0;
  std::optional<IpAddress> ipv6;  // GlobalIPv6Address
  uint8_t ipv6_prefix_length = 0;
  std::optional<std::array<uint8_t, 6>> mac;
};

// GET /containers/{id}/json.
struct ContainerInfo {
  std::string id;
  std::string name;      // without the leading '/'
  std::string status;    // State.Status, as in ContainerSummary::state
  bool running = false;  // State.Running: also true while paused
  int pid = 0;           // State.Pid: the init process on the host, 0 unless running
  std::string image_id;  // "sha256:..."
  // Config.Labels: the image's labels merged with (and overridden by) the
  // labels given at run time. ImageInfo::labels tells the two apart.
  DockerLabels labels;
  // HostConfig.NetworkMode: "default", "bridge", "host", "none",
  // "container:<id>" or a user-defined network's name.
  std::string network_mode;
  std::vector<NetworkAttachment> networks;  // ordered by network name
};

// GET /images/{id}/json.
struct ImageInfo {
  std::string id;  // "sha256:..."
  std::vector<std::string> repo_tags;
  DockerLabels labels;  // Config.Labels: set by LABEL when the image was built
};

// One IPAM.Config entry of a network.
struct IpamPool {
  IpPrefix subnet;
  std::optional<IpAddress> gateway;
};

// GET /networks/{id}.
// The host bridge through which swarm containers reach the host and the
// world; each is also on one or more overlay networks.
inline constexpr char kDockerGatewayBridge[] = "docker_gwbridge";

struct NetworkInfo {
  std::string id;
  std::string name;
  std::string driver;  // "bridge", "macvlan", "ipvlan", "overlay", "host", "null", ...
  std::string scope;   // "local", "swarm", "global"
  bool internal = false;
  bool enable_ipv6 = false;
  DockerLabels options;  // driver options, e.g. "parent" for macvlan
  DockerLabels labels;
  std::vector<IpamPool> ipam_pools;
  // Containers: each attached container's endpoint, by container id. Only
  // network inspect fills it; the one place to learn a swarm container's
  // docker_gwbridge interface, which the container's own inspect leaves out.
  std::map<std::string, NetworkAttachment> containers;
};

enum class DockerEventType { kContainer, kNetwork };

// The actions the agent subscribes to. Container: start, die, destroy,
// restart, rename. Network: connect, disconnect (of a container).
enum class DockerEventAction { kStart, kDie, kDestroy, kRestart, kRename, kConnect, kDisconnect };

struct DockerEvent {
  DockerEventType type = DockerEventType::kContainer;
  DockerEventAction action = DockerEventAction::kStart;
  std::string container_id;  // always set: the container acted on or (dis)connected
  std::string network_id;    // network events only
  absl::Time time;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DOCKER_DOCKER_TYPES_H_
