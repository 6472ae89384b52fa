// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/agent.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "stockade/agent/docker_source.h"
#include "stockade/capabilities.h"
#include "stockade/conntrack/tls_report.h"
#include "stockade/errno_status.h"
#include "stockade/links.h"
#include "stockade/netns.h"
#include "stockade/policy/policy_directory.h"
#include "stockade/policy/policy_parser.h"
#include "stockade/metrics/prometheus_text.h"
#include "stockade/policy_entries.h"

namespace stockade {
namespace {

void Log(const std::string& line) {
  std::fprintf(stderr, "%s stockaded: %s\n", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()).c_str(),
               line.c_str());
}

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
constexpr int kMaxCatchUpDeferrals = 8;
constexpr absl::Duration kMaxCatchUpDelay = absl::Seconds(1);

std::string FormatMs(absl::Duration d) { return absl::FormatDuration(absl::Trunc(d, absl::Microseconds(100))); }

std::string HookKeyName(const endpoint_key& key) { return absl::StrCat(key.netns_cookie, "-", key.ifindex); }

// The interface of a static endpoint, named rather than known by MAC: its MAC and addresses.
IpAddress AddressOf(const LinkAddress& a) {
  return {a.family == AF_INET ? uint8_t{STOCKADE_AF_INET} : uint8_t{STOCKADE_AF_INET6}, a.bytes};
}

absl::Status FillFromInterface(WorkloadInterface& iface) {
  if (iface.ifname.empty())  // a Docker attachment without a MAC address
    return absl::FailedPreconditionError(absl::StrCat(
        "Docker reports no MAC address on network ", iface.network, " (driver ", iface.driver,
        "), so its interface cannot be found: not enforced"));
  auto guard = NetnsGuard::Enter(iface.netns_path);
  if (!guard.ok()) return guard.status();
  auto links = ListLinks();
  if (!links.ok()) return links.status();
  auto link = std::find_if(links->begin(), links->end(), [&](const LinkInfo& l) { return l.name == iface.ifname; });
  if (link == links->end())
    return absl::NotFoundError(absl::StrCat("no interface ", iface.ifname, " in ", iface.netns_path));
  iface.mac = link->mac;
  auto addresses = ListAddresses();
  if (!addresses.ok()) return addresses.status();
  for (const LinkAddress& a : *addresses) {
    if (a.ifindex != link->ifindex || a.link_local) continue;
    const IpAddress addr = AddressOf(a);
    if (a.family == AF_INET && !iface.ipv4) iface.ipv4 = addr;
    if (a.family == AF_INET6 && !iface.ipv6) iface.ipv6 = addr;
  }
  return absl::OkStatus();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// As `stockadectl endpoint list` and the metrics name it.
const char* EndpointStateName(const EndpointState& e) {
  if (e.driver == "none") return "none";
  if (!e.error.empty()) return e.driver == "host" ? "host" : "error";
  return e.policy.enforce_ingress || e.policy.enforce_egress ? "enforcing" : "allow-all";
}

nlohmann::json LabelsJson(const LabelSet& labels) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j;
}

}  // namespace

