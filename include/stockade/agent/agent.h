// SPDX-License-Identifier: Apache-2.0
//
// stockaded's core. It keeps the maps and the attachments equal to what
// Docker, the static endpoints file and the policy directory say:
//
//   Docker event / resync / policy change
//     -> workloads (userspace/agent/docker_source.cc, static_endpoints.cc)
//     -> hooks attached, fail closed until their record is written
//     -> identities from labels (userspace/identity/)
//     -> compiled policy (userspace/policy/)
//     -> ordered map writes (map_sync.cc)
//
// Everything it attaches is pinned, so enforcement goes on when it exits; a
// restarted agent adopts the pins and the maps.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_AGENT_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_AGENT_H_

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stockade/agent/endpoint_state.h"
#include "stockade/agent/event_hub.h"
#include "stockade/agent/hook_resolver.h"
#include "stockade/agent/hooker.h"
#include "stockade/agent/map_sync.h"
#include "stockade/agent/metrics_server.h"
#include "stockade/agent/reconciler.h"
#include "stockade/agent/store_source.h"
#include "stockade/agent/workload.h"
#include "stockade/agent/workload_source.h"
#include "stockade/datapath/attach.h"
#include "stockade/datapath/datapath.h"
#include "stockade/identity/identity_allocator.h"
#include "stockade/identity/labels.h"
#include "stockade/policy/policy_directory.h"
#include "stockade/netns/links.h"
#include "stockade/policy/policy.h"
#include "stockade/events/event_record.h"
#include "stockade/policy/policy_compiler.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {

class DockerSource;
class IdentityFileWriter;

struct AgentOptions {
  std::string instance = "default";
  std::string policy_dir;        // empty: no policy files
  std::string static_endpoints;  // empty: none
  bool docker = true;
  std::string state_dir;    // default /var/lib/stockade/<instance>
  std::string socket_path;  // default /run/stockade/<instance>.sock
  std::string events_socket;  // default /run/stockade/<instance>.events.sock
  // Prometheus metrics; loopback by default, empty: not served. Port 0 picks a free one.
  std::string metrics_address = kDefaultMetricsAddress;
  size_t event_history = 8192;       // events kept for stockade-tail --last/--since
  size_t subscriber_queue = 65536;   // event lines waiting per subscriber before its oldest drop
  absl::Duration resync_interval = absl::Seconds(30);
  bool audit = false;  // every endpoint in audit mode: drops reported, traffic passes
  // A record for every allowed new flow (VERDICT_FORWARDED events); on by
  // default, as `hubble observe` shows allowed flows. Off: drops and audits only.
  bool flow_records = true;
  TcAttachMode tc_mode = TcAttachMode::kAuto;
  // XDP in place of TC ingress on host-side veths. TC is the default: on a
  // veth XDP costs more (the kernel copies each frame for it; docs/benchmarks.md).
  bool xdp = false;
  // Once the programs are loaded and the maps pinned, before any thread
  // starts: keep only kAgentCapabilities, set no_new_privs (stockaded does).
  bool least_privilege = false;
  // Other hosts' endpoints through etcd, and this host's published there
  // (docs/multihost.md); nullopt: this host alone.
  std::optional<StoreOptions> store;
};

class Agent {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Agent>> Start(const AgentOptions& options);
  ~Agent();

  // Runs until `stop` is set: Docker events, policy file changes, resyncs.
  [[nodiscard]] absl::Status Run(const std::atomic<bool>& stop);

  // Answers a control request (see stockadectl); from the control socket's thread.
  nlohmann::json HandleControl(const nlohmann::json& request);

 private:
  // Who runs what: Run's loop (policy changes, links on sight, resyncs), its
  // Docker thread (events), the control socket's thread (HandleControl) and
  // the metrics server's (RenderMetrics) share the state below. Each takes
  // mu_ on entry; every private member function below runs with mu_ held,
  // except HookOnSight (it takes mu_ after asking Docker about its
  // networks) and TlsReport (it takes mu_ to copy the endpoints, not for
  // the conntrack dump).
  explicit Agent(AgentOptions options);
  // Reads `sources` again, then brings maps and attachments to what all
  // sources say. A source that fails keeps its last good view; its failure
  // is returned, after the reconcile.
  [[nodiscard]] absl::Status Resync(const std::vector<WorkloadSource*>& sources);
  [[nodiscard]] absl::Status ResyncAll();
  // Re-reads the policy directory (only the files that changed); a bad file
  // keeps the last good policy. True when the set changed.
  absl::StatusOr<bool> ReloadPolicies();
  absl::Status Reconcile();
  // Every source's workloads, their interfaces hooked (attached, fail
  // closed until their records are written).
  std::vector<LocalWorkload> HookWorkloads();
  // This host's endpoints and addresses for the store, after a reconcile
  // whose map writes succeeded.
  void PublishToStore(const ReconcileInputs& inputs);
  std::vector<IpAddress> HostAddresses() const;  // the host's own, not link-local
  // What follows a reconcile's map writes and only names events
  // (PublishEventContext) or keeps state (SaveIdentities): put off while a
  // policy change waits, so that the change is enforced first. A drop in
  // that window is named with the previous context.
  void PublishNamesAndSaveIdentities();
  // True when a policy change waits (the watch is readable) and the catch-up
  // has not been put off too long already: at most kMaxPutOffsInARow times
  // or kMaxPutOffDelay in a row, so a directory rewritten every few ms
  // cannot starve the event context or the identity file.
  bool PutOffForPolicyChange();
  // When the table changed since the last save: a copy to identity_file_.
  void SaveIdentities();
  std::tuple<uint32_t, size_t, size_t> IdentitySignature() const;  // changes with the identity table
  // Carries over the enforced_at of endpoints whose record did not change
  // and stamps the others now (their records were just written).
  void StampEnforcedAt(std::vector<EndpointState>& endpoints) const;
  // A container's interface as it appears in the host namespace, hooked at
  // once so the container's first packet meets a program (which drops it
  // until the endpoint's record is written), not an open wire: a veth just
  // enslaved to a Docker bridge; a macvlan or ipvlan on the parent of a
  // Docker network, or the container's end of a veth whose other end is in a
  // Docker overlay network's namespace, which Docker then moves into the container's namespace
  // (its TCX links go with it; the Hooker finds them there). docs/hooking.md.
  void HookOnSight(const std::vector<LinkInfo>& links);
  nlohmann::json Status();
  nlohmann::json EndpointList(bool remote);
  // The store's own status, with when it last changed and how long that took to reach the maps.
  nlohmann::json StoreStatus();
  nlohmann::json IdentityList();
  nlohmann::json PolicyGet();
  nlohmann::json Explain(const nlohmann::json& request);
  nlohmann::json TlsReport();  // `stockadectl tls`
  // What drop events are enriched with: containers by address, identities' labels, rules' origins.
  // False when it stopped half way for a policy change (PutOffForPolicyChange); the next call goes on.
  bool PublishEventContext();
  // GET /metrics (docs/events.md lists the families).
  std::string RenderMetrics();
  nlohmann::json EventStats();

