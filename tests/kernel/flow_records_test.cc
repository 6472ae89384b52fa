// SPDX-License-Identifier: Apache-2.0
//
// New-flow records (maps/events.h, bpf/lib/record.h): one table of packet
// sequences through the real programs, each row with the records it must
// leave in the ring buffer. A flow's record is made when its conntrack entry
// is, so its reply and later packets make none; a denied flow reports its
// drop as before; with records off nothing is reported for what passes. Every
// row runs through TC, and through XDP in place of TC ingress (what web
// sends), with the same expectations.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "stockade/net/addresses.h"
#include "tests/kernel/web_endpoint.h"

namespace stockade::testing {
namespace {

constexpr Hook kOut = Hook::kTcIngress;  // what web sends
constexpr Hook kIn = Hook::kTcEgress;    // what web receives

struct Step {
  Hook hook;
  std::vector<uint8_t> frame;
  bool passes;
};

// A record the row expects, field by field (ports host order; ICMP: type, code).
struct Record {
  uint8_t verdict;
  int reason;
  uint32_t rule_id;
  uint8_t direction;
  uint8_t protocol;
  std::string saddr, daddr;
  uint16_t sport, dport;
  uint32_t local_identity, remote_identity;
  uint32_t count = 1;
};

struct FlowRow {
  std::string description;
  std::vector<Step> steps;
  std::vector<Record> records;
  bool flow_records = true;
  uint32_t endpoint_flags = ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS;
};

std::ostream& operator<<(std::ostream& os, const FlowRow& row) { return os << row.description; }

std::vector<uint8_t> WebTcp(uint16_t sport, uint16_t dport, uint8_t flags, const char* dst = kBackendIp) {
  return FromWeb(dst).Tcp({.sport = sport, .dport = dport, .flags = flags}).Build();
}
std::vector<uint8_t> ToWebTcp(const char* src, uint16_t sport, uint16_t dport, uint8_t flags) {
  return ToWeb(src).Tcp({.sport = sport, .dport = dport, .flags = flags}).Build();
}

std::vector<FlowRow> FlowRows() {
  const uint8_t in = DIR_INGRESS, out = DIR_EGRESS;
  const uint32_t world = IDENTITY_WORLD;
  return {
      {"new tcp flow web -> backend:5432: one forwarded record, its allowing rule",
       {{kOut, WebTcp(40000, 5432, kTcpSyn), true}},
       {{VERDICT_FORWARDED, REASON_NONE, 2, out, IPPROTO_TCP, kWebIp, kBackendIp, 40000, 5432, kWeb, kBackend}}},
      {"its reply and later packets, both ways: no more records",
       {{kOut, WebTcp(40000, 5432, kTcpSyn), true},
        {kIn, ToWebTcp(kBackendIp, 5432, 40000, kTcpSyn | kTcpAck), true},
        {kOut, WebTcp(40000, 5432, kTcpAck), true},
        {kOut, FromWeb().Tcp({.sport = 40000, .dport = 5432, .flags = kTcpAck | kTcpPsh}).Payload({'h', 'i'}).Build(),
         true},
        {kIn, ToWebTcp(kBackendIp, 5432, 40000, kTcpAck), true},
        {kOut, WebTcp(40000, 5432, kTcpFin | kTcpAck), true}},
       {{VERDICT_FORWARDED, REASON_NONE, 2, out, IPPROTO_TCP, kWebIp, kBackendIp, 40000, 5432, kWeb, kBackend}}},
      {"ingress: frontend -> web:80, the client is the source",
       {{kIn, ToWebTcp(kFrontendIp, 50000, 80, kTcpSyn), true},
        {kOut, FromWeb(kFrontendIp).Tcp({.sport = 80, .dport = 50000, .flags = kTcpSyn | kTcpAck}).Build(), true}},
       {{VERDICT_FORWARDED, REASON_NONE, 1, in, IPPROTO_TCP, kFrontendIp, kWebIp, 50000, 80, kWeb, kFrontend}}},
      {"udp/53 and its reply: one record",
       {{kOut, FromWeb().Udp({.sport = 33000, .dport = 53}).Build(), true},
        {kIn, ToWeb(kBackendIp).Udp({.sport = 53, .dport = 33000}).Build(), true},
        {kOut, FromWeb().Udp({.sport = 33000, .dport = 53}).Build(), true}},
       {{VERDICT_FORWARDED, REASON_NONE, 3, out, IPPROTO_UDP, kWebIp, kBackendIp, 33000, 53, kWeb, kBackend}}},
      {"ipv6 new flow",
       {{kOut, FromWeb6().Tcp({.sport = 40001, .dport = 5432, .flags = kTcpSyn}).Build(), true}},
       {{VERDICT_FORWARDED, REASON_NONE, 2, out, IPPROTO_TCP, kWebIp6, kBackendIp6, 40001, 5432, kWeb, kBackend}}},
      {"ping: type and code where the ports are, the reply makes none",
       {{kOut, FromWeb().Icmpv4({.type = 8, .rest_of_header = {0, 7, 0, 1}}).Build(), true},
        {kIn, ToWeb(kBackendIp).Icmpv4({.type = 0, .rest_of_header = {0, 7, 0, 1}}).Build(), true}},
       {{VERDICT_FORWARDED, REASON_NONE, 13, out, IPPROTO_ICMP, kWebIp, kBackendIp, 8, 0, kWeb, kBackend}}},
      {"a direction no policy enforces: allowed without a rule",
       {{kOut, WebTcp(40002, 443, kTcpSyn, kWorldIp), true}},
       {{VERDICT_FORWARDED, REASON_NONE, 0, out, IPPROTO_TCP, kWebIp, kWorldIp, 40002, 443, kWeb, world}},
       true,
       ENDPOINT_F_ENFORCE_INGRESS},
      {"denied: a drop record as before, no forwarded one",
       {{kOut, WebTcp(40003, 5433, kTcpSyn), false}},
       {{VERDICT_DROPPED, DROP_POLICY_DENIED, 0, out, IPPROTO_TCP, kWebIp, kBackendIp, 40003, 5433, kWeb, kBackend}}},
      {"allowed then denied: each reported as what it is",
       {{kOut, WebTcp(40004, 5432, kTcpSyn), true}, {kOut, WebTcp(40004, 8666, kTcpSyn, kWorldIp), false}},
       {{VERDICT_FORWARDED, REASON_NONE, 2, out, IPPROTO_TCP, kWebIp, kBackendIp, 40004, 5432, kWeb, kBackend},
        {VERDICT_DROPPED, DROP_POLICY_DENIED, 5, out, IPPROTO_TCP, kWebIp, kWorldIp, 40004, 8666, kWeb, world}}},
      {"audit mode: a would-be drop is one audit record, not a forwarded one too",
       {{kOut, WebTcp(40005, 5433, kTcpSyn), true}},
       {{VERDICT_AUDIT, DROP_POLICY_DENIED, 0, out, IPPROTO_TCP, kWebIp, kBackendIp, 40005, 5433, kWeb, kBackend}},
       true,
       ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS | ENDPOINT_F_AUDIT},
      {"records off: an allowed flow and its reply report nothing",
       {{kOut, WebTcp(40006, 5432, kTcpSyn), true}, {kIn, ToWebTcp(kBackendIp, 5432, 40006, kTcpSyn | kTcpAck), true}},
       {},
       false},
      {"records off: a denied flow still reports its drop",
       {{kOut, WebTcp(40007, 5433, kTcpSyn), false}},
       {{VERDICT_DROPPED, DROP_POLICY_DENIED, 0, out, IPPROTO_TCP, kWebIp, kBackendIp, 40007, 5433, kWeb, kBackend}},
       false},
  };
}

class FlowRecordTest : public WebEndpointTest, public ::testing::WithParamInterface<std::tuple<FlowRow, bool>> {
 protected:
  void SetFlowRecords(bool on) { ASSERT_TRUE(dp_->SetFlowRecords(on).ok()); }
};

TEST_P(FlowRecordTest, RecordsOfTheRow) {
  const auto& [row, xdp] = GetParam();
  SetWeb(row.endpoint_flags);
  SetFlowRecords(row.flow_records);
  uint64_t forwarded = 0;
  for (size_t i = 0; i < row.steps.size(); ++i) {
    const Step& step = row.steps[i];
    Hook hook = xdp && step.hook == kOut ? Hook::kXdp : step.hook;
    EXPECT_EQ(Passes(hook, step.frame), step.passes) << "step " << i;
    forwarded += step.passes;
  }
  std::vector<drop_event> events = DrainEvents();
  ASSERT_EQ(events.size(), row.records.size());
  for (size_t i = 0; i < events.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("record ", i));
    const drop_event& e = events[i];
    const Record& want = row.records[i];
    EXPECT_EQ(e.verdict, want.verdict);
    EXPECT_EQ(e.reason, want.reason) << DropReasonName(e.reason);
    EXPECT_EQ(e.rule_id, want.rule_id);
    EXPECT_EQ(e.direction, want.direction);
    EXPECT_EQ(e.protocol, want.protocol);
    EXPECT_EQ(FormatAddress(e.family, e.saddr), want.saddr);
    EXPECT_EQ(FormatAddress(e.family, e.daddr), want.daddr);
    EXPECT_EQ(ntohs(e.sport), want.sport);
    EXPECT_EQ(ntohs(e.dport), want.dport);
    EXPECT_EQ(e.local_identity, want.local_identity);
    EXPECT_EQ(e.remote_identity, want.remote_identity);
    EXPECT_EQ(e.count, want.count);
    EXPECT_EQ(e.ifindex, kTestRunIfindex);
  }
  // Records or not, every packet that passed is counted (an audited one under its reason).
  if (!(row.endpoint_flags & ENDPOINT_F_AUDIT)) {
    EXPECT_EQ(Count(REASON_NONE, DIR_EGRESS, VERDICT_FORWARDED) + Count(REASON_NONE, DIR_INGRESS, VERDICT_FORWARDED),
              forwarded);
  }
}

std::string FlowRowName(const ::testing::TestParamInfo<std::tuple<FlowRow, bool>>& info) {
  std::string name;
  for (char c : std::get<0>(info.param).description) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return absl::StrCat(std::get<1>(info.param) ? "Xdp_" : "Tc_", info.index, "_", name.substr(0, 50));
}

INSTANTIATE_TEST_SUITE_P(Rows, FlowRecordTest, ::testing::Combine(::testing::ValuesIn(FlowRows()), ::testing::Bool()),
                         FlowRowName);

using FlowRecordAggregationTest = WebEndpointTest;

// As drops are, from a key's second new flow on: one record per (client,
// server, port) per interval, with the count of the new flows it stands for.
// The first is reported before the key has an event_agg entry (flow_seen,
// bpf/lib/record.h), so the first interval has two records.
TEST_F(FlowRecordAggregationTest, NewFlowsOfOneClientAndPortAreAggregatedWithTheirCount) {
  stockade_config config = dp_->ReadConfig().value();
  config.event_interval_ns = 200'000'000;
  ASSERT_TRUE(dp_->WriteConfig(config).ok());
  for (uint16_t i = 0; i < 5; ++i) ASSERT_TRUE(Passes(kOut, WebTcp(41000 + i, 5432, kTcpSyn)));
  std::vector<drop_event> first = DrainEvents();
  ASSERT_EQ(first.size(), 2u) << "the key's first flow, then its event_agg entry's";
  EXPECT_EQ(first[0].count, 1u);
  EXPECT_EQ(first[1].count, 1u);
  auto entries = dp_->event_agg().Count();
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(*entries, 1u) << "one entry, made by the repeat";
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  ASSERT_TRUE(Passes(kOut, WebTcp(42000, 5432, kTcpSyn)));
  std::vector<drop_event> second = DrainEvents();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].verdict, VERDICT_FORWARDED);
  EXPECT_EQ(second[0].count, 4u) << "3 suppressed and this one: 1 + 1 + 4, the 6 flows";
  // Another server port is another record at once, and no entry.
  ASSERT_TRUE(Passes(kOut, FromWeb().Udp({.sport = 42000, .dport = 53}).Build()));
  EXPECT_EQ(DrainEvents().size(), 1u);
  EXPECT_EQ(dp_->event_agg().Count().value_or(0), 1u);
}

