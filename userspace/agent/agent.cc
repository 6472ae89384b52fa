// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "stockade/agent/agent_log.h"
#include "stockade/agent/docker_source.h"
#include "userspace/agent/identity_file_writer.h"
#include "stockade/agent/static_endpoints.h"
#include "stockade/os/capabilities.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/links.h"
#include "stockade/netns/netns.h"
#include "stockade/policy/policy_directory.h"

namespace stockade {
namespace {

std::string LockPath(const std::string& instance) { return absl::StrCat("/run/stockade/", instance, ".lock"); }

// The lock that keeps a second agent off the same state; held while we live.
absl::StatusOr<ScopedFd> LockInstance(const std::string& instance) {
  std::filesystem::create_directories("/run/stockade");
  std::string path = LockPath(instance);
  ScopedFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("open ", path));
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    (void)!pread(fd.get(), pid, sizeof(pid) - 1, 0);
    return absl::FailedPreconditionError(absl::StrCat("another stockaded runs for instance '", instance,
                                                      "' (pid ", absl::StripAsciiWhitespace(pid), ")"));
  }
  std::string me = absl::StrCat(getpid(), "\n");
  (void)!ftruncate(fd.get(), 0);
  (void)!pwrite(fd.get(), me.data(), me.size(), 0);
  return fd;
}

// A catch-up after a reconcile (event context, identity file) waits for a
// pending policy change at most this often or this long in a row.
constexpr int kMaxPutOffsInARow = 8;
constexpr absl::Duration kMaxPutOffDelay = absl::Seconds(1);

}  // namespace

std::string RemoteEnforcedKey(const RemoteEndpoint& r) { return absl::StrCat(r.address.ToString(), " ", FormatLabels(r.labels)); }