  AgentOptions options_;
  ScopedFd lock_;
  std::unique_ptr<Datapath> datapath_;
  std::unique_ptr<MapSync> sync_;
  // Where workloads come from: the static file first, then Docker (the
  // order they are hooked in at start). docker_ is Docker's among them, for
  // its event stream and its networks; null without Docker.
  std::vector<std::unique_ptr<WorkloadSource>> sources_;
  DockerSource* docker_ = nullptr;
  // The other hosts, through etcd; null without a store. Its own threads
  // never take mu_; Run's loop reconciles when changed_fd() is readable.
  std::unique_ptr<StoreSource> store_;
  std::vector<IpAddress> address_conflicts_;  // the last reconcile's
  // When each remote endpoint (address and labels) was first in the maps
  // as it is: `endpoint list --remote` shows it, for the latency from a
  // container's start on its host to its enforcement here.
  std::map<std::string, absl::Time> remote_enforced_at_;
  absl::Duration store_sync_lag_ = absl::ZeroDuration();  // the store's latest change to its map write
  // Identities and the compiled policy, from one pass to the next.
  std::unique_ptr<Reconciler> reconciler_ = std::make_unique<Reconciler>();
  std::optional<std::tuple<uint32_t, size_t, size_t>> saved_identities_;  // IdentitySignature at the last save
  std::unique_ptr<IdentityFileWriter> identity_file_;
  PolicyDirectory policy_files_;  // the last good set
  // The policy directory's inotify watch, made before Start() reads the
  // directory: a change during start-up has its event, no second scan.
  ScopedFd policy_watch_;
  std::string policy_error_;      // why the newest files were rejected, if they were
  absl::Time policy_loaded_at_ = absl::InfinitePast();
  std::vector<EndpointState> endpoints_;
  // Identities' labels and rules' origins for drop events, kept in step
  // with the allocator and the compiler; each reconcile publishes a copy
  // (PublishEventContext) that shares what did not change.
  EventContext event_names_;
  // Rule ids whose origins changed since event_names_ last followed them; or all.
  std::vector<uint32_t> event_rules_changed_;
  bool event_rules_all_ = true;
  std::optional<uint32_t> event_rules_resume_at_;  // where a rebuild of all origins paused
  bool event_context_stale_ = false;  // endpoints_ or the names changed since the last PublishEventContext
  bool put_off_ = false;    // PublishNamesAndSaveIdentities put off: Run does it after the policy change
  std::optional<absl::Time> put_off_since_;
  int put_offs_in_a_row_ = 0;
  std::unique_ptr<Hooker> hooker_;  // the attachments
  int reconciles_ = 0;
  int resyncs_ = 0;
  std::string last_error_;
  std::string docker_error_;  // why Docker is not followed now; empty when it is
  uint64_t map_sync_errors_ = 0;
  uint64_t policy_reloads_ = 0, policy_rejects_ = 0;
  absl::Duration docker_sync_lag_ = absl::ZeroDuration();  // Docker's event time to its map write, the latest
  std::unique_ptr<EventHub> events_;
  std::unique_ptr<MetricsServer> metrics_;
  std::string metrics_error_;  // why metrics are not served, when they are not
  // Guards every member above but options_, lock_ and the threads' own
  // objects (events_, metrics_: each locks inside): see "Who runs what".
  std::mutex mu_;
};

// A remote endpoint's key in Agent's remote_enforced_at_: its address and labels.
std::string RemoteEnforcedKey(const RemoteEndpoint& r);

// `stockaded --uninstall`: detaches everything of the instance and removes
// its pins, its control socket and its lock file. Refuses while an agent runs
// for the instance, whose own descriptors would keep its links attached.
[[nodiscard]] absl::Status UninstallAgentInstance(const std::string& instance, const std::string& socket_path);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_AGENT_H_
