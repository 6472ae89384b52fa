// SPDX-License-Identifier: Apache-2.0
//
// stockade-bench's pure parts: the rule set and its text for each loader,
// the statistics, and the CSV, table and gnuplot output. The real loaders and
// traffic are exercised by tests/bench/bench_smoke_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "stockade/policy/policy_parser.h"
#include "tools/bench/results.h"
#include "tools/bench/rules.h"
#include "tools/bench/stats.h"
#include "tools/bench/traffic.h"

namespace stockade::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

NetfilterNames Names() {
  return {.chain = "SB-test", .ipset = "sb-test", .nft_table = "sb_test", .out_ifname = "srv", .in_ifname = "cli"};
}

std::vector<std::string> Lines(const std::string& text) { return absl::StrSplit(text, '\n', absl::SkipEmpty()); }

TEST(BenchRulesTest, FillersComeFirstAndTheClientsRulesLast) {
  std::vector<AllowRule> rules = MakeRuleSet(1000);
  ASSERT_EQ(rules.size(), 1003u);
  std::set<uint32_t> filler_sources;
  for (size_t i = 0; i < 1000; ++i) {
    EXPECT_NE(FormatIpv4(rules[i].source), kClientIp) << i;
    EXPECT_GE(rules[i].port, 10000) << "a filler must not cover a real flow's port";
    filler_sources.insert(rules[i].source);
  }
  EXPECT_EQ(filler_sources.size(), 1000u) << "every filler is a distinct address";
  EXPECT_EQ(FormatIpv4(rules[1000].source), kClientIp);
  EXPECT_EQ(rules[1000].port, kUdpPort);
  EXPECT_EQ(rules[1000].protocol, IPPROTO_UDP);
  EXPECT_EQ(rules[1001].port, kTcpRrPort);
  EXPECT_EQ(rules[1002].port, kIperfPort);
  EXPECT_EQ(rules[1002].protocol, IPPROTO_TCP);
  for (const AllowRule& rule : rules) EXPECT_NE(rule.port, kDeniedUdpPort);
  EXPECT_EQ(MakeRuleSet(0).size(), 3u);
  EXPECT_EQ(FormatIpv4(kFillerBase + 1), "10.128.0.1");
}

TEST(BenchRulesTest, IptablesChainAcceptsEstablishedFirstThenRulesInOrderThenDrops) {
  std::vector<AllowRule> rules = MakeRuleSet(2);
  std::vector<std::string> lines = Lines(IptablesLinearScript(rules, Names()));
  EXPECT_THAT(lines, ElementsAre("*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                                 ":SB-test - [0:0]", "-A FORWARD -o srv -j SB-test",
                                 "-A SB-test -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                                 "-A SB-test -s 10.128.0.1/32 -p udp -m udp --dport 10000 -j ACCEPT",
                                 "-A SB-test -s 10.128.0.2/32 -p tcp -m tcp --dport 10001 -j ACCEPT",
                                 "-A SB-test -s 10.214.0.1/32 -p udp -m udp --dport 5001 -j ACCEPT",
                                 "-A SB-test -s 10.214.0.1/32 -p tcp -m tcp --dport 5002 -j ACCEPT",
                                 "-A SB-test -s 10.214.0.1/32 -p tcp -m tcp --dport 5201 -j ACCEPT",
                                 "-A SB-test -j DROP", "COMMIT"));
  EXPECT_EQ(Lines(IptablesLinearScript(MakeRuleSet(10000), Names())).size(), 10000u + 3 + 9) << "7 lines before the rules, DROP and COMMIT after";
}

TEST(BenchRulesTest, IpsetHoldsEveryRuleAndOneIptablesRuleMatchesIt) {
  std::vector<std::string> lines = Lines(IpsetScript(MakeRuleSet(5), Names()));
  ASSERT_EQ(lines.size(), 9u);
  EXPECT_THAT(lines[0], HasSubstr("create sb-test hash:ip,port family inet"));
  EXPECT_EQ(lines[1], "add sb-test 10.128.0.1,udp:10000");
  EXPECT_EQ(lines[8], "add sb-test 10.214.0.1,tcp:5201");
  // The set must have room for 100k rules.
  EXPECT_THAT(Lines(IpsetScript(MakeRuleSet(100000), Names()))[0], HasSubstr("maxelem 200006"));
  std::string iptables = IptablesIpsetScript(Names());
  EXPECT_THAT(iptables, HasSubstr("-A SB-test -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
                                  "-A SB-test -m set --match-set sb-test src,dst -j ACCEPT\n-A SB-test -j DROP\n"));
}

