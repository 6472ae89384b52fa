// SPDX-License-Identifier: Apache-2.0
//
// Policy files and labels to the model: what a valid text means, and that
// every mistake is refused with file, line, path and reason.
#include "stockade/policy/policy_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/str_replace.h"
#include "tests/support/doc_blocks.h"

namespace stockade {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The example of the issue, line by line.
constexpr char kDbPolicy[] = R"(apiVersion: stockade/v1
kind: Policy
metadata: {name: db-ingress}
spec:
  endpointSelector: {matchLabels: {tier: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: backend}}]
      toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
  egress:
    - toCIDRSet: [{cidr: 198.51.100.0/24, except: [198.51.100.128/25]}]
)";

IpPrefix Prefix(const char* text) { return ParseIpPrefix(text).value(); }

std::vector<PolicyRule> Rules(const Policy& policy, RuleSection section) {
  EXPECT_TRUE(policy.section(section).has_value()) << RuleSectionName(section);
  return policy.section(section).value_or(std::vector<PolicyRule>{});
}

// The spec of a one-policy file around `spec_lines` (indented by two).
std::string WithSpec(const std::string& spec_lines) {
  return "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n" + spec_lines;
}

std::vector<PortProtocol> PortsOf(const std::string& ports_yaml) {
  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(
      WithSpec("  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: " + ports_yaml + "}]\n"), "ports.yaml");
  EXPECT_TRUE(policies.ok()) << policies.status();
  if (!policies.ok()) return {};
  return Rules(policies->at(0), RuleSection::kIngress).at(0).ports;
}

TEST(PolicyParserTest, IssueExampleIsReadIntoTheModel) {
  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(kDbPolicy, "policies/db.yaml");
  ASSERT_TRUE(policies.ok()) << policies.status();
  ASSERT_EQ(policies->size(), 1u);
  const Policy& policy = policies->at(0);
  EXPECT_EQ(policy.name, "db-ingress");
  EXPECT_EQ(policy.location, "policies/db.yaml:1");
  EXPECT_EQ(policy.endpoint_selector->ToString(), "{tier=db}");
  EXPECT_EQ(policy.mode, EnforcementMode::kDefault);
  EXPECT_FALSE(policy.audit);
  EXPECT_FALSE(policy.section(RuleSection::kIngressDeny).has_value());
  EXPECT_FALSE(policy.section(RuleSection::kEgressDeny).has_value());

  std::vector<PolicyRule> ingress = Rules(policy, RuleSection::kIngress);
  ASSERT_EQ(ingress.size(), 1u);
  EXPECT_EQ(ingress[0].location, "policies/db.yaml:7");
  ASSERT_EQ(ingress[0].endpoints.size(), 1u);
  EXPECT_EQ(ingress[0].endpoints[0].ToString(), "{tier=backend}");
  ASSERT_EQ(ingress[0].ports.size(), 1u);
  EXPECT_EQ(ingress[0].ports[0].protocol, IPPROTO_TCP);
  EXPECT_EQ(ingress[0].ports[0].ports, (PortRange{5432, 5432}));

  std::vector<PolicyRule> egress = Rules(policy, RuleSection::kEgress);
  ASSERT_EQ(egress.size(), 1u);
  EXPECT_TRUE(egress[0].ports.empty());
  ASSERT_EQ(egress[0].cidrs.size(), 1u);
  EXPECT_EQ(egress[0].cidrs[0].cidr, Prefix("198.51.100.0/24"));
  EXPECT_THAT(egress[0].cidrs[0].except, ElementsAre(Prefix("198.51.100.128/25")));
  EXPECT_TRUE(policy.EnforcesDirection(DIR_INGRESS));
  EXPECT_TRUE(policy.EnforcesDirection(DIR_EGRESS));
}