namespace {

std::string FormatMs(absl::Duration d) { return absl::FormatDuration(absl::Trunc(d, absl::Microseconds(100))); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Agent::Agent(AgentOptions options) : options_(std::move(options)) {}
Agent::~Agent() = default;

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(const AgentOptions& options) {
  std::unique_ptr<Agent> agent(new Agent(options));
  AgentOptions& o = agent->options_;
  if (o.state_dir.empty()) o.state_dir = absl::StrCat("/var/lib/stockade/", o.instance);
  auto lock = LockInstance(o.instance);
  if (!lock.ok()) return absl::Status(lock.status().code(), absl::StrCat(lock.status().message(), "; refusing to start"));
  agent->lock_ = std::move(*lock);
  std::error_code ec;
  std::filesystem::create_directories(o.state_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("create state directory ", o.state_dir, ": ", ec.message()));

  auto datapath = Datapath::Load({.instance = o.instance});
  if (!datapath.ok()) return datapath.status();
  agent->datapath_ = std::move(*datapath);
  // The agent's flag decides at each start, whatever a predecessor set.
  if (auto s = agent->datapath_->SetFlowRecords(o.flow_records); !s.ok()) return s;
  agent->sync_ = std::make_unique<MapSync>(*agent->datapath_);
  if (auto s = agent->sync_->Adopt(); !s.ok()) return s;
  if (o.least_privilege) {
    // Here, before EventHub and MetricsServer start their threads (each
    // thread has capabilities of its own); all that follows needs no more.
    if (auto s = KeepOnlyCapabilities(kAgentCapabilities); !s.ok()) return s;
  }

  if (o.events_socket.empty()) o.events_socket = DefaultEventSocketPath(o.instance);
  auto events = EventHub::Start(agent->datapath_->events_fd(), {.socket_path = o.events_socket,
                                                                  .history = o.event_history,
                                                                  .subscriber_queue = o.subscriber_queue});
  if (!events.ok()) return events.status();
  agent->events_ = std::move(*events);
  if (!o.metrics_address.empty()) {
    auto metrics = MetricsServer::Start(o.metrics_address, [a = agent.get()] { return a->RenderMetrics(); });
    if (metrics.ok()) {
      agent->metrics_ = std::move(*metrics);
    } else {
      // Enforcement matters more than its counters: say so and go on.
      agent->metrics_error_ = std::string(metrics.status().message());
      AgentLog(absl::StrCat("no metrics: ", agent->metrics_error_));
    }
  }

  std::string table_path = o.state_dir + "/identities.json";
  // Here, after the capabilities were dropped: a thread keeps those it was made with.
  agent->identity_file_ = std::make_unique<IdentityFileWriter>(table_path);
  if (std::filesystem::exists(table_path)) {
    auto table = ParseIdentityTable(ReadFile(table_path));
    if (!table.ok()) return absl::DataLossError(absl::StrCat(table_path, ": ", table.status().message()));
    auto allocator = IdentityAllocator::FromTable(*table);
    if (!allocator.ok()) return allocator.status();
    agent->reconciler_ = std::make_unique<Reconciler>(std::move(*allocator));
  }

  agent->hooker_ = std::make_unique<Hooker>(*agent->datapath_, Hooker::Options{.tc_mode = o.tc_mode, .xdp = o.xdp});
  agent->hooker_->AdoptPinned();
  // The IPv4 flows an older predecessor's programs added since Datapath::Load moved the rest.
  if (agent->datapath_->adopted_conntrack_without_ipv4_map()) {
    if (auto moved = agent->datapath_->conntrack().MoveIpv4FlowsFromWideMap(); !moved.ok())
      AgentLog(absl::StrCat("IPv4 flows left in conntrack, to be decided again: ", moved.status().message()));
  }

  if (o.store) {
    // Started here: the listing runs while static workloads are hooked and policies read.
    auto store = StoreSource::Start(*o.store);
    if (!store.ok()) return store.status();
    agent->store_ = std::move(*store);
  }
  std::lock_guard<std::mutex> hold(agent->mu_);
  if (!o.static_endpoints.empty()) {
    auto source = std::make_unique<StaticEndpointsSource>(o.static_endpoints);
    if (auto s = source->Resync(); !s.ok()) return s;
    agent->sources_.push_back(std::move(source));
    // Static workloads exist before the agent: hooked first thing, so that
    // while a big policy is read and compiled they meet a program (which
    // drops until their record is written), not an open wire.
    for (const LocalWorkload& w : agent->HookWorkloads())
      for (const InterfaceHook& h : w.hooks)  // Reconcile tries again and shows it in the endpoint's state
        if (!h.error.empty()) AgentLog(absl::StrCat("hook ", w.workload.name, " early: ", h.error));
  }
  if (!o.policy_dir.empty()) {
    agent->policy_watch_ = ScopedFd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!agent->policy_watch_.valid() ||
        inotify_add_watch(agent->policy_watch_.get(), o.policy_dir.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE) < 0)
      AgentLog(absl::StrCat("no watch on ", o.policy_dir, " (", ErrnoStatus(errno, "inotify").message(),
                       "): its changes are not followed"));
    (void)agent->ReloadPolicies();
  }
  if (agent->store_) {
    // A first pass without the other hosts would drop what a predecessor
    // pinned for them: wait a little for the listing (the store's threads
    // never take mu_). Past that, local enforcement goes first, the others
    // follow when etcd answers.
    absl::Time until = absl::Now() + o.store->etcd.dial_timeout + absl::Seconds(1);
    while (!agent->store_->listed() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  }
  if (o.docker) {
    auto client = DockerClient::FromEnvironment();
    if (!client.ok()) return client.status();
    auto docker = std::make_unique<DockerSource>(std::move(*client));
    agent->docker_ = docker.get();
    agent->sources_.push_back(std::move(docker));
    if (auto s = agent->docker_->Resync(); !s.ok()) {
      // Enforcement of what is pinned goes on; Run() retries Docker with backoff.
      agent->docker_error_ = std::string(s.message());
      agent->last_error_ = absl::StrCat("docker: ", s.message());
      AgentLog(agent->last_error_);
      return agent;
    }
    ++agent->resyncs_;
  }
  if (auto s = agent->Reconcile(); !s.ok()) AgentLog(absl::StrCat("first reconcile: ", s.message()));
  return agent;
}

absl::Status UninstallAgentInstance(const std::string& instance, const std::string& socket_path) {
  // A running agent keeps its links attached through its own descriptors.
  auto lock = LockInstance(instance);
  if (!lock.ok()) return absl::Status(lock.status().code(), absl::StrCat(lock.status().message(), "; stop it first"));
  if (auto s = UninstallInstance(instance); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::remove(socket_path, ec);
  std::filesystem::remove(LockPath(instance), ec);
  return absl::OkStatus();
}

absl::StatusOr<bool> Agent::ReloadPolicies() {
  auto reject = [this](const absl::Status& s) {
    ++policy_rejects_;
    policy_error_ = std::string(s.message());
    AgentLog(absl::StrCat("policy rejected: ", policy_error_, "; keeping the last good policy"));
    return s;
  };
  auto files = PolicyDirectory::ListPolicyFiles(options_.policy_dir);
  if (!files.ok()) return reject(files.status());
  const absl::Time started = absl::Now();
  auto stats = policy_files_.Reload(*files);
  if (!stats.ok()) return reject(stats.status());
  policy_error_.clear();
  if (!stats->changed() && policy_reloads_ > 0) return false;
  policy_loaded_at_ = absl::Now();
  ++policy_reloads_;
  AgentLog(absl::StrCat("loaded ", policy_files_.policies().size(), " policies from ", stats->files, " files (",
                   stats->parsed, " read again) in ",
                   absl::FormatDuration(absl::Trunc(absl::Now() - started, absl::Microseconds(100)))));
  return true;
}

absl::Status Agent::Resync(const std::vector<WorkloadSource*>& sources) {
  // After a reconnect every interface is looked at again. The periodic
  // resync keeps the cache: it would hold the lock (and the next Docker
  // event) for a setns and rtnetlink dumps per endpoint. Entries are keyed
  // by namespace and MAC, and an entry whose attach failed is dropped.
  if (!docker_ || !docker_->subscribed()) hooker_->ForgetResolved();
  absl::Status first_failure;
  for (WorkloadSource* source : sources) {
    absl::Status s = source->Resync();
    if (s.ok()) {
      if (source == docker_) ++resyncs_;
      continue;
    }
    AgentLog(absl::StrCat(source->name(), " resync failed, keeping its last good view: ", s.message()));
    if (first_failure.ok()) first_failure = s;
  }
  absl::Status reconciled = Reconcile();
  return first_failure.ok() ? reconciled : first_failure;
}

absl::Status Agent::ResyncAll() {
  std::vector<WorkloadSource*> all;
  for (const auto& source : sources_) all.push_back(source.get());
  return Resync(all);
}

void Agent::HookOnSight(const std::vector<LinkInfo>& links) {
  std::vector<LinkInfo> all;  // listed once, when a candidate shows up
  std::optional<std::set<std::string>> macvlan_parents;
  std::optional<std::set<int32_t>> overlay_netns_ids;
  for (const LinkInfo& link : links) {
    bool veth = link.kind == "veth" && link.master_ifindex != 0;
    // The clsact qdisc does not survive the move into the container: only TCX links do.
    const bool tcx = options_.tc_mode != TcAttachMode::kClassic;
    bool macvlan = (link.kind == "macvlan" || link.kind == "ipvlan") && link.peer_ifindex != 0 &&
                   !link.peer_in_other_netns && tcx;
    // An overlay container's end of its veth waits here, its peer already on
    // the overlay network's bridge, for a second or more before Docker moves
    // it into the container.
    bool overlay = link.kind == "veth" && link.master_ifindex == 0 && link.peer_in_other_netns && tcx;
    if (!veth && !macvlan && !overlay) continue;
    if (all.empty()) {
      auto listed = ListLinks();
      if (!listed.ok()) return;
      all = std::move(*listed);
    }
    auto find = [&](uint32_t ifindex) {
      return std::find_if(all.begin(), all.end(), [&](const LinkInfo& l) { return l.ifindex == ifindex; });
    };
    std::string where;
    if (veth) {
      auto master = find(link.master_ifindex);
      // Docker's bridges: docker0 for the default network, br-<network id> for
      // the others, docker_gwbridge for swarm containers' way off their overlays.
      if (master == all.end() || master->kind != "bridge" ||
          (master->name != "docker0" && !master->name.starts_with("br-") && master->name != kDockerGatewayBridge))
        continue;
      where = absl::StrCat("on ", master->name);
    } else if (overlay) {
      if (!overlay_netns_ids) overlay_netns_ids = docker_ ? docker_->OverlayNetnsIds() : std::set<int32_t>();
      if (!overlay_netns_ids->contains(link.peer_netnsid)) continue;
      where = "a veth into a Docker overlay network";
    } else {
      auto parent = find(link.peer_ifindex);
      if (parent == all.end()) continue;
      if (!macvlan_parents) macvlan_parents = docker_ ? docker_->MacvlanParents() : std::set<std::string>();
      if (!macvlan_parents->contains(parent->name)) continue;
      where = absl::StrCat("a ", link.kind, " of ", parent->name);
    }
    auto cookie = NetnsCookie("/proc/thread-self/ns/net");
    if (!cookie.ok()) return;
    ResolvedHook hook;
    hook.key.netns_cookie = *cookie;
    hook.key.ifindex = link.ifindex;
    hook.role = veth ? HOOK_ROLE_HOST_VETH : HOOK_ROLE_IN_CONTAINER;
    hook.ifindex = link.ifindex;
    hook.ifname = link.name;
    std::lock_guard<std::mutex> hold(mu_);
    hooker_->HookOnSight(hook, where);
  }
}

std::vector<LocalWorkload> Agent::HookWorkloads() {
  std::vector<LocalWorkload> hooked;
  for (const auto& source : sources_) {
    for (Workload& w : source->Workloads()) {
      LocalWorkload& local = hooked.emplace_back(LocalWorkload{.workload = std::move(w)});
      const Workload& added = local.workload;
      if (added.host_network || added.no_network || !added.shares_network_of.empty()) continue;
      for (WorkloadInterface& iface : local.workload.interfaces) local.hooks.push_back(hooker_->Hook(iface));
    }
  }
  return hooked;
}

std::vector<IpAddress> Agent::HostAddresses() const {
  std::vector<IpAddress> own;
  auto local = ListAddresses();
  if (!local.ok()) {
    AgentLog(absl::StrCat("the host's addresses are not known as host: ", local.status().message()));
    return own;
  }
  for (const LinkAddress& a : *local)
    if (!a.link_local) own.push_back(a.address());
  return own;
}

absl::Status Agent::Reconcile() {
  // A restarted agent that has not reached Docker yet does not know its
  // containers; a pass now would take them for gone and detach every one a
  // predecessor pinned (fail open). What is pinned stays until Docker answers.
  for (const auto& source : sources_)
    if (!source->listed())
      return absl::UnavailableError(
          absl::StrCat(source->name(), " not listed yet: what is pinned stays as it is until it answers"));
  ++reconciles_;
  const absl::Time started = absl::Now();
  ReconcileInputs inputs{.workloads = HookWorkloads(),
                         .policies = policy_files_.policies(),
                         .host_addresses = HostAddresses(),
                         .audit = options_.audit,
                         .policy_maps_complete = sync_->policy_complete()};
  for (const auto& source : sources_)
    for (const IpAddress& gateway : source->HostAddresses()) inputs.gateway_addresses.push_back(gateway);
  if (store_) {
    inputs.remote_endpoints = store_->RemoteEndpoints();
    inputs.remote_node_addresses = store_->RemoteNodeAddresses();
  }

  const absl::Time compile_started = absl::Now();
  auto result = reconciler_->Reconcile(inputs);
  if (!result.ok()) return result.status();
  // For PublishEventContext, after the maps: 100k origins are text to make.
  if (result->policy_compiled_from_nothing) {
    event_rules_all_ = true;
    event_rules_resume_at_.reset();
    event_rules_changed_.clear();
  } else {
    // Also while all are made again: a paused rebuild made some of them already.
    const std::vector<uint32_t>& origins_changed = reconciler_->compiler().origins_changed();
    event_rules_changed_.insert(event_rules_changed_.end(), origins_changed.begin(), origins_changed.end());
  }
  const absl::Time compiled_at = absl::Now();

  std::vector<EndpointState>& endpoints = result->endpoints;
  const absl::Time sync_started = absl::Now();
  auto stats = sync_->Apply(result->maps);
  const absl::Time synced_at = absl::Now();
  if (stats.ok()) StampEnforcedAt(endpoints);
  std::set<std::string> wanted_pins;
  std::vector<endpoint_key> failed;  // resolved again next time
  for (const EndpointState& e : endpoints) {
    if (e.HasRecord())
      for (const std::string& pin : hooker_->PinPaths(e.hook)) wanted_pins.insert(pin);
    if (!e.error.empty() && e.hook.ifindex != 0) failed.push_back(e.hook.key);
  }
  hooker_->EndPass(failed);
  endpoints_ = std::move(endpoints);
  address_conflicts_ = std::move(result->address_conflicts);
  event_context_stale_ = true;
  if (!stats.ok()) {
    ++map_sync_errors_;
    last_error_ = absl::StrCat("map sync: ", stats.status().message());
    AgentLog(last_error_ + " (the previous state stays in force)");
    PublishNamesAndSaveIdentities();
    return stats.status();
  }
  hooker_->DetachUnwanted(wanted_pins);
  if (store_) {
    std::map<std::string, absl::Time> stamped;
    for (const RemoteEndpoint& r : inputs.remote_endpoints) {
      std::string key = RemoteEnforcedKey(r);
      auto was = remote_enforced_at_.find(key);
      stamped.emplace(std::move(key), was != remote_enforced_at_.end() ? was->second : synced_at);
    }
    remote_enforced_at_ = std::move(stamped);
    PublishToStore(inputs);
  }
  if (stats->written || stats->removed)
    AgentLog(absl::StrCat("synced: ", stats->written, " written, ", stats->removed, " removed, ", stats->revisions_bumped,
                     " revisions bumped; ", endpoints_.size(), " endpoints, ",
                     reconciler_->compiler().compiled().rules.size(), " rules (",
                     reconciler_->compiler().recompiled(), " policies compiled); enforced after ",
                     FormatMs(synced_at - started), " (compile ", FormatMs(compiled_at - compile_started),
                     ", diff and map writes ", FormatMs(synced_at - sync_started), ")"));
  PublishNamesAndSaveIdentities();
  return absl::OkStatus();
}

void Agent::PublishToStore(const ReconcileInputs& inputs) {
  // Only addresses other hosts can see as they are: overlay, macvlan and
  // ipvlan ones, and static endpoints (declared by the operator). A bridge
  // network's addresses are this host's alone (172.17.0.2 is on every host)
  // and leave it masqueraded: the others see this host, remote-host.
  static const std::set<std::string> kSharedDrivers = {"overlay", "macvlan", "ipvlan", "static"};
  std::vector<RemoteEndpoint> published;
  for (const EndpointState& e : endpoints_) {
    // One interface, one owner: a container that shares another's network is that one's.
    if (!e.shares_network_of.empty() || !kSharedDrivers.contains(e.driver)) continue;
    for (const std::optional<IpAddress>& address : {e.ipv4, e.ipv6})
      if (address)
        published.push_back({.address = *address, .labels = e.labels, .host = store_->host_id(),
                             .container_name = e.workload_name});
  }
  // Docker's gateways are the same addresses on every host, and loopback is
  // everyone's: neither is this host's to claim.
  auto loopback = [](const IpAddress& a) {
    static const IpAddress kLoopback6 = *ParseIpAddress("::1");
    return (a.family == STOCKADE_AF_INET && a.bytes[0] == 127) || a == kLoopback6;
  };
  const std::vector<IpAddress>& gateways = inputs.gateway_addresses;
  std::vector<IpAddress> node;
  for (const IpAddress& own : inputs.host_addresses)
    if (!loopback(own) && std::find(gateways.begin(), gateways.end(), own) == gateways.end()) node.push_back(own);
  store_->Publish(published, node);
}

bool Agent::PutOffForPolicyChange() {
  if (!policy_watch_.valid()) return false;
  pollfd watch{policy_watch_.get(), POLLIN, 0};
  if (poll(&watch, 1, 0) <= 0) return false;
  const absl::Time now = absl::Now();
  if (!put_off_since_) put_off_since_ = now;
  if (put_offs_in_a_row_ >= kMaxPutOffsInARow || now - *put_off_since_ >= kMaxPutOffDelay) return false;
  ++put_offs_in_a_row_;
  put_off_ = true;
  return true;
}

void Agent::PublishNamesAndSaveIdentities() {
  put_off_ = false;
  const absl::Time started = absl::Now();
  // At start 100k rules' origins and CIDR identities' labels become text:
  // about as long as the map writes, and a change waiting for it would wait twice.
  if (event_context_stale_) {
    if (PutOffForPolicyChange() || !PublishEventContext()) return;
    event_context_stale_ = false;
  }
  const absl::Time published = absl::Now();
  // The table's copy for the writer: at 100k CIDRs as long as a change's reconcile.
  if (saved_identities_ != IdentitySignature() && PutOffForPolicyChange()) return;
  SaveIdentities();
  if (absl::Now() - started >= absl::Milliseconds(10) || put_offs_in_a_row_ > 0)
    AgentLog(absl::StrCat("event context and identities caught up in ", FormatMs(absl::Now() - started), " (the last publish ",
                     FormatMs(published - started), ", a copy to save ", FormatMs(absl::Now() - published), ")",
                     put_offs_in_a_row_ ? absl::StrCat(", after ", put_offs_in_a_row_, " deferrals for policy changes")
                                         : ""));
  put_offs_in_a_row_ = 0;
  put_off_since_.reset();
}

void Agent::StampEnforcedAt(std::vector<EndpointState>& endpoints) const {
  const absl::Time now = absl::Now();
  std::map<std::pair<uint64_t, uint32_t>, const EndpointState*> before;
  for (const EndpointState& e : endpoints_) before[{e.hook.key.netns_cookie, e.hook.key.ifindex}] = &e;
  for (EndpointState& e : endpoints) {
    if (e.hook.ifindex == 0 || (!e.error.empty() && !e.error.starts_with("stockade.policy"))) continue;
    auto was = before.find({e.hook.key.netns_cookie, e.hook.key.ifindex});
    bool unchanged = was != before.end() && was->second->identity == e.identity &&
                     was->second->policy.Flags() == e.policy.Flags() && was->second->policy.policies == e.policy.policies;
    e.enforced_at = unchanged ? was->second->enforced_at : now;
  }
}

std::tuple<uint32_t, size_t, size_t> Agent::IdentitySignature() const {
  // Every allocation moves next_id and every release shrinks a map, so an
  // unchanged signature is an unchanged table.
  const IdentityTable& table = reconciler_->allocator().table();
  return {table.next_id, table.labels.size(), table.cidrs.size()};
}

void Agent::SaveIdentities() {
  // An unchanged table is not written again (at 100k CIDR identities the
  // JSON took a good part of each reconcile).
  const auto signature = IdentitySignature();
  if (saved_identities_ == signature) return;
  identity_file_->Save(reconciler_->allocator().table());
  saved_identities_ = signature;
}

absl::Status Agent::Run(const std::atomic<bool>& stop) {
  std::thread docker_thread;
  if (docker_) {
    docker_thread = std::thread([&] {
      absl::Duration backoff = absl::Seconds(1);
      while (!stop) {
        if (!docker_->subscribed()) {
          absl::Status s;
          {
            std::lock_guard<std::mutex> hold(mu_);
            s = Resync({docker_});
            docker_error_ = std::string(s.message());
          }
          if (!s.ok()) {
            AgentLog(absl::StrCat("docker resync failed, retrying in ", absl::FormatDuration(backoff), ": ", s.message()));
            for (absl::Time until = absl::Now() + backoff; !stop && absl::Now() < until;) absl::SleepFor(absl::Milliseconds(100));
            backoff = std::min(backoff * 2, absl::Seconds(30));
            continue;
          }
          backoff = absl::Seconds(1);
        }
        auto changed = docker_->Poll(absl::Milliseconds(500));
        if (!changed.ok()) {
          {
            std::lock_guard<std::mutex> hold(mu_);
            docker_error_ = std::string(changed.status().message());
          }
          AgentLog(absl::StrCat("docker event stream: ", changed.status().message(), "; resubscribing"));
          continue;
        }
        if (*changed) {
          std::lock_guard<std::mutex> hold(mu_);
          if (auto s = Reconcile(); !s.ok()) AgentLog(absl::StrCat("reconcile: ", s.message()));
          docker_sync_lag_ = absl::Now() - docker_->last_event_time();
        }
      }
    });
  }

  std::optional<LinkMonitor> link_monitor;
  if (docker_) {
    auto monitor = LinkMonitor::Open();
    if (monitor.ok()) {
      link_monitor = std::move(*monitor);
    } else {
      AgentLog(absl::StrCat("no link monitor, new containers are hooked when Docker reports them: ",
                       monitor.status().message()));
    }
  }
  absl::Time next_resync = absl::Now() + options_.resync_interval;
  while (!stop) {
    pollfd p[3] = {{policy_watch_.get(), POLLIN, 0},
                   {link_monitor ? link_monitor->fd() : -1, POLLIN, 0},
                   {store_ ? store_->changed_fd() : -1, POLLIN, 0}};
    if (poll(p, 3, 200) > 0 && p[1].revents) {
      auto links = link_monitor->ReadNewLinks();
      if (links.ok()) HookOnSight(*links);
    }
    if (p[0].revents) {
      char buf[4096];
      while (read(policy_watch_.get(), buf, sizeof(buf)) > 0) {
      }
      std::lock_guard<std::mutex> hold(mu_);
      auto changed = ReloadPolicies();
      if (changed.ok() && *changed)
        if (auto s = Reconcile(); !s.ok()) AgentLog(absl::StrCat("reconcile: ", s.message()));
    }
    if (p[2].revents) {
      store_->ClearChanged();
      std::lock_guard<std::mutex> hold(mu_);
      if (auto s = Reconcile(); !s.ok()) {
        AgentLog(absl::StrCat("reconcile after a store change: ", s.message()));
      } else {
        store_sync_lag_ = absl::Now() - store_->Stats().last_change;
      }
    }
    {
      // Put off for the change just handled (or for one that changed nothing).
      std::lock_guard<std::mutex> hold(mu_);
      if (put_off_) PublishNamesAndSaveIdentities();
    }
    if (absl::Now() >= next_resync) {
      if (docker_ && !docker_->subscribed()) {
        // The Docker thread is already resyncing.
      } else {
        std::lock_guard<std::mutex> hold(mu_);
        if (auto s = ResyncAll(); !s.ok()) AgentLog(absl::StrCat("periodic resync: ", s.message()));
      }
      next_resync = absl::Now() + options_.resync_interval;
    }
  }
  if (docker_thread.joinable()) docker_thread.join();
  return absl::OkStatus();
}

bool Agent::PublishEventContext() {
  // From scratch (at start: 100k CIDR identities' labels and rules' origins
  // made into text) in steps of EventContext::kFollowChunk, between which a
  // waiting policy change goes first.
  auto pause = [this] { return PutOffForPolicyChange(); };
  if (!event_names_.FollowIdentities(reconciler_->allocator().table(), pause)) return false;
  const std::map<uint32_t, RuleOrigin>& origins = reconciler_->compiler().compiled().rule_origins;
  if (event_rules_all_) {
    if (!event_rules_resume_at_) event_names_.ClearRules();
    size_t done = 0;
    for (auto it = origins.lower_bound(event_rules_resume_at_.value_or(0)); it != origins.end(); ++it) {
      if (++done % EventContext::kFollowChunk == 0 && pause()) {
        event_rules_resume_at_ = it->first;
        return false;
      }
      event_names_.AddRule(it->first, it->second.ToString());
    }
    event_rules_all_ = false;
    event_rules_resume_at_.reset();
  }
  for (uint32_t id : event_rules_changed_) {
    auto origin = origins.find(id);
    if (origin == origins.end()) {
      event_names_.RemoveRule(id);
    } else {
      event_names_.AddRule(id, origin->second.ToString());
    }
  }
  event_rules_changed_.clear();
  auto context = std::make_shared<EventContext>(event_names_);
  for (const EndpointState& e : endpoints_) {
    if (!e.shares_network_of.empty()) continue;  // its events are named by the interface's owner
    EventWorkload w{.container = e.workload_name,
                    .container_id = e.workload_id,
                    .network = e.network,
                    .interface = e.hook.ifname,
                    .labels = e.labels};
    if (e.ipv4) context->AddWorkload(*e.ipv4, w);
    if (e.ipv6) context->AddWorkload(*e.ipv6, w);
  }
  if (store_) {
    // Other hosts' containers, named with their host; not one in conflict
    // (it is world here, and the drop says so by its address).
    for (const RemoteEndpoint& r : store_->RemoteEndpoints())
      if (std::find(address_conflicts_.begin(), address_conflicts_.end(), r.address) == address_conflicts_.end())
        context->AddWorkload(r.address, {.container = r.container_name.empty() ? r.address.ToString() : r.container_name,
                                         .host = r.host,
                                         .labels = r.labels});
  }
  events_->SetContext(std::move(context));
  return true;
}

}  // namespace stockade
