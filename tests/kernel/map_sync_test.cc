// SPDX-License-Identifier: Apache-2.0
// MapSync against real maps: ordering, revisions, adoption, and a full map.
#include "stockade/agent/map_sync.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include "tests/kernel/web_endpoint.h"

namespace stockade::testing {
namespace {

class MapSyncTest : public DatapathTest {
 protected:
  WantedMaps Wanted(const std::vector<DatapathRule>& rules) {
    WantedMaps wanted;
    wanted.endpoints.push_back({{.netns_cookie = netns_cookie_, .ifindex = kTestRunIfindex},
                                MakeEndpointInfo({.identity = kWeb, .ipv4 = kWebIp, .mac = kWebMac,
                                                  .flags = ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS})});
    wanted.ipcache.push_back({ParseIpPrefix("10.0.0.3/32").value(), kBackend});
    wanted.policy = CompilePolicyEntries(rules).value();
    return wanted;
  }
  uint32_t WebRevision() {
    auto info = dp_->endpoints().Lookup({.netns_cookie = netns_cookie_, .ifindex = kTestRunIfindex});
    return info.ok() && info->has_value() ? (*info)->policy_revision : 0;
  }
};

DatapathRule AllowBackend5432() {
  return {.rule_id = 2, .local_identity = kWeb, .remote_identity = kBackend, .direction = DIR_EGRESS,
          .protocol = IPPROTO_TCP, .ports = {5432, 5432}};
}

TEST_F(MapSyncTest, WritesWhatIsWantedAndNothingTwice) {
  MapSync sync(*dp_);
  ASSERT_TRUE(sync.Adopt().ok());
  auto first = sync.Apply(Wanted({AllowBackend5432()}));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->written, 3);
  EXPECT_TRUE(Passes(Hook::kTcIngress, FromWeb().Tcp({.dport = 5432, .flags = kTcpSyn}).Build()));
  auto again = sync.Apply(Wanted({AllowBackend5432()}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->written, 0);
  EXPECT_EQ(again->removed, 0);
}

TEST_F(MapSyncTest, RemovingARuleBumpsTheRevisionAndCutsTheFlow) {
  MapSync sync(*dp_);
  ASSERT_TRUE(sync.Adopt().ok());
  ASSERT_TRUE(sync.Apply(Wanted({AllowBackend5432()})).ok());
  uint32_t before = WebRevision();
  ASSERT_TRUE(Passes(Hook::kTcIngress, FromWeb().Tcp({.dport = 5432, .flags = kTcpSyn}).Build()));
  auto stats = sync.Apply(Wanted({}));
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->removed, 1);
  EXPECT_EQ(stats->revisions_bumped, 1);
  EXPECT_GT(WebRevision(), before);
  EXPECT_FALSE(Passes(Hook::kTcIngress, FromWeb().Tcp({.dport = 5432, .flags = kTcpAck}).Build()));
}

TEST_F(MapSyncTest, ANewSyncAdoptsWhatIsPinnedAndKeepsRevisionsMonotonic) {
  {
    MapSync sync(*dp_);
    ASSERT_TRUE(sync.Adopt().ok());
    ASSERT_TRUE(sync.Apply(Wanted({AllowBackend5432()})).ok());
    ASSERT_TRUE(sync.Apply(Wanted({})).ok());
  }
  uint32_t revision = WebRevision();
  MapSync restarted(*dp_);
  ASSERT_TRUE(restarted.Adopt().ok());
  auto stats = restarted.Apply(Wanted({}));
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->written, 0) << "a restarted agent rewrites nothing that is right";
  ASSERT_TRUE(restarted.Apply(Wanted({AllowBackend5432()})).ok());
  EXPECT_GT(WebRevision(), revision);
}