TEST(PolicyParserTest, PortForms) {
  auto one = [](const std::string& yaml) {
    std::vector<PortProtocol> ports = PortsOf(yaml);
    EXPECT_EQ(ports.size(), 1u) << yaml;
    return ports.empty() ? PortProtocol{} : ports[0];
  };
  PortProtocol p = one(R"([{port: "80", protocol: TCP}])");
  EXPECT_EQ(p.protocol, IPPROTO_TCP);
  EXPECT_EQ(p.ports, (PortRange{80, 80}));
  p = one("[{port: 80}]");  // unquoted, and no protocol: any
  EXPECT_EQ(p.protocol, 0);
  EXPECT_EQ(p.ports, (PortRange{80, 80}));
  EXPECT_EQ(one(R"([{port: "8000-8999", protocol: udp}])").ports, (PortRange{8000, 8999}));
  EXPECT_EQ(one(R"([{port: "8000", endPort: 8999}])").ports, (PortRange{8000, 8999}));
  p = one("[{protocol: UDP}]");
  EXPECT_EQ(p.protocol, IPPROTO_UDP);
  EXPECT_TRUE(p.ports.IsAny());
  p = one(R"([{port: "8", protocol: ICMP}])");
  EXPECT_EQ(p.protocol, IPPROTO_ICMP);
  EXPECT_EQ(p.ports, (PortRange{8, 8}));
  p = one(R"([{port: "0", protocol: ICMPv6}])");  // type 0 exists for ICMP, port 0 does not
  EXPECT_EQ(p.protocol, IPPROTO_ICMPV6);
  EXPECT_EQ(p.ports, (PortRange{0, 0}));
  EXPECT_EQ(PortsOf(R"([{port: "53", protocol: UDP}, {port: "53", protocol: TCP}])").size(), 2u);
}

TEST(PolicyParserTest, RequireTlsOnTheToPortsEntryOrOnThePort) {
  // Cilium's place, beside `ports`: every port of the entry.
  std::vector<PortProtocol> ports =
      PortsOf(R"([{port: "443", protocol: TCP}, {port: "8443", protocol: TCP}], requireTLS: true)");
  ASSERT_EQ(ports.size(), 2u);
  EXPECT_TRUE(ports[0].require_tls);
  EXPECT_TRUE(ports[1].require_tls);
  // Beside one port.
  ports = PortsOf(R"([{port: "443", protocol: TCP, requireTLS: true}, {port: "80", protocol: TCP}])");
  ASSERT_EQ(ports.size(), 2u);
  EXPECT_TRUE(ports[0].require_tls);
  EXPECT_FALSE(ports[1].require_tls);
  EXPECT_FALSE(PortsOf(R"([{port: "443", protocol: TCP}], requireTLS: false)").at(0).require_tls);

  // The label carrier shares the parser.
  absl::StatusOr<Policy> label = ParseLabelPolicy(
      "ingress:\n  - fromEntities: [all]\n    toPorts: [{ports: [{port: \"443\", protocol: TCP}], requireTLS: true}]\n",
      "web-1");
  ASSERT_TRUE(label.ok()) << label.status();
  EXPECT_TRUE(Rules(*label, RuleSection::kIngress).at(0).ports.at(0).require_tls);
}

TEST(PolicyParserTest, RequireTlsErrorsSayWhere) {
  auto error = [](const std::string& spec) {
    absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(WithSpec(spec), "tls.yaml");
    EXPECT_FALSE(policies.ok()) << spec;
    return policies.ok() ? std::string() : std::string(policies.status().message());
  };
  EXPECT_EQ(error("  endpointSelector: {}\n  ingress:\n    - toPorts:\n        - ports: [{port: \"53\", protocol: UDP}]\n"
                  "          requireTLS: true\n"),
            "tls.yaml:9: spec.ingress[0].toPorts[0].requireTLS: requireTLS is for TCP only, and the port's protocol "
            "is UDP");
  EXPECT_THAT(error("  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{protocol: ICMP, requireTLS: true}]}]\n"),
              HasSubstr("tls.yaml:7: spec.ingress[0].toPorts[0].ports[0].requireTLS: requireTLS is for TCP only"));
  EXPECT_THAT(error("  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"443\"}], requireTLS: true}]\n"),
              HasSubstr("protocol is ANY (write protocol: TCP)"));
  EXPECT_THAT(
      error("  endpointSelector: {}\n  ingressDeny:\n    - toPorts: [{ports: [{port: \"80\", protocol: TCP}], "
            "requireTLS: true}]\n"),
      HasSubstr("tls.yaml:7: spec.ingressDeny[0].toPorts[0].requireTLS: a deny rule cannot require TLS"));
  EXPECT_THAT(error("  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"443\", protocol: TCP, "
                    "requireTLS: false}], requireTLS: true}]\n"),
              HasSubstr("contradicts requireTLS of its toPorts entry"));
  EXPECT_THAT(error("  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: \"443\", protocol: TCP}], "
                    "requireTLS: yes please}]\n"),
              HasSubstr("requireTLS"));
}