TEST(BenchRulesTest, NftUsesOneConcatenatedSetAfterEstablished) {
  std::string script = NftSetScript(MakeRuleSet(3), Names());
  EXPECT_THAT(script, HasSubstr("table inet sb_test {"));
  EXPECT_THAT(script, HasSubstr("type ipv4_addr . inet_proto . inet_service"));
  EXPECT_THAT(script, HasSubstr("      10.128.0.1 . udp . 10000,\n"));
  EXPECT_THAT(script, HasSubstr("      10.214.0.1 . tcp . 5201\n    }"));
  size_t established = script.find("ct state established,related accept");
  size_t set_match = script.find("ip saddr . meta l4proto . th dport @allowed accept");
  size_t drop = script.find("oifname \"srv\" drop");
  ASSERT_NE(established, std::string::npos);
  EXPECT_LT(established, set_match);
  EXPECT_LT(set_match, drop);
  // No rules: an empty set, still valid nft.
  EXPECT_THAT(NftSetScript({}, Names()), Not(HasSubstr("elements")));
}

TEST(BenchRulesTest, FloodDropsSitBeforeRoutingOnTheClientsVeth) {
  EXPECT_EQ(IptablesRawDropScript(Names()),
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -i cli -p udp -m udp --dport 5009 "
            "-j DROP\nCOMMIT\n");
  std::string nft = NftRawDropScript(Names());
  EXPECT_THAT(nft, HasSubstr("type filter hook prerouting priority raw;"));
  EXPECT_THAT(nft, HasSubstr("iifname \"cli\" udp dport 5009 drop"));
}

TEST(BenchRulesTest, OneRuleCommandsNameTheSameRule) {
  AllowRule rule{kFillerBase + 7, IPPROTO_UDP, 9999};
  EXPECT_THAT(IptablesInsertArgs(rule, 42, Names()),
              ElementsAre("-w", "-I", "SB-test", "42", "-s", "10.128.0.7/32", "-p", "udp", "--dport", "9999", "-j",
                          "ACCEPT"));
  EXPECT_THAT(IptablesDeleteArgs(rule, Names()),
              ElementsAre("-w", "-D", "SB-test", "-s", "10.128.0.7/32", "-p", "udp", "--dport", "9999", "-j",
                          "ACCEPT"));
  EXPECT_THAT(IpsetAddArgs(rule, Names()), ElementsAre("add", "sb-test", "10.128.0.7,udp:9999"));
  EXPECT_THAT(NftAddElementArgs(rule, Names()),
              ElementsAre("add", "element", "inet", "sb_test", "allowed", "{ 10.128.0.7 . udp . 9999 }"));
  EXPECT_THAT(NftDeleteElementArgs(rule, Names())[0], "delete");
}

TEST(BenchRulesTest, StockadePolicyIsValidAndHasOneIngressRulePerAllow) {
  std::vector<AllowRule> rules = MakeRuleSet(50);
  auto policies = ParsePolicyText(StockadePolicyYaml(rules, "bench-bulk"), "bulk.yaml");
  ASSERT_TRUE(policies.ok()) << policies.status();
  ASSERT_EQ(policies->size(), 1u);
  const auto& ingress = policies->at(0).section(RuleSection::kIngress);
  ASSERT_TRUE(ingress.has_value());
  ASSERT_EQ(ingress->size(), rules.size());
  const PolicyRule& last = ingress->back();
  ASSERT_EQ(last.cidrs.size(), 1u);
  ASSERT_EQ(last.ports.size(), 1u);
  EXPECT_EQ(last.ports[0].protocol, IPPROTO_TCP);
  EXPECT_EQ(last.ports[0].ports.first, kIperfPort);
  EXPECT_EQ(last.ports[0].ports.last, kIperfPort);
}

TEST(BenchStatsTest, MedianAndSpread) {
  Samples s;
  for (double v : {5.0, 1.0, 3.0, 4.0}) s.Add(v);
  EXPECT_DOUBLE_EQ(s.Median(), 3.5);
  EXPECT_DOUBLE_EQ(s.Min(), 1.0);
  EXPECT_DOUBLE_EQ(s.Max(), 5.0);
  s.Add(100);
  EXPECT_DOUBLE_EQ(s.Median(), 4.0) << "one outlier moves a median by one rank only";
  EXPECT_EQ(s.Format(1), "4.0 (1.0-100.0)");
}

