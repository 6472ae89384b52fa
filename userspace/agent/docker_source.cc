// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/docker_source.h"

#include <fcntl.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "stockade/agent/agent_log.h"
#include "stockade/netns/links.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {
namespace {

// HostConfig.NetworkMode of a container that joined another's namespace: "container:<id>".
constexpr absl::string_view kSharedNetworkMode = "container:";

}  // namespace

absl::Status DockerSource::Resync() {
  if (!stream_) {
    auto stream = client_.SubscribeEvents();
    if (!stream.ok()) return stream.status();
    stream_ = std::move(*stream);
  }
  auto containers = client_.ListContainers();
  if (!containers.ok()) return containers.status();
  std::lock_guard<std::mutex> hold(mu_);
  std::map<std::string, Workload> fresh;
  networks_.clear();  // network settings may have changed while we were away
  for (const ContainerSummary& c : *containers) {
    if (c.state != "running") continue;
    auto info = client_.InspectContainer(c.id);
    if (absl::IsNotFound(info.status())) continue;  // gone mid-sync
    if (!info.ok()) return info.status();
    if (!info->running || info->pid == 0) continue;
    auto workload = ToWorkload(*info);
    if (!workload.ok()) return workload.status();
    fresh[info->id] = std::move(*workload);
  }
  workloads_ = std::move(fresh);
  listed_ = true;
  return absl::OkStatus();
}

absl::StatusOr<bool> DockerSource::Poll(absl::Duration timeout) {
  if (!stream_) return absl::UnavailableError("not subscribed to Docker events");
  auto event = stream_->Next(timeout);
  if (!event.ok()) {
    if (absl::IsInvalidArgument(event.status())) return false;  // one bad line, not a broken stream
    stream_.reset();
    return event.status();
  }
  if (!event->has_value()) return false;
  const DockerEvent& e = **event;
  std::lock_guard<std::mutex> hold(mu_);
  last_event_time_ = e.time;
  if (e.type == DockerEventType::kNetwork) networks_.erase(e.network_id);
  if (auto s = Refresh(e.container_id); !s.ok()) return s;
  return true;
}

absl::Status DockerSource::Refresh(const std::string& id) {
  auto info = client_.InspectContainer(id);
  if (absl::IsNotFound(info.status()) || (info.ok() && (!info->running || info->pid == 0))) {
    workloads_.erase(id);
    return absl::OkStatus();
  }
  if (!info.ok()) return info.status();
  auto workload = ToWorkload(*info);
  if (!workload.ok()) return workload.status();
  workloads_[info->id] = std::move(*workload);
  return absl::OkStatus();
}

absl::StatusOr<NetworkInfo> DockerSource::Network(const std::string& id) {
  auto it = networks_.find(id);
  if (it != networks_.end()) return it->second;
  auto info = client_.InspectNetwork(id);
  if (!info.ok()) return info.status();
  networks_[id] = *info;
  return *info;
}

absl::StatusOr<Workload> DockerSource::ToWorkload(const ContainerInfo& info) {
  Workload w;
  w.id = info.id;
  w.name = info.name;
  w.source = "docker";
  w.labels = info.labels;
  auto image = images_.find(info.image_id);
  if (image == images_.end()) {
    auto fetched = client_.InspectImage(info.image_id);
    if (!fetched.ok()) return fetched.status();
    image = images_.emplace(info.image_id, *fetched).first;
  }
  w.image_labels = image->second.labels;
  w.host_network = info.network_mode == "host";
  w.no_network = info.network_mode == "none";
  if (absl::StartsWith(info.network_mode, kSharedNetworkMode))
    w.shares_network_of = info.network_mode.substr(kSharedNetworkMode.size());
  std::string netns = absl::StrCat("/proc/", info.pid, "/ns/net");
  for (const NetworkAttachment& a : info.networks) {
    if (w.host_network || w.no_network || !w.shares_network_of.empty()) break;  // no interface of its own
    auto network = Network(a.network_id);
    if (!network.ok()) return network.status();
    // No MAC names the interface (ipvlan): kept, so that it shows as not
    // enforced with the reason instead of going unenforced silently.
    WorkloadInterface iface;
    iface.network = a.network_name;
    iface.driver = network->driver;
    iface.netns_path = netns;
    iface.mac = a.mac;
    iface.ipv4 = a.ipv4;
    iface.ipv6 = a.ipv6;
    iface.placement = network->driver == "bridge" ? HookPlacement::kHostPeer : HookPlacement::kInContainer;
    w.interfaces.push_back(std::move(iface));
    w.networks.push_back(a.network_name);
  }
  // A swarm container's second interface, for traffic off the overlay (to
  // the host, out through NAT), is on the host bridge docker_gwbridge; only
  // that network's inspect shows it.
  const bool on_overlay = std::any_of(w.interfaces.begin(), w.interfaces.end(),
                                      [](const WorkloadInterface& i) { return i.driver == "overlay"; });
  if (!on_overlay) return w;
  auto gateway_bridge = client_.InspectNetwork(kDockerGatewayBridge);
  if (absl::IsNotFound(gateway_bridge.status())) return w;  // internal overlays only
  if (!gateway_bridge.ok()) return gateway_bridge.status();
  networks_[gateway_bridge->id] = *gateway_bridge;  // its gateway is the host's (HostAddresses)
  auto attached = gateway_bridge->containers.find(info.id);
  if (attached != gateway_bridge->containers.end() && attached->second.mac) {
    w.interfaces.push_back({.network = kDockerGatewayBridge,
                            .driver = "bridge",
                            .netns_path = netns,
                            .mac = attached->second.mac,
                            .ipv4 = attached->second.ipv4,
                            .ipv6 = attached->second.ipv6,
                            .placement = HookPlacement::kHostPeer});
  }
  return w;
}