// Clients that each open one flow, the common case of a public service:
// one record each, and not one event_agg insert (what made a new flow cost
// +75% in the first version).
TEST_F(FlowRecordAggregationTest, ANewClientsFlowIsReportedWithoutAnAggregationEntry) {
  SetRules({{.rule_id = 30, .local_identity = kWeb, .direction = DIR_INGRESS, .protocol = IPPROTO_TCP,
             .ports = {8080, 8080}}});
  for (int i = 0; i < 20; ++i) {
    std::string client = absl::StrCat("203.0.113.", 100 + i);
    ASSERT_TRUE(Passes(kIn, ToWeb(client.c_str()).Tcp({.sport = 50000, .dport = 8080, .flags = kTcpSyn}).Build()));
  }
  std::vector<drop_event> events = DrainEvents();
  ASSERT_EQ(events.size(), 20u);
  for (const drop_event& e : events) {
    EXPECT_EQ(e.verdict, VERDICT_FORWARDED);
    EXPECT_EQ(e.rule_id, 30u);
    EXPECT_EQ(e.count, 1u);
  }
  EXPECT_EQ(dp_->event_agg().Count().value_or(99), 0u);
}

// What stockaded --no-flow-records writes at its start: the one bit, the
// interval and the loader's mark kept as they were.
TEST_F(FlowRecordAggregationTest, TheSwitchTurnsOnlyTheRecordsOffAndOn) {
  stockade_config config = dp_->ReadConfig().value();
  config.event_interval_ns = 777;
  ASSERT_TRUE(dp_->WriteConfig(config).ok());
  EXPECT_FALSE(config.flags & STOCKADE_CONFIG_F_NO_FLOW_RECORDS) << "on by default";
  ASSERT_TRUE(dp_->SetFlowRecords(false).ok());
  stockade_config off = dp_->ReadConfig().value();
  EXPECT_TRUE(off.flags & STOCKADE_CONFIG_F_NO_FLOW_RECORDS);
  EXPECT_TRUE(off.flags & STOCKADE_CONFIG_F_SET);
  EXPECT_EQ(off.event_interval_ns, 777u);
  ASSERT_TRUE(Passes(kOut, WebTcp(43000, 5432, kTcpSyn)));
  EXPECT_TRUE(DrainEvents().empty());
  ASSERT_TRUE(dp_->SetFlowRecords(true).ok());
  EXPECT_EQ(dp_->ReadConfig().value().flags, config.flags);
  ASSERT_TRUE(Passes(kOut, WebTcp(43001, 5432, kTcpSyn)));
  EXPECT_EQ(DrainEvents().size(), 1u) << "back on at once, no reload";
}

// Every record the ring buffer had no room for is counted where it was lost,
// under its own verdict: the agent's events.lost.ringbuf_new_flows.
TEST_F(FlowRecordAggregationTest, FullRingBufferCountsEveryLostFlowRecord) {
  Reload({.conntrack_max = 1024, .events_ringbuf_bytes = 4096});
  SetUpMapsAgain();
  stockade_config config = dp_->ReadConfig().value();
  config.event_interval_ns = 0;
  ASSERT_TRUE(dp_->WriteConfig(config).ok());
  constexpr int kFlows = 200;
  for (int i = 0; i < kFlows; ++i) ASSERT_TRUE(Passes(kOut, WebTcp(static_cast<uint16_t>(20000 + i), 5432, kTcpSyn)));
  size_t delivered = DrainEvents().size();
  uint64_t lost = Count(EVENT_LOST, DIR_EGRESS, VERDICT_FORWARDED);
  EXPECT_GT(lost, 0u);
  EXPECT_EQ(delivered + lost, size_t{kFlows}) << "every new flow is either reported or counted as lost";
}

}  // namespace
}  // namespace stockade::testing