TEST(PolicyParserTest, SelectorsFollowKubernetesSemantics) {
  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(WithSpec(R"(  endpointSelector:
    matchLabels: {compose.project: shop}
    matchExpressions:
      - {key: tier, operator: In, values: [web, api]}
      - {key: env, operator: NotIn, values: [dev]}
      - {key: owner, operator: Exists}
      - {key: legacy, operator: DoesNotExist}
  ingress: []
)"),
                                                                 "sel.yaml");
  ASSERT_TRUE(policies.ok()) << policies.status();
  const LabelSelector& s = *policies->at(0).endpoint_selector;
  EXPECT_EQ(s.ToString(),
            "{compose.project=shop, tier In (web,api), env NotIn (dev), owner Exists, legacy DoesNotExist}");
  const LabelSet base = {{"compose.project", "shop"}, {"tier", "web"}, {"owner", "ops"}};
  EXPECT_TRUE(s.Matches(base));  // env absent: NotIn holds
  LabelSet l = base;
  l["env"] = "dev";
  EXPECT_FALSE(s.Matches(l));
  l = base;
  l["tier"] = "db";
  EXPECT_FALSE(s.Matches(l));
  l = base;
  l.erase("owner");
  EXPECT_FALSE(s.Matches(l));
  l = base;
  l["legacy"] = "";
  EXPECT_FALSE(s.Matches(l));
  l = base;
  l["compose.project"] = "other";
  EXPECT_FALSE(s.Matches(l));
  EXPECT_TRUE(LabelSelector{}.Matches({{"anything", "x"}}));
}

TEST(PolicyParserTest, EmptyIngressListIsDefaultDenyInThatDirectionOnly) {
  absl::StatusOr<std::vector<Policy>> policies =
      ParsePolicyText(WithSpec("  endpointSelector: {}\n  ingress: []\n"), "deny.yaml");
  ASSERT_TRUE(policies.ok()) << policies.status();
  EXPECT_THAT(Rules(policies->at(0), RuleSection::kIngress), IsEmpty());
  EXPECT_TRUE(policies->at(0).EnforcesDirection(DIR_INGRESS));
  EXPECT_FALSE(policies->at(0).EnforcesDirection(DIR_EGRESS));
}

TEST(PolicyParserTest, ModesAndAudit) {
  absl::StatusOr<std::vector<Policy>> policies =
      ParsePolicyText(WithSpec("  endpointSelector: {}\n  enforcementMode: always\n  audit: true\n  egressDeny:\n"
                               "    - toEntities: [world, host]\n"),
                      "modes.yaml");
  ASSERT_TRUE(policies.ok()) << policies.status();
  const Policy& policy = policies->at(0);
  EXPECT_EQ(policy.mode, EnforcementMode::kAlways);
  EXPECT_TRUE(policy.audit);
  EXPECT_TRUE(policy.EnforcesDirection(DIR_INGRESS));
  EXPECT_THAT(Rules(policy, RuleSection::kEgressDeny).at(0).entities, ElementsAre(Entity::kWorld, Entity::kHost));

  policies = ParsePolicyText(WithSpec("  endpointSelector: {}\n  enforcementMode: never\n"), "never.yaml");
  ASSERT_TRUE(policies.ok()) << policies.status();
  EXPECT_FALSE(policies->at(0).EnforcesDirection(DIR_INGRESS));
  EXPECT_FALSE(policies->at(0).EnforcesDirection(DIR_EGRESS));
}