std::vector<Workload> DockerSource::Workloads() const {
  std::lock_guard<std::mutex> hold(mu_);
  std::vector<Workload> out;
  for (const auto& [id, w] : workloads_) out.push_back(w);
  return out;
}

std::vector<IpAddress> DockerSource::HostAddresses() const {
  std::lock_guard<std::mutex> hold(mu_);
  std::vector<IpAddress> out;
  for (const auto& [id, n] : networks_)
    if (n.driver == "bridge")
      for (const IpamPool& pool : n.ipam_pools)
        if (pool.gateway) out.push_back(*pool.gateway);
  return out;
}

std::set<std::string> DockerSource::MacvlanParents() const {
  std::set<std::string> parents;
  for (const char* driver : {"macvlan", "ipvlan"}) {
    auto networks = client_.ListNetworks(driver);
    if (!networks.ok()) {
      AgentLog(absl::StrCat("hook on sight: ", networks.status().message()));
      continue;
    }
    for (const NetworkInfo& n : *networks) {
      auto parent = n.options.find("parent");
      // No parent given: Docker makes a dummy one, dm-<id> (macvlan) or di-<id> (ipvlan).
      if (parent != n.options.end() && !parent->second.empty()) {
        parents.insert(parent->second);
      } else {
        parents.insert(absl::StrCat(n.driver == "macvlan" ? "dm-" : "di-", n.id.substr(0, 12)));
      }
    }
  }
  return parents;
}

std::set<int32_t> DockerSource::OverlayNetnsIds() const {
  std::set<int32_t> ids;
  auto networks = client_.ListNetworks("overlay");
  if (!networks.ok()) {
    AgentLog(absl::StrCat("hook on sight: ", networks.status().message()));
    return ids;
  }
  // Docker mounts each overlay network's namespace at <exec-root>/netns/<n>-<the
  // network id's first 10 characters>; the exec root is the daemon's choice,
  // so the mount table, not a fixed path, says where.
  std::ifstream mountinfo("/proc/self/mountinfo");
  for (std::string line; std::getline(mountinfo, line);) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 10 || !fields[3].starts_with("net:[") ||
        std::find(fields.begin(), fields.end(), "nsfs") == fields.end())
      continue;
    const std::string& path = fields[4];
    const size_t slash = path.rfind('/');
    std::string_view dir = std::string_view(path).substr(0, slash == path.npos ? 0 : slash);
    std::string_view name = std::string_view(path).substr(slash + 1);
    size_t dash = name.find('-');
    if (!dir.ends_with("/netns") || dash == 0 || dash == name.npos ||
        name.size() - dash - 1 < 10 ||
        !std::all_of(name.begin(), name.begin() + dash, [](char c) { return absl::ascii_isdigit(c); }))
      continue;
    std::string_view prefix = name.substr(dash + 1);
    if (std::none_of(networks->begin(), networks->end(),
                     [&](const NetworkInfo& n) { return std::string_view(n.id).starts_with(prefix); }))
      continue;
    ScopedFd netns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns.valid()) continue;  // the network went away meanwhile
    if (auto id = NetnsIdOf(netns.get()); id.ok() && *id >= 0) ids.insert(*id);
  }
  return ids;
}

}  // namespace stockade
