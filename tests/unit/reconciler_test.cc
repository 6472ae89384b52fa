// SPDX-License-Identifier: Apache-2.0
//
// The reconciler without a kernel or Docker: workloads as sources give
// them, hooks as the agent's hooking would leave them, policies from text;
// the wanted maps and endpoint states checked as tables, and the property
// that the same inputs in any order give the same result.
#include "stockade/agent/reconciler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "stockade/policy/policy_parser.h"

namespace stockade {
namespace {

constexpr uint64_t kCookie = 4242;

IpAddress Ip(const std::string& text) { return ParseIpAddress(text).value(); }

// A bridge container with one interface, hooked at `ifindex` (0: not found).
LocalWorkload Container(const std::string& id, const Labels& labels, const std::string& ipv4, uint32_t ifindex,
                        const std::string& hook_error = "") {
  LocalWorkload local;
  local.workload = {.id = id, .name = id, .source = "docker", .labels = labels};
  local.workload.interfaces.push_back({.network = "shop", .driver = "bridge", .mac = std::array<uint8_t, 6>{2, 0, 0, 0, 0, static_cast<uint8_t>(ifindex)},
                                       .ipv4 = Ip(ipv4)});
  InterfaceHook hook{.error = hook_error};
  if (ifindex != 0) {
    hook.hook.key = {.netns_cookie = kCookie, .ifindex = ifindex};
    hook.hook.ifindex = ifindex;
    hook.hook.ifname = absl::StrCat("veth", ifindex);
  } else if (hook_error.empty()) {
    hook.error = "no such interface";
  }
  local.hooks.push_back(hook);
  return local;
}

// A policy letting `from` reach `tier` on `port`, and the CIDR `world` on `world_port` (all ports if empty).
std::string Ingress(const std::string& tier, const std::string& from, int port, const std::string& world,
                    const std::string& world_port) {
  std::string ports = absl::StrCat("      toPorts: [{ports: [{port: \"", port, "\", protocol: TCP}]}]\n");
  return absl::StrCat("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: ", tier, "-ingress}\nspec:\n",
                      "  endpointSelector: {matchLabels: {tier: ", tier, "}}\n  ingress:\n",
                      "    - fromEndpoints: [{matchLabels: {tier: ", from, "}}]\n", ports, "    - fromCIDR: [", world,
                      "]\n",
                      world_port.empty() ? "" : absl::StrCat("      toPorts: [{ports: [{port: \"", world_port,
                                                             "\", protocol: TCP}]}]\n"),
                      "---\n");
}

const std::string kChainPolicy =
    Ingress("db", "backend", 5432, "203.0.113.0/24", "5432") + Ingress("backend", "web", 8080, "198.51.100.7/32", "");

class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parsed = ParsePolicyText(kChainPolicy, "chain.yaml");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    policies_ = std::move(*parsed);
  }

  ReconcileInputs Chain() const {
    ReconcileInputs in;
    in.workloads.push_back(Container("web", {{"stockade.tier", "web"}}, "172.20.0.2", 11));
    in.workloads.push_back(Container("backend", {{"stockade.tier", "backend"}}, "172.20.0.3", 12));
    in.workloads.push_back(Container("db", {{"stockade.tier", "db"}}, "172.20.0.4", 13));
    for (const Policy& p : policies_) in.policies.push_back(&p);
    in.gateway_addresses = {Ip("172.20.0.1")};
    in.host_addresses = {Ip("192.0.2.10"), Ip("172.20.0.4")};  // the second is db's: db keeps it
    return in;
  }

  static const EndpointState& Find(const ReconcileResult& r, const std::string& id) {
    auto it = std::find_if(r.endpoints.begin(), r.endpoints.end(),
                           [&](const EndpointState& e) { return e.workload_id == id; });
    EXPECT_NE(it, r.endpoints.end()) << id;
    return *it;
  }

  static uint32_t IpcacheOf(const ReconcileResult& r, const std::string& prefix) {
    const IpPrefix want = ParseIpPrefix(prefix).value();
    for (const auto& [p, id] : r.maps.ipcache)
      if (p == want) return id;
    ADD_FAILURE() << "no ipcache entry for " << prefix;
    return 0;
  }

  std::vector<Policy> policies_;
};

