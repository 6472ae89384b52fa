// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/docker_source.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

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

}  // namespace stockade