// The identity table's file, written on a thread of its own: at 100k CIDR
// identities its JSON and the write took ~100 ms, and under the agent's lock
// a policy change made just then waited for them. Saves that come faster
// than the disk are folded into the newest.
class IdentityFileWriter {
 public:
  explicit IdentityFileWriter(std::string path) : path_(std::move(path)), thread_([this] { Loop(); }) {}
  // Writes what waits, then ends: a stopped agent leaves its newest table.
  ~IdentityFileWriter() {
    {
      std::lock_guard<std::mutex> hold(mu_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  IdentityFileWriter(const IdentityFileWriter&) = delete;
  IdentityFileWriter& operator=(const IdentityFileWriter&) = delete;

  void Save(IdentityTable table) {
    {
      std::lock_guard<std::mutex> hold(mu_);
      waiting_ = std::move(table);
    }
    wake_.notify_one();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> hold(mu_);
    while (true) {
      wake_.wait(hold, [this] { return waiting_ || stopping_; });
      if (!waiting_) return;
      IdentityTable table = std::move(*waiting_);
      waiting_.reset();
      hold.unlock();
      if (absl::Status s = Write(table); !s.ok()) Log(absl::StrCat("identities not saved: ", s.message()));
      hold.lock();
    }
  }

  absl::Status Write(const IdentityTable& table) const {
    std::string tmp = path_ + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << SerializeIdentityTable(table);
      if (!out) return absl::InternalError(absl::StrCat("write ", tmp));
    }
    if (rename(tmp.c_str(), path_.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("rename ", tmp));
    return absl::OkStatus();
  }

  const std::string path_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::optional<IdentityTable> waiting_;
  bool stopping_ = false;
  std::thread thread_;  // last: it starts with everything above in place
};

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
      Log(absl::StrCat("no metrics: ", agent->metrics_error_));
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
    agent->allocator_ = std::move(*allocator);
  }

  // Adopt what a predecessor pinned: the links stay attached throughout.
  std::string links_dir = agent->datapath_->pin_dir() + "/" STOCKADE_PIN_LINKS_SUBDIR;
  for (const auto& entry : std::filesystem::directory_iterator(links_dir, ec)) {
    std::string name = entry.path().filename();
    int prog = name.ends_with("-egress") ? agent->datapath_->tc_egress_fd()
               : name.ends_with("-xdp")  ? agent->datapath_->xdp_fd()
                                         : agent->datapath_->tc_ingress_fd();
    auto adopted = Attachment::AdoptPinned(entry.path(), prog);
    if (!adopted.ok()) {
      Log(absl::StrCat("dropping stale pin: ", adopted.status().message()));
      std::filesystem::remove(entry.path(), ec);
      continue;
    }
    agent->attachments_.emplace(entry.path(), std::move(*adopted));
  }
  // The IPv4 flows an older predecessor's programs added since Datapath::Load moved the rest.
  if (agent->datapath_->adopted_conntrack_without_ipv4_map()) {
    if (auto moved = agent->datapath_->conntrack().MoveIpv4FlowsFromWideMap(); !moved.ok())
      Log(absl::StrCat("IPv4 flows left in conntrack, to be decided again: ", moved.status().message()));
  }

  std::lock_guard<std::recursive_mutex> hold(agent->mu_);
  if (!o.static_endpoints.empty()) {
    auto workloads = LoadStaticEndpoints(o.static_endpoints);
    if (!workloads.ok()) return workloads.status();
    agent->static_workloads_ = std::move(*workloads);
    agent->HookStaticWorkloads();
  }
  if (!o.policy_dir.empty()) {
    agent->policy_watch_ = ScopedFd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!agent->policy_watch_.valid() ||
        inotify_add_watch(agent->policy_watch_.get(), o.policy_dir.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE) < 0)
      Log(absl::StrCat("no watch on ", o.policy_dir, " (", ErrnoStatus(errno, "inotify").message(),
                       "): its changes are not followed"));
    (void)agent->ReloadPolicies();
  }
  if (o.docker) {
    auto client = DockerClient::FromEnvironment();
    if (!client.ok()) return client.status();
    agent->docker_ = std::make_unique<DockerSource>(std::move(*client));
    if (auto s = agent->docker_->Resync(); !s.ok()) {
      // Enforcement of what is pinned goes on; Run() retries Docker with backoff.
      agent->docker_error_ = std::string(s.message());
      agent->last_error_ = absl::StrCat("docker: ", s.message());
      Log(agent->last_error_);
      return agent;
    }
    ++agent->resyncs_;
  }
  if (auto s = agent->Reconcile(); !s.ok()) Log(absl::StrCat("first reconcile: ", s.message()));
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
  std::lock_guard<std::recursive_mutex> hold(mu_);
  auto reject = [this](const absl::Status& s) {
    ++policy_rejects_;
    policy_error_ = std::string(s.message());
    Log(absl::StrCat("policy rejected: ", policy_error_, "; keeping the last good policy"));
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
  Log(absl::StrCat("loaded ", policy_files_.policies().size(), " policies from ", stats->files, " files (",
                   stats->parsed, " read again) in ",
                   absl::FormatDuration(absl::Trunc(absl::Now() - started, absl::Microseconds(100)))));
  return true;
}

absl::StatusOr<ResolvedHook> Agent::ResolveHookCached(const WorkloadInterface& iface,
                                                      std::map<std::string, ResolvedHook>& resolved) {
  // The namespace's inode tells a reused pid's new namespace from the old one.
  // What a hook carries besides its interface (the IPv6 link-local address)
  // is there by the start event, Docker brings the link up before; a full
  // resync reads it all again anyway.
  struct stat netns {};
  if (stat(iface.netns_path.c_str(), &netns) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", iface.netns_path));
  std::string key = absl::StrCat(netns.st_dev, ":", netns.st_ino, "/", FormatMac(iface.mac->data()), "/",
                                 static_cast<int>(iface.placement));
  if (auto hit = hook_cache_.find(key); hit != hook_cache_.end()) return resolved[key] = hit->second;
  auto hook = ResolveHook(iface.netns_path, *iface.mac, iface.placement);
  if (hook.ok()) resolved[key] = *hook;
  return hook;
}

void Agent::HookStaticWorkloads() {
  std::map<std::string, ResolvedHook> resolved;
  for (Workload& w : static_workloads_) {
    for (WorkloadInterface& iface : w.interfaces) {
      absl::Status filled = iface.mac ? absl::OkStatus() : FillFromInterface(iface);
      auto hook = filled.ok() ? ResolveHookCached(iface, resolved) : absl::StatusOr<ResolvedHook>(filled);
      absl::Status attached = hook.ok() ? EnsureAttached(*hook) : hook.status();
      // Reconcile tries again and reports it in the endpoint's state.
      if (!attached.ok()) Log(absl::StrCat("hook ", w.name, " early: ", attached.message()));
    }
  }
}

absl::Status Agent::ResyncAll() {
  std::lock_guard<std::recursive_mutex> hold(mu_);
  // After a reconnect every interface is looked at again. The periodic
  // resync keeps the cache: it would hold the lock (and the next Docker
  // event) for a setns and rtnetlink dumps per endpoint. Entries are keyed
  // by namespace and MAC, and an entry whose attach failed is dropped.
  if (!docker_ || !docker_->subscribed()) hook_cache_.clear();
  if (docker_) {
    if (auto s = docker_->Resync(); !s.ok()) return s;
    ++resyncs_;
  }
  if (!options_.static_endpoints.empty()) {
    auto workloads = LoadStaticEndpoints(options_.static_endpoints);
    if (workloads.ok()) {
      static_workloads_ = std::move(*workloads);
    } else {
      Log(absl::StrCat("static endpoints rejected, keeping the last good list: ", workloads.status().message()));
    }
  }
  return Reconcile();
}

std::vector<std::string> Agent::HookPinPaths(const ResolvedHook& hook) const {
  std::string base = absl::StrCat(datapath_->pin_dir(), "/" STOCKADE_PIN_LINKS_SUBDIR "/", HookKeyName(hook.key));
  bool xdp = options_.xdp && hook.role == HOOK_ROLE_HOST_VETH;
  return {base + (xdp ? "-xdp" : "-ingress"), base + "-egress"};
}

absl::Status Agent::EnsureAttached(const ResolvedHook& hook) {
  std::optional<absl::StatusOr<NetnsGuard>> guard;
  for (const std::string& pin : HookPinPaths(hook)) {
    if (attachments_.contains(pin)) continue;
    if (!hook.netns_path.empty() && !guard) {
      guard.emplace(NetnsGuard::Enter(hook.netns_path));
      if (!guard->ok()) return guard->status();
    }
    TcHook direction = pin.ends_with("-egress") ? TcHook::kEgress : TcHook::kIngress;
    if (hook.role == HOOK_ROLE_IN_CONTAINER && !pin.ends_with("-xdp") && AdoptMovedLink(pin, hook.ifindex, direction))
      continue;
    absl::StatusOr<Attachment> attachment =
        pin.ends_with("-xdp")      ? Attachment::AttachXdp(datapath_->xdp_fd(), hook.ifindex, XdpAttachMode::kAuto)
        : pin.ends_with("-egress") ? Attachment::AttachTc(datapath_->tc_egress_fd(), hook.ifindex, TcHook::kEgress,
                                                          options_.tc_mode)
                                   : Attachment::AttachTc(datapath_->tc_ingress_fd(), hook.ifindex, TcHook::kIngress,
                                                          options_.tc_mode);
    if (!attachment.ok())
      return absl::Status(attachment.status().code(), absl::StrCat(hook.ifname, ": ", attachment.status().message()));
    if (attachment->kind() == Attachment::Kind::kClassicTc) {
      attachment->Release();  // no link to pin; the filter stays until uninstall
    } else if (auto s = attachment->Pin(pin); !s.ok()) {
      return s;
    }
    attachments_.emplace(pin, std::move(*attachment));
  }
  return absl::OkStatus();
}

void Agent::DetachUnwanted(const std::set<std::string>& wanted_pins) {
  constexpr absl::Duration kClaimGrace = absl::Seconds(30);
  for (auto it = attachments_.begin(); it != attachments_.end();) {
    auto seen = hooked_on_sight_.find(it->first);
    bool waiting_for_docker = seen != hooked_on_sight_.end() && absl::Now() - seen->second < kClaimGrace;
    if (seen != hooked_on_sight_.end() && (!waiting_for_docker || wanted_pins.contains(it->first)))
      hooked_on_sight_.erase(seen);
    if (wanted_pins.contains(it->first) || waiting_for_docker) {
      ++it;
      continue;
    }
    if (auto s = it->second.Unpin(); !s.ok()) Log(absl::StrCat("detach ", it->first, ": ", s.message()));
    it = attachments_.erase(it);
  }
}

std::set<std::string> Agent::DockerMacvlanParents() const {
  std::set<std::string> parents;
  if (!docker_) return parents;
  for (const char* driver : {"macvlan", "ipvlan"}) {
    auto networks = docker_->client().ListNetworks(driver);
    if (!networks.ok()) {
      Log(absl::StrCat("hook on sight: ", networks.status().message()));
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

std::set<int32_t> Agent::DockerOverlayNetnsIds() const {
  std::set<int32_t> ids;
  if (!docker_) return ids;
  auto networks = docker_->client().ListNetworks("overlay");
  if (!networks.ok()) {
    Log(absl::StrCat("hook on sight: ", networks.status().message()));
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
      if (!overlay_netns_ids) overlay_netns_ids = DockerOverlayNetnsIds();
      if (!overlay_netns_ids->contains(link.peer_netnsid)) continue;
      where = "a veth into a Docker overlay network";
    } else {
      auto parent = find(link.peer_ifindex);
      if (parent == all.end()) continue;
      if (!macvlan_parents) macvlan_parents = DockerMacvlanParents();
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
    std::lock_guard<std::recursive_mutex> hold(mu_);
    std::vector<std::string> pins = HookPinPaths(hook);
    if (attachments_.contains(pins.front())) continue;
    if (auto s = EnsureAttached(hook); !s.ok()) {
      Log(absl::StrCat("hook ", link.name, " (", where, ") on sight: ", s.message()));
      continue;
    }
    for (const std::string& pin : pins) hooked_on_sight_[pin] = absl::Now();
    Log(absl::StrCat("hooked ", link.name, " (", where, ") on sight; it drops until its container is known"));
  }
}

bool Agent::AdoptMovedLink(const std::string& pin, uint32_t ifindex, TcHook direction) {
  auto here = TcxLinkIds(ifindex, direction);
  if (!here.ok() || here->empty()) return false;
  for (auto it = attachments_.begin(); it != attachments_.end(); ++it) {
    if (it->second.kind() != Attachment::Kind::kTcxLink) continue;
    auto id = it->second.LinkId();
    if (!id.ok() || std::find(here->begin(), here->end(), *id) == here->end()) continue;
    if (auto s = it->second.Repin(pin); !s.ok()) {
      Log(absl::StrCat("adopt ", it->first, ": ", s.message()));
      return false;
    }
    Log(absl::StrCat("adopted ", it->first, " as ", pin, ": hooked on sight before Docker moved it"));
    hooked_on_sight_.erase(it->first);
    attachments_.emplace(pin, std::move(it->second));
    attachments_.erase(it);
    return true;
  }
  return false;
}

absl::Status Agent::Reconcile() {
  std::lock_guard<std::recursive_mutex> hold(mu_);
  // A restarted agent that has not reached Docker yet does not know its
  // containers; a pass now would take them for gone and detach every one a
  // predecessor pinned (fail open). What is pinned stays until Docker answers.
  if (docker_ && !docker_->listed())
    return absl::UnavailableError("Docker not listed yet: what is pinned stays as it is until Docker answers");
  ++reconciles_;
  std::vector<Workload> workloads = static_workloads_;
  if (docker_)
    for (Workload& w : docker_->Workloads()) workloads.push_back(std::move(w));

  const absl::Time started = absl::Now();
  std::vector<EndpointState> endpoints;
  std::map<std::string, ResolvedHook> resolved;  // this pass's hooks: the cache for the next
  PolicyInputs inputs;
  inputs.policies_held = policy_files_.policies();
  // Containers in another's network namespace: shown with the owner's interface once it is known.
  struct SharedNetwork {
    std::string id, name, source, owner;
  };
  std::vector<SharedNetwork> shared;
  for (Workload& w : workloads) {
    StockadeLabels labels = ReadContainerLabels(w.labels, w.image_labels);
    uint32_t identity = IDENTITY_HOST;
    if (!w.host_network) {
      auto allocated = allocator_.ForLabels(labels.identity);
      if (!allocated.ok()) return allocated.status();
      identity = *allocated;
    }
    std::optional<Policy> label_policy;
    std::string label_policy_error;
    if (labels.policy_text) {
      auto parsed = ParseLabelPolicy(*labels.policy_text, w.name);
      if (parsed.ok()) {
        label_policy = std::move(*parsed);
      } else {
        label_policy_error = absl::StrCat("stockade.policy label rejected: ", parsed.status().message());
      }
    }
    if (w.host_network || w.no_network) {
      EndpointState e;
      e.workload_id = w.id;
      e.workload_name = w.name;
      e.source = w.source;
      e.network = e.driver = w.host_network ? "host" : "none";
      e.identity = w.host_network ? uint32_t{IDENTITY_HOST} : identity;
      e.labels = labels.identity;
      e.error = w.host_network ? "host network: shares the host's stack and identity; not enforced per container"
                               : "network none: no interface, nothing to enforce";
      endpoints.push_back(std::move(e));
      continue;
    }
    if (!w.shares_network_of.empty()) {
      shared.push_back({w.id, w.name, w.source, w.shares_network_of});
      continue;
    }
    for (WorkloadInterface& iface : w.interfaces) {
      EndpointState e;
      e.workload_id = w.id;
      e.workload_name = w.name;
      e.source = w.source;
      e.network = iface.network;
      e.driver = iface.driver;
      e.identity = identity;
      e.labels = labels.identity;
      e.ignored_labels = labels.ignored;
      e.error = label_policy_error;
      absl::Status filled = iface.mac ? absl::OkStatus() : FillFromInterface(iface);
      auto hook = filled.ok() ? ResolveHookCached(iface, resolved) : absl::StatusOr<ResolvedHook>(filled);
      if (!hook.ok()) {
        e.error = std::string(hook.status().message());
        endpoints.push_back(std::move(e));
        continue;
      }
      e.hook = *hook;
      e.mac = *iface.mac;
      e.ipv4 = iface.ipv4;
      e.ipv6 = iface.ipv6;
      if (auto s = EnsureAttached(e.hook); !s.ok()) e.error = std::string(s.message());
      PolicyEndpoint pe{.id = absl::StrCat(w.id, "/", iface.network), .identity = identity, .labels = labels.identity};
      if (label_policy) pe.label_policy = *label_policy;
      if (identity != IDENTITY_UNMANAGED || label_policy) inputs.endpoints.push_back(std::move(pe));
      endpoints.push_back(std::move(e));
    }
  }

  const absl::Time compile_started = absl::Now();
  auto delta = policy_compiler_.Update(inputs, allocator_);
  if (!delta.ok()) return delta.status();
  const CompiledPolicy& compiled = policy_compiler_.compiled();
  // For PublishEventContext, after the maps: 100k origins are text to make.
  if (delta->full) {
    event_rules_all_ = true;
    event_rules_resume_at_.reset();
    event_rules_changed_.clear();
  } else {
    // Also while all are made again: a paused rebuild made some of them already.
    const std::vector<uint32_t>& origins_changed = policy_compiler_.origins_changed();
    event_rules_changed_.insert(event_rules_changed_.end(), origins_changed.begin(), origins_changed.end());
  }
  WantedMaps wanted;
  if (delta->full || sync_->policy_complete()) {
    wanted.policy = std::move(delta->entries);
    if (!delta->full) wanted.policy_scope = std::move(delta->scope);
  } else {
    // The last sync stopped half way: the maps are not where the delta starts.
    auto entries = CompilePolicyEntries(compiled.rules);
    if (!entries.ok()) return entries.status();
    wanted.policy = std::move(*entries);
  }
  const absl::Time compiled_at = absl::Now();

  std::map<std::string, EndpointPolicy> by_id;
  for (const EndpointPolicy& p : compiled.endpoints) by_id[p.id] = p;
  std::set<std::string> wanted_pins;
  std::map<IpPrefix, uint32_t, IpPrefixLess> addresses;  // the endpoints' and the host's: few
  auto add_ip = [&](const std::optional<IpAddress>& addr, uint32_t identity) {
    if (!addr) return;
    IpPrefix prefix{*addr, static_cast<uint8_t>(addr->family == STOCKADE_AF_INET ? 32 : 128)};
    addresses[prefix] = identity;
  };
  for (EndpointState& e : endpoints) {
    if (e.hook.ifindex == 0) continue;
    auto policy = by_id.find(absl::StrCat(e.workload_id, "/", e.network));
    if (policy != by_id.end()) e.policy = policy->second;
    add_ip(e.ipv4, e.identity);
    add_ip(e.ipv6, e.identity);
    if (!e.error.empty() && e.error.rfind("stockade.policy", 0) != 0) continue;  // not attached
    endpoint_info info{};
    info.identity = e.identity;
    info.flags = e.policy.Flags() | (options_.audit ? ENDPOINT_F_AUDIT : 0);
    // A label policy that does not parse must not open anything: deny both ways.
    if (e.error.rfind("stockade.policy", 0) == 0) info.flags |= ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS;
    info.role = e.hook.role;
    std::memcpy(info.mac, e.mac.data(), 6);
    if (e.ipv4) info.ipv4 = e.ipv4->ipv4_network_order();
    if (e.ipv6) std::memcpy(info.ipv6, e.ipv6->bytes.data(), 16);
    std::memcpy(info.ipv6_link_local, e.hook.ipv6_link_local.data(), 16);
    wanted.endpoints.push_back({e.hook.key, info});
    for (const std::string& pin : HookPinPaths(e.hook)) wanted_pins.insert(pin);
  }
  // Shown as their owner is enforced, since their traffic is the owner's.
  for (const SharedNetwork& s : shared) {
    EndpointState shown{.workload_id = s.id, .workload_name = s.name, .source = s.source, .shares_network_of = s.owner};
    shown.error = absl::StrCat("shares the network namespace of container ", s.owner.substr(0, 12),
                               ", which stockade does not see");
    bool found = false;
    for (size_t i = 0, n = endpoints.size(); i < n; ++i) {
      if (endpoints[i].workload_id != s.owner || !endpoints[i].shares_network_of.empty()) continue;
      EndpointState e = endpoints[i];
      e.shares_network_of = endpoints[i].workload_name;
      e.workload_id = s.id;
      e.workload_name = s.name;
      e.source = s.source;
      e.ignored_labels.clear();
      endpoints.push_back(std::move(e));
      found = true;
    }
    if (!found) endpoints.push_back(std::move(shown));
  }
  if (docker_)
    for (const IpAddress& gw : docker_->HostAddresses()) add_ip(gw, IDENTITY_HOST);
  // The host's own addresses are the host too: the host reaching a published
  // port at its own address comes to the container from that address, since
  // Docker's DNAT keeps the source. An endpoint keeps its own address.
  if (auto local = ListAddresses(); local.ok()) {
    for (const LinkAddress& a : *local) {
      if (a.link_local) continue;
      addresses.try_emplace(IpPrefix{AddressOf(a), static_cast<uint8_t>(a.family == AF_INET ? 32 : 128)},
                            IDENTITY_HOST);
    }
  } else {
    Log(absl::StrCat("the host's addresses are not known as host: ", local.status().message()));
  }
  // The CIDR identities come sorted: merged in, not inserted one by one into
  // a tree (at 100k, most of a reconcile). A policy's prefix equal to an
  // address takes it, as the policy names it.
  wanted.ipcache.reserve(addresses.size() + compiled.cidr_identities.size());
  auto address = addresses.begin();
  for (const CidrIdentity& c : compiled.cidr_identities) {
    for (; address != addresses.end() && IpPrefixLess()(address->first, c.prefix); ++address)
      wanted.ipcache.push_back(*address);
    if (address != addresses.end() && address->first == c.prefix) ++address;
    wanted.ipcache.push_back({c.prefix, c.identity});
  }
  wanted.ipcache.insert(wanted.ipcache.end(), address, addresses.end());

  const absl::Time sync_started = absl::Now();
  auto stats = sync_->Apply(wanted);
  const absl::Time synced_at = absl::Now();
  if (stats.ok()) StampEnforcedAt(endpoints);
  for (const EndpointState& e : endpoints)
    if (!e.error.empty() && e.hook.ifindex != 0)
      std::erase_if(resolved, [&](const auto& entry) { return entry.second.key.ifindex == e.hook.key.ifindex &&
                                                              entry.second.key.netns_cookie == e.hook.key.netns_cookie; });
  hook_cache_ = std::move(resolved);
  endpoints_ = std::move(endpoints);
  event_context_stale_ = true;
  if (!stats.ok()) {
    ++map_sync_errors_;
    last_error_ = absl::StrCat("map sync: ", stats.status().message());
    Log(last_error_ + " (the previous state stays in force)");
    CatchUpNamesAndState();
    return stats.status();
  }
  DetachUnwanted(wanted_pins);
  if (stats->written || stats->removed)
    Log(absl::StrCat("synced: ", stats->written, " written, ", stats->removed, " removed, ", stats->revisions_bumped,
                     " revisions bumped; ", endpoints_.size(), " endpoints, ", compiled.rules.size(), " rules (",
                     policy_compiler_.recompiled(), " policies compiled); enforced after ", FormatMs(synced_at - started),
                     " (compile ", FormatMs(compiled_at - compile_started), ", diff and map writes ",
                     FormatMs(synced_at - sync_started), ")"));
  CatchUpNamesAndState();
  return absl::OkStatus();
}

bool Agent::DeferCatchUp() {
  if (!policy_watch_.valid()) return false;
  pollfd watch{policy_watch_.get(), POLLIN, 0};
  if (poll(&watch, 1, 0) <= 0) return false;
  const absl::Time now = absl::Now();
  if (!catch_up_deferred_since_) catch_up_deferred_since_ = now;
  if (catch_up_deferrals_ >= kMaxCatchUpDeferrals || now - *catch_up_deferred_since_ >= kMaxCatchUpDelay) return false;
  ++catch_up_deferrals_;
  catch_up_deferred_ = true;
  return true;
}

void Agent::CatchUpNamesAndState() {
  catch_up_deferred_ = false;
  const absl::Time started = absl::Now();
  // At start 100k rules' origins and CIDR identities' labels become text:
  // about as long as the map writes, and a change waiting for it would wait twice.
  if (event_context_stale_) {
    if (DeferCatchUp() || !PublishEventContext()) return;
    event_context_stale_ = false;
  }
  const absl::Time published = absl::Now();
  // The table's copy for the writer: at 100k CIDRs as long as a change's reconcile.
  if (saved_identities_ != IdentitySignature() && DeferCatchUp()) return;
  SaveIdentities();
  if (absl::Now() - started >= absl::Milliseconds(10) || catch_up_deferrals_ > 0)
    Log(absl::StrCat("event context and identities caught up in ", FormatMs(absl::Now() - started), " (the last publish ",
                     FormatMs(published - started), ", a copy to save ", FormatMs(absl::Now() - published), ")",
                     catch_up_deferrals_ ? absl::StrCat(", after ", catch_up_deferrals_, " deferrals for policy changes")
                                         : ""));
  catch_up_deferrals_ = 0;
  catch_up_deferred_since_.reset();
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
  const IdentityTable& table = allocator_.table();
  return {table.next_id, table.labels.size(), table.cidrs.size()};
}

void Agent::SaveIdentities() {
  // An unchanged table is not written again (at 100k CIDR identities the
  // JSON took a good part of each reconcile).
  const auto signature = IdentitySignature();
  if (saved_identities_ == signature) return;
  identity_file_->Save(allocator_.table());
  saved_identities_ = signature;
}

absl::Status Agent::Run(const std::atomic<bool>& stop) {
  std::thread docker_thread;
  if (docker_) {
    docker_thread = std::thread([&] {
      absl::Duration backoff = absl::Seconds(1);
      while (!stop) {
        if (!docker_->subscribed()) {
          absl::Status s = ResyncAll();
          {
            std::lock_guard<std::recursive_mutex> hold(mu_);
            docker_error_ = std::string(s.message());
          }
          if (!s.ok()) {
            Log(absl::StrCat("docker resync failed, retrying in ", absl::FormatDuration(backoff), ": ", s.message()));
            for (absl::Time until = absl::Now() + backoff; !stop && absl::Now() < until;) absl::SleepFor(absl::Milliseconds(100));
            backoff = std::min(backoff * 2, absl::Seconds(30));
            continue;
          }
          backoff = absl::Seconds(1);
        }
        auto changed = docker_->Poll(absl::Milliseconds(500));
        if (!changed.ok()) {
          {
            std::lock_guard<std::recursive_mutex> hold(mu_);
            docker_error_ = std::string(changed.status().message());
          }
          Log(absl::StrCat("docker event stream: ", changed.status().message(), "; resubscribing"));
          continue;
        }
        if (*changed) {
          std::lock_guard<std::recursive_mutex> hold(mu_);
          if (auto s = Reconcile(); !s.ok()) Log(absl::StrCat("reconcile: ", s.message()));
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
      Log(absl::StrCat("no link monitor, new containers are hooked when Docker reports them: ",
                       monitor.status().message()));
    }
  }
  absl::Time next_resync = absl::Now() + options_.resync_interval;
  while (!stop) {
    pollfd p[2] = {{policy_watch_.get(), POLLIN, 0}, {link_monitor ? link_monitor->fd() : -1, POLLIN, 0}};
    if (poll(p, 2, 200) > 0 && p[1].revents) {
      auto links = link_monitor->ReadNewLinks();
      if (links.ok()) HookOnSight(*links);
    }
    if (p[0].revents) {
      char buf[4096];
      while (read(policy_watch_.get(), buf, sizeof(buf)) > 0) {
      }
      std::lock_guard<std::recursive_mutex> hold(mu_);
      auto changed = ReloadPolicies();
      if (changed.ok() && *changed)
        if (auto s = Reconcile(); !s.ok()) Log(absl::StrCat("reconcile: ", s.message()));
    }
    {
      // Put off for the change just handled (or for one that changed nothing).
      std::lock_guard<std::recursive_mutex> hold(mu_);
      if (catch_up_deferred_) CatchUpNamesAndState();
    }
    if (absl::Now() >= next_resync) {
      if (docker_ && !docker_->subscribed()) {
        // The Docker thread is already resyncing.
      } else if (auto s = ResyncAll(); !s.ok()) {
        Log(absl::StrCat("periodic resync: ", s.message()));
      }
      next_resync = absl::Now() + options_.resync_interval;
    }
  }
  if (docker_thread.joinable()) docker_thread.join();
  return absl::OkStatus();
}

nlohmann::json Agent::HandleControl(const nlohmann::json& request) {
  std::string command = request.value("command", "");
  if (command == "tls") return TlsReport();  // takes the lock only while it copies the endpoints
  std::lock_guard<std::recursive_mutex> hold(mu_);
  if (command == "status") return Status();
  if (command == "endpoint list") return EndpointList();
  if (command == "identity list") return IdentityList();
  if (command == "policy get") return PolicyGet();
  if (command == "explain") return Explain(request);
  if (command == "resync") {
    absl::Status s = ResyncAll();
    if (!s.ok()) return {{"error", std::string(s.message())}};
    return {{"ok", true}};
  }
  return {{"error", absl::StrCat("unknown command '", command, "'")}};
}

nlohmann::json Agent::Status() {
  nlohmann::json drops = nlohmann::json::object();
  for (int slot = 1; slot < STOCKADE_REASON_SLOTS; ++slot) {
    int reason = -(STOCKADE_REASON_BASE + slot - 1);
    uint64_t total = 0;
    for (uint32_t dir = 0; dir < DIR_MAX; ++dir) {
      auto c = datapath_->Counter(reason, dir, VERDICT_DROPPED);
      if (c.ok()) total += c->packets;
    }
    if (total) drops[std::string(DropReasonName(reason))] = total;
  }
  std::vector<std::string> names;
  for (const Policy* p : policy_files_.policies()) names.push_back(p->name);
  int enforced = 0, failed = 0;
  for (const EndpointState& e : endpoints_) (e.error.empty() && e.hook.ifindex ? enforced : failed)++;
  return {{"instance", options_.instance},
          {"pin_dir", datapath_->pin_dir()},
          {"docker", docker_ ? (docker_->subscribed() ? "connected" : "disconnected") : "disabled"},
          {"docker_error", docker_error_},
          {"capabilities", EffectiveCapabilities()},
          {"endpoints", endpoints_.size()},
          {"endpoints_enforced", enforced},
          {"endpoints_failed", failed},
          {"identities", allocator_.table().labels.size()},
          {"policies", names},
          {"policy_error", policy_error_},
          {"attachments", attachments_.size()},
          {"reconciles", reconciles_},
          {"resyncs", resyncs_},
          {"last_error", last_error_},
          {"map_sync_errors", map_sync_errors_},
          {"metrics", metrics_ ? metrics_->address() : ""},
          {"metrics_error", metrics_error_},
          {"events_socket", options_.events_socket},
          {"events", EventStats()},
          {"drops", drops}};
}

nlohmann::json Agent::EndpointList() {
  nlohmann::json list = nlohmann::json::array();
  for (const EndpointState& e : endpoints_) {
    nlohmann::json ignored = nlohmann::json::array();
    for (const IgnoredLabel& l : e.ignored_labels)
      ignored.push_back({{"label", absl::StrCat(l.key, "=", l.value)}, {"reason", l.reason}});
    list.push_back({{"id", e.workload_id.substr(0, 12)},
                    {"name", e.workload_name},
                    {"source", e.source},
                    {"network", e.network},
                    {"mode", e.driver},
                    {"interface", e.hook.ifname},
                    {"ipv4", e.ipv4 ? e.ipv4->ToString() : ""},
                    {"ipv6", e.ipv6 ? e.ipv6->ToString() : ""},
                    {"identity", e.identity},
                    {"identity_name", FormatIdentity(e.identity)},
                    {"labels", LabelsJson(e.labels)},
                    {"ignored_labels", ignored},
                    {"enforce_ingress", e.policy.enforce_ingress},
                    {"enforce_egress", e.policy.enforce_egress},
                    {"audit", e.policy.audit || options_.audit},
                    {"policies", e.policy.policies},
                    {"state", EndpointStateName(e)},
                    {"enforced_at_ns", e.enforced_at == absl::InfinitePast() ? 0 : absl::ToUnixNanos(e.enforced_at)},
                    {"shares_network_of", e.shares_network_of},
                    {"error", e.error}});
  }
  return {{"endpoints", list}};
}

nlohmann::json Agent::IdentityList() {
  nlohmann::json list = nlohmann::json::array();
  for (uint32_t reserved : {uint32_t{IDENTITY_HOST}, uint32_t{IDENTITY_WORLD}, uint32_t{IDENTITY_UNMANAGED}})
    list.push_back({{"identity", reserved}, {"name", FormatIdentity(reserved)}, {"labels", nlohmann::json::object()}});
  for (const auto& [labels, id] : allocator_.table().labels)
    list.push_back({{"identity", id}, {"name", FormatLabels(labels)}, {"labels", LabelsJson(labels)}});
  for (const auto& [prefix, id] : allocator_.table().cidrs)
    list.push_back({{"identity", id}, {"name", absl::StrCat("cidr:", prefix.ToString())}});
  return {{"identities", list}};
}

nlohmann::json Agent::PolicyGet() {
  const CompiledPolicy& compiled = policy_compiler_.compiled();
  nlohmann::json rules = nlohmann::json::array();
  for (const DatapathRule& r : compiled.rules) {
    auto origin = compiled.rule_origins.find(r.rule_id);
    rules.push_back({{"rule", r.rule_id},
                     {"origin", origin != compiled.rule_origins.end() ? origin->second.ToString() : ""},
                     {"local", FormatIdentity(r.local_identity)},
                     {"remote", FormatIdentity(r.remote_identity)},
                     {"direction", r.direction == DIR_INGRESS ? "ingress" : "egress"},
                     {"protocol", r.protocol},
                     {"ports", absl::StrCat(r.ports.first, "-", r.ports.last)},
                     {"action", r.action == POLICY_ACTION_DENY ? (r.audit ? "audit-deny" : "deny") : "allow"},
                     {"require_tls", r.require_tls}});
  }
  return {{"compiled", compiled.Describe()}, {"rules", rules}, {"policy_error", policy_error_}};
}

nlohmann::json Agent::TlsReport() {
  std::vector<TlsReportEndpoint> endpoints;
  {
    std::lock_guard<std::recursive_mutex> hold(mu_);
    for (const EndpointState& e : endpoints_)
      if (e.shares_network_of.empty())  // its flows are the owner's
        endpoints.push_back({.key = e.hook.key, .name = e.workload_name, .ipv4 = e.ipv4, .ipv6 = e.ipv6});
  }
  // The conntrack dump runs without the lock: a full table takes a while.
  std::vector<ConntrackFlow> flows;
  absl::Status s = datapath_->conntrack().ForEach(
      [&](const ct_key& k, const ct_entry& e) { flows.push_back({.key = k, .entry = e}); });
  if (!s.ok()) return {{"error", absl::StrCat("reading conntrack: ", s.message())}};
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);  // the clock of bpf_ktime_get_coarse_ns
  return TlsReportJson(
      AggregateTlsFlows(flows, endpoints, uint64_t(now.tv_sec) * 1'000'000'000ull + uint64_t(now.tv_nsec)));
}

nlohmann::json Agent::Explain(const nlohmann::json& request) {
  std::string from = request.value("from", ""), to = request.value("to", "");
  uint16_t port = request.value("port", 0);
  uint8_t protocol = request.value("protocol", IPPROTO_TCP);
  const EndpointState *a = nullptr, *b = nullptr;
  for (const EndpointState& e : endpoints_) {
    if ((e.workload_name == from || e.workload_id.starts_with(from)) && !a) a = &e;
    if ((e.workload_name == to || e.workload_id.starts_with(to)) && !b) b = &e;
  }
  if (!a || !b) return {{"error", absl::StrCat("no endpoint named '", a ? to : from, "'")}};
  auto check = [&](const EndpointState& local, uint32_t remote, uint8_t dir) -> nlohmann::json {
    bool enforced = dir == DIR_INGRESS ? local.policy.enforce_ingress : local.policy.enforce_egress;
    if (!enforced) return {{"verdict", "allowed"}, {"why", "not enforced in this direction"}};
    const policy_value* deny = nullptr;
    std::optional<policy_value> found[2];
    for (int i = 0; i < 2; ++i) {
      policy_key key{};
      key.prefixlen = POLICY_PREFIX_FULL;
      key.local_identity = local.identity;
      key.remote_identity = i == 0 ? remote : uint32_t{IDENTITY_ANY};
      key.direction = dir;
      key.protocol = protocol;
      key.dport = htons(port);
      auto v = datapath_->LookupPolicy(key);
      if (v.ok() && v->has_value()) found[i] = **v;
      if (found[i] && found[i]->action == POLICY_ACTION_DENY && !deny) deny = &*found[i];
    }
    const policy_value* decided = deny ? deny : found[0] ? &*found[0] : found[1] ? &*found[1] : nullptr;
    if (!decided) return {{"verdict", "denied"}, {"why", "no rule matched (default deny)"}};
    const std::map<uint32_t, RuleOrigin>& origins = policy_compiler_.compiled().rule_origins;
    auto origin = origins.find(decided->rule_id);
    return {{"verdict", decided->action == POLICY_ACTION_DENY ? "denied" : "allowed"},
            {"rule", decided->rule_id},
            {"why", origin != origins.end() ? origin->second.ToString() : ""}};
  };
  nlohmann::json egress = check(*a, b->identity, DIR_EGRESS);
  nlohmann::json ingress = check(*b, a->identity, DIR_INGRESS);
  bool allowed = egress["verdict"] == "allowed" && ingress["verdict"] == "allowed";
  return {{"from", a->workload_name}, {"to", b->workload_name}, {"port", port}, {"protocol", protocol},
          {"egress_at_source", egress}, {"ingress_at_destination", ingress}, {"verdict", allowed ? "allowed" : "denied"}};
}

bool Agent::PublishEventContext() {
  // From scratch (at start: 100k CIDR identities' labels and rules' origins
  // made into text) in steps of EventContext::kFollowChunk, between which a
  // waiting policy change goes first.
  auto pause = [this] { return DeferCatchUp(); };
  if (!event_names_.FollowIdentities(allocator_.table(), pause)) return false;
  const std::map<uint32_t, RuleOrigin>& origins = policy_compiler_.compiled().rule_origins;
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
  events_->SetContext(std::move(context));
  return true;
}

namespace {

// Ring buffer reservations that failed: the records lost, and the drops they stood for.
std::pair<uint64_t, uint64_t> RingbufLost(const Datapath& datapath) {
  uint64_t records = 0, drops = 0;
  for (uint32_t dir = 0; dir < DIR_MAX; ++dir)
    for (uint32_t verdict = 0; verdict < VERDICT_MAX; ++verdict) {
      auto c = datapath.Counter(EVENT_LOST, dir, verdict);
      if (!c.ok()) continue;
      records += c->packets;
      drops += c->bytes;  // record_decision counts what a lost record stood for as its "bytes"
    }
  return {records, drops};
}

}  // namespace

nlohmann::json Agent::EventStats() {
  EventHubStats hub = events_->Stats();
  auto [ringbuf_records, ringbuf_drops] = RingbufLost(*datapath_);
  return {{"received", hub.received},
          {"drops_received", hub.drops_received},
          {"subscribers", hub.subscribers},
          {"lost", {{"ringbuf", ringbuf_records}, {"ringbuf_drops", ringbuf_drops}, {"agent", hub.malformed},
                    {"subscriber", hub.subscriber_lost}}}};
}

std::string Agent::RenderMetrics() {
  PrometheusText out;
  // Datapath counters need no lock: they are read from the maps.
  struct Series {
    const char* name;
    const char* help;
  };
  const Series kDropCount{"stockade_drop_count_total", "Packets dropped, by reason and direction."};
  const Series kDropBytes{"stockade_drop_bytes_total", "Bytes dropped, by reason and direction."};
  const Series kAuditCount{"stockade_audit_count_total",
                           "Packets that would have been dropped and passed in audit mode, by reason and direction."};
  std::vector<std::tuple<int, uint32_t, metrics_value>> drops, audits;
  metrics_value forwarded[DIR_MAX] = {};
  for (int slot = 0; slot < STOCKADE_REASON_SLOTS; ++slot) {
    int reason = slot == 0 ? REASON_NONE : -(STOCKADE_REASON_BASE + slot - 1);
    if (reason == EVENT_LOST) continue;  // not a packet; see stockade_events_lost_total
    for (uint32_t dir = 0; dir < DIR_MAX; ++dir) {
      for (uint32_t verdict = 0; verdict < VERDICT_MAX; ++verdict) {
        auto c = datapath_->Counter(reason, dir, verdict);
        if (!c.ok()) continue;
        if (reason == REASON_NONE) {
          if (verdict == VERDICT_FORWARDED) forwarded[dir] = *c;
        } else if (verdict == VERDICT_DROPPED) {
          drops.emplace_back(reason, dir, *c);
        } else if (verdict == VERDICT_AUDIT) {
          audits.emplace_back(reason, dir, *c);
        }
      }
    }
  }
  auto labels = [](int reason, uint32_t dir) {
    return MetricLabels{{"reason", std::string(DropReasonName(reason))}, {"direction", std::string(DirectionName(dir))}};
  };
  out.Family(kDropCount.name, "counter", kDropCount.help);
  for (const auto& [reason, dir, c] : drops) out.Sample(kDropCount.name, labels(reason, dir), c.packets);
  out.Family(kDropBytes.name, "counter", kDropBytes.help);
  for (const auto& [reason, dir, c] : drops) out.Sample(kDropBytes.name, labels(reason, dir), c.bytes);
  out.Family(kAuditCount.name, "counter", kAuditCount.help);
  for (const auto& [reason, dir, c] : audits) out.Sample(kAuditCount.name, labels(reason, dir), c.packets);
  out.Family("stockade_forward_count_total", "counter", "Packets forwarded by the programs, by direction.");
  for (uint32_t dir = 0; dir < DIR_MAX; ++dir)
    out.Sample("stockade_forward_count_total", {{"direction", std::string(DirectionName(dir))}}, forwarded[dir].packets);
  out.Family("stockade_forward_bytes_total", "counter", "Bytes forwarded by the programs, by direction.");
  for (uint32_t dir = 0; dir < DIR_MAX; ++dir)
    out.Sample("stockade_forward_bytes_total", {{"direction", std::string(DirectionName(dir))}}, forwarded[dir].bytes);

  EventHubStats hub = events_->Stats();
  auto [ringbuf_records, ringbuf_drops] = RingbufLost(*datapath_);
  out.Family("stockade_events_total", "counter", "Drop event records the agent read from the ring buffer.");
  out.Sample("stockade_events_total", hub.received);
  out.Family("stockade_events_lost_total", "counter",
             "Drop event records lost, by stage: ringbuf (the kernel could not reserve), agent (unreadable), "
             "subscriber (dropped from a slow subscriber's queue).");
  out.Sample("stockade_events_lost_total", {{"stage", "ringbuf"}}, ringbuf_records);
  out.Sample("stockade_events_lost_total", {{"stage", "agent"}}, hub.malformed);
  out.Sample("stockade_events_lost_total", {{"stage", "subscriber"}}, hub.subscriber_lost);
  out.Family("stockade_event_subscribers", "gauge", "stockade-tail and other subscribers connected now.");
  out.Sample("stockade_event_subscribers", hub.subscribers);

  // Map fill: read without the lock too (counting a big conntrack takes a while).
  auto capacity = [](int fd) {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    return bpf_map_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0u;
  };
  std::vector<std::tuple<std::string, std::optional<size_t>, uint32_t>> maps;
  auto fill = [&](const char* name, const auto& map) {
    auto n = map.Count();
    maps.emplace_back(name, n.ok() ? std::optional<size_t>(*n) : std::nullopt, capacity(map.fd()));
  };
  fill("endpoints", datapath_->endpoints());
  fill("ipcache", datapath_->ipcache());
  fill("policy", datapath_->policy_prefixes());
  fill("policy_exact", datapath_->policy_exact());
  fill("conntrack", datapath_->conntrack().wide_map());
  fill("conntrack4", datapath_->conntrack().ipv4_map());
  fill("fragments", datapath_->fragments());
  fill("denied_flows", datapath_->denied_flows());
  out.Family("stockade_map_entries", "gauge", "Entries in each datapath map.");
  for (const auto& [name, entries, cap] : maps)
    if (entries) out.Sample("stockade_map_entries", {{"map", name}}, *entries);
  out.Family("stockade_map_capacity", "gauge", "Capacity of each datapath map.");
  for (const auto& [name, entries, cap] : maps) out.Sample("stockade_map_capacity", {{"map", name}}, cap);

  std::lock_guard<std::recursive_mutex> hold(mu_);
  PrometheusText agent;
  std::map<std::string, int> by_state = {{"enforcing", 0}, {"allow-all", 0}, {"error", 0}, {"host", 0}};
  for (const EndpointState& e : endpoints_) by_state[EndpointStateName(e)]++;
  agent.Family("stockade_endpoints", "gauge", "Endpoints the agent knows, by state.");
  for (const auto& [state, n] : by_state) agent.Sample("stockade_endpoints", {{"state", state}}, n);
  agent.Family("stockade_identities", "gauge", "Identities allocated from label sets and CIDRs.");
  agent.Sample("stockade_identities", allocator_.table().labels.size() + allocator_.table().cidrs.size());
  agent.Family("stockade_policies", "gauge", "Policies in force (the last good set).");
  agent.Sample("stockade_policies", policy_files_.policies().size());
  agent.Family("stockade_policy_reloads_total", "counter", "Policy directory reloads, by result.");
  agent.Sample("stockade_policy_reloads_total", {{"result", "applied"}}, policy_reloads_);
  agent.Sample("stockade_policy_reloads_total", {{"result", "rejected"}}, policy_rejects_);
  agent.Family("stockade_map_sync_errors_total", "counter",
               "Map writes that failed (a full map, for one); the previous state stayed in force.");
  agent.Sample("stockade_map_sync_errors_total", map_sync_errors_);
  agent.Family("stockade_reconciles_total", "counter", "Times the maps were brought to what the sources say.");
  agent.Sample("stockade_reconciles_total", reconciles_);
  agent.Family("stockade_docker_connected", "gauge", "1 when the agent follows Docker's event stream.");
  agent.Sample("stockade_docker_connected", docker_ && docker_->subscribed() ? 1 : 0);
  agent.Family("stockade_docker_resyncs_total", "counter", "Full resyncs with Docker (on reconnect and periodic).");
  agent.Sample("stockade_docker_resyncs_total", resyncs_);
  agent.Family("stockade_docker_sync_lag_seconds", "gauge",
               "From the time Docker gives its latest event to the agent's map write for it.");
  agent.Sample("stockade_docker_sync_lag_seconds", absl::ToDoubleSeconds(docker_sync_lag_));
  return out.text() + agent.text();
}

}  // namespace stockade