TEST_F(ReconcilerTest, ChainGivesRecordsIdentitiesAndIpcache) {
  Reconciler reconciler;
  auto r = reconciler.Reconcile(Chain());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->endpoints.size(), 3u);
  ASSERT_EQ(r->maps.endpoints.size(), 3u);
  const EndpointState& db = Find(*r, "db");
  const EndpointState& backend = Find(*r, "backend");
  const EndpointState& web = Find(*r, "web");
  // Sorted by id before allocating: backend 256, db 257, web 258.
  EXPECT_EQ(backend.identity, STOCKADE_IDENTITY_FIRST_ALLOCATED);
  EXPECT_EQ(db.identity, STOCKADE_IDENTITY_FIRST_ALLOCATED + 1);
  EXPECT_EQ(web.identity, STOCKADE_IDENTITY_FIRST_ALLOCATED + 2);
  EXPECT_TRUE(db.policy.enforce_ingress);
  EXPECT_FALSE(db.policy.enforce_egress);
  EXPECT_FALSE(web.policy.enforce_ingress);  // no policy selects web
  EXPECT_EQ(db.policy.policies, std::vector<std::string>{"db-ingress"});
  for (const WantedEndpoint& w : r->maps.endpoints) {
    EXPECT_EQ(w.key.netns_cookie, kCookie);
    if (w.key.ifindex == 13) {
      EXPECT_EQ(w.info.identity, db.identity);
      EXPECT_EQ(w.info.flags & ENDPOINT_F_ENFORCE_INGRESS, uint32_t{ENDPOINT_F_ENFORCE_INGRESS});
      EXPECT_EQ(w.info.flags & ENDPOINT_F_AUDIT, 0u);
      EXPECT_EQ(w.info.ipv4, db.ipv4->ipv4_network_order());
    }
  }
  EXPECT_EQ(IpcacheOf(*r, "172.20.0.4/32"), db.identity);  // the endpoint keeps its address
  EXPECT_EQ(IpcacheOf(*r, "172.20.0.1/32"), uint32_t{IDENTITY_HOST});
  EXPECT_EQ(IpcacheOf(*r, "192.0.2.10/32"), uint32_t{IDENTITY_HOST});
  // CIDR identities were allocated before the compile, after the label ones.
  const uint32_t cidr = IpcacheOf(*r, "203.0.113.0/24");
  EXPECT_GT(cidr, web.identity);
  EXPECT_EQ(reconciler.allocator().table().cidrs.at(ParseIpPrefix("203.0.113.0/24").value()), cidr);
  EXPECT_TRUE(std::is_sorted(r->maps.ipcache.begin(), r->maps.ipcache.end(),
                             [](const auto& a, const auto& b) { return IpPrefixLess()(a.first, b.first); }));
  EXPECT_FALSE(r->maps.policy.empty());
  EXPECT_TRUE(r->policy_compiled_from_nothing);
  EXPECT_FALSE(r->maps.policy_scope.has_value());
}

// One row: a workload that is not a plain hooked container, and what becomes of it.
struct OddWorkloadRow {
  std::string description;
  LocalWorkload workload;
  bool has_record;
  std::string error_contains;
  uint32_t identity;  // 0: any allocated one
};

