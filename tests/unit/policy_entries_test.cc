// SPDX-License-Identifier: Apache-2.0
#include "stockade/policy/policy_entries.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <random>

namespace stockade {
namespace {

// Which entry a longest-prefix lookup would return, computed the slow way.
const PolicyEntry* LongestMatch(const std::vector<PolicyEntry>& entries, uint32_t local, uint32_t remote,
                                uint8_t dir, uint8_t proto, uint16_t port) {
  const PolicyEntry* best = nullptr;
  for (const PolicyEntry& e : entries) {
    const policy_key& k = e.key;
    if (k.local_identity != local || k.remote_identity != remote || k.direction != dir) continue;
    if (k.prefixlen >= POLICY_PREFIX_ANY_PORT && k.protocol != proto) continue;
    uint32_t bits = k.prefixlen > POLICY_PREFIX_ANY_PORT ? k.prefixlen - POLICY_PREFIX_ANY_PORT : 0;
    uint16_t mask = bits == 0 ? 0 : static_cast<uint16_t>(0xffff << (16 - bits));
    if ((ntohs(k.dport) & mask) != (port & mask)) continue;
    if (!best || k.prefixlen > best->key.prefixlen) best = &e;
  }
  return best;
}

TEST(PortRangeTest, SinglePortIsOneFullPrefix) {
  EXPECT_EQ(PortRangeToPrefixes({80, 80}), (std::vector<PortPrefix>{{80, 16}}));
}

TEST(PortRangeTest, AnyPortIsOneEmptyPrefix) {
  EXPECT_EQ(PortRangeToPrefixes({0, 65535}), (std::vector<PortPrefix>{{0, 0}}));
}

TEST(PortRangeTest, WorstCaseStaysWithinThirtyPrefixes) {
  EXPECT_LE(PortRangeToPrefixes({1, 65534}).size(), 30u);
}

TEST(PortRangeTest, PrefixesCoverExactlyTheRange) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    uint16_t a = rng(), b = rng();
    PortRange range{std::min(a, b), std::max(a, b)};
    std::vector<bool> covered(65536, false);
    for (const PortPrefix& p : PortRangeToPrefixes(range)) {
      uint32_t size = 1u << (16 - p.bits);
      ASSERT_EQ(p.port % size, 0u) << "unaligned prefix";
      for (uint32_t port = p.port; port < p.port + size; ++port) {
        ASSERT_FALSE(covered[port]) << "overlap at " << port;
        covered[port] = true;
      }
    }
    for (uint32_t port = 0; port < 65536; ++port)
      ASSERT_EQ(covered[port], port >= range.first && port <= range.last) << port;
  }
}

TEST(CompilePolicyTest, ExactRuleIsOneFullLengthEntry) {
  auto entries = CompilePolicyEntries({{.rule_id = 5, .local_identity = 300, .remote_identity = 301,
                                        .direction = DIR_INGRESS, .protocol = IPPROTO_TCP, .ports = {5432, 5432}}});
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  const PolicyEntry& e = (*entries)[0];
  EXPECT_EQ(e.key.prefixlen, uint32_t{POLICY_PREFIX_FULL});
  EXPECT_EQ(e.key.dport, htons(5432));
  EXPECT_EQ(e.value.rule_id, 5u);
  EXPECT_EQ(e.value.action, POLICY_ACTION_ALLOW);
  EXPECT_TRUE(e.value.flags & POLICY_F_EXPLICIT_PROTOCOL);
}

TEST(CompilePolicyTest, AnyProtocolAnyPortIsOneShortPrefix) {
  auto entries = CompilePolicyEntries({{.rule_id = 1, .local_identity = 300, .direction = DIR_EGRESS}});
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].key.prefixlen, uint32_t{POLICY_PREFIX_ANY_PROTOCOL});
  EXPECT_FALSE((*entries)[0].value.flags & POLICY_F_EXPLICIT_PROTOCOL);
}

TEST(CompilePolicyTest, AnyProtocolWithPortsMeansTheProtocolsWithPorts) {
  auto entries = CompilePolicyEntries({{.rule_id = 1, .local_identity = 300, .ports = {53, 53}}});
  ASSERT_TRUE(entries.ok());
  std::set<uint8_t> protocols;
  for (const auto& e : *entries) protocols.insert(e.key.protocol);
  EXPECT_EQ(protocols, (std::set<uint8_t>{IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP}));
}

