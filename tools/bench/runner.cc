// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/runner.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "testlib/lab/topology.h"
#include "tools/bench/agent_update.h"
#include "tools/bench/program_runs.h"
#include "tools/bench/testbed.h"
#include "tools/bench/traffic.h"

namespace stockade::bench {
namespace {

using std::chrono::milliseconds;

// A contender with its own testbed and echo server.
struct Lane {
  ContenderKind kind;
  Testbed bed;
  std::unique_ptr<Contender> contender;
  std::unique_ptr<EchoServer> echo;
};

std::string ShortLabel(ContenderKind kind) {
  switch (kind) {
    case ContenderKind::kNone: return "none";
    case ContenderKind::kIptablesNft: return "iptn";
    case ContenderKind::kIptablesLegacy: return "iptl";
    case ContenderKind::kIpset: return "ipset";
    case ContenderKind::kNftSet: return "nft";
    case ContenderKind::kStockadeTc: return "stc";
    case ContenderKind::kStockadeXdp: return "sxdp";
    case ContenderKind::kTcDrop: return "tcdrop";
    case ContenderKind::kTcMinFilter: return "tcmin";
  }
  return "x";
}

absl::Status Interrupted() {
  return g_interrupted ? absl::CancelledError("interrupted") : absl::OkStatus();
}

// The traffic measures of one contender in one round, as samples without ratios yet.
absl::Status MeasureTraffic(const BenchOptions& o, Lane& lane, size_t n, int round, std::vector<Sample>& out) {
  const std::string& client = lane.bed.client.path;
  const std::string& server = lane.bed.server.path;
  auto add = [&](const char* measure, double value) {
    out.push_back({.measure = measure, .contender = lane.contender->name(), .rules = n, .round = round, .value = value});
  };
  auto allowed = UdpFlood(client, lane.bed.host.path, server, kUdpPort, o.udp_flows, o.udp_duration, o.udp_max_packets);
  if (!allowed.ok()) return allowed.status();
  if (allowed->reached == 0)
    return absl::InternalError(absl::StrCat(lane.contender->name(), " with N=", n, ": none of ", allowed->sent,
                                            " allowed datagrams reached the server"));
  add("udp_sent_kpps", allowed->sent / allowed->seconds / 1e3);
  add("udp_delivered_kpps", allowed->reached / allowed->seconds / 1e3);
  add("udp_cpu_ns_per_pkt", static_cast<double>(allowed->kernel_ns) / allowed->reached);
  if (absl::Status s = Interrupted(); !s.ok()) return s;
  // The filter program's own time per datagram, in a flood of its own: the
  // statistics cost every run, and the figures above were taken without them.
  if (std::optional<int> prog = lane.contender->ProgramFd()) {
    auto ns = NsPerRun(*prog, [&] {
      return UdpFlood(client, lane.bed.host.path, server, kUdpPort, o.udp_flows, o.program_runs_duration,
                      o.udp_max_packets)
          .status();
    });
    if (!ns.ok()) return ns.status();
    add("udp_prog_ns_per_pkt", *ns);
  }

  auto denied = UdpFlood(client, lane.bed.host.path, server, kDeniedUdpPort, o.udp_flows, o.denied_udp_duration, o.udp_max_packets);
  if (!denied.ok()) return denied.status();
  if (lane.kind != ContenderKind::kNone && denied->reached > denied->sent / 100)
    return absl::InternalError(absl::StrCat(lane.contender->name(), " with N=", n, " let ", denied->reached, " of ",
                                            denied->sent, " denied datagrams through"));
  add("denied_udp_sent_kpps", denied->sent / denied->seconds / 1e3);
  add("denied_udp_cpu_ns_per_pkt", static_cast<double>(denied->kernel_ns) / std::max<uint64_t>(denied->sent, 1));
  if (absl::Status s = Interrupted(); !s.ok()) return s;

  auto rr = TcpRr(client, kTcpRrPort, o.rr_iterations, o.rr_limit);
  if (!rr.ok()) return rr.status();
  add("tcp_rr_p50_us", Percentile(*rr, 50));
  add("tcp_rr_p99_us", Percentile(*rr, 99));
  auto crr = TcpCrr(client, kTcpRrPort, o.crr_duration);
  if (!crr.ok()) return crr.status();
  add("tcp_crr_per_s", *crr);
  if (absl::Status s = Interrupted(); !s.ok()) return s;

  auto stream = Iperf3(client, server, o.iperf_seconds, o.iperf_bytes);
  if (!stream.ok()) return stream.status();
  add("tcp_stream_gbps", *stream);
  return absl::OkStatus();
}

// Fills each sample's ratio with the same measure of `baseline` in the same round and N.
void SetRatios(std::vector<Sample>& samples, const std::string& baseline) {
  std::map<std::tuple<std::string, size_t, int>, double> base;
  for (const Sample& s : samples) {
    if (s.contender == baseline) base[{s.measure, s.rules, s.round}] = s.value;
  }
  for (Sample& s : samples) {
    auto it = base.find({s.measure, s.rules, s.round});
    if (it != base.end()) s.ratio = Ratio(s.value, it->second);
  }
}

std::string MachineFacts(const CpuTimes& start, const CpuTimes& end, double wall_seconds) {
  std::ifstream loadavg("/proc/loadavg");
  std::string load;
  std::getline(loadavg, load);
  double cores = sysconf(_SC_NPROCESSORS_ONLN);
  double steal = (end.steal_ns - start.steal_ns) / 1e9 / (wall_seconds * cores) * 100;
  return absl::StrCat(microbench::MachineInfo(), "load average at the end: ", load, "\n",
                      absl::StrFormat("steal time during the run: %.2f%% of all CPU time (%.1f s wall)\n", steal,
                                      wall_seconds));
}

}  // namespace

BenchOptions DefaultOptions(BenchMode mode) {
  BenchOptions o;
  o.mode = mode;
  o.contenders.assign(std::begin(kAllContenders), std::end(kAllContenders));
  switch (mode) {
    case BenchMode::kSmoke:
      o.rule_counts = {0, 100};
      o.rounds = 1;
      o.udp_duration = o.denied_udp_duration = milliseconds(60);
      o.rr_iterations = 50;
      o.rr_limit = milliseconds(100);
      o.crr_duration = milliseconds(50);
      o.iperf_bytes = 4'000'000;
      o.add_one_reps = 1;
      o.flood_packets = 20'000;
      o.program_runs_duration = milliseconds(30);
      o.program_runs_flood_packets = 10'000;
      o.agent_filler_rules = 100;
      o.agent_changes = 1;
      break;
    case BenchMode::kQuick:
      o.rule_counts = {0, 1000};
      o.rounds = 2;
      o.udp_duration = o.denied_udp_duration = milliseconds(150);
      o.rr_iterations = 300;
      o.rr_limit = milliseconds(150);
      o.crr_duration = milliseconds(100);
      o.iperf_bytes = 50'000'000;
      o.add_one_reps = 2;
      o.flood_packets = 200'000;
      o.program_runs_duration = milliseconds(100);
      o.program_runs_flood_packets = 100'000;
      o.agent_filler_rules = 1000;
      o.agent_changes = 2;
      break;
    case BenchMode::kFull:
      o.rule_counts = {0, 100, 1000, 10000, 100000};
      o.rounds = 6;
      o.udp_duration = milliseconds(600);
      o.denied_udp_duration = milliseconds(300);
      o.rr_iterations = 3000;
      o.rr_limit = milliseconds(500);
      o.crr_duration = milliseconds(500);
      o.iperf_seconds = 1;
      // An iptables-nft insert at 100k rules takes seconds; the rounds give the spread.
      o.add_one_reps = 1;
      o.flood_packets = 2'000'000;
      o.program_runs_duration = milliseconds(300);
      o.program_runs_flood_packets = 500'000;
      // The agent is measured once a run, not per N: 1000 rules keep the full
      // run short; --agent-rules 10000 or 100000 measures it at scale.
      o.agent_filler_rules = 1000;
      o.agent_changes = 5;
      break;
  }
  return o;
}

absl::Status RunBench(const BenchOptions& o, Results& results, BenchRun& run) {
  namespace fs = std::filesystem;
  auto cpu_start = ReadCpuTimes();
  if (!cpu_start.ok()) return cpu_start.status();
  auto wall_start = std::chrono::steady_clock::now();
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", o.out_dir, ": ", ec.message()));

  // Declared first, so it goes last: contenders detach before their namespaces go.
  lab::Topology topology;
  run.testbed_prefix = topology.prefix();
  static int counter = 0;
  run.agent_instance = absl::StrCat("bench", getpid(), "x", counter++);
  std::string scratch = absl::StrCat(o.out_dir, "/scratch-", topology.prefix());
  fs::create_directories(scratch, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", scratch, ": ", ec.message()));
  absl::Cleanup remove_scratch = [&] { fs::remove_all(scratch, ec); };
  NetfilterNames names{.chain = absl::StrCat("SB-", topology.prefix()),
                       .ipset = absl::StrCat("sb-", topology.prefix()),
                       .nft_table = absl::StrCat("sb_", topology.prefix()),
                       .out_ifname = "srv",
                       .in_ifname = "cli"};
  std::fprintf(stderr, "stockade-bench: testbed %s, %zu contenders, N in {", topology.prefix().c_str(),
               o.contenders.size());
  for (size_t n : o.rule_counts) std::fprintf(stderr, " %zu", n);
  std::fprintf(stderr, " }, %d rounds\n", o.rounds);

  std::vector<Lane> lanes;
  for (ContenderKind kind : o.contenders) {
    auto bed = BuildTestbed(topology, ShortLabel(kind));
    if (!bed.ok()) return bed.status();
    lanes.push_back({kind, *bed, nullptr, nullptr});
  }
  // Contenders hold references to their testbed: made once `lanes` stops moving.
  for (Lane& lane : lanes) {
    auto contender = MakeContender(lane.kind, lane.bed, names, scratch);
    if (!contender.ok()) return contender.status();
    lane.contender = std::move(*contender);
    auto echo = EchoServer::Start(lane.bed.server.path, {kTcpRrPort});
    if (!echo.ok()) return echo.status();
    lane.echo = std::move(*echo);
  }
  if (absl::Status s = Interrupted(); !s.ok()) return s;

  std::vector<Sample> matrix;
  for (size_t n : o.rule_counts) {
    std::vector<AllowRule> rules = MakeRuleSet(n);
    // A rule none of the others is: a source past the fillers, a port of no flow.
    AllowRule extra{kFillerBase + static_cast<uint32_t>(n) + 100, IPPROTO_UDP, 9999};
    for (int round = 0; round < o.rounds; ++round) {
      for (size_t index : InterleavedOrder(lanes.size(), round)) {
        Lane& lane = lanes[index];
        if (IsFloodOnly(lane.kind)) continue;
        auto bulk = lane.contender->Install(rules);
        if (!bulk.ok()) return bulk.status();
        if (o.fail_after_install) return absl::AbortedError("failing after install, as the test asked");
        if (HasRuleSet(lane.kind))
          matrix.push_back({.measure = "update_bulk_ms", .contender = lane.contender->name(), .rules = n,
                            .round = round, .value = *bulk * 1e3});
        if (absl::Status s = MeasureTraffic(o, lane, n, round, matrix); !s.ok()) return s;
        if (HasRuleSet(lane.kind)) {
          Samples adds;
          for (int rep = 0; rep < lane.contender->AddOneRepetitions(o.add_one_reps); ++rep) {
            auto one = lane.contender->AddOne(extra);
            if (!one.ok()) return one.status();
            adds.Add(*one * 1e6);
          }
          matrix.push_back({.measure = "update_one_us", .contender = lane.contender->name(), .rules = n,
                            .round = round, .value = adds.Median()});
        }
        if (absl::Status s = lane.contender->Remove(); !s.ok()) return s;
        std::fprintf(stderr, "  N=%zu round %d %-16s done\n", n, round, lane.contender->name());
        if (absl::Status s = Interrupted(); !s.ok()) return s;
      }
    }
  }
  SetRatios(matrix, "none");
  for (Sample& s : matrix) results.Add(std::move(s));

  if (o.floods) {
    std::vector<Lane*> flood_lanes;
    for (Lane& lane : lanes) {
      if (*FloodDropName(lane.kind)) flood_lanes.push_back(&lane);
    }
    std::vector<Sample> floods;
    for (int round = 0; round < o.rounds; ++round) {
      for (size_t index : InterleavedOrder(flood_lanes.size(), round)) {
        Lane& lane = *flood_lanes[index];
        std::string config = absl::StrCat(scratch, "/", ShortLabel(lane.kind), ".trafgen");
        {
          std::ofstream out(config, std::ios::trunc);
          out << TrafgenConfig(lane.bed.client_mac.data(), lane.bed.host_cli_mac.data(), o.udp_flows);
        }
        if (absl::Status s = lane.contender->InstallFloodDrop(); !s.ok()) return s;
        auto snmp = OpenUdpSnmp(lane.bed.server.path);
        if (!snmp.ok()) return snmp.status();
        auto before = UdpDatagramsReached(snmp->get());
        auto counted_before = lane.contender->FloodDropsCounted();
        auto flood = TrafgenFlood(lane.bed.client.path, "eth0", config, o.flood_packets);
        if (!flood.ok()) return flood.status();
        auto after = UdpDatagramsReached(snmp->get());
        auto counted_after = lane.contender->FloodDropsCounted();
        for (const absl::Status& s : {before.status(), after.status(), counted_before.status(), counted_after.status()})
          if (!s.ok()) return s;
        uint64_t reached = *after - *before;
        const char* name = FloodDropName(lane.kind);
        if (lane.kind == ContenderKind::kNone ? reached < flood->sent / 2 : reached > flood->sent / 100)
          return absl::InternalError(absl::StrCat("flood through ", name, ": ", reached, " of ", flood->sent,
                                                  " frames reached the server's UDP layer"));
        if (counted_after->has_value() && **counted_after - **counted_before < flood->sent * 99 / 100)
          return absl::InternalError(absl::StrCat(name, " counted ", **counted_after - **counted_before,
                                                  " drops of ", flood->sent, " frames"));
        if (std::optional<int> prog = lane.contender->ProgramFd()) {
          auto ns = NsPerRun(*prog, [&] {
            return TrafgenFlood(lane.bed.client.path, "eth0", config, o.program_runs_flood_packets).status();
          });
          if (!ns.ok()) return ns.status();
          floods.push_back({.measure = "flood_prog_ns_per_pkt", .contender = name, .rules = 0, .round = round,
                            .value = *ns});
        }
        floods.push_back({.measure = "flood_drop_kpps", .contender = name, .rules = 0, .round = round,
                          .value = flood->sent / flood->seconds / 1e3});
        floods.push_back({.measure = "flood_backlog_drop_pct", .contender = name, .rules = 0, .round = round,
                          .value = 100.0 * flood->backlog_drops / flood->sent});
        floods.push_back({.measure = "flood_cpu_ns_per_pkt", .contender = name, .rules = 0, .round = round,
                          .value = static_cast<double>(flood->kernel_ns) / flood->sent});
        if (absl::Status s = lane.contender->RemoveFloodDrop(); !s.ok()) return s;
        std::fprintf(stderr, "  flood round %d %-16s done\n", round, name);
        if (absl::Status s = Interrupted(); !s.ok()) return s;
      }
    }
    SetRatios(floods, "iptables-raw");
    for (Sample& s : floods) results.Add(std::move(s));
  }

  if (o.agent) {
    Lane* quiet = nullptr;
    for (Lane& lane : lanes) {
      if (lane.kind == ContenderKind::kNone) quiet = &lane;
    }
    if (quiet == nullptr) return absl::InvalidArgumentError("the agent phase runs in the no-filter testbed: add 'none'");
    AgentBenchOptions agent{.stockaded_path = o.stockaded_path, .instance = run.agent_instance,
                            .scratch_dir = scratch, .filler_rules = o.agent_filler_rules,
                            .changes = o.agent_changes, .log_copy = o.out_dir + "/stockaded.log"};
    // The agent's figures are one part of the report: when it fails the
    // error goes into the report, and the rest still gets written.
    if (absl::Status s = MeasureAgentUpdates(agent, quiet->bed, results); !s.ok()) {
      if (s.code() == absl::StatusCode::kCancelled) return s;
      run.agent_error = std::string(s.message());
      std::fprintf(stderr, "  agent phase failed: %s\n", run.agent_error.c_str());
    } else {
      std::fprintf(stderr, "  agent done\n");
    }
  }

  auto cpu_end = ReadCpuTimes();
  if (!cpu_end.ok()) return cpu_end.status();
  if (!run.agent_error.empty()) {
    std::ofstream out(o.out_dir + "/agent-error.txt", std::ios::trunc);
    out << run.agent_error << "\n";
  }
  run.machine = MachineFacts(*cpu_start, *cpu_end,
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count());
  {
    std::ofstream out(o.out_dir + "/machine.txt", std::ios::trunc);
    out << run.machine;
  }
  std::vector<std::string> order;
  for (ContenderKind kind : o.contenders) order.push_back(ContenderName(kind));
  for (const char* flood : {"iptables-raw", "nft-raw"}) order.push_back(flood);
  order.push_back("stockaded");
  return WriteOutputs(results, order, o.out_dir);
}

}  // namespace stockade::bench