TEST(PolicyParserTest, SeveralDocumentsAndEmptyOnes) {
  const std::string two = std::string(kDbPolicy) + "---\n# nothing here\n---\n" +
                          absl::StrReplaceAll(kDbPolicy, {{"db-ingress", "db-ingress-2"}}) + "---\n";
  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(two, "two.yaml");
  ASSERT_TRUE(policies.ok()) << policies.status();
  ASSERT_EQ(policies->size(), 2u);
  EXPECT_EQ(policies->at(1).name, "db-ingress-2");
  EXPECT_EQ(policies->at(1).location, "two.yaml:14");
}

TEST(PolicyParserTest, OneBadDocumentRejectsTheWholeFile) {
  const std::string text =
      std::string(kDbPolicy) + "---\n" + absl::StrReplaceAll(kDbPolicy, {{"db-ingress", "other"}, {"5432", "5432x"}});
  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(text, "mixed.yaml");
  ASSERT_FALSE(policies.ok());
  EXPECT_EQ(std::string(policies.status().message()),
            "mixed.yaml:19: spec.ingress[0].toPorts[0].ports[0].port: \"5432x\" is not a port or range");
}

TEST(PolicyParserTest, DuplicateNamesAreRefused) {
  absl::StatusOr<std::vector<Policy>> policies =
      ParsePolicyText(std::string(kDbPolicy) + "---\n" + kDbPolicy, "dup.yaml");
  ASSERT_FALSE(policies.ok());
  EXPECT_EQ(std::string(policies.status().message()),
            "policy name 'db-ingress' is defined twice: dup.yaml:1 and dup.yaml:12");
}

TEST(PolicyParserTest, SyntaxErrorHasTheLine) {
  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(
      absl::StrReplaceAll(kDbPolicy, {{"kind: Policy\n", "kind: Policy\n  badly: indented\n"}}), "db.yaml");
  ASSERT_FALSE(policies.ok());
  // libyaml's words (yaml-cpp said "illegal map value").
  EXPECT_EQ(std::string(policies.status().message()), "db.yaml:3: mapping values are not allowed in this context");
}

struct BadPolicy {
  std::string from, to;  // kDbPolicy with `from` replaced by `to`
  std::string error;
};

class PolicyErrorTest : public ::testing::TestWithParam<BadPolicy> {};

TEST_P(PolicyErrorTest, IsRefusedWithFileLinePathAndReason) {
  const std::string text = absl::StrReplaceAll(kDbPolicy, {{GetParam().from, GetParam().to}});
  ASSERT_NE(text, kDbPolicy) << "the case changes nothing";
  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(text, "db.yaml");
  ASSERT_FALSE(policies.ok()) << text;
  EXPECT_EQ(policies.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(policies.status().message()), GetParam().error) << text;
}