TEST(CompilePolicyTest, WiderDenyIsFoldedIntoNarrowerAllow) {
  // Allow 8080 but deny 8000-8999: the trie would return the /16 allow, so it must carry the deny.
  auto entries = CompilePolicyEntries({
      {.rule_id = 1, .local_identity = 300, .remote_identity = 301, .protocol = IPPROTO_TCP, .ports = {8080, 8080}},
      {.rule_id = 2, .local_identity = 300, .remote_identity = 301, .protocol = IPPROTO_TCP, .ports = {8000, 8999},
       .action = POLICY_ACTION_DENY},
  });
  ASSERT_TRUE(entries.ok());
  for (uint16_t port : {8000, 8080, 8999}) {
    const PolicyEntry* m = LongestMatch(*entries, 300, 301, DIR_INGRESS, IPPROTO_TCP, port);
    ASSERT_NE(m, nullptr) << port;
    EXPECT_EQ(m->value.action, POLICY_ACTION_DENY) << port;
    EXPECT_EQ(m->value.rule_id, 2u) << port;
  }
  EXPECT_EQ(LongestMatch(*entries, 300, 301, DIR_INGRESS, IPPROTO_TCP, 9000), nullptr);
}

TEST(CompilePolicyTest, AnyProtocolDenyBeatsEveryPortAllow) {
  auto entries = CompilePolicyEntries({
      {.rule_id = 1, .local_identity = 300, .remote_identity = 301, .protocol = IPPROTO_UDP, .ports = {53, 53}},
      {.rule_id = 9, .local_identity = 300, .remote_identity = 301, .action = POLICY_ACTION_DENY},
  });
  ASSERT_TRUE(entries.ok());
  const PolicyEntry* m = LongestMatch(*entries, 300, 301, DIR_INGRESS, IPPROTO_UDP, 53);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->value.action, POLICY_ACTION_DENY);
  EXPECT_EQ(m->value.rule_id, 9u);
}

TEST(CompilePolicyTest, EnforcingDenyBeatsAuditDenyOnTheSameKey) {
  auto entries = CompilePolicyEntries({
      {.rule_id = 1, .local_identity = 300, .protocol = IPPROTO_TCP, .ports = {22, 22}, .action = POLICY_ACTION_DENY,
       .audit = true},
      {.rule_id = 2, .local_identity = 300, .protocol = IPPROTO_TCP, .ports = {22, 22}, .action = POLICY_ACTION_DENY},
  });
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].value.rule_id, 2u);
  EXPECT_FALSE((*entries)[0].value.flags & POLICY_F_AUDIT);
}

TEST(CompilePolicyTest, RandomRuleSetsMatchTheirMeaning) {
  // For random rules, the longest match must give the verdict the rules mean: deny if any deny covers it,
  // else TLS required if any requireTLS allow covers it (the strict one wins).
  std::mt19937 rng(11);
  for (int round = 0; round < 50; ++round) {
    std::vector<DatapathRule> rules;
    for (int i = 0; i < 8; ++i) {
      uint16_t a = rng() % 200, b = rng() % 200;
      rules.push_back({.rule_id = uint32_t(i + 1), .local_identity = 300, .remote_identity = 301,
                       .protocol = uint8_t(rng() % 4 == 0 ? 0 : IPPROTO_TCP),
                       .ports = rng() % 5 == 0 ? PortRange{} : PortRange{std::min(a, b), std::max(a, b)},
                       .action = uint8_t(rng() % 3 == 0 ? POLICY_ACTION_DENY : POLICY_ACTION_ALLOW)});
      DatapathRule& r = rules.back();
      r.require_tls = r.action == POLICY_ACTION_ALLOW && r.protocol == IPPROTO_TCP && rng() % 3 == 0;
    }
    auto entries = CompilePolicyEntries(rules);
    ASSERT_TRUE(entries.ok());
    for (uint16_t port = 0; port < 200; ++port) {
      bool any = false, deny = false, tls = false;
      for (const auto& r : rules) {
        bool proto_ok = r.protocol == 0 || r.protocol == IPPROTO_TCP;
        if (proto_ok && port >= r.ports.first && port <= r.ports.last) {
          any = true;
          deny |= r.action == POLICY_ACTION_DENY;
          tls |= r.require_tls;
        }
      }
      const PolicyEntry* m = LongestMatch(*entries, 300, 301, DIR_INGRESS, IPPROTO_TCP, port);
      ASSERT_EQ(m != nullptr, any) << "round " << round << " port " << port;
      if (m) {
        ASSERT_EQ(m->value.action == POLICY_ACTION_DENY, deny) << "round " << round << " port " << port;
        if (!deny) {
          ASSERT_EQ(!!(m->value.flags & POLICY_F_REQUIRE_TLS), tls) << "round " << round << " port " << port;
        }
      }
    }
  }
}