TEST_F(MapSyncTest, ANewAddressEndsARememberedDenyOfIt) {
  MapSync sync(*dp_);
  ASSERT_TRUE(sync.Adopt().ok());
  std::vector<DatapathRule> rules = {{.rule_id = 3, .local_identity = kWeb, .remote_identity = kFrontend,
                                      .direction = DIR_EGRESS, .protocol = IPPROTO_TCP, .ports = {5432, 5432}}};
  ASSERT_TRUE(sync.Apply(Wanted(rules)).ok());
  // The frontend's address is not known yet: the world, denied, and the deny remembered.
  std::vector<uint8_t> syn = FromWeb(kFrontendIp).Tcp({.dport = 5432, .flags = kTcpSyn}).Build();
  ASSERT_FALSE(Passes(Hook::kTcIngress, syn));
  ASSERT_EQ(dp_->denied_flows().Count().value(), 1u);
  WantedMaps with_frontend = Wanted(rules);
  with_frontend.ipcache.push_back({ParseIpPrefix(std::string(kFrontendIp) + "/32").value(), kFrontend});
  auto stats = sync.Apply(with_frontend);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->revisions_bumped, 1);
  EXPECT_TRUE(Passes(Hook::kTcIngress, syn));
}

TEST_F(MapSyncTest, FullPolicyMapKeepsTheOldPolicyInForce) {
  Reload({.conntrack_max = 1024, .events_ringbuf_bytes = 4096, .policy_max = 4});
  MapSync sync(*dp_);
  ASSERT_TRUE(sync.Adopt().ok());
  ASSERT_TRUE(sync.Apply(Wanted({AllowBackend5432()})).ok());
  // 30 prefixes for this range: far more than 4 entries.
  std::vector<DatapathRule> many = {AllowBackend5432(),
                                    {.rule_id = 3, .local_identity = kWeb, .direction = DIR_EGRESS,
                                     .protocol = IPPROTO_TCP, .ports = {1, 65534}}};
  auto stats = sync.Apply(Wanted(many));
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kResourceExhausted) << stats.status();
  EXPECT_NE(stats.status().message().find("policy"), std::string::npos);
  EXPECT_TRUE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 1, .dport = 5432, .flags = kTcpSyn}).Build()));
  EXPECT_FALSE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 2, .dport = 5433, .flags = kTcpSyn}).Build()))
      << "what did not fit is not allowed";
}

// A batch that stops at a full map has still written its first entries: the
// mirror must know them, or the next sync would leave them behind.
TEST_F(MapSyncTest, ABatchStoppedByAFullMapIsCleanedUpByTheNextSync) {
  Reload({.conntrack_max = 1024, .events_ringbuf_bytes = 4096, .policy_max = 4});
  MapSync sync(*dp_);
  ASSERT_TRUE(sync.Adopt().ok());
  std::vector<DatapathRule> many;
  for (uint16_t port = 6000; port < 6010; ++port)
    many.push_back({.rule_id = port, .local_identity = kWeb, .remote_identity = kBackend, .direction = DIR_EGRESS,
                    .protocol = IPPROTO_TCP, .ports = {port, port}});
  auto full = sync.Apply(Wanted(many));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted) << full.status();
  auto written = dp_->policy_exact().Count();
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(*written, 4u) << "the batch filled the map, then stopped";

  auto stats = sync.Apply(Wanted({}));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->removed, 4) << "what the stopped batch wrote is known and removed";
  auto left = dp_->policy_exact().Count();
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 0u);
  ASSERT_TRUE(sync.Apply(Wanted({AllowBackend5432()})).ok());
  EXPECT_TRUE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 3, .dport = 5432, .flags = kTcpSyn}).Build()));
  EXPECT_FALSE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 4, .dport = 6000, .flags = kTcpSyn}).Build()));
}

// A bulk load in batches: every entry lands, in both policy maps, and a
// second sync writes nothing.
TEST_F(MapSyncTest, ABulkLoadLandsWholeAndIsNotWrittenTwice) {
  MapSync sync(*dp_);
  ASSERT_TRUE(sync.Adopt().ok());
  std::vector<DatapathRule> rules;
  for (uint16_t port = 20000; port < 23000; ++port)
    rules.push_back({.rule_id = port, .local_identity = kWeb, .remote_identity = kBackend, .direction = DIR_EGRESS,
                     .protocol = IPPROTO_TCP, .ports = {port, port}});
  rules.push_back({.rule_id = 9, .local_identity = kWeb, .direction = DIR_EGRESS, .protocol = IPPROTO_UDP,
                   .ports = {1024, 2047}});  // one prefix, in the trie
  auto first = sync.Apply(Wanted(rules));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->written, 3000 + 1 + 2);
  auto exact = dp_->policy_exact().Count();
  auto prefixes = dp_->policy_prefixes().Count();
  ASSERT_TRUE(exact.ok() && prefixes.ok());
  EXPECT_EQ(*exact, 3000u);
  EXPECT_EQ(*prefixes, 1u);
  EXPECT_TRUE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 5, .dport = 22999, .flags = kTcpSyn}).Build()));
  EXPECT_TRUE(Passes(Hook::kTcIngress, FromWeb().Udp({.sport = 6, .dport = 2047}).Build()));
  auto again = sync.Apply(Wanted(rules));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->written, 0);
}

