// SPDX-License-Identifier: Apache-2.0
//
// Remembered denies (bpf/lib/denied.h) through the real programs: a repeated
// denied packet drops from one entry with the reason and the rule of the
// first, its drops add up in counters and events, and the entry never
// outlives a change that allows the flow, never shadows a tracked flow's
// replies, and a full map only costs decisions. IPv4 TCP and UDP repeats
// drop on the established path (bpf/lib/established.h) between two of their
// flow's records, so each test runs on TC and on XDP.
#include <gtest/gtest.h>

#include "tests/kernel/web_endpoint.h"

namespace stockade::testing {
namespace {

constexpr Hook kIn = Hook::kTcEgress;  // what web receives
constexpr uint32_t kBothWays = ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS;

class DeniedFlowTest : public WebEndpointTest, public ::testing::WithParamInterface<Hook> {
 protected:
  // What web sends: TC ingress of its host veth, or XDP in its place.
  static Hook Out() { return GetParam(); }
  std::vector<std::pair<denied_flow_key, denied_flow>> Entries() {
    std::vector<std::pair<denied_flow_key, denied_flow>> entries;
    EXPECT_TRUE(dp_->denied_flows()
                    .ForEach([&](const denied_flow_key& k, const denied_flow& v) { entries.emplace_back(k, v); })
                    .ok());
    return entries;
  }
  // As if the event interval had passed since the entry's last record,
  // without waiting for it.
  void EndEventInterval() {
    for (auto& [key, entry] : Entries()) {
      entry.agg.last_emit_ns = 0;
      ASSERT_TRUE(dp_->denied_flows().Update(key, entry).ok());
    }
  }
};

std::vector<uint8_t> WebSyn(uint16_t sport, uint16_t dport) {
  return FromWeb().Tcp({.sport = sport, .dport = dport, .flags = kTcpSyn}).Build();
}

TEST_P(DeniedFlowTest, RepeatedDeniedPacketsDropFromOneEntryWithTheFirstOnesReasonAndRule) {
  struct Case {
    const char* what;
    std::vector<uint8_t> frame;  // the source port is varied below for TCP
    int reason;
    uint32_t rule_id;
    uint32_t remote_identity;
  };
  // What the first packet decides, the following ones repeat.
  std::vector<Case> cases = {
      {"no rule: default deny", WebSyn(20000, 9999), DROP_POLICY_DENIED, 0, kBackend},
      {"deny rule 5 to the world", FromWeb(kWorldIp).Tcp({.sport = 20000, .dport = 8666, .flags = kTcpSyn}).Build(),
       DROP_POLICY_DENIED, 5, IDENTITY_WORLD},
      {"VXLAN without an explicit allow", FromWeb().Udp({.sport = 20000, .dport = 4789}).Build(), DROP_TUNNEL_DENIED,
       0, kBackend},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ResetSharedState();
    SetUpMapsAgain();
    constexpr int kPackets = 20;
    for (int i = 0; i < kPackets; ++i) EXPECT_FALSE(Passes(Out(), c.frame));
    EXPECT_EQ(Count(c.reason, DIR_EGRESS, VERDICT_DROPPED), uint64_t{kPackets});
    auto entries = Entries();
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].second.reason, c.reason);
    EXPECT_EQ(entries[0].second.rule_id, c.rule_id);
    EXPECT_EQ(entries[0].second.agg.suppressed, uint64_t{kPackets - 1}) << "the repeats were remembered drops";
    EndEventInterval();
    EXPECT_FALSE(Passes(Out(), c.frame));
    std::vector<drop_event> events = DrainEvents();
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].count, 1u);
    EXPECT_EQ(events[1].count, uint32_t{kPackets}) << "the suppressed repeats and this one";
    for (const drop_event& e : events) {
      EXPECT_EQ(e.reason, c.reason);
      EXPECT_EQ(e.rule_id, c.rule_id);
      EXPECT_EQ(e.remote_identity, c.remote_identity);
      EXPECT_EQ(e.local_identity, kWeb);
      EXPECT_EQ(e.direction, DIR_EGRESS);
    }
  }
}

TEST_P(DeniedFlowTest, EventsOfAFloodFromRandomPortsAddUpToItsDrops) {
  stockade_config config = dp_->ReadConfig().value();
  config.event_interval_ns = 60'000'000'000ull;
  ASSERT_TRUE(dp_->WriteConfig(config).ok());
  constexpr int kPackets = 300;
  uint64_t reported = 0;
  for (int i = 0; i < kPackets; ++i) {
    ASSERT_FALSE(Passes(Out(), WebSyn(static_cast<uint16_t>(20000 + i), 9999)));
    if (i % 100 == 99) EndEventInterval();
  }
  EXPECT_EQ(Entries().size(), 1u) << "the source port is not part of a remembered deny";
  EndEventInterval();
  ASSERT_FALSE(Passes(Out(), WebSyn(40000, 9999)));
  for (const drop_event& e : DrainEvents()) reported += e.count;
  EXPECT_EQ(reported, uint64_t{kPackets + 1});
  EXPECT_EQ(Count(DROP_POLICY_DENIED, DIR_EGRESS, VERDICT_DROPPED), uint64_t{kPackets + 1});
}

