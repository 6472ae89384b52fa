// SPDX-License-Identifier: Apache-2.0
//
// Docker as a source of workloads. The event stream is lossy by design
// (dockerd keeps 256 events and drops slow readers), so events only say
// which container to look at again; the truth is always `docker inspect`.
// Order: subscribe, then list and inspect, then apply events.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_DOCKER_SOURCE_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_DOCKER_SOURCE_H_

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stockade/agent/workload.h"
#include "stockade/agent/workload_source.h"
#include "stockade/docker/docker_client.h"
#include "stockade/docker/docker_events.h"

namespace stockade {

// Thread-safe: the agent's Docker thread polls while its main thread may
// resync and read the workloads.
class DockerSource : public WorkloadSource {
 public:
  explicit DockerSource(DockerClient client) : client_(std::move(client)) {}

  const char* name() const override { return "Docker"; }
  // Subscribes (when not subscribed) and lists and inspects every running container.
  [[nodiscard]] absl::Status Resync() override;
  // Waits up to `timeout` for an event and applies it. True if workloads changed.
  // An error means the stream broke: call Resync() again (after a backoff).
  [[nodiscard]] absl::StatusOr<bool> Poll(absl::Duration timeout);
  bool subscribed() const { return stream_ != nullptr; }
  // True once a Resync() has listed every container: before that, a
  // container this source does not report is unknown, not gone.
  bool listed() const override {
    std::lock_guard<std::mutex> hold(mu_);
    return listed_;
  }
  // When Docker says the latest event it reported happened.
  absl::Time last_event_time() const { return last_event_time_; }
  // Stateless and safe to use from another thread than Poll()'s.
  const DockerClient& client() const { return client_; }

  std::vector<Workload> Workloads() const override;
  // Gateway addresses of the networks containers are on: they are the host.
  std::vector<IpAddress> HostAddresses() const override;
  // Asked of Docker, for hooking on sight: the parent interfaces of its
  // macvlan and ipvlan networks, and the namespaces it made for its overlay
  // networks, by the id this namespace knows each by (LinkInfo::peer_netnsid).
  std::set<std::string> MacvlanParents() const;
  std::set<int32_t> OverlayNetnsIds() const;

 private:
  absl::Status Refresh(const std::string& container_id);
  absl::StatusOr<Workload> ToWorkload(const ContainerInfo& info);
  absl::StatusOr<NetworkInfo> Network(const std::string& id);

  DockerClient client_;
  // Created and reset by the thread that resyncs while unsubscribed and
  // the one that polls; Poll() waits on it without holding mu_.
  std::unique_ptr<DockerEventStream> stream_;
  mutable std::mutex mu_;  // the maps below
  std::map<std::string, Workload> workloads_;  // running containers by id
  std::map<std::string, NetworkInfo> networks_;
  std::map<std::string, ImageInfo> images_;
  absl::Time last_event_time_ = absl::InfinitePast();
  bool listed_ = false;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_DOCKER_SOURCE_H_
