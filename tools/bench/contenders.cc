// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/contenders.h"

#include <arpa/inet.h>

#include <chrono>
#include <fstream>
#include <optional>

#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "bench_bpf.skel.h"
#include "maps/abi.h"
#include "stockade/datapath/attach.h"
#include "stockade/datapath/datapath.h"
#include "stockade/netns/netns.h"
#include "stockade/policy/policy_entries.h"
#include "stockade/datapath/typed_map.h"

namespace stockade::bench {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// Runs a tool inside the testbed's host namespace; large loads get time.
absl::Status RunIn(const std::string& netns, std::vector<std::string> argv) {
  auto out = RunCommand(argv, netns, std::chrono::milliseconds(300'000));
  return out.ok() ? absl::OkStatus() : out.status();
}

// iptables (either backend), ipset + iptables, nftables sets.
class NetfilterContender : public Contender {
 public:
  NetfilterContender(ContenderKind kind, const Testbed& bed, NetfilterNames names, std::string scratch_dir)
      : Contender(kind), netns_(bed.host.path), names_(std::move(names)), scratch_(std::move(scratch_dir)) {}

  absl::StatusOr<double> Install(const std::vector<AllowRule>& rules) override {
    installed_ = rules.size();
    std::string base = absl::StrCat(scratch_, "/", name());
    switch (kind()) {
      case ContenderKind::kIptablesNft:
      case ContenderKind::kIptablesLegacy: {
        if (absl::Status s = WriteFile(base + ".rules", IptablesLinearScript(rules, names_)); !s.ok()) return s;
        auto start = Clock::now();
        if (absl::Status s = RunIn(netns_, {RestoreTool(), "--wait=10", base + ".rules"}); !s.ok()) return s;
        return SecondsSince(start);
      }
      case ContenderKind::kIpset: {
        if (absl::Status s = WriteFile(base + ".ipset", IpsetScript(rules, names_)); !s.ok()) return s;
        if (absl::Status s = WriteFile(base + ".rules", IptablesIpsetScript(names_)); !s.ok()) return s;
        auto start = Clock::now();
        if (absl::Status s = RunIn(netns_, {"ipset", "restore", "-f", base + ".ipset"}); !s.ok()) return s;
        ipset_made_ = true;
        if (absl::Status s = RunIn(netns_, {"iptables-nft-restore", "--wait=10", base + ".rules"}); !s.ok()) return s;
        return SecondsSince(start);
      }
      default: {
        if (absl::Status s = WriteFile(base + ".nft", NftSetScript(rules, names_)); !s.ok()) return s;
        auto start = Clock::now();
        if (absl::Status s = RunIn(netns_, {"nft", "-f", base + ".nft"}); !s.ok()) return s;
        return SecondsSince(start);
      }
    }
  }

  absl::StatusOr<double> AddOne(const AllowRule& rule) override {
    std::vector<std::string> add, del;
    std::string tool = kind() == ContenderKind::kIpset ? "ipset" : kind() == ContenderKind::kNftSet ? "nft" : Tool();
    if (kind() == ContenderKind::kIpset) {
      add = IpsetAddArgs(rule, names_);
      del = IpsetDelArgs(rule, names_);
    } else if (kind() == ContenderKind::kNftSet) {
      add = NftAddElementArgs(rule, names_);
      del = NftDeleteElementArgs(rule, names_);
    } else {
      // After ESTABLISHED and the installed rules, before the final drop.
      add = IptablesInsertArgs(rule, installed_ + 2, names_);
      del = IptablesDeleteArgs(rule, names_);
    }
    add.insert(add.begin(), tool);
    del.insert(del.begin(), tool);
    auto start = Clock::now();
    if (absl::Status s = RunIn(netns_, add); !s.ok()) return s;
    double seconds = SecondsSince(start);
    if (absl::Status s = RunIn(netns_, del); !s.ok()) return s;
    return seconds;
  }

  absl::Status Remove() override {
    absl::Status status;
    if (kind() == ContenderKind::kIptablesLegacy) {
      // Legacy tables cannot be unregistered; they go with the namespace.
      std::string empty = absl::StrCat(scratch_, "/", name(), ".empty");
      status.Update(WriteFile(empty, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"));
      if (status.ok()) status.Update(RunIn(netns_, {"iptables-legacy-restore", "--wait=10", empty}));
      return status;
    }
    // Everything nf_tables in this namespace is ours, including iptables-nft's tables.
    status.Update(RunIn(netns_, {"nft", "flush", "ruleset"}));
    if (ipset_made_) {
      status.Update(RunIn(netns_, {"ipset", "destroy", names_.ipset}));
      if (status.ok()) ipset_made_ = false;
    }
    return status;
  }

  absl::Status InstallFloodDrop() override {
    std::string base = absl::StrCat(scratch_, "/", name());
    if (kind() == ContenderKind::kIptablesNft) {
      if (absl::Status s = WriteFile(base + ".raw", IptablesRawDropScript(names_)); !s.ok()) return s;
      return RunIn(netns_, {"iptables-nft-restore", "--wait=10", base + ".raw"});
    }
    if (kind() == ContenderKind::kNftSet) {
      if (absl::Status s = WriteFile(base + ".rawnft", NftRawDropScript(names_)); !s.ok()) return s;
      return RunIn(netns_, {"nft", "-f", base + ".rawnft"});
    }
    return absl::FailedPreconditionError(absl::StrCat(name(), " has no flood drop"));
  }

  absl::Status RemoveFloodDrop() override { return RunIn(netns_, {"nft", "flush", "ruleset"}); }

 private:
  std::string Tool() const { return kind() == ContenderKind::kIptablesLegacy ? "iptables-legacy" : "iptables-nft"; }
  std::string RestoreTool() const { return Tool() + "-restore"; }

  std::string netns_;
  NetfilterNames names_;
  std::string scratch_;
  size_t installed_ = 0;
  bool ipset_made_ = false;
};

constexpr uint32_t kServerIdentity = 256;
constexpr uint32_t kClientIdentityForFloods = 257;
constexpr uint32_t kFirstRemoteIdentity = 1000;

ipcache_key Ipv4Key(uint32_t host_order) {
  ipcache_key key{};
  key.prefixlen = IPCACHE_PREFIX_FIXED_BITS + 32;
  key.family = STOCKADE_AF_INET;
  uint32_t network = htonl(host_order);
  std::memcpy(key.addr, &network, 4);
  return key;
}

class StockadeContender : public Contender {
 public:
  StockadeContender(ContenderKind kind, const Testbed& bed) : Contender(kind), bed_(bed) {}

  absl::StatusOr<double> Install(const std::vector<AllowRule>& rules) override {
    if (absl::Status s = Remove(); !s.ok()) return s;
    auto dp = Datapath::Load({});
    if (!dp.ok()) return dp.status();
    datapath_ = std::move(*dp);
    bool xdp = kind() == ContenderKind::kStockadeXdp;
    endpoint_info server{};
    server.identity = kServerIdentity;
    server.flags = ENDPOINT_F_ENFORCE_INGRESS;
    server.policy_revision = 1;
    // TC: the host-side veth, egress = what the server receives. XDP sees
    // only what an interface receives: the server's own interface.
    server.role = xdp ? HOOK_ROLE_IN_CONTAINER : HOOK_ROLE_HOST_VETH;
    std::memcpy(server.mac, bed_.server_mac.data(), 6);
    inet_pton(AF_INET, kServerIp, &server.ipv4);
    endpoint_key key = xdp ? endpoint_key{.netns_cookie = bed_.server_cookie, .ifindex = bed_.server_eth0_ifindex}
                           : endpoint_key{.netns_cookie = bed_.host_cookie, .ifindex = bed_.host_srv_ifindex};
    if (absl::Status s = datapath_->endpoints().Update(key, server); !s.ok()) return s;

    // The bulk load, as the agent does it: identities for the addresses, then the policy.
    auto start = Clock::now();
    absl::flat_hash_map<uint32_t, uint32_t> identity_of;
    std::vector<DatapathRule> datapath_rules;
    datapath_rules.reserve(rules.size());
    for (const AllowRule& rule : rules) {
      auto [it, fresh] = identity_of.try_emplace(rule.source, kFirstRemoteIdentity + identity_of.size());
      if (fresh) {
        if (absl::Status s = datapath_->ipcache().Update(Ipv4Key(rule.source), {it->second, 0}); !s.ok()) return s;
      }
      datapath_rules.push_back({.rule_id = static_cast<uint32_t>(datapath_rules.size() + 1),
                                .local_identity = kServerIdentity, .remote_identity = it->second,
                                .direction = DIR_INGRESS, .protocol = rule.protocol, .ports = {rule.port, rule.port}});
    }
    auto entries = CompilePolicyEntries(datapath_rules);
    if (!entries.ok()) return entries.status();
    for (const PolicyEntry& e : *entries) {
      if (absl::Status s = datapath_->WritePolicy(e.key, e.value); !s.ok()) return s;
    }
    double seconds = SecondsSince(start);
    next_identity_ = kFirstRemoteIdentity + identity_of.size();
    next_rule_id_ = datapath_rules.size() + 1;

    auto attached = Attach(xdp ? bed_.server.path : bed_.host.path, xdp ? bed_.server_eth0_ifindex : bed_.host_srv_ifindex,
                           TcHook::kEgress);
    if (!attached.ok()) return attached.status();
    attachment_.emplace(std::move(*attached));
    return seconds;
  }

  absl::StatusOr<double> AddOne(const AllowRule& rule) override {
    if (!datapath_) return absl::FailedPreconditionError("nothing installed");
    uint32_t identity = next_identity_;
    auto entries = CompilePolicyEntries({{.rule_id = next_rule_id_, .local_identity = kServerIdentity,
                                          .remote_identity = identity, .direction = DIR_INGRESS,
                                          .protocol = rule.protocol, .ports = {rule.port, rule.port}}});
    if (!entries.ok()) return entries.status();
    // The map writes a rule costs: its remote's address, then its policy entry.
    auto start = Clock::now();
    if (absl::Status s = datapath_->ipcache().Update(Ipv4Key(rule.source), {identity, 0}); !s.ok()) return s;
    for (const PolicyEntry& e : *entries) {
      if (absl::Status s = datapath_->WritePolicy(e.key, e.value); !s.ok()) return s;
    }
    double seconds = SecondsSince(start);
    for (const PolicyEntry& e : *entries) {
      if (absl::Status s = datapath_->DeletePolicy(e.key); !s.ok()) return s;
    }
    if (auto gone = datapath_->ipcache().Delete(Ipv4Key(rule.source)); !gone.ok()) return gone.status();
    return seconds;
  }

  int AddOneRepetitions(int base) const override { return std::max(51, base * 20); }

  absl::Status Remove() override {
    absl::Status status;
    if (attachment_) status.Update(attachment_->Detach());
    attachment_.reset();
    prog_fd_.reset();
    datapath_.reset();
    return status;
  }

  std::optional<int> ProgramFd() const override { return prog_fd_; }

  absl::Status InstallFloodDrop() override {
    if (absl::Status s = Remove(); !s.ok()) return s;
    auto dp = Datapath::Load({});
    if (!dp.ok()) return dp.status();
    datapath_ = std::move(*dp);
    // The client is the container now: its host-side veth sees what it
    // sends, and its egress allows only the real UDP flow to the server.
    endpoint_info client{};
    client.identity = kClientIdentityForFloods;
    client.flags = ENDPOINT_F_ENFORCE_EGRESS;
    client.policy_revision = 1;
    client.role = HOOK_ROLE_HOST_VETH;
    std::memcpy(client.mac, bed_.client_mac.data(), 6);
    inet_pton(AF_INET, kClientIp, &client.ipv4);
    if (absl::Status s = datapath_->endpoints().Update({.netns_cookie = bed_.host_cookie, .ifindex = bed_.host_cli_ifindex},
                                                       client);
        !s.ok())
      return s;
    uint32_t server_ip = 0;
    inet_pton(AF_INET, kServerIp, &server_ip);
    if (absl::Status s = datapath_->ipcache().Update(Ipv4Key(ntohl(server_ip)), {kServerIdentity, 0}); !s.ok())
      return s;
    auto entries = CompilePolicyEntries({{.rule_id = 1, .local_identity = kClientIdentityForFloods,
                                          .remote_identity = kServerIdentity, .direction = DIR_EGRESS,
                                          .protocol = IPPROTO_UDP, .ports = {kUdpPort, kUdpPort}}});
    if (!entries.ok()) return entries.status();
    for (const PolicyEntry& e : *entries) {
      if (absl::Status s = datapath_->WritePolicy(e.key, e.value); !s.ok()) return s;
    }
    auto attached = Attach(bed_.host.path, bed_.host_cli_ifindex, TcHook::kIngress);
    if (!attached.ok()) return attached.status();
    attachment_.emplace(std::move(*attached));
    return absl::OkStatus();
  }

  absl::Status RemoveFloodDrop() override { return Remove(); }

  absl::StatusOr<std::optional<uint64_t>> FloodDropsCounted() override {
    if (!datapath_) return absl::FailedPreconditionError("nothing installed");
    auto counter = datapath_->Counter(DROP_POLICY_DENIED, DIR_EGRESS, VERDICT_DROPPED);
    if (!counter.ok()) return counter.status();
    return std::optional<uint64_t>(counter->packets);
  }

 private:
  absl::StatusOr<Attachment> Attach(const std::string& netns, uint32_t ifindex, TcHook tc_hook) {
    auto guard = NetnsGuard::Enter(netns);
    if (!guard.ok()) return guard.status();
    bool xdp = kind() == ContenderKind::kStockadeXdp;
    int prog = xdp ? datapath_->xdp_fd()
                   : tc_hook == TcHook::kEgress ? datapath_->tc_egress_fd() : datapath_->tc_ingress_fd();
    auto attached = xdp ? Attachment::AttachXdp(prog, ifindex, XdpAttachMode::kAuto)
                        : Attachment::AttachTc(prog, ifindex, tc_hook, TcAttachMode::kAuto);
    if (attached.ok()) prog_fd_ = prog;  // only a program in the path is measured
    return attached;
  }

  const Testbed& bed_;
  std::unique_ptr<Datapath> datapath_;
  std::optional<Attachment> attachment_;
  std::optional<int> prog_fd_;  // datapath_'s, while attachment_ holds it
  uint32_t next_identity_ = kFirstRemoteIdentity;
  uint32_t next_rule_id_ = 1;
};

// The references (see ContenderKind), from bpf/bench/bench.bpf.c: in the
// floods ref_drop or ref_min_drop where stockade-tc drops (the client's
// host-side veth, TC ingress); in the rule matrix ref_min_pass where
// stockade-tc enforces (the server's host-side veth, TC egress).
class TcReference : public Contender {
 public:
  TcReference(ContenderKind kind, const Testbed& bed) : Contender(kind), bed_(bed) {}
  ~TcReference() override { bench_bpf__destroy(skel_); }

  absl::StatusOr<double> Install(const std::vector<AllowRule>&) override {
    if (IsFloodOnly(kind())) return FloodOnly();
    if (absl::Status s = Attach(Program::kMinPass, bed_.host_srv_ifindex, TcHook::kEgress); !s.ok()) return s;
    return 0.0;  // no rules to load
  }
  absl::StatusOr<double> AddOne(const AllowRule&) override {
    return absl::FailedPreconditionError(absl::StrCat(name(), " is a reference: it has no rules"));
  }
  absl::Status Remove() override { return Detach(); }

  absl::Status InstallFloodDrop() override {
    return Attach(kind() == ContenderKind::kTcDrop ? Program::kDrop : Program::kMinDrop, bed_.host_cli_ifindex,
                  TcHook::kIngress);
  }
  absl::Status RemoveFloodDrop() override { return Detach(); }

  std::optional<int> ProgramFd() const override {
    if (!attached_program_) return std::nullopt;
    return bpf_program__fd(attached_program_);
  }

  // tc-min-filter counts the frames that found both entries.
  absl::StatusOr<std::optional<uint64_t>> FloodDropsCounted() override {
    if (kind() != ContenderKind::kTcMinFilter) return std::nullopt;
    if (!skel_) return absl::FailedPreconditionError("nothing installed");
    auto counter = PerCpuArray<uint64_t>::FromFd(bpf_map__fd(skel_->maps.min_filter_decided));
    if (!counter.ok()) return counter.status();
    auto per_cpu = counter->LookupAllCpus(0);
    if (!per_cpu.ok()) return per_cpu.status();
    uint64_t decided = 0;
    for (uint64_t n : *per_cpu) decided += n;
    return std::optional<uint64_t>(decided);
  }

 private:
  absl::Status FloodOnly() const {
    return absl::FailedPreconditionError(absl::StrCat(name(), " is a reference for floods only"));
  }

  enum class Program { kDrop, kMinDrop, kMinPass };

  // A fresh object each time, so that no table or count carries over.
  absl::Status Attach(Program program, uint32_t ifindex, TcHook hook) {
    if (absl::Status s = Detach(); !s.ok()) return s;
    skel_ = bench_bpf__open();
    if (!skel_) return absl::InternalError(absl::StrCat("open BPF object bench_bpf: ", std::strerror(errno)));
    skel_->rodata->min_filter_denied_port = htons(kDeniedUdpPort);
    if (int err = bench_bpf__load(skel_); err != 0)
      return absl::InternalError(absl::StrCat("load BPF object bench_bpf: ", std::strerror(-err)));
    auto guard = NetnsGuard::Enter(bed_.host.path);
    if (!guard.ok()) return guard.status();
    bpf_program* prog = program == Program::kDrop      ? skel_->progs.ref_drop
                        : program == Program::kMinDrop ? skel_->progs.ref_min_drop
                                                       : skel_->progs.ref_min_pass;
    auto attached = Attachment::AttachTc(bpf_program__fd(prog), ifindex, hook, TcAttachMode::kAuto);
    if (!attached.ok()) return attached.status();
    attachment_.emplace(std::move(*attached));
    attached_program_ = prog;
    return absl::OkStatus();
  }

  absl::Status Detach() {
    absl::Status status;
    if (attachment_) status.Update(attachment_->Detach());
    attachment_.reset();
    attached_program_ = nullptr;
    bench_bpf__destroy(skel_);
    skel_ = nullptr;
    return status;
  }

  const Testbed& bed_;
  bench_bpf* skel_ = nullptr;
  std::optional<Attachment> attachment_;
  bpf_program* attached_program_ = nullptr;  // skel_'s, while attachment_ holds it
};

class NoFilter : public Contender {
 public:
  NoFilter() : Contender(ContenderKind::kNone) {}
  absl::StatusOr<double> Install(const std::vector<AllowRule>&) override { return 0.0; }
  absl::StatusOr<double> AddOne(const AllowRule&) override { return 0.0; }
  absl::Status Remove() override { return absl::OkStatus(); }
  absl::Status InstallFloodDrop() override { return absl::OkStatus(); }
  absl::Status RemoveFloodDrop() override { return absl::OkStatus(); }
};

}  // namespace

const char* ContenderName(ContenderKind kind) {
  switch (kind) {
    case ContenderKind::kNone: return "none";
    case ContenderKind::kIptablesNft: return "iptables-nft";
    case ContenderKind::kIptablesLegacy: return "iptables-legacy";
    case ContenderKind::kIpset: return "ipset";
    case ContenderKind::kNftSet: return "nft-set";
    case ContenderKind::kStockadeTc: return "stockade-tc";
    case ContenderKind::kStockadeXdp: return "stockade-xdp";
    case ContenderKind::kTcDrop: return "tc-drop";
    case ContenderKind::kTcMinFilter: return "tc-min-filter";
  }
  return "?";
}

const char* FloodDropName(ContenderKind kind) {
  switch (kind) {
    case ContenderKind::kNone: return "none";
    case ContenderKind::kIptablesNft: return "iptables-raw";
    case ContenderKind::kNftSet: return "nft-raw";
    case ContenderKind::kStockadeTc: return "stockade-tc";
    case ContenderKind::kStockadeXdp: return "stockade-xdp";
    case ContenderKind::kTcDrop: return "tc-drop";
    case ContenderKind::kTcMinFilter: return "tc-min-filter";
    default: return "";
  }
}

absl::StatusOr<std::unique_ptr<Contender>> MakeContender(ContenderKind kind, const Testbed& bed,
                                                         const NetfilterNames& names, const std::string& scratch_dir) {
  switch (kind) {
    case ContenderKind::kNone: return std::unique_ptr<Contender>(new NoFilter());
    case ContenderKind::kStockadeTc:
    case ContenderKind::kStockadeXdp: return std::unique_ptr<Contender>(new StockadeContender(kind, bed));
    case ContenderKind::kTcDrop:
    case ContenderKind::kTcMinFilter: return std::unique_ptr<Contender>(new TcReference(kind, bed));
    default: return std::unique_ptr<Contender>(new NetfilterContender(kind, bed, names, scratch_dir));
  }
}

}  // namespace stockade::bench