TEST(BenchStatsTest, PercentileByNearestRank) {
  std::vector<double> values;
  for (int i = 100; i >= 1; --i) values.push_back(i);
  EXPECT_DOUBLE_EQ(Percentile(values, 50), 50);
  EXPECT_DOUBLE_EQ(Percentile(values, 99), 99);
  EXPECT_DOUBLE_EQ(Percentile(values, 100), 100);
  EXPECT_DOUBLE_EQ(Percentile(values, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
}

TEST(BenchStatsTest, AbbaOrderGivesEveryContenderTheSameMeanPosition) {
  EXPECT_THAT(InterleavedOrder(3, 0), ElementsAre(0, 1, 2));
  EXPECT_THAT(InterleavedOrder(3, 1), ElementsAre(2, 1, 0));
  EXPECT_THAT(InterleavedOrder(3, 2), ElementsAre(0, 1, 2));
  std::vector<double> position_sum(7, 0);
  for (int round = 0; round < 6; ++round) {
    std::vector<size_t> order = InterleavedOrder(7, round);
    for (size_t place = 0; place < order.size(); ++place) position_sum[order[place]] += place;
  }
  for (double sum : position_sum) EXPECT_DOUBLE_EQ(sum, 18) << "a linear drift weighs on every contender alike";
  EXPECT_DOUBLE_EQ(Ratio(50, 200), 0.25);
  EXPECT_DOUBLE_EQ(Ratio(50, 0), 0) << "no baseline, no ratio";
}

TEST(BenchTrafficTest, ProcStatGivesKernelAndStealTime) {
  auto times = ParseProcStat("cpu  10 20 30 40 50 60 70 80 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n", 100);
  ASSERT_TRUE(times.ok()) << times.status();
  EXPECT_EQ(times->kernel_ns, (30u + 70u) * 10'000'000u);
  EXPECT_EQ(times->steal_ns, 80u * 10'000'000u);
  EXPECT_FALSE(ParseProcStat("intr 1 2 3\n", 100).ok());
}

TEST(BenchTrafficTest, TrafgenSendLoopClock) {
  EXPECT_DOUBLE_EQ(*TrafgenSendSeconds("\r      100000 packets outgoing\n\r           1 sec, 156066 usec on CPU0 "
                                       "(100000 packets)\n"),
                   1.156066);
  EXPECT_FALSE(TrafgenSendSeconds("trafgen: something else\n").has_value());
}

Results SomeResults() {
  Results r;
  for (int round = 0; round < 2; ++round) {
    r.Add({.measure = "udp_delivered_kpps", .contender = "none", .rules = 0, .round = round, .value = 400.0 + round,
           .ratio = 1});
    r.Add({.measure = "udp_delivered_kpps", .contender = "stockade-tc", .rules = 0, .round = round,
           .value = 200.0 + round, .ratio = 0.5});
    r.Add({.measure = "udp_delivered_kpps", .contender = "stockade-tc", .rules = 100, .round = round, .value = 190,
           .ratio = 0.5});
  }
  r.Add({.measure = "update_one_us", .contender = "stockade-tc", .rules = 100, .value = 3.5});
  return r;
}

TEST(BenchOutputTest, CsvHasOneRowPerSampleWithUnitAndRatio) {
  std::vector<std::string> lines = Lines(SomeResults().Csv());
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_EQ(lines[0], "measure,contender,rules,round,value,unit,ratio_to_baseline");
  EXPECT_EQ(lines[2], "udp_delivered_kpps,stockade-tc,0,0,200,kpps,0.5000");
  EXPECT_EQ(lines[7], "update_one_us,stockade-tc,100,0,3.5,us,") << "no baseline: empty ratio";
}

TEST(BenchOutputTest, TableShowsMedianSpreadAndRatioPerN) {
  std::string table = SomeResults().Table({"none", "stockade-tc"});
  EXPECT_THAT(table, HasSubstr("udp_delivered_kpps (kpps)"));
  EXPECT_THAT(table, HasSubstr("N=0"));
  EXPECT_THAT(table, HasSubstr("N=100"));
  EXPECT_THAT(table, HasSubstr("400 [400-401] x1.00"));
  EXPECT_THAT(table, HasSubstr("200 [200-201] x0.50"));
  EXPECT_THAT(table, HasSubstr("update_one_us (us)"));
  EXPECT_THAT(table, HasSubstr("3.50 [3.50-3.50]"));
  // 'none' has no N=100 sample: a dash, not a zero.
  EXPECT_THAT(table, HasSubstr("  none             400 [400-401] x1.00        -"));
}

TEST(BenchOutputTest, PlotDataAndScript) {
  Results r = SomeResults();
  EXPECT_THAT(r.ContendersOf("update_one_us", {"none", "stockade-tc"}), ElementsAre("stockade-tc"));
  EXPECT_EQ(r.PlotData("udp_delivered_kpps", {"none", "stockade-tc"}),
            "# udp_delivered_kpps: rules(N+3) none stockade-tc\n3 400.5 200.5\n103 ? 190\n");
  std::string script = GnuplotScript({{"udp_delivered_kpps", {"none", "stockade-tc"}},
                                      {"update_one_us", {"stockade-tc"}}},
                                     {"none", "stockade-tc"}, "/d/", "/d/bench");
  EXPECT_THAT(script, HasSubstr("set terminal pngcairo"));
  EXPECT_THAT(script, HasSubstr("set output '/d/bench.png'"));
  EXPECT_THAT(script, HasSubstr("set terminal svg"));
  EXPECT_THAT(script, HasSubstr("set output '/d/bench.svg'"));
  EXPECT_THAT(script, HasSubstr("'/d/udp_delivered_kpps.dat' using 1:3 with linespoints linetype 2 title \"stockade-tc\""));
  // The same contender keeps its colour where others are missing.
  EXPECT_THAT(script, HasSubstr("'/d/update_one_us.dat' using 1:2 with linespoints linetype 2 title \"stockade-tc\""));
  EXPECT_THAT(script, HasSubstr("set logscale y"));
}

}  // namespace
}  // namespace stockade::bench