INSTANTIATE_TEST_SUITE_P(
    Mistakes, PolicyErrorTest,
    ::testing::Values(
        BadPolicy{"\"5432\"", "\"54x2\"",
                  "db.yaml:8: spec.ingress[0].toPorts[0].ports[0].port: \"54x2\" is not a port or range"},
        BadPolicy{"\"5432\"", "\"0\"",
                  "db.yaml:8: spec.ingress[0].toPorts[0].ports[0].port: \"0\" is not a port or range"},
        BadPolicy{"\"5432\"", "\"65536\"",
                  "db.yaml:8: spec.ingress[0].toPorts[0].ports[0].port: \"65536\" is not a port or range"},
        BadPolicy{"\"5432\"", "\"90-80\"", "db.yaml:8: spec.ingress[0].toPorts[0].ports[0].port: range 90-80 is empty"},
        BadPolicy{"port: \"5432\",", "port: \"8000-8999\", endPort: 9000,",
                  "db.yaml:8: spec.ingress[0].toPorts[0].ports[0].endPort: endPort with a range in port"},
        BadPolicy{"protocol: TCP", "protocol: ICMP",
                  "db.yaml:8: spec.ingress[0].toPorts[0].ports[0].port: \"5432\" is not an ICMP type (0-255) or range"},
        BadPolicy{"protocol: TCP", "protocol: TPC",
                  "db.yaml:8: spec.ingress[0].toPorts[0].ports[0].protocol: \"TPC\" is not one of TCP, UDP, SCTP, "
                  "ICMP, ICMPv6, ANY"},
        BadPolicy{"- fromEndpoints", "- fromEndpoint",
                  "db.yaml:7: spec.ingress[0]: unknown key 'fromEndpoint' (expected one of: fromEndpoints, "
                  "fromEntities, fromCIDR, fromCIDRSet, toPorts)"},
        BadPolicy{"- toCIDRSet", "- fromCIDRSet",
                  "db.yaml:10: spec.egress[0]: unknown key 'fromCIDRSet' (expected one of: toEndpoints, toEntities, "
                  "toCIDR, toCIDRSet, toPorts)"},
        BadPolicy{"  ingress:", "  ingres:",
                  "db.yaml:6: spec: unknown key 'ingres' (expected one of: endpointSelector, enforcementMode, audit, "
                  "ingress, ingressDeny, egress, egressDeny)"},
        BadPolicy{"{tier: db}", "{stockade.tier: db}",
                  "db.yaml:5: spec.endpointSelector.matchLabels.stockade.tier: write label keys without "
                  "'stockade.': 'tier'"},
        BadPolicy{"{tier: backend}", "{com.docker.compose.service: web}",
                  "db.yaml:7: spec.ingress[0].fromEndpoints[0].matchLabels.com.docker.compose.service: "
                  "'com.docker.compose.service': compose's labels are named compose.project and compose.service"},
        BadPolicy{"{tier: backend}", "{network.backnet: \"true\"}",
                  "db.yaml:7: spec.ingress[0].fromEndpoints[0].matchLabels.network.backnet: 'network.backnet' is "
                  "'attached' on every container on that network, never 'true'"},
        BadPolicy{"{matchLabels: {tier: db}}", "{matchExpressions: [{key: network.backnet, operator: In, values: [yes]}]}",
                  "db.yaml:5: spec.endpointSelector.matchExpressions[0].values[0]: 'network.backnet' is 'attached' on "
                  "every container on that network, never 'yes'"},
        BadPolicy{"{tier: backend}", "{network.: attached}",
                  "db.yaml:7: spec.ingress[0].fromEndpoints[0].matchLabels.network.: no network name after "
                  "'network.'"},
        BadPolicy{"{tier: backend}", "{tier: backend, tier: web}",
                  "db.yaml:7: spec.ingress[0].fromEndpoints[0].matchLabels: duplicate key 'tier' (also on line 7)"},
        BadPolicy{"{matchLabels: {tier: db}}", "{matchExpressions: [{key: tier, operator: In}]}",
                  "db.yaml:5: spec.endpointSelector.matchExpressions[0]: In needs values"},
        BadPolicy{"{matchLabels: {tier: db}}", "{matchExpressions: [{key: tier, operator: Exists, values: [db]}]}",
                  "db.yaml:5: spec.endpointSelector.matchExpressions[0].values: Exists takes no values"},
        BadPolicy{"{matchLabels: {tier: db}}", "{matchExpressions: [{key: tier, operator: Equals, values: [db]}]}",
                  "db.yaml:5: spec.endpointSelector.matchExpressions[0].operator: \"Equals\" is not one of In, "
                  "NotIn, Exists, DoesNotExist"},
        BadPolicy{"[{matchLabels: {tier: backend}}]", "[]",
                  "db.yaml:7: spec.ingress[0].fromEndpoints: empty list: it would match nothing; list something or "
                  "remove the key"},
        BadPolicy{"fromEndpoints: [{matchLabels: {tier: backend}}]", "fromEntities: [cluster]",
                  "db.yaml:7: spec.ingress[0].fromEntities[0]: \"cluster\" is not one of host, remote-host, world, unmanaged, all"},
        BadPolicy{"toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]", "toPorts: {ports: []}",
                  "db.yaml:8: spec.ingress[0].toPorts: expected a list, found a map"},
        BadPolicy{"except: [198.51.100.128/25]", "except: [203.0.113.0/25]",
                  "db.yaml:10: spec.egress[0].toCIDRSet[0].except[0]: 203.0.113.0/25 is not a smaller part of "
                  "198.51.100.0/24"},
        BadPolicy{"cidr: 198.51.100.0/24", "cidr: 198.51.100.1/24",
                  "db.yaml:10: spec.egress[0].toCIDRSet[0].cidr: '198.51.100.1/24' has host bits set beyond /24"},
        BadPolicy{"- toCIDRSet: [{cidr: 198.51.100.0/24, except: [198.51.100.128/25]}]", "- {}",
                  "db.yaml:10: spec.egress[0]: the rule names neither peers nor ports; for any peer write "
                  "toEntities: [all]"},
        BadPolicy{"stockade/v1", "stockade/v2",
                  "db.yaml:1: apiVersion: \"stockade/v2\" is not supported (expected "
                  "stockade/v1)"},
        BadPolicy{"kind: Policy", "kind: NetworkPolicy",
                  "db.yaml:2: kind: \"NetworkPolicy\" is not supported (expected Policy)"},
        BadPolicy{"{name: db-ingress}", "{name: DB_Ingress}",
                  "db.yaml:3: metadata.name: \"DB_Ingress\" is not a name: lowercase letters, digits, '-' and '.', "
                  "starting and ending with a letter or digit"},
        BadPolicy{"  endpointSelector: {matchLabels: {tier: db}}\n", "",
                  "db.yaml:5: spec: missing key 'endpointSelector'"},
        BadPolicy{"spec:\n", "spec:\n  audit: yes\n", "db.yaml:5: spec.audit: \"yes\" is not true or false"},
        BadPolicy{"spec:\n", "spec:\n  enforcementMode: sometimes\n",
                  "db.yaml:5: spec.enforcementMode: \"sometimes\" is not one of default, always, never"},
        BadPolicy{"spec:\n", "spec:\n  audit: true\n  enforcementMode: never\n",
                  "db.yaml:5: spec.audit: an audit policy cannot have enforcementMode never"},
        BadPolicy{"spec:\n", "spec:\n  egress: []\n", "db.yaml:10: spec: duplicate key 'egress' (also on line 5)"},
        BadPolicy{"  ingress:\n    - fromEndpoints: [{matchLabels: {tier: backend}}]\n"
                  "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n"
                  "  egress:\n    - toCIDRSet: [{cidr: 198.51.100.0/24, except: [198.51.100.128/25]}]\n",
                  "", "db.yaml:5: spec: no ingress, ingressDeny, egress or egressDeny: the policy would do nothing"}));

