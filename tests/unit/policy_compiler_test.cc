// SPDX-License-Identifier: Apache-2.0
//
// Golden tests of the policy compiler: policy sets compiled against
// endpoints whose identities come from a real IdentityAllocator, compared
// with the expected Describe() text; and the properties around it (deny
// beats allow in the map entries, stable rule ids, refused inputs).
#include "stockade/policy/policy_compiler.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <optional>
#include <string>

#include "stockade/policy/policy_parser.h"

namespace stockade {
namespace {

using ::testing::HasSubstr;

// One policy document; `spec` is indented by two spaces.
std::string PolicyDoc(const std::string& name, const std::string& spec) {
  return "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: " + name + "}\nspec:\n" + spec + "---\n";
}

class Scene {
 public:
  // An endpoint with the identity the allocator gives its labels, as the agent does.
  void AddEndpoint(const std::string& id, const LabelSet& labels,
                   const std::optional<std::string>& label_policy = std::nullopt) {
    PolicyEndpoint ep{.id = id, .identity = allocator_.ForLabels(labels).value(), .labels = labels};
    if (label_policy) ep.label_policy = ParseLabelPolicy(*label_policy, id).value();
    inputs_.endpoints.push_back(std::move(ep));
  }

  absl::StatusOr<CompiledPolicy> Compile(const std::string& yaml) {
    absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(yaml, "policies.yaml");
    if (!policies.ok()) return policies.status();
    inputs_.policies = *policies;
    return CompilePolicies(inputs_, allocator_);
  }

  std::string Describe(const std::string& yaml) {
    absl::StatusOr<CompiledPolicy> compiled = Compile(yaml);
    EXPECT_TRUE(compiled.ok()) << compiled.status();
    return compiled.ok() ? compiled->Describe() : "";
  }

  PolicyInputs& inputs() { return inputs_; }