TEST_P(DeniedFlowTest, APolicyChangeThatAllowsTheFlowLetsTheNextPacketPass) {
  ASSERT_FALSE(Passes(Out(), WebSyn(20000, 9999)));
  ASSERT_FALSE(Passes(Out(), WebSyn(20001, 9999)));
  std::vector<DatapathRule> rules = WebRules();
  rules.push_back({.rule_id = 90, .local_identity = kWeb, .remote_identity = kBackend, .direction = DIR_EGRESS,
                   .protocol = IPPROTO_TCP, .ports = {9999, 9999}});
  SetRules(rules);
  // The contract is the revision, as for conntrack: the agent bumps it with the change.
  EXPECT_FALSE(Passes(Out(), WebSyn(20002, 9999))) << "same revision: the remembered deny stands";
  SetWeb(kBothWays, 2);
  EXPECT_TRUE(Passes(Out(), WebSyn(20003, 9999)));
  EXPECT_TRUE(Passes(kIn, ToWeb(kBackendIp).Tcp({.sport = 9999, .dport = 20003, .flags = kTcpSyn | kTcpAck}).Build()));
}

TEST_P(DeniedFlowTest, AnEndpointSwitchedToAuditPassesItsNextPacketEvenUnderTheSameRevision) {
  ASSERT_FALSE(Passes(Out(), WebSyn(20000, 9999)));
  SetWeb(kBothWays | ENDPOINT_F_AUDIT);
  EXPECT_TRUE(Passes(Out(), WebSyn(20001, 9999)));
  EXPECT_EQ(Count(DROP_POLICY_DENIED, DIR_EGRESS, VERDICT_AUDIT), 1u);
}

TEST_P(DeniedFlowTest, ARememberedDenyNeverShadowsTheRepliesOfATrackedFlow) {
  // The backend opens 5432 -> 40000 into web: web's ingress denies it, and remembers.
  std::vector<uint8_t> from_backend =
      ToWeb(kBackendIp).Tcp({.sport = 5432, .dport = 40000, .flags = kTcpSyn | kTcpAck}).Build();
  ASSERT_FALSE(Passes(kIn, from_backend));
  ASSERT_FALSE(Passes(kIn, from_backend));
  ASSERT_EQ(Entries().size(), 1u);
  // Web opens 40000 -> 5432 (allowed): the same packet is now its reply.
  ASSERT_TRUE(Passes(Out(), WebSyn(40000, 5432)));
  EXPECT_TRUE(Passes(kIn, from_backend));
}

TEST_P(DeniedFlowTest, AFullMapOnlyCostsDecisionsAndNeverAllows) {
  Reload({.conntrack_max = 1024, .events_ringbuf_bytes = 4096, .denied_flows_max = 8});
  SetUpMapsAgain();
  constexpr uint16_t kFlows = 200;
  for (int pass = 0; pass < 2; ++pass) {
    for (uint16_t i = 0; i < kFlows; ++i) ASSERT_FALSE(Passes(Out(), WebSyn(20000, 10000 + i))) << "flow " << i;
  }
  EXPECT_EQ(Count(DROP_POLICY_DENIED, DIR_EGRESS, VERDICT_DROPPED), uint64_t{2 * kFlows});
  EXPECT_LE(Entries().size(), 8u);
  EXPECT_EQ(dp_->conntrack().Count().value(), 0u) << "denies never take room in conntrack";
  // Allowed flows are untouched by the churn.
  EXPECT_TRUE(Passes(Out(), WebSyn(20000, 5432)));
}

TEST_P(DeniedFlowTest, ARememberedDenyKeepsTheChecksThatComeBeforeIt) {
  ASSERT_FALSE(Passes(Out(), WebSyn(20000, 9999)));
  ASSERT_FALSE(Passes(Out(), WebSyn(20001, 9999)));
  std::vector<uint8_t> other_mac = PacketBuilder()
                                       .Ethernet({.src = Mac("02:00:00:00:00:66"), .dst = Mac("02:00:00:00:00:ff")})
                                       .Ipv4({.src = Ipv4(kWebIp), .dst = Ipv4(kBackendIp)})
                                       .Tcp({.sport = 20002, .dport = 9999, .flags = kTcpSyn})
                                       .Build();
  EXPECT_FALSE(Passes(Out(), other_mac));
  EXPECT_EQ(Count(DROP_SPOOFED_SOURCE, DIR_EGRESS, VERDICT_DROPPED), 1u);
  SetWeb(ENDPOINT_F_NOT_READY);
  EXPECT_FALSE(Passes(Out(), WebSyn(20003, 9999)));
  EXPECT_EQ(Count(DROP_ENDPOINT_NOT_READY, DIR_EGRESS, VERDICT_DROPPED), 1u);
  EXPECT_EQ(Count(DROP_POLICY_DENIED, DIR_EGRESS, VERDICT_DROPPED), 2u);
}

INSTANTIATE_TEST_SUITE_P(TcAndXdp, DeniedFlowTest, ::testing::Values(Hook::kTcIngress, Hook::kXdp),
                         [](const auto& info) { return info.param == Hook::kXdp ? "Xdp" : "Tc"; });

}  // namespace
}  // namespace stockade::testing