TEST(LabelPolicyTest, JsonSpecSelectsItsContainer) {
  absl::StatusOr<Policy> policy = ParseLabelPolicy(
      R"({"ingress": [{"fromEndpoints": [{"matchLabels": {"compose.service": "proxy"}}],
                       "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}],
          "egress": []})",
      "shop-web-1");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->name, "container/shop-web-1");
  EXPECT_FALSE(policy->endpoint_selector.has_value());
  std::vector<PolicyRule> ingress = Rules(*policy, RuleSection::kIngress);
  ASSERT_EQ(ingress.size(), 1u);
  EXPECT_EQ(ingress[0].endpoints.at(0).ToString(), "{compose.service=proxy}");
  EXPECT_EQ(ingress[0].location, "container shop-web-1 label stockade.policy:1");
  EXPECT_THAT(Rules(*policy, RuleSection::kEgress), IsEmpty());
}

TEST(LabelPolicyTest, YamlSpecWorksToo) {
  absl::StatusOr<Policy> policy = ParseLabelPolicy("enforcementMode: always\negress:\n  - toEntities: [world]\n", "w");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->mode, EnforcementMode::kAlways);
  EXPECT_EQ(Rules(*policy, RuleSection::kEgress).at(0).location, "container w label stockade.policy:3");
}

