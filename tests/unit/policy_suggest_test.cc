// SPDX-License-Identifier: Apache-2.0
//
// Suggested policies from observed flows: the text for small scenes, the
// properties it must keep (server ports only, one rule for many clients,
// world as an entity or CIDRs, the same bytes whatever the input order), and
// the end-to-end check: what it writes parses, and compiled against the same
// endpoints it allows every observed flow and denies unobserved ones.
#include "stockade/policy/policy_suggest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>

#include "stockade/policy/policy_compiler.h"
#include "stockade/policy/policy_parser.h"
#include "tests/support/doc_blocks.h"

namespace stockade {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const ObservedEndpoint kProxy{"proxy-1", {{"compose.project", "shop"}, {"compose.service", "proxy"}}};
const ObservedEndpoint kWeb1{"web-1", {{"compose.project", "shop"}, {"compose.service", "web"}, {"role", "frontend"}}};
const ObservedEndpoint kWeb2{"web-2", {{"compose.project", "shop"}, {"compose.service", "web"}, {"role", "frontend"}}};
const ObservedEndpoint kAdmin{"admin-1",
                              {{"compose.project", "shop"}, {"compose.service", "admin"}, {"role", "frontend"}}};
const ObservedEndpoint kApi{"api-1", {{"compose.project", "shop"}, {"compose.service", "api"}}};
const ObservedEndpoint kDb{"db-1", {{"compose.project", "shop"}, {"compose.service", "db"}}};
const ObservedEndpoint kCache{"cache-1", {{"compose.project", "shop"}, {"compose.service", "cache"}}};

absl::Time At(int minute) { return absl::FromUnixSeconds(1796637600 + 60 * minute); }  // 2026-12-07T10:00:00Z

ObservedPeer Peer(const ObservedEndpoint& endpoint) { return {.endpoint = endpoint}; }
ObservedPeer World(const std::string& address) {
  return {.entity = Entity::kWorld, .address = ParseIpAddress(address).value()};
}
ObservedPeer Host() { return {.entity = Entity::kHost}; }

// A flow as the local endpoint's hook reports it.
ObservedFlow Flow(const ObservedEndpoint& local, FlowSide side, ObservedPeer peer, uint16_t port,
                  uint8_t protocol = IPPROTO_TCP, uint64_t count = 1, int first = 0, int last = 0) {
  return {.local = local,
          .peer = std::move(peer),
          .direction = side == FlowSide::kServer ? uint8_t{DIR_INGRESS} : uint8_t{DIR_EGRESS},
          .protocol = protocol,
          .server_port = port,
          .local_side = side,
          .count = count,
          .first_seen = At(first),
          .last_seen = At(last)};
}
// One flow between two endpoints, reported at both ends as the agent would.
std::vector<ObservedFlow> BothEnds(const ObservedEndpoint& client, const ObservedEndpoint& server, uint16_t port,
                                   uint64_t count = 1, int first = 0, int last = 0) {
  return {Flow(client, FlowSide::kClient, Peer(server), port, IPPROTO_TCP, count, first, last),
          Flow(server, FlowSide::kServer, Peer(client), port, IPPROTO_TCP, count, first, last)};
}

void Add(FlowObservations& obs, std::vector<ObservedFlow> flows) {
  for (ObservedFlow& f : flows) obs.flows.push_back(std::move(f));
}

// The shop: proxy -> web (both replicas) and admin on 8080; they -> api on
// 9000; api -> db on 5432; web -> the world on 443; the host -> proxy on 80.
FlowObservations Shop() {
  FlowObservations obs;
  obs.endpoints = {kCache};  // known, never seen in a flow
  Add(obs, BothEnds(kProxy, kWeb1, 8080, 10, 0, 30));
  Add(obs, BothEnds(kProxy, kWeb2, 8080, 5, 5, 40));
  Add(obs, BothEnds(kProxy, kAdmin, 8080, 1, 7, 7));
  Add(obs, BothEnds(kWeb1, kApi, 9000, 20, 1, 50));
  Add(obs, BothEnds(kWeb2, kApi, 9000, 4, 2, 45));
  Add(obs, BothEnds(kAdmin, kApi, 9000, 2, 3, 8));
  Add(obs, BothEnds(kApi, kDb, 5432, 3, 1, 60));
  obs.flows.push_back(Flow(kWeb1, FlowSide::kClient, World("203.0.113.7"), 443, IPPROTO_TCP, 2, 10, 20));
  obs.flows.push_back(Flow(kWeb2, FlowSide::kClient, World("203.0.113.9"), 443, IPPROTO_TCP, 1, 11, 11));
  obs.flows.push_back(Flow(kWeb1, FlowSide::kClient, World("198.51.100.20"), 443, IPPROTO_TCP, 1, 12, 12));
  obs.flows.push_back(Flow(kProxy, FlowSide::kServer, Host(), 80, IPPROTO_TCP, 7, 0, 59));
  return obs;
}

std::map<std::string, std::string> Files(const FlowObservations& obs, const SuggestOptions& options = {}) {
  absl::StatusOr<PolicySuggestion> suggestion = SuggestPolicies(obs, options);
  EXPECT_TRUE(suggestion.ok()) << suggestion.status();
  std::map<std::string, std::string> out;
  if (suggestion.ok())
    for (const SuggestedPolicyFile& file : suggestion->files) out[file.file_name] = file.text;
  return out;
}

std::vector<Policy> ParseAll(const std::map<std::string, std::string>& files) {
  std::vector<Policy> all;
  for (const auto& [name, text] : files) {
    absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(text, "suggested/" + name);
    EXPECT_TRUE(policies.ok()) << policies.status() << "\n" << text;
    if (policies.ok()) all.insert(all.end(), policies->begin(), policies->end());
  }
  EXPECT_TRUE(CheckUniquePolicyNames(all).ok());
  return all;
}

TEST(PolicySuggestTest, ApiFileGolden) {
  std::map<std::string, std::string> files = Files(Shop());
  EXPECT_EQ(files["api.yaml"],
            R"(# Suggested by stockadectl policy suggest: it allows what was observed, nothing else.
# Endpoints: api-1 {compose.project=shop, compose.service=api}
# 29 flows observed from 2026-12-07T10:01:00Z to 2026-12-07T11:00:00Z.
# DNS through Docker's embedded resolver (127.0.0.11) needs no rule: it
# listens on the container's own loopback and dockerd forwards lookups
# upstream from the host side, so they never cross the container's veth.
# No egress section: every flow it opened went to another endpoint, whose
# ingress rules allow it; egress stays open.
apiVersion: stockade/v1
kind: Policy
metadata: {name: suggested-api}
spec:
  endpointSelector: {matchLabels: {compose.service: api}}
  ingress:
    # 26 flows from admin-1, web-1, web-2; first seen 2026-12-07T10:01:00Z, last seen 2026-12-07T10:50:00Z
    - fromEndpoints: [{matchLabels: {role: frontend}}]
      toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
)");
  EXPECT_THAT(files, ::testing::Contains(::testing::Key("db.yaml")));
  EXPECT_THAT(files, Not(::testing::Contains(::testing::Key("cache.yaml"))));  // never seen: no file
}

TEST(PolicySuggestTest, EphemeralPortsNeverAppear) {
  // Reported from the client's end only (egress, the local end a client):
  // the rule still lands on the server, on the server's port.
  FlowObservations obs;
  obs.flows.push_back(Flow(kApi, FlowSide::kClient, Peer(kDb), 5432, IPPROTO_TCP, 9));
  obs.flows.push_back(Flow(kApi, FlowSide::kClient, World("192.0.2.1"), 53, IPPROTO_UDP, 2));
  std::vector<Policy> policies = ParseAll(Files(obs));
  std::set<std::pair<uint8_t, uint16_t>> ports;
  for (const Policy& policy : policies)
    for (RuleSection section : kRuleSections)
      if (policy.section(section))
        for (const PolicyRule& rule : *policy.section(section))
          for (const PortProtocol& port : rule.ports) {
            EXPECT_EQ(port.ports.first, port.ports.last) << "one port, never a range";
            ports.insert({port.protocol, port.ports.first});
          }
  EXPECT_THAT(ports, ElementsAre(std::pair<uint8_t, uint16_t>{IPPROTO_TCP, 5432},
                                 std::pair<uint8_t, uint16_t>{IPPROTO_UDP, 53}));
  ASSERT_EQ(policies.size(), 2u);  // api (its egress to the world), db (its ingress)
  EXPECT_EQ(policies[0].name, "suggested-api");
  EXPECT_TRUE(policies[0].section(RuleSection::kIngress)->empty());  // no flow to api: none allowed
  EXPECT_EQ(policies[1].name, "suggested-db");
  EXPECT_EQ(policies[1].section(RuleSection::kIngress)->size(), 1u);
}

TEST(PolicySuggestTest, ClientThatIsAlsoAServer) {
  // api serves the frontends and is a client of db: its ingress as server,
  // and its flows to db only in db's ingress, nothing in api's file.
  std::map<std::string, std::string> files = Files(Shop());
  EXPECT_THAT(files["api.yaml"], HasSubstr("  ingress:\n"));
  EXPECT_THAT(files["api.yaml"], Not(HasSubstr("  egress:")));
  EXPECT_THAT(files["api.yaml"], Not(HasSubstr("5432")));
  EXPECT_THAT(files["db.yaml"], HasSubstr(R"(    # 3 flows from api-1; first seen 2026-12-07T10:01:00Z, last seen 2026-12-07T11:00:00Z
    - fromEndpoints: [{matchLabels: {compose.service: api}}]
      toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
)"));
  // web is a client of api and of the world: an egress section, which then
  // names api too, since the section closes web's egress.
  EXPECT_THAT(files["web.yaml"], HasSubstr(R"(  egress:
    # 4 flows to world (198.51.100.20, 203.0.113.7, 203.0.113.9); first seen 2026-12-07T10:10:00Z, last seen 2026-12-07T10:20:00Z
    - toEntities: [world]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
    # 24 flows to api-1; first seen 2026-12-07T10:01:00Z, last seen 2026-12-07T10:50:00Z
    - toEndpoints: [{matchLabels: {compose.service: api}}]
      toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
)"));
}

TEST(PolicySuggestTest, ManyClientsCollapseIntoOneRule) {
  std::map<std::string, std::string> files = Files(Shop());
  // web (two replicas) and admin share role=frontend, which no other endpoint has: one selector.
  EXPECT_THAT(files["api.yaml"], HasSubstr("    - fromEndpoints: [{matchLabels: {role: frontend}}]\n"));
  // Without that label no one selector fits exactly those clients: one list, still one rule.
  FlowObservations obs;
  const ObservedEndpoint web{"web-1", {{"compose.project", "shop"}, {"compose.service", "web"}}};
  const ObservedEndpoint admin{"admin-1", {{"compose.project", "shop"}, {"compose.service", "admin"}}};
  Add(obs, BothEnds(web, kApi, 9000));
  Add(obs, BothEnds(admin, kApi, 9000));
  Add(obs, BothEnds(kApi, kDb, 5432));  // db is shop too: compose.project would select it
  std::string api = Files(obs)["api.yaml"];
  EXPECT_THAT(api, HasSubstr("    - fromEndpoints: [{matchLabels: {compose.service: admin}}, "
                             "{matchLabels: {compose.service: web}}]\n"));
  EXPECT_EQ(ParseAll({{"api.yaml", api}})[0].section(RuleSection::kIngress)->size(), 1u);
}

TEST(PolicySuggestTest, ReplicasWithExtraLabelsAreToldApart) {
  // db's every label is also a label of db-replica: db is selected with a
  // DoesNotExist for the extra key, so its rules never reach the replica.
  const ObservedEndpoint db{"db-1", {{"tier", "db"}}};
  const ObservedEndpoint replica{"db-2", {{"tier", "db"}, {"replica", "yes"}}};
  FlowObservations obs;
  obs.endpoints = {replica};
  Add(obs, BothEnds(kApi, db, 5432));
  std::string text = Files(obs)["db.yaml"];
  EXPECT_THAT(text, HasSubstr("  endpointSelector: {matchLabels: {tier: db}, matchExpressions: [{key: replica, "
                              "operator: DoesNotExist}]}\n"));
  ParseAll({{"db.yaml", text}});
}

TEST(PolicySuggestTest, ReplicasTalkingToEachOtherAreInBothSections) {
  // web-1 -> web-2 (gossip) and web-1 -> the world: web's egress section
  // closes its egress, so the flow to its own replica is listed there too.
  FlowObservations obs;
  Add(obs, BothEnds(kWeb1, kWeb2, 7946));
  obs.flows.push_back(Flow(kWeb1, FlowSide::kClient, World("203.0.113.7"), 443));
  std::string web = Files(obs)["web.yaml"];
  EXPECT_THAT(web, HasSubstr(R"(  ingress:
    # 1 flow from web-1; first seen 2026-12-07T10:00:00Z, last seen 2026-12-07T10:00:00Z
    - fromEndpoints: [{matchLabels: {compose.service: web}}]
      toPorts: [{ports: [{port: "7946", protocol: TCP}]}]
)"));
  EXPECT_THAT(web, HasSubstr(R"(    # 1 flow to web-2; first seen 2026-12-07T10:00:00Z, last seen 2026-12-07T10:00:00Z
    - toEndpoints: [{matchLabels: {compose.service: web}}]
      toPorts: [{ports: [{port: "7946", protocol: TCP}]}]
)"));
}

TEST(PolicySuggestTest, ALabelThePolicyParserRefusesIsAnError) {
  // Identity labels never carry another network value; a hand-written file might.
  const ObservedEndpoint odd{"odd-1", {{"network.backnet", "yes"}}};
  FlowObservations obs;
  obs.flows.push_back(Flow(odd, FlowSide::kServer, Host(), 80));
  absl::StatusOr<PolicySuggestion> suggestion = SuggestPolicies(obs, {});
  EXPECT_THAT(suggestion.status().message(),
              HasSubstr("the policy suggested for {network.backnet=yes} does not parse: "));
}

TEST(PolicySuggestTest, WorldAsEntityWithItsAddressesInAComment) {
  std::map<std::string, std::string> files = Files(Shop());
  EXPECT_THAT(files["web.yaml"], HasSubstr("to world (198.51.100.20, 203.0.113.7, 203.0.113.9)"));
  EXPECT_THAT(files["web.yaml"], HasSubstr("    - toEntities: [world]\n"));
  EXPECT_THAT(files["web.yaml"], Not(HasSubstr("toCIDR")));
  EXPECT_THAT(files["proxy.yaml"], HasSubstr("    - fromEntities: [host]\n"));
}

TEST(PolicySuggestTest, WorldAsCidrsWhenAsked) {
  std::map<std::string, std::string> files = Files(Shop(), {.world_ipv4_prefix = 24});
  EXPECT_THAT(files["web.yaml"], HasSubstr("    - toCIDR: [198.51.100.0/24, 203.0.113.0/24]\n"));
  EXPECT_THAT(files["web.yaml"], Not(HasSubstr("toEntities")));
  files = Files(Shop(), {.world_ipv4_prefix = 32});
  EXPECT_THAT(files["web.yaml"], HasSubstr("    - toCIDR: [198.51.100.20/32, 203.0.113.7/32, 203.0.113.9/32]\n"));
  FlowObservations v6;
  v6.flows.push_back(Flow(kWeb1, FlowSide::kClient, World("2001:db8:1:2::7"), 443));
  EXPECT_THAT(Files(v6, {.world_ipv4_prefix = 24})["web.yaml"], HasSubstr("    - toCIDR: [2001:db8:1:2::/64]\n"));
  ParseAll(files);
}

TEST(PolicySuggestTest, DeniedAndLoopbackFlowsAreLeftOutWithANote) {
  FlowObservations obs;
  Add(obs, BothEnds(kApi, kDb, 5432));
  ObservedFlow denied = Flow(kWeb1, FlowSide::kClient, Peer(kDb), 5432, IPPROTO_TCP, 4);
  denied.verdict = FlowVerdict::kDenied;
  obs.flows.push_back(denied);
  obs.flows.push_back(Flow(kApi, FlowSide::kClient, World("127.0.0.11"), 53, IPPROTO_UDP));
  absl::StatusOr<PolicySuggestion> suggestion = SuggestPolicies(obs, {});
  ASSERT_TRUE(suggestion.ok()) << suggestion.status();
  EXPECT_THAT(suggestion->notes,
              ElementsAre(HasSubstr("4 flows were denied"), HasSubstr("1 flow with a loopback peer"),
                          "no flow of web-1 {compose.project=shop, compose.service=web, role=frontend} was "
                          "observed: no policy suggested for it"));
  ASSERT_EQ(suggestion->files.size(), 2u);  // api, db: web had only a denied flow
  for (const SuggestedPolicyFile& file : suggestion->files) {
    EXPECT_THAT(file.text, Not(HasSubstr("web")));
    EXPECT_THAT(file.text, Not(HasSubstr("\"53\"")));
  }
}

TEST(PolicySuggestTest, SameObservationsInAnyOrderSameBytes) {
  const FlowObservations shop = Shop();
  const std::map<std::string, std::string> want = Files(shop, {.world_ipv4_prefix = 24});
  for (unsigned seed = 1; seed <= 5; ++seed) {
    FlowObservations shuffled = shop;
    std::mt19937 random(seed);
    std::shuffle(shuffled.flows.begin(), shuffled.flows.end(), random);
    EXPECT_EQ(Files(shuffled, {.world_ipv4_prefix = 24}), want) << "seed " << seed;
  }
}

// The suggested files, compiled against the shop's endpoints, decide each flow.
class CompiledSuggestion {
 public:
  CompiledSuggestion(const FlowObservations& obs, const SuggestOptions& options) {
    for (const ObservedEndpoint& e : {kProxy, kWeb1, kWeb2, kAdmin, kApi, kDb, kCache})
      inputs_.endpoints.push_back(
          {.id = e.name, .identity = allocator_.ForLabels(e.labels).value(), .labels = e.labels});
    inputs_.policies = ParseAll(Files(obs, options));
    absl::StatusOr<CompiledPolicy> compiled = CompilePolicies(inputs_, allocator_);
    EXPECT_TRUE(compiled.ok()) << compiled.status();
    if (compiled.ok()) compiled_ = *compiled;
  }

  uint32_t Identity(const ObservedEndpoint& e) { return allocator_.ForLabels(e.labels).value(); }
  uint32_t WorldIdentity(const std::string& address) {
    IpAddress ip = ParseIpAddress(address).value();
    const CidrIdentity* best = nullptr;
    for (const CidrIdentity& c : compiled_.cidr_identities)
      if (c.prefix.Contains(ip) && (best == nullptr || c.prefix.length > best->prefix.length)) best = &c;
    return best ? best->identity : uint32_t{IDENTITY_WORLD};
  }

  // Whether `local`'s hook in `direction` passes a new flow with `remote` on the port.
  bool Passes(uint32_t local, uint32_t remote, uint8_t direction, uint16_t port, uint8_t protocol = IPPROTO_TCP) {
    const EndpointPolicy* endpoint = nullptr;
    for (const EndpointPolicy& e : compiled_.endpoints)
      if (e.identity == local) endpoint = &e;
    if (endpoint == nullptr) return true;  // not an endpoint here: stockade decides nothing
    if (!(direction == DIR_INGRESS ? endpoint->enforce_ingress : endpoint->enforce_egress)) return true;
    bool allowed = false;
    for (const DatapathRule& rule : compiled_.rules) {
      if (rule.local_identity != local || rule.direction != direction) continue;
      if (rule.remote_identity != IDENTITY_ANY && rule.remote_identity != remote) continue;
      if (rule.protocol != 0 && rule.protocol != protocol) continue;
      if (port < rule.ports.first || port > rule.ports.last) continue;
      if (rule.action != POLICY_ACTION_ALLOW) return false;
      allowed = true;
    }
    return allowed;
  }
  // A flow from client to server: the client's egress and the server's ingress.
  bool Reaches(uint32_t client, uint32_t server, uint16_t port, uint8_t protocol = IPPROTO_TCP) {
    return Passes(client, server, DIR_EGRESS, port, protocol) && Passes(server, client, DIR_INGRESS, port, protocol);
  }

 private:
  IdentityAllocator allocator_;
  PolicyInputs inputs_;
  CompiledPolicy compiled_;
};

void ExpectShopEnforced(const SuggestOptions& options) {
  const FlowObservations shop = Shop();
  CompiledSuggestion c(shop, options);
  for (const ObservedFlow& flow : shop.flows) {
    const uint32_t local = c.Identity(flow.local);
    const uint32_t peer = flow.peer.entity == Entity::kWorld ? c.WorldIdentity(flow.peer.address->ToString())
                          : flow.peer.entity == Entity::kHost ? uint32_t{IDENTITY_HOST}
                                                              : c.Identity(flow.peer.endpoint);
    const bool local_serves = flow.local_side == FlowSide::kServer;
    EXPECT_TRUE(c.Reaches(local_serves ? peer : local, local_serves ? local : peer, flow.server_port))
        << flow.local.name << (local_serves ? " served " : " opened ") << flow.server_port;
  }
  // Unobserved: pairs that never talked, and observed pairs on another port.
  EXPECT_FALSE(c.Reaches(c.Identity(kWeb1), c.Identity(kDb), 5432));
  EXPECT_FALSE(c.Reaches(c.Identity(kProxy), c.Identity(kApi), 9000));
  EXPECT_FALSE(c.Reaches(c.Identity(kWeb1), c.Identity(kApi), 9001));
  EXPECT_FALSE(c.Reaches(c.Identity(kCache), c.Identity(kApi), 9000));
  EXPECT_FALSE(c.Reaches(c.Identity(kApi), c.Identity(kWeb1), 8080));
  EXPECT_FALSE(c.Reaches(IDENTITY_HOST, c.Identity(kWeb1), 8080));
  // `world` is every address outside: only CIDRs keep to the addresses seen.
  EXPECT_EQ(c.Reaches(c.Identity(kWeb1), c.WorldIdentity("192.0.2.99"), 443), !options.world_ipv4_prefix);
  EXPECT_FALSE(c.Reaches(c.Identity(kWeb1), c.WorldIdentity("203.0.113.7"), 80));
  EXPECT_FALSE(c.Reaches(c.WorldIdentity("203.0.113.7"), c.Identity(kApi), 9000));
  // api opened flows to endpoints only: no egress section, by design.
  EXPECT_TRUE(c.Reaches(c.Identity(kApi), c.WorldIdentity("203.0.113.7"), 443));
}

TEST(PolicySuggestTest, CompiledItAllowsEachObservedFlowAndDeniesOthers) {
  ExpectShopEnforced({});
}

TEST(PolicySuggestTest, CompiledWithCidrsItAllowsEachObservedFlowAndDeniesOthers) {
  ExpectShopEnforced({.world_ipv4_prefix = 24});
}

// ---- The JSON form.

constexpr char kObservationsJson[] = R"({
  "endpoints": [{"name": "cache-1", "labels": {"compose.service": "cache"}}],
  "flows": [
    {"local": {"name": "db-1", "labels": {"tier": "db"}},
     "peer": {"name": "api-1", "labels": {"tier": "api"}},
     "direction": "ingress", "protocol": "tcp", "server_port": 5432, "local_side": "server",
     "verdict": "audited", "count": 3,
     "first_seen": "2026-12-07T10:00:00Z", "last_seen": "2026-12-07T10:05:00+00:00"},
    {"local": {"name": "api-1", "labels": {"tier": "api"}},
     "peer": {"entity": "world", "address": "203.0.113.7"},
     "direction": "egress", "protocol": "icmp", "server_port": 8, "local_side": "client",
     "verdict": "allowed", "count": 1,
     "first_seen": "2026-12-07T10:00:00Z", "last_seen": "2026-12-07T10:00:00Z"}
  ]
})";

TEST(PolicySuggestJsonTest, ReadsEveryField) {
  absl::StatusOr<FlowObservations> obs = ParseFlowObservations(kObservationsJson, "obs.json");
  ASSERT_TRUE(obs.ok()) << obs.status();
  ASSERT_EQ(obs->endpoints.size(), 1u);
  EXPECT_EQ(obs->endpoints[0].labels, (LabelSet{{"compose.service", "cache"}}));
  ASSERT_EQ(obs->flows.size(), 2u);
  const ObservedFlow& db = obs->flows[0];
  EXPECT_EQ(db.local.name, "db-1");
  EXPECT_EQ(db.peer.endpoint.labels, (LabelSet{{"tier", "api"}}));
  EXPECT_FALSE(db.peer.entity.has_value());
  EXPECT_EQ(db.direction, DIR_INGRESS);
  EXPECT_EQ(db.protocol, IPPROTO_TCP);
  EXPECT_EQ(db.server_port, 5432);
  EXPECT_EQ(db.local_side, FlowSide::kServer);
  EXPECT_EQ(db.verdict, FlowVerdict::kAudited);
  EXPECT_EQ(db.count, 3u);
  EXPECT_EQ(db.last_seen - db.first_seen, absl::Minutes(5));
  const ObservedFlow& ping = obs->flows[1];
  EXPECT_EQ(ping.peer.entity, Entity::kWorld);
  EXPECT_EQ(ping.peer.address->ToString(), "203.0.113.7");
  EXPECT_EQ(ping.protocol, IPPROTO_ICMP);
  EXPECT_EQ(ping.local_side, FlowSide::kClient);
  // And what it suggests parses: ICMP's type in the port's place.
  absl::StatusOr<PolicySuggestion> suggestion = SuggestPolicies(*obs, {});
  ASSERT_TRUE(suggestion.ok()) << suggestion.status();
  std::map<std::string, std::string> files;
  for (const SuggestedPolicyFile& file : suggestion->files) files[file.file_name] = file.text;
  EXPECT_THAT(files["api.yaml"], HasSubstr(R"(toPorts: [{ports: [{port: "8", protocol: ICMP}]}])"));
  ParseAll(files);
}

TEST(PolicySuggestJsonTest, ErrorsNameTheFileAndTheField) {
  auto error = [](const std::string& flow) {
    absl::StatusOr<FlowObservations> obs = ParseFlowObservations(
        R"({"flows": [{"local": {"name": "web-1", "labels": {"tier": "web"}}, "direction": "egress",
            "protocol": "tcp", "server_port": 443, "local_side": "client", "verdict": "allowed", "count": 1,
            "first_seen": "2026-12-07T10:00:00Z", "last_seen": "2026-12-07T10:00:00Z", )" +
            flow + "}]}",
        "obs.json");
    return obs.ok() ? std::string("ok") : std::string(obs.status().message());
  };
  EXPECT_EQ(error(R"("peer": {"entity": "world", "address": "203.0.113.7"})"), "ok");
  EXPECT_EQ(error(R"("peer": {"entity": "wrld", "address": "203.0.113.7"})"),
            "obs.json: flows[0].peer.entity: \"wrld\" is not one of host, remote-host, world, unmanaged");
  EXPECT_EQ(error(R"("peer": {"entity": "world"})"),
            "obs.json: flows[0].peer: missing key 'address': a world peer needs the address it was seen with");
  EXPECT_EQ(error(R"("peer": {"entity": "world", "address": "203.0.113.300"})"),
            "obs.json: flows[0].peer.address: " +
                std::string(ParseIpAddress("203.0.113.300").status().message()));
  EXPECT_EQ(error(R"("peer": {"name": "db-1", "labels": {"stockade.tier": "db"}})"),
            "obs.json: flows[0].peer.labels: identity labels are named without 'stockade.': 'stockade.tier'");
  EXPECT_EQ(error(R"("peer": {"labels": {"tier": "db"}, "address": "10.0.0.2"})"),
            "obs.json: flows[0].peer.address: an endpoint peer is named by its labels, not its address");
  EXPECT_EQ(error(R"("peer": {"entity": "host"}, "port": 1)"),
            "obs.json: flows[0]: unknown key 'port' (expected one of: local, peer, direction, protocol, "
            "server_port, local_side, verdict, count, first_seen, last_seen)");
  EXPECT_THAT(ParseFlowObservations("{\"flows\": [", "obs.json").status().message(),
              HasSubstr("obs.json: not JSON: "));
  EXPECT_EQ(ParseFlowObservations("{}", "obs.json").status().message(), "obs.json: missing key 'flows'");
}

TEST(PolicySuggestJsonTest, BadValuesNameTheField) {
  const std::string flow = R"({"local": {"name": "web-1", "labels": {}}, "peer": {"entity": "host"},
      "direction": "ingress", "protocol": "tcp", "server_port": 0, "local_side": "server", "verdict": "allowed",
      "count": 1, "first_seen": "2026-12-07T10:00:00Z", "last_seen": "2026-12-07T10:00:00Z"})";
  EXPECT_EQ(ParseFlowObservations(R"({"flows": [)" + flow + "]}", "o.json").status().message(),
            "o.json: flows[0].server_port: 0 is not an integer from 1 to 65535");
  std::string late = flow;
  late.replace(late.find("server_port\": 0"), 15, "server_port\": 80");
  late.replace(late.rfind("10:00:00Z"), 9, "09:00:00Z");
  EXPECT_EQ(ParseFlowObservations(R"({"flows": [)" + late + "]}", "o.json").status().message(),
            "o.json: flows[0].last_seen: earlier than first_seen");
}

// docs/policy.md shows the observations' form: every ```json block reads, and suggests.
TEST(PolicySuggestJsonTest, TheDocsExampleReads) {
  int examples = 0;
  for (const std::string& text : FencedBlocks(std::string(STOCKADE_SOURCE_DIR) + "/docs/policy.md", "json")) {
    ++examples;
    absl::StatusOr<FlowObservations> obs = ParseFlowObservations(text, "docs/policy.md");
    ASSERT_TRUE(obs.ok()) << obs.status();
    absl::StatusOr<PolicySuggestion> suggestion = SuggestPolicies(*obs, {});
    ASSERT_TRUE(suggestion.ok()) << suggestion.status();
    for (const SuggestedPolicyFile& f : suggestion->files) ParseAll({{f.file_name, f.text}});
  }
  EXPECT_GE(examples, 1);
}

}  // namespace
}  // namespace stockade