TEST(CompilePolicyTest, WiderRequireTlsBindsNarrowerPlaintextAllow) {
  // 443 allowed in plaintext by rule 1, 0-1023 require TLS by rule 2: 443 requires TLS, under rule 2.
  auto entries = CompilePolicyEntries({
      {.rule_id = 1, .local_identity = 300, .remote_identity = 301, .protocol = IPPROTO_TCP, .ports = {443, 443}},
      {.rule_id = 2, .local_identity = 300, .remote_identity = 301, .protocol = IPPROTO_TCP, .ports = {0, 1023},
       .require_tls = true},
      {.rule_id = 3, .local_identity = 300, .remote_identity = 301, .protocol = IPPROTO_TCP, .ports = {8080, 8080}},
  });
  ASSERT_TRUE(entries.ok());
  const PolicyEntry* m = LongestMatch(*entries, 300, 301, DIR_INGRESS, IPPROTO_TCP, 443);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->value.action, POLICY_ACTION_ALLOW);
  EXPECT_TRUE(m->value.flags & POLICY_F_REQUIRE_TLS);
  EXPECT_EQ(m->value.rule_id, 2u);
  m = LongestMatch(*entries, 300, 301, DIR_INGRESS, IPPROTO_TCP, 8080);
  ASSERT_NE(m, nullptr);
  EXPECT_FALSE(m->value.flags & POLICY_F_REQUIRE_TLS);
}

TEST(CompilePolicyTest, RequireTlsOnTheSameKeyWinsAndAuditOnlyIsWeaker) {
  auto entries = CompilePolicyEntries({
      {.rule_id = 1, .local_identity = 300, .protocol = IPPROTO_TCP, .ports = {443, 443}},
      {.rule_id = 2, .local_identity = 300, .protocol = IPPROTO_TCP, .ports = {443, 443}, .audit = true,
       .require_tls = true},
      {.rule_id = 3, .local_identity = 300, .protocol = IPPROTO_TCP, .ports = {443, 443}, .require_tls = true},
  });
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].value.rule_id, 3u);
  EXPECT_EQ((*entries)[0].value.flags & (POLICY_F_REQUIRE_TLS | POLICY_F_AUDIT), POLICY_F_REQUIRE_TLS);
}

TEST(CompilePolicyTest, RequireTlsNeedsATcpAllow) {
  for (DatapathRule rule : {DatapathRule{.rule_id = 5, .local_identity = 300, .protocol = IPPROTO_UDP},
                            DatapathRule{.rule_id = 5, .local_identity = 300, .protocol = IPPROTO_TCP,
                                         .action = POLICY_ACTION_DENY}}) {
    rule.require_tls = true;
    auto entries = CompilePolicyEntries({rule});
    ASSERT_FALSE(entries.ok());
    EXPECT_NE(entries.status().message().find("rule 5: requireTLS"), std::string::npos);
  }
}

TEST(CompilePolicyTest, BadRulesSayWhich) {
  auto empty = CompilePolicyEntries({{.rule_id = 4, .local_identity = 300, .ports = {10, 5}}});
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("rule 4"), std::string::npos);
  EXPECT_FALSE(CompilePolicyEntries({{.rule_id = 4}}).ok());
}

}  // namespace
}  // namespace stockade