 private:
  IdentityAllocator allocator_;
  PolicyInputs inputs_;
};

const std::string kFourTier = PolicyDoc("web-ingress", R"(  endpointSelector: {matchLabels: {tier: web}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: frontend}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
)") + PolicyDoc("backend-ingress", R"(  endpointSelector: {matchLabels: {tier: backend}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: web}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
)") + PolicyDoc("db-ingress", R"(  endpointSelector: {matchLabels: {tier: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: backend}}]
      toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
)");

void AddFourTiers(Scene& scene) {
  scene.AddEndpoint("frontend-1", {{"tier", "frontend"}});  // 256
  scene.AddEndpoint("web-1", {{"tier", "web"}});            // 257
  scene.AddEndpoint("web-2", {{"tier", "web"}});            // 257: a replica
  scene.AddEndpoint("backend-1", {{"tier", "backend"}});    // 258
  scene.AddEndpoint("db-1", {{"tier", "db"}});              // 259
}

TEST(PolicyCompilerGoldenTest, FourTierChain) {
  Scene scene;
  AddFourTiers(scene);
  EXPECT_EQ(scene.Describe(kFourTier), R"(endpoint frontend-1 identity 256: not enforced
endpoint web-1 identity 257: enforce ingress
  policies: web-ingress
endpoint web-2 identity 257: enforce ingress
  policies: web-ingress
endpoint backend-1 identity 258: enforce ingress
  policies: backend-ingress
endpoint db-1 identity 259: enforce ingress
  policies: db-ingress
ingress 257 <- 256 tcp/80 allow [web-ingress ingress[0]]
ingress 258 <- 257 tcp/8080 allow [backend-ingress ingress[0]]
ingress 259 <- 258 tcp/5432 allow [db-ingress ingress[0]]
)");
}

const std::string kDenyBeatsAllow = PolicyDoc("db-from-backend", R"(  endpointSelector: {matchLabels: {tier: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: backend}}]
)") + PolicyDoc("no-ssh", R"(  endpointSelector: {matchLabels: {tier: db}}
  ingressDeny:
    - fromEndpoints: [{matchExpressions: [{key: tier, operator: Exists}]}]
      toPorts: [{ports: [{port: "22", protocol: TCP}]}]
)");

TEST(PolicyCompilerGoldenTest, DenyBeatsAllow) {
  Scene scene;
  scene.AddEndpoint("backend-1", {{"tier", "backend"}});  // 256
  scene.AddEndpoint("db-1", {{"tier", "db"}});            // 257
  absl::StatusOr<CompiledPolicy> compiled = scene.Compile(kDenyBeatsAllow);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ(compiled->Describe(), R"(endpoint backend-1 identity 256: not enforced
endpoint db-1 identity 257: enforce ingress
  policies: db-from-backend, no-ssh
ingress 257 <- 256 any allow [db-from-backend ingress[0]]
ingress 257 <- 256 tcp/22 deny [no-ssh ingressDeny[0]]
ingress 257 <- 257 tcp/22 deny [no-ssh ingressDeny[0]]
)");

  // In the map, the exact entry for backend -> db tcp/22 is the deny, and
  // everything else from backend stays allowed.
  absl::StatusOr<std::vector<PolicyEntry>> entries = CompilePolicyEntries(compiled->rules);
  ASSERT_TRUE(entries.ok()) << entries.status();
  auto find = [&](uint32_t prefixlen, uint8_t protocol, uint16_t port) -> const policy_value* {
    for (const PolicyEntry& e : *entries)
      if (e.key.local_identity == 257 && e.key.remote_identity == 256 && e.key.prefixlen == prefixlen &&
          e.key.protocol == protocol && e.key.dport == htons(port))
        return &e.value;
    return nullptr;
  };
  const policy_value* ssh = find(POLICY_PREFIX_FULL, IPPROTO_TCP, 22);
  ASSERT_NE(ssh, nullptr);
  EXPECT_EQ(ssh->action, POLICY_ACTION_DENY);
  EXPECT_EQ(compiled->rule_origins.at(ssh->rule_id).ToString(), "no-ssh ingressDeny[0] (policies.yaml:15)");
  const policy_value* rest = find(POLICY_PREFIX_ANY_PROTOCOL, 0, 0);
  ASSERT_NE(rest, nullptr);
  EXPECT_EQ(rest->action, POLICY_ACTION_ALLOW);
}

const std::string kCidrs = PolicyDoc("partner-api", R"(  endpointSelector: {matchLabels: {tier: backend}}
  egress:
    - toCIDRSet: [{cidr: 198.51.100.0/24, except: [198.51.100.128/25]}]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
)") + PolicyDoc("ops-net", R"(  endpointSelector: {matchLabels: {tier: ops}}
  egress:
    - toCIDR: [198.51.100.192/26, 2001:db8::/32]
)") + PolicyDoc("web-out", R"(  endpointSelector: {matchLabels: {tier: web}}
  egress:
    - toEntities: [world]
)");

// The excepted /25 is an identity of its own that the /24 rule leaves out;
// the /26 inside it is one too, so partner-api does not reach it, while
// ops-net does; world stands for every CIDR identity as well.
TEST(PolicyCompilerGoldenTest, CidrWithExceptAndNestedPrefixes) {
  Scene scene;
  scene.AddEndpoint("backend-1", {{"tier", "backend"}});  // 256
  scene.AddEndpoint("ops-1", {{"tier", "ops"}});          // 257
  scene.AddEndpoint("web-1", {{"tier", "web"}});          // 258
  EXPECT_EQ(scene.Describe(kCidrs), R"(endpoint backend-1 identity 256: enforce egress
  policies: partner-api
endpoint ops-1 identity 257: enforce egress
  policies: ops-net
endpoint web-1 identity 258: enforce egress
  policies: web-out
cidr 198.51.100.0/24 identity 259
cidr 198.51.100.128/25 identity 260
cidr 198.51.100.192/26 identity 261
cidr 2001:db8::/32 identity 262
egress 256 -> 259 tcp/443 allow [partner-api egress[0]]
egress 257 -> 261 any allow [ops-net egress[0]]
egress 257 -> 262 any allow [ops-net egress[0]]
egress 258 -> world any allow [web-out egress[0]]
egress 258 -> 259 any allow [web-out egress[0]]
egress 258 -> 260 any allow [web-out egress[0]]
egress 258 -> 261 any allow [web-out egress[0]]
egress 258 -> 262 any allow [web-out egress[0]]
)");
}

const std::string kEntities = PolicyDoc("web-entities", R"(  endpointSelector: {matchLabels: {tier: web}}
  ingress:
    - fromEntities: [host, unmanaged, remote-host]
      toPorts: [{ports: [{port: "80"}]}]
    - fromEntities: [all]
      toPorts: [{ports: [{port: "8", protocol: ICMP}, {port: "128", protocol: ICMPv6}]}]
  egress:
    - toEntities: [world]
      toPorts: [{ports: [{port: "53", protocol: UDP}]}]
)");

TEST(PolicyCompilerGoldenTest, Entities) {
  Scene scene;
  scene.AddEndpoint("web-1", {{"tier", "web"}});  // 256
  scene.AddEndpoint("plain-1", {});               // unmanaged
  EXPECT_EQ(scene.Describe(kEntities), R"(endpoint web-1 identity 256: enforce ingress+egress
  policies: web-entities
endpoint plain-1 identity unmanaged: not enforced
ingress 256 <- any icmp/8 allow [web-entities ingress[1]]
ingress 256 <- any icmpv6/128 allow [web-entities ingress[1]]
ingress 256 <- host any/80 allow [web-entities ingress[0]]
ingress 256 <- unmanaged any/80 allow [web-entities ingress[0]]
ingress 256 <- remote-host any/80 allow [web-entities ingress[0]]
egress 256 -> world udp/53 allow [web-entities egress[0]]
)");
}

const std::string kAudit = PolicyDoc("db-trial", R"(  endpointSelector: {matchLabels: {tier: db}}
  audit: true
  ingress:
    - fromEndpoints: [{matchLabels: {tier: backend}}]
      toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
  ingressDeny:
    - fromEntities: [world]
)") + PolicyDoc("web-trial", R"(  endpointSelector: {matchLabels: {tier: web}}
  audit: true
  egress:
    - toEndpoints: [{matchLabels: {tier: backend}}]
)") + PolicyDoc("web-ingress", R"(  endpointSelector: {matchLabels: {tier: web}}
  ingress:
    - fromEntities: [world]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
)");

// An audit policy only reports: alone on db it sets the audit flag; on web,
// which an enforcing policy selects, it would open egress, so it is left out.
TEST(PolicyCompilerGoldenTest, Audit) {
  Scene scene;
  scene.AddEndpoint("backend-1", {{"tier", "backend"}});  // 256
  scene.AddEndpoint("db-1", {{"tier", "db"}});            // 257
  scene.AddEndpoint("web-1", {{"tier", "web"}});          // 258
  absl::StatusOr<CompiledPolicy> compiled = scene.Compile(kAudit);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ(compiled->Describe(), R"(endpoint backend-1 identity 256: not enforced
endpoint db-1 identity 257: enforce ingress, audit
  policies: db-trial
endpoint web-1 identity 258: enforce ingress
  policies: web-ingress
  note: audit policy 'web-trial' is not applied: policy 'web-ingress' enforces this endpoint
ingress 257 <- world any deny audit [db-trial ingressDeny[0]]
ingress 257 <- 256 tcp/5432 allow [db-trial ingress[0]]
ingress 258 <- world tcp/443 allow [web-ingress ingress[0]]
)");
  EXPECT_EQ(compiled->endpoints[1].Flags(), ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_AUDIT);
  EXPECT_EQ(compiled->endpoints[2].Flags(), ENDPOINT_F_ENFORCE_INGRESS);
}

const std::string kRequireTls = PolicyDoc("db-tls", R"(  endpointSelector: {matchLabels: {tier: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: backend}}]
      toPorts: [{ports: [{port: "5432", protocol: TCP}, {port: "443", protocol: TCP}], requireTLS: true}]
    - fromEntities: [all]
      toPorts: [{ports: [{port: "443", protocol: TCP}, {port: "80", protocol: TCP}]}]
)") + PolicyDoc("web-tls-trial", R"(  endpointSelector: {matchLabels: {tier: web}}
  audit: true
  ingress:
    - toPorts: [{ports: [{port: "443", protocol: TCP, requireTLS: true}]}]
)");

// requireTLS reaches the rules and the map entries; the plaintext allow of
// port 443 for any peer does not weaken it for backend (the strict one wins
// across the two lookups in the datapath; within one key it wins here).
TEST(PolicyCompilerGoldenTest, RequireTls) {
  Scene scene;
  scene.AddEndpoint("backend-1", {{"tier", "backend"}});  // 256
  scene.AddEndpoint("db-1", {{"tier", "db"}});            // 257
  scene.AddEndpoint("web-1", {{"tier", "web"}});          // 258
  absl::StatusOr<CompiledPolicy> compiled = scene.Compile(kRequireTls);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ(compiled->Describe(), R"(endpoint backend-1 identity 256: not enforced
endpoint db-1 identity 257: enforce ingress
  policies: db-tls
endpoint web-1 identity 258: enforce ingress, audit
  policies: web-tls-trial
ingress 257 <- any tcp/80 allow [db-tls ingress[1]]
ingress 257 <- any tcp/443 allow [db-tls ingress[1]]
ingress 257 <- 256 tcp/443 allow requireTLS [db-tls ingress[0]]
ingress 257 <- 256 tcp/5432 allow requireTLS [db-tls ingress[0]]
ingress 258 <- any tcp/443 allow requireTLS audit [web-tls-trial ingress[0]]
)");
  absl::StatusOr<std::vector<PolicyEntry>> entries = CompilePolicyEntries(compiled->rules);
  ASSERT_TRUE(entries.ok()) << entries.status();
  int tls_entries = 0;
  for (const PolicyEntry& e : *entries) {
    if (!(e.value.flags & POLICY_F_REQUIRE_TLS)) continue;
    ++tls_entries;
    EXPECT_EQ(e.key.protocol, IPPROTO_TCP);
    EXPECT_EQ(!!(e.value.flags & POLICY_F_AUDIT), e.key.local_identity == 258u);
  }
  EXPECT_EQ(tls_entries, 3);
}

const std::string kModes = PolicyDoc("lockdown", R"(  endpointSelector: {matchLabels: {tier: db}}
  enforcementMode: always
  ingress:
    - fromEndpoints: [{matchLabels: {tier: backend}}]
      toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
)") + PolicyDoc("quiet", R"(  endpointSelector: {matchLabels: {tier: cache}}
  ingress: []
)") + PolicyDoc("debug-off", R"(  endpointSelector: {matchExpressions: [{key: debug, operator: Exists}]}
  enforcementMode: never
)");

// always: default deny both ways though only ingress has rules; `ingress: []`
// denies all ingress; never wins over the others.
TEST(PolicyCompilerGoldenTest, EnforcementModes) {
  Scene scene;
  scene.AddEndpoint("backend-1", {{"tier", "backend"}});                  // 256
  scene.AddEndpoint("db-1", {{"tier", "db"}});                            // 257
  scene.AddEndpoint("cache-1", {{"tier", "cache"}});                      // 258
  scene.AddEndpoint("cache-debug", {{"tier", "cache"}, {"debug", "1"}});  // 259
  absl::StatusOr<CompiledPolicy> compiled = scene.Compile(kModes);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ(compiled->Describe(), R"(endpoint backend-1 identity 256: not enforced
endpoint db-1 identity 257: enforce ingress+egress
  policies: lockdown
endpoint cache-1 identity 258: enforce ingress
  policies: quiet
endpoint cache-debug identity 259: not enforced
  policies: debug-off, quiet
  note: not enforced: policy 'debug-off' (policies.yaml:18) has enforcementMode never
ingress 257 <- 256 tcp/5432 allow [lockdown ingress[0]]
)");
  EXPECT_EQ(compiled->endpoints[1].Flags(), ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS);
  EXPECT_EQ(compiled->endpoints[3].Flags(), 0u);
}

// A compose service carries its policy in a label; its rules are per identity,
// so a replica without the label gets them too, and says so.
TEST(PolicyCompilerGoldenTest, LabelPolicies) {
  const LabelSet web = {{"compose.project", "shop"}, {"compose.service", "web"}};
  Scene scene;
  scene.AddEndpoint("web-1", web, R"({"ingress": [{"fromEndpoints": [{"matchLabels": {"compose.service": "proxy"}}],
                                      "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}]})");
  scene.AddEndpoint("web-2", web);
  scene.AddEndpoint("proxy-1", {{"compose.project", "shop"}, {"compose.service", "proxy"}});
  scene.AddEndpoint("plain-1", {}, "egress: []");
  EXPECT_EQ(scene.Describe(""), R"(endpoint web-1 identity 256: enforce ingress
  policies: container/web-1
endpoint web-2 identity 256: enforce ingress
  policies: container/web-1
  note: rules of 'container/web-1' apply here too: same identity labels
endpoint proxy-1 identity 257: not enforced
endpoint plain-1 identity unmanaged: not enforced
  note: stockade.policy ignored: the container has no identity labels, and policy rules are per identity
ingress 256 <- 257 tcp/8080 allow [container/web-1 ingress[0]]
)");
}

// Peers that are not endpoints here (KnownIdentity) are selected too.
TEST(PolicyCompilerTest, KnownIdentitiesArePeers) {
  Scene scene;
  scene.AddEndpoint("db-1", {{"tier", "db"}});  // 256
  scene.inputs().identities.push_back({.identity = 900, .labels = {{"tier", "backend"}}});
  absl::StatusOr<CompiledPolicy> compiled =
      scene.Compile(PolicyDoc("db-ingress", R"(  endpointSelector: {matchLabels: {tier: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: backend}}]
)"));
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  ASSERT_EQ(compiled->rules.size(), 1u);
  EXPECT_EQ(compiled->rules[0].remote_identity, 900u);
}

TEST(PolicyCompilerTest, RuleIdsMapBackAndSurviveOtherPolicies) {
  Scene scene;
  AddFourTiers(scene);
  absl::StatusOr<CompiledPolicy> first = scene.Compile(kFourTier);
  ASSERT_TRUE(first.ok()) << first.status();
  for (const DatapathRule& rule : first->rules) {
    EXPECT_NE(rule.rule_id, 0u);
    EXPECT_TRUE(first->rule_origins.contains(rule.rule_id)) << rule.rule_id;
  }
  const uint32_t db_rule = first->rules.back().rule_id;
  EXPECT_EQ(first->rule_origins.at(db_rule).ToString(), "db-ingress ingress[0] (policies.yaml:25)");

  // A policy that sorts before the others does not renumber them.
  absl::StatusOr<CompiledPolicy> second = scene.Compile(
      PolicyDoc("aaa-first", "  endpointSelector: {}\n  egress:\n    - toEntities: [world]\n") + kFourTier);
  ASSERT_TRUE(second.ok()) << second.status();
  const DatapathRule& db_again = *std::find_if(second->rules.begin(), second->rules.end(), [](const DatapathRule& r) {
    return r.local_identity == 259 && r.direction == DIR_INGRESS;
  });
  EXPECT_EQ(db_again.rule_id, db_rule);
  EXPECT_EQ(second->rule_origins.at(db_rule).policy, "db-ingress");
}

TEST(PolicyCompilerTest, CidrIdentitiesStayAcrossCompiles) {
  Scene scene;
  scene.AddEndpoint("backend-1", {{"tier", "backend"}});
  scene.AddEndpoint("ops-1", {{"tier", "ops"}});
  scene.AddEndpoint("web-1", {{"tier", "web"}});
  absl::StatusOr<CompiledPolicy> first = scene.Compile(kCidrs);
  absl::StatusOr<CompiledPolicy> second = scene.Compile(kCidrs);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_EQ(first->cidr_identities.size(), second->cidr_identities.size());
  for (size_t i = 0; i < first->cidr_identities.size(); ++i)
    EXPECT_EQ(first->cidr_identities[i].identity, second->cidr_identities[i].identity);
}

TEST(PolicyCompilerTest, InconsistentInputsAreRefused) {
  {
    Scene scene;
    scene.AddEndpoint("db-1", {{"tier", "db"}});
    scene.inputs().endpoints.push_back({.id = "db-2", .identity = 256, .labels = {{"tier", "web"}}});
    absl::StatusOr<CompiledPolicy> compiled = scene.Compile(kFourTier);
    EXPECT_FALSE(compiled.ok());
    EXPECT_THAT(std::string(compiled.status().message()),
                HasSubstr("endpoint db-2: identity 256 has labels {tier=web}"));
  }
  {
    Scene scene;
    scene.inputs().endpoints.push_back({.id = "odd", .identity = IDENTITY_HOST, .labels = {{"tier", "db"}}});
    absl::StatusOr<CompiledPolicy> compiled = scene.Compile(kFourTier);
    EXPECT_FALSE(compiled.ok());
    EXPECT_THAT(std::string(compiled.status().message()), HasSubstr("endpoint odd: identity host"));
  }
  {
    // The same name in two files: each file is fine alone.
    Scene scene;
    std::vector<Policy> a = ParsePolicyText(kFourTier, "a.yaml").value();
    std::vector<Policy> b = ParsePolicyText(kFourTier, "b.yaml").value();
    scene.inputs().policies = a;
    scene.inputs().policies.insert(scene.inputs().policies.end(), b.begin(), b.end());
    IdentityAllocator allocator;
    absl::StatusOr<CompiledPolicy> compiled = CompilePolicies(scene.inputs(), allocator);
    EXPECT_FALSE(compiled.ok());
    EXPECT_THAT(std::string(compiled.status().message()),
                HasSubstr("'web-ingress' is defined twice: a.yaml:1 and b.yaml:1"));
  }
}

}  // namespace
}  // namespace stockade
