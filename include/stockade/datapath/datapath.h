// SPDX-License-Identifier: Apache-2.0
//
// The loaded datapath: the BPF object, its programs and typed handles on its
// maps. Loading with an instance name pins every map under
// /sys/fs/bpf/stockade/<instance>/ and adopts the maps already pinned there,
// so an agent that restarts finds the state its predecessor left.
#ifndef STOCKADE_INCLUDE_STOCKADE_DATAPATH_DATAPATH_H_
#define STOCKADE_INCLUDE_STOCKADE_DATAPATH_DATAPATH_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "maps/abi.h"
#include "stockade/conntrack/conntrack.h"
#include "stockade/datapath/typed_map.h"

struct stockade_bpf;

namespace stockade {

struct DatapathOptions {
  // Pin directory name under /sys/fs/bpf/stockade; empty: nothing is pinned
  // and everything goes with this object (tests, benchmarks).
  std::string instance;
  // Capacity overrides; a test shrinks a map to fill it.
  std::optional<uint32_t> conntrack_max;  // each of conntrack and conntrack4
  std::optional<uint32_t> fragments_max;
  std::optional<uint32_t> events_ringbuf_bytes;
  std::optional<uint32_t> policy_max;
  std::optional<uint32_t> denied_flows_max;
};

using EndpointMap = TypedMap<endpoint_key, endpoint_info>;
using IpcacheMap = TypedMap<ipcache_key, ipcache_value>;
using PolicyMap = TypedMap<policy_key, policy_value>;
using FragmentMap = TypedMap<frag_key, frag_value>;
using DeniedFlowMap = TypedMap<denied_flow_key, denied_flow>;
using EventAggMap = TypedMap<event_agg_key, event_agg_value>;
using ConfigMap = TypedMap<uint32_t, stockade_config>;
using MetricsMap = PerCpuArray<metrics_value>;
using FlowSeenMap = PerCpuArray<flow_seen_table>;

class Datapath {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Datapath>> Load(const DatapathOptions& options);
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  int tc_ingress_fd() const;
  int tc_egress_fd() const;
  int xdp_fd() const;
  int events_fd() const;

  EndpointMap& endpoints() { return endpoints_; }
  IpcacheMap& ipcache() { return ipcache_; }
  // The policy is two maps (maps/policy.h); these keep them one.
  [[nodiscard]] absl::Status WritePolicy(const policy_key& key, const policy_value& value);
  [[nodiscard]] absl::Status DeletePolicy(const policy_key& key);
  [[nodiscard]] absl::Status ClearPolicy();
  // What the programs' lookup finds for `key` (a full-length key).
  [[nodiscard]] absl::StatusOr<std::optional<policy_value>> LookupPolicy(const policy_key& key) const;
  PolicyMap& policy_prefixes() { return policy_; }
  PolicyMap& policy_exact() { return policy_exact_; }
  Conntrack& conntrack() { return conntrack_; }
  // Load adopted the pins of a version before conntrack4 (a conntrack pin,
  // no conntrack4 pin): Load moved its IPv4 flows, and the agent moves the
  // ones its old programs added once its own replace them (Agent::Start).
  // Only then: the move reads the whole of conntrack, a second at 512k flows.
  bool adopted_conntrack_without_ipv4_map() const { return adopted_conntrack_without_ipv4_map_; }
  FragmentMap& fragments() { return fragments_; }
  DeniedFlowMap& denied_flows() { return denied_flows_; }
  EventAggMap& event_agg() { return event_agg_; }
  FlowSeenMap& flow_seen() { return flow_seen_; }
  ConfigMap& config() { return config_; }
  MetricsMap& metrics() { return metrics_; }

  // Empty when not pinned.
  const std::string& pin_dir() const { return pin_dir_; }

  [[nodiscard]] absl::StatusOr<stockade_config> ReadConfig() const;
  [[nodiscard]] absl::Status WriteConfig(const stockade_config& config);
  // Turns new-flow records (maps/config.h) on or off, keeping the rest of the config.
  [[nodiscard]] absl::Status SetFlowRecords(bool on);

  // Sets every counter to zero.
  [[nodiscard]] absl::Status ZeroCounters();

  // Sum over CPUs of the counter for (reason, direction, verdict).
  [[nodiscard]] absl::StatusOr<metrics_value> Counter(int reason, uint32_t direction, uint32_t verdict) const;

 private:
  Datapath(stockade_bpf* skel, std::string pin_dir, EndpointMap endpoints, IpcacheMap ipcache,
           PolicyMap policy, PolicyMap policy_exact, Conntrack conntrack, FragmentMap fragments,
           DeniedFlowMap denied_flows, EventAggMap event_agg, FlowSeenMap flow_seen, ConfigMap config,
           MetricsMap metrics);

  stockade_bpf* skel_;
  std::string pin_dir_;
  bool adopted_conntrack_without_ipv4_map_ = false;
  EndpointMap endpoints_;
  IpcacheMap ipcache_;
  PolicyMap policy_;
  PolicyMap policy_exact_;
  Conntrack conntrack_;
  FragmentMap fragments_;
  DeniedFlowMap denied_flows_;
  EventAggMap event_agg_;
  FlowSeenMap flow_seen_;
  ConfigMap config_;
  MetricsMap metrics_;
};

// /sys/fs/bpf/stockade/<instance>
[[nodiscard]] std::string InstancePinDir(const std::string& instance);

// Checks that bpffs is mounted at /sys/fs/bpf, mounting it if it is not.
[[nodiscard]] absl::Status EnsureBpffs();

// Removes an instance: unpins its links (which detaches them), removes the
// classic tc filters it left on the host's interfaces, and unpins its maps.
[[nodiscard]] absl::Status UninstallInstance(const std::string& instance);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DATAPATH_DATAPATH_H_