TEST_F(ReconcilerTest, OddWorkloadsTable) {
  LocalWorkload host_net;
  host_net.workload = {.id = "h", .name = "h", .source = "docker", .labels = {{"stockade.tier", "web"}}, .host_network = true};
  LocalWorkload none_net;
  none_net.workload = {.id = "n", .name = "n", .source = "docker", .no_network = true};
  LocalWorkload bad_label_policy = Container("p", {{"stockade.tier", "x"}, {"stockade.policy", "ingress: [[["}}, "172.20.0.9", 19);
  LocalWorkload image_claims = Container("i", {{"stockade.tier", "db"}}, "172.20.0.8", 18);
  image_claims.workload.image_labels = {{"stockade.tier", "db"}};
  const std::vector<OddWorkloadRow> rows = {
      {"host network: the host identity, no record", host_net, false, "host network", IDENTITY_HOST},
      {"network none: nothing to enforce", none_net, false, "network none", IDENTITY_UNMANAGED},
      {"interface not found: no record, the reason shown", Container("m", {{"stockade.tier", "db"}}, "172.20.0.7", 0),
       false, "no such interface", 0},
      {"attach failed: no record", Container("a", {{"stockade.tier", "db"}}, "172.20.0.6", 16, "device busy"), false,
       "device busy", 0},
      {"label policy rejected: a record that denies both ways", bad_label_policy, true, kLabelPolicyRejected, 0},
      {"image's own label: grants nothing", image_claims, true, "", IDENTITY_UNMANAGED},
  };
  for (const OddWorkloadRow& row : rows) {
    SCOPED_TRACE(row.description);
    ReconcileInputs in = Chain();
    in.workloads.push_back(row.workload);
    Reconciler reconciler;
    auto r = reconciler.Reconcile(in);
    ASSERT_TRUE(r.ok()) << r.status();
    const EndpointState& e = Find(*r, row.workload.workload.id);
    EXPECT_EQ(e.HasRecord(), row.has_record);
    if (row.error_contains.empty()) {
      EXPECT_EQ(e.error, "");
    } else {
      EXPECT_NE(e.error.find(row.error_contains), std::string::npos) << e.error;
    }
    if (row.identity != 0) {
      EXPECT_EQ(e.identity, row.identity);
    }
    const size_t records = std::count_if(r->maps.endpoints.begin(), r->maps.endpoints.end(), [&](const WantedEndpoint& w) {
      return !row.workload.hooks.empty() && w.key.ifindex == row.workload.hooks[0].hook.ifindex &&
             row.workload.hooks[0].hook.ifindex != 0;
    });
    EXPECT_EQ(records, row.has_record ? 1u : 0u);
    if (row.error_contains == kLabelPolicyRejected) {
      for (const WantedEndpoint& w : r->maps.endpoints)
        if (w.key.ifindex == 19) {
          EXPECT_EQ(w.info.flags & (ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS),
                    uint32_t{ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS});
        }
    }
  }
}

TEST_F(ReconcilerTest, SharedNetworkShownAsItsOwner) {
  ReconcileInputs in = Chain();
  LocalWorkload sidecar;
  sidecar.workload = {.id = "sidecar", .name = "sidecar", .source = "docker", .shares_network_of = "db"};
  in.workloads.push_back(sidecar);
  LocalWorkload orphan;
  orphan.workload = {.id = "orphan", .name = "orphan", .source = "docker", .shares_network_of = "gone"};
  in.workloads.push_back(orphan);
  Reconciler reconciler;
  auto r = reconciler.Reconcile(in);
  ASSERT_TRUE(r.ok()) << r.status();
  const EndpointState& s = Find(*r, "sidecar");
  EXPECT_EQ(s.identity, Find(*r, "db").identity);
  EXPECT_EQ(s.shares_network_of, "db");
  EXPECT_EQ(r->maps.endpoints.size(), 3u);  // no record of its own
  EXPECT_NE(Find(*r, "orphan").error.find("does not see"), std::string::npos);
}

TEST_F(ReconcilerTest, AuditAndIncompleteMaps) {
  Reconciler reconciler;
  ReconcileInputs in = Chain();
  ASSERT_TRUE(reconciler.Reconcile(in).ok());
  // A second pass with nothing changed is a delta with nothing in scope.
  auto again = reconciler.Reconcile(in);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->policy_compiled_from_nothing);
  ASSERT_TRUE(again->maps.policy_scope.has_value());
  EXPECT_TRUE(again->maps.policy_scope->empty());
  // The maps stopped half way: every entry is wanted again.
  in.policy_maps_complete = false;
  in.audit = true;
  auto full = reconciler.Reconcile(in);
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->maps.policy_scope.has_value());
  EXPECT_FALSE(full->maps.policy.empty());
  for (const WantedEndpoint& w : full->maps.endpoints) EXPECT_NE(w.info.flags & ENDPOINT_F_AUDIT, 0u);
}

TEST_F(ReconcilerTest, BadPolicySetKeepsTheCompiledPolicy) {
  Reconciler reconciler;
  ReconcileInputs in = Chain();
  auto good = reconciler.Reconcile(in);
  ASSERT_TRUE(good.ok());
  const std::string before = reconciler.compiler().compiled().Describe();
  in.policies.push_back(in.policies.front());  // a duplicate name
  auto bad = reconciler.Reconcile(in);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(reconciler.compiler().compiled().Describe(), before);
}