TEST(LabelPolicyTest, MistakesNameTheContainerAndLabel) {
  absl::StatusOr<Policy> policy = ParseLabelPolicy(R"({"endpointSelector": {}, "ingress": []})", "web-1");
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(std::string(policy.status().message()),
            "container web-1 label stockade.policy:1: endpointSelector: a label policy selects the container that "
            "carries it: remove endpointSelector");
  policy = ParseLabelPolicy("ingress:\n  - toPorts: [{ports: [{port: http}]}]\n", "web-1");
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(std::string(policy.status().message()),
            "container web-1 label stockade.policy:2: ingress[0].toPorts[0].ports[0].port: \"http\" is not a port or "
            "range");
  policy = ParseLabelPolicy("", "web-1");
  ASSERT_FALSE(policy.ok());
  EXPECT_THAT(std::string(policy.status().message()), HasSubstr("expected one spec, found 0 documents"));
}

// Found by fuzz/policy_text_fuzzer and fuzz/label_policy_fuzzer (the
// regress-loadall-* inputs in fuzz/corpus/): yaml-cpp's LoadAll made empty
// documents without end, holding the agent and growing its memory, on a stray
// ',', '}' or ']' where a document would start.
TEST(PolicyParserTest, StrayFlowTokenIsAnErrorNotAHang) {
  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(
      ",piVersion: stockade/v1\nkind: Policy\nmetaname: db-ingresVersios}", "stray.yaml");
  ASSERT_FALSE(policies.ok());
  EXPECT_EQ(policies.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(policies.status().message()), HasSubstr("stray.yaml:"));
  for (const char* text : {"}", "]", "a: b}", "a: b\n]\n", WithSpec("  endpointSelector: {}\n}\n").c_str()}) {
    EXPECT_FALSE(ParsePolicyText(text, "stray.yaml").ok()) << text;
  }
  // The fuzzer's label: libyaml refuses its byte 0x8b (not UTF-8) before it reaches the ','.
  absl::StatusOr<Policy> label = ParseLabelPolicy("!+ing4YAMLNNULL4YA: \"6160\", \x8brEs", "web-1");
  ASSERT_FALSE(label.ok());
  EXPECT_THAT(std::string(label.status().message()),
              HasSubstr("container web-1 label stockade.policy:1: invalid leading UTF-8 octet"));
  EXPECT_EQ(std::string(ParseLabelPolicy("!+ing4YAMLNNULL4YA: \"6160\", rEs", "web-1").status().message()),
            "container web-1 label stockade.policy:1: did not find expected <document start>");
  EXPECT_THAT(std::string(ParseLabelPolicy("ingress: []\n}", "web-1").status().message()),
              HasSubstr("container web-1 label stockade.policy:2: "));
}

TEST(PolicyFileTest, ValidateReadsTheFile) {
  const std::string path = ::testing::TempDir() + "/stockade-policy-" + std::to_string(getpid()) + ".yaml";
  {
    std::ofstream out(path);
    out << kDbPolicy;
  }
  absl::StatusOr<std::vector<Policy>> policies = ValidatePolicyFile(path);
  std::remove(path.c_str());
  ASSERT_TRUE(policies.ok()) << policies.status();
  EXPECT_EQ(policies->at(0).location, path + ":1");

  absl::StatusOr<std::vector<Policy>> missing = ValidatePolicyFile(path);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(path));
}

// docs/policy.md must not show a policy stockade refuses: every ```yaml block parses.
TEST(PolicyDocsTest, EveryYamlExampleParses) {
  int examples = 0;
  for (const std::string& text : FencedBlocks(std::string(STOCKADE_SOURCE_DIR) + "/docs/policy.md", "yaml")) {
    ++examples;
    if (text.find("apiVersion:") == std::string::npos) {
      EXPECT_TRUE(ParseLabelPolicy(text, "example").ok()) << ParseLabelPolicy(text, "example").status() << "\n" << text;
    } else {
      EXPECT_TRUE(ParsePolicyText(text, "docs").ok()) << ParsePolicyText(text, "docs").status() << "\n" << text;
    }
  }
  EXPECT_GE(examples, 5);
}

}  // namespace
}  // namespace stockade