// A delta (PolicyCompiler) names the keys that may have changed: those are
// brought to what is wanted, the rest of the maps is left as it is. It is
// refused until a full sync has completed: before that, or after one that
// stopped half way, the maps are not where the delta starts from.
TEST_F(MapSyncTest, ADeltaChangesOnlyItsKeysAndOnlyAfterACompleteSync) {
  MapSync sync(*dp_);
  ASSERT_TRUE(sync.Adopt().ok());
  const DatapathRule allow_80 = {.rule_id = 4, .local_identity = kWeb, .remote_identity = kBackend,
                                 .direction = DIR_EGRESS, .protocol = IPPROTO_TCP, .ports = {80, 80}};
  DatapathRule allow_5433 = AllowBackend5432();
  allow_5433.rule_id = 5;
  allow_5433.ports = {5433, 5433};
  auto delta = [&](const std::vector<DatapathRule>& before, const std::vector<DatapathRule>& after) {
    WantedMaps wanted = Wanted(after);
    std::vector<policy_key> scope;
    for (const auto* rules : {&before, &after}) {
      std::vector<PolicyEntry> entries = CompilePolicyEntries(*rules).value();
      for (const PolicyEntry& e : entries) scope.push_back(e.key);
    }
    wanted.policy_scope = scope;
    return wanted;
  };
  EXPECT_FALSE(sync.policy_complete());
  auto refused = sync.Apply(delta({}, {AllowBackend5432()}));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();

  ASSERT_TRUE(sync.Apply(Wanted({AllowBackend5432(), allow_80})).ok());
  EXPECT_TRUE(sync.policy_complete());
  uint32_t revision = WebRevision();
  // 5432 becomes 5433; the rule for port 80 is outside the delta and stays.
  auto stats = sync.Apply(delta({AllowBackend5432()}, {allow_5433}));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->written, 2) << "the new entry, and the endpoint's record with its revision bumped";
  EXPECT_EQ(stats->removed, 1);
  EXPECT_GT(WebRevision(), revision);
  EXPECT_FALSE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 5, .dport = 5432, .flags = kTcpSyn}).Build()));
  EXPECT_TRUE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 6, .dport = 5433, .flags = kTcpSyn}).Build()));
  EXPECT_TRUE(Passes(Hook::kTcIngress, FromWeb().Tcp({.sport = 7, .dport = 80, .flags = kTcpSyn}).Build()));
  EXPECT_EQ(dp_->policy_exact().Count().value(), 2u);

  // A full map stops a sync half way: the next delta is refused, a full sync is not.
  Reload({.conntrack_max = 1024, .events_ringbuf_bytes = 4096, .policy_max = 4});
  MapSync small(*dp_);
  ASSERT_TRUE(small.Adopt().ok());
  ASSERT_TRUE(small.Apply(Wanted({AllowBackend5432()})).ok());
  std::vector<DatapathRule> many;
  for (uint16_t port = 6000; port < 6010; ++port)
    many.push_back({.rule_id = port, .local_identity = kWeb, .remote_identity = kBackend, .direction = DIR_EGRESS,
                    .protocol = IPPROTO_TCP, .ports = {port, port}});
  ASSERT_FALSE(small.Apply(delta({}, many)).ok());
  EXPECT_FALSE(small.policy_complete());
  EXPECT_EQ(small.Apply(delta({}, {AllowBackend5432()})).status().code(), absl::StatusCode::kFailedPrecondition);
  auto full = small.Apply(Wanted({AllowBackend5432()}));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_TRUE(small.policy_complete());
  EXPECT_EQ(dp_->policy_exact().Count().value(), 1u) << "what the stopped sync wrote is gone";
}

}  // namespace
}  // namespace stockade::testing