// Everything a result says, as text, for comparing results.
std::string Render(const ReconcileResult& r) {
  std::string out;
  for (const EndpointState& e : r.endpoints)
    absl::StrAppend(&out, e.workload_id, " ", e.network, " id=", e.identity, " flags=", e.policy.Flags(), " err=", e.error,
                    "\n");
  for (const WantedEndpoint& w : r.maps.endpoints)
    absl::StrAppend(&out, "ep ", w.key.ifindex, " ", w.info.identity, " ", w.info.flags, "\n");
  for (const auto& [p, id] : r.maps.ipcache) absl::StrAppend(&out, "ip ", p.ToString(), " ", id, "\n");
  std::vector<std::string> entries;
  for (const PolicyEntry& e : r.maps.policy) {
    std::string key(reinterpret_cast<const char*>(&e.key), sizeof(e.key));
    std::string value(reinterpret_cast<const char*>(&e.value), sizeof(e.value));
    entries.push_back(key + value);
  }
  std::sort(entries.begin(), entries.end());
  for (const std::string& e : entries) absl::StrAppend(&out, "pol ", absl::CHexEscape(e), "\n");
  return out;
}

TEST_F(ReconcilerTest, SameInputsInAnyOrderGiveTheSameResult) {
  ReconcileInputs base = Chain();
  for (int i = 0; i < 12; ++i)
    base.workloads.push_back(Container(absl::StrCat("c", i), {{"stockade.tier", absl::StrCat("t", i % 4)}},
                                       absl::StrCat("172.20.1.", i + 2), 100 + i));
  base.workloads.push_back(Container("missing", {{"stockade.tier", "db"}}, "172.20.2.2", 0));
  Reconciler first;
  auto expected = first.Reconcile(base);
  ASSERT_TRUE(expected.ok());
  const std::string want = Render(*expected);
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    ReconcileInputs shuffled = base;
    std::shuffle(shuffled.workloads.begin(), shuffled.workloads.end(), rng);
    std::shuffle(shuffled.policies.begin(), shuffled.policies.end(), rng);
    std::shuffle(shuffled.host_addresses.begin(), shuffled.host_addresses.end(), rng);
    Reconciler fresh;
    auto got = fresh.Reconcile(shuffled);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(Render(*got), want) << "round " << round;
    EXPECT_EQ(fresh.allocator().table(), first.allocator().table()) << "round " << round;
  }
}

TEST_F(ReconcilerTest, AnUpdateAfterAChangeEqualsAFreshPass) {
  // Incremental: a pass, then a container goes and one comes; fresh: only the second state.
  Reconciler incremental;
  ReconcileInputs in = Chain();
  ASSERT_TRUE(incremental.Reconcile(in).ok());
  in.workloads.erase(in.workloads.begin());  // web goes
  in.workloads.push_back(Container("web2", {{"stockade.tier", "web"}}, "172.20.0.5", 15));
  auto changed = incremental.Reconcile(in);
  ASSERT_TRUE(changed.ok());
  Reconciler fresh(incremental.allocator());
  auto from_nothing = fresh.Reconcile(in);
  ASSERT_TRUE(from_nothing.ok());
  // The delta's entries are a subset; the records, ipcache and states are whole.
  ReconcileResult a = *changed, b = *from_nothing;
  a.maps.policy.clear();
  b.maps.policy.clear();
  EXPECT_EQ(Render(a), Render(b));
  EXPECT_EQ(incremental.compiler().compiled().Describe(), fresh.compiler().compiled().Describe());
}

// Other hosts' containers, as a store source would give them.
RemoteEndpoint Remote(const std::string& address, const std::string& tier, const std::string& host) {
  return {.address = Ip(address), .labels = {{"tier", tier}}, .host = host, .container_name = tier + "-on-" + host};
}

TEST_F(ReconcilerTest, RemoteEndpointsGetIdentitiesThatPolicySelects) {
  ReconcileInputs in = Chain();
  in.workloads.erase(in.workloads.begin() + 1);  // backend runs on host B
  in.remote_endpoints = {Remote("10.9.0.3", "backend", "host-b"), Remote("10.9.0.4", "frontend", "host-b")};
  Reconciler reconciler;
  auto r = reconciler.Reconcile(in);
  ASSERT_TRUE(r.ok()) << r.status();
  const uint32_t backend = reconciler.allocator().table().labels.at({{"tier", "backend"}});
  EXPECT_EQ(IpcacheOf(*r, "10.9.0.3/32"), backend);
  EXPECT_NE(IpcacheOf(*r, "10.9.0.4/32"), backend);
  // db-ingress allows backend: a rule for the remote identity exists.
  const uint32_t db = Find(*r, "db").identity;
  const auto& rules = reconciler.compiler().compiled().rules;
  EXPECT_TRUE(std::any_of(rules.begin(), rules.end(), [&](const DatapathRule& rule) {
    return rule.local_identity == db && rule.remote_identity == backend;
  }));
  EXPECT_TRUE(r->address_conflicts.empty());
}

// The Docker networks a source reports are identity labels a policy selects:
// db lets in what is on backnet, whatever its other labels.
TEST_F(ReconcilerTest, NetworksAreIdentityLabelsThatPolicySelects) {
  auto parsed = ParsePolicyText(
      "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-ingress}\nspec:\n"
      "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
      "    - fromEndpoints: [{matchLabels: {network.backnet: attached}}]\n",
      "backnet.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ReconcileInputs in;
  in.workloads = {Container("db", {{"stockade.tier", "db"}}, "172.20.0.4", 13),
                  Container("back", {{"stockade.tier", "client"}}, "172.20.0.5", 14),
                  Container("front", {{"stockade.tier", "client"}}, "172.20.0.6", 15)};
  in.workloads[0].workload.networks = {"backnet", "frontnet"};
  in.workloads[1].workload.networks = {"backnet"};
  in.workloads[2].workload.networks = {"frontnet"};
  for (const Policy& p : *parsed) in.policies.push_back(&p);
  Reconciler reconciler;
  auto r = reconciler.Reconcile(in);
  ASSERT_TRUE(r.ok()) << r.status();
  const EndpointState& back = Find(*r, "back");
  const EndpointState& front = Find(*r, "front");
  EXPECT_EQ(back.labels, (LabelSet{{"network.backnet", "attached"}, {"tier", "client"}}));
  EXPECT_NE(back.identity, front.identity) << "the same labels on other networks are another identity";
  const uint32_t db = Find(*r, "db").identity;
  const auto& rules = reconciler.compiler().compiled().rules;
  auto allows = [&](uint32_t from) {
    return std::any_of(rules.begin(), rules.end(), [&](const DatapathRule& rule) {
      return rule.local_identity == db && rule.remote_identity == from;
    });
  };
  EXPECT_TRUE(allows(back.identity));
  EXPECT_TRUE(allows(db)) << "db is on backnet too";
  EXPECT_FALSE(allows(front.identity));
}

TEST_F(ReconcilerTest, AnAddressClaimedTwiceResolvesToNeither) {
  ReconcileInputs in = Chain();
  in.remote_endpoints = {Remote("10.9.0.3", "backend", "host-b"), Remote("10.9.0.3", "web", "host-c"),
                         Remote("172.20.0.4", "web", "host-b")};  // db's address, here
  Reconciler reconciler;
  auto r = reconciler.Reconcile(in);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const auto& [prefix, identity] : r->maps.ipcache) {
    EXPECT_NE(prefix.ToString(), "10.9.0.3/32") << "two hosts claim it";
    EXPECT_NE(prefix.ToString(), "172.20.0.4/32") << "a local and a remote endpoint claim it";
  }
  ASSERT_EQ(r->address_conflicts.size(), 2u);
  // The same in any order.
  std::reverse(in.remote_endpoints.begin(), in.remote_endpoints.end());
  Reconciler other;
  auto reversed = other.Reconcile(in);
  ASSERT_TRUE(reversed.ok());
  EXPECT_EQ(Render(*reversed), Render(*r));
  EXPECT_EQ(other.allocator().table(), reconciler.allocator().table());
}

TEST_F(ReconcilerTest, OtherHostsNodeAddressesAreRemoteHostUnlessClaimedHere) {
  ReconcileInputs in = Chain();
  in.remote_node_addresses = {Ip("192.0.2.20"), Ip("172.20.0.4")};  // the second is db's address, here
  Reconciler reconciler;
  auto r = reconciler.Reconcile(in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(IpcacheOf(*r, "192.0.2.20/32"), uint32_t{IDENTITY_REMOTE_HOST});
  EXPECT_EQ(IpcacheOf(*r, "172.20.0.4/32"), Find(*r, "db").identity) << "a local endpoint keeps its address";
}

}  // namespace
}  // namespace stockade
