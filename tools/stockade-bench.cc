// SPDX-License-Identifier: Apache-2.0
//
// stockade-bench: stockade against iptables (nft and legacy), ipset and
// nftables sets, side by side in one run, in network namespaces of its own.
// See docs/bench-vs-netfilter.md for what it measures and the latest results.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "stockade/version/version.h"
#include "tools/bench/runner.h"
#include "tools/bench/traffic.h"

namespace {

constexpr char kUsage[] = R"(usage: stockade-bench [--quick | --full | --smoke] [options]

  --quick            N in {0, 1000}, 2 rounds, short measures: under a minute (default)
  --full             N in {0, 100, 1k, 10k, 100k}, 6 rounds (ABBA): the report's numbers
  --smoke            N in {0, 100}, 1 round, tiny measures: the test suite's check
  --out DIR          CSV, table, plots and machine facts go here (default: ./stockade-bench-out)
  --rules N,N,...    override the rule counts N
  --rounds R         override the number of rounds
  --contenders A,B   only these (none, iptables-nft, iptables-legacy, ipset, nft-set, stockade-tc,
                     stockade-xdp, tc-drop, tc-min-filter); 'none' is always kept, as the
                     baseline; tc-drop (a TC program that drops everything, floods only) and
                     tc-min-filter (one that first finds the interface and the flow, then
                     drops the floods and passes the allowed traffic) are references
  --stockaded PATH   the agent binary (default: next to this one)
  --agent-rules N    N for the stockaded policy-file update measure
  --no-agent         skip the stockaded policy-file update measure
  --no-floods        skip the trafgen floods of denied traffic
  --floods-only      only the trafgen floods of denied traffic (no rule matrix, no agent)
  --version          print the version and the git revision, exit

Everything runs in namespaces the tool creates (client -- host -- server per
contender) and is removed at exit, on error and on Ctrl-C.
)";

void Interrupt(int) { stockade::bench::g_interrupted = true; }

}  // namespace

int main(int argc, char** argv) {
  using stockade::bench::BenchMode;
  BenchMode mode = BenchMode::kQuick;
  std::string out_dir = "stockade-bench-out", stockaded, rules, rounds, contenders, agent_rules;
  bool no_agent = false, no_floods = false, floods_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "stockade-bench: %s needs a value\n%s", arg.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--quick") {
      mode = BenchMode::kQuick;
    } else if (arg == "--full") {
      mode = BenchMode::kFull;
    } else if (arg == "--smoke") {
      mode = BenchMode::kSmoke;
    } else if (arg == "--out") {
      out_dir = value();
    } else if (arg == "--rules") {
      rules = value();
    } else if (arg == "--rounds") {
      rounds = value();
    } else if (arg == "--contenders") {
      contenders = value();
    } else if (arg == "--stockaded") {
      stockaded = value();
    } else if (arg == "--agent-rules") {
      agent_rules = value();
    } else if (arg == "--no-agent") {
      no_agent = true;
    } else if (arg == "--no-floods") {
      no_floods = true;
    } else if (arg == "--floods-only") {
      floods_only = true;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--version") {
      return stockade::PrintVersion("stockade-bench");
    } else {
      std::fprintf(stderr, "stockade-bench: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  stockade::bench::BenchOptions options = stockade::bench::DefaultOptions(mode);
  options.out_dir = out_dir;
  options.agent = !no_agent;
  options.floods = !no_floods;
  if (floods_only && (no_floods || !rules.empty())) {
    std::fprintf(stderr, "stockade-bench: --floods-only goes with neither --no-floods nor --rules\n%s", kUsage);
    return 2;
  }
  if (floods_only) {
    options.rule_counts.clear();
    options.agent = false;
  }
  if (!rules.empty()) {
    options.rule_counts.clear();
    for (absl::string_view n : absl::StrSplit(rules, ',')) {
      size_t count = 0;
      if (!absl::SimpleAtoi(n, &count) || count > stockade::bench::kMaxFillerRules) {
        std::fprintf(stderr, "stockade-bench: --rules: '%s' is not a rule count (0..%zu)\n", std::string(n).c_str(),
                     stockade::bench::kMaxFillerRules);
        return 2;
      }
      options.rule_counts.push_back(count);
    }
  }
  if (!contenders.empty()) {
    options.contenders = {stockade::bench::ContenderKind::kNone};
    for (absl::string_view name : absl::StrSplit(contenders, ',')) {
      bool known = false;
      for (auto kind : stockade::bench::kAllContenders) {
        if (name != stockade::bench::ContenderName(kind)) continue;
        known = true;
        if (kind != stockade::bench::ContenderKind::kNone) options.contenders.push_back(kind);
      }
      if (!known) {
        std::fprintf(stderr, "stockade-bench: --contenders: unknown contender '%s'\n%s", std::string(name).c_str(),
                     kUsage);
        return 2;
      }
    }
  }
  if (!agent_rules.empty() && (!absl::SimpleAtoi(agent_rules, &options.agent_filler_rules) ||
                               options.agent_filler_rules > stockade::bench::kMaxFillerRules)) {
    std::fprintf(stderr, "stockade-bench: --agent-rules: '%s' is not a rule count\n", agent_rules.c_str());
    return 2;
  }
  if (!rounds.empty() && (!absl::SimpleAtoi(rounds, &options.rounds) || options.rounds < 1 || options.rounds > 100)) {
    std::fprintf(stderr, "stockade-bench: --rounds: '%s' is not 1..100\n", rounds.c_str());
    return 2;
  }
  options.stockaded_path =
      stockaded.empty()
          ? (std::filesystem::canonical("/proc/self/exe").parent_path() / "stockaded").string()
          : stockaded;

  struct sigaction action {};
  action.sa_handler = Interrupt;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::string command;
  for (int i = 0; i < argc; ++i) command += std::string(i ? " " : "") + argv[i];
  stockade::bench::Results results;
  stockade::bench::BenchRun run;
  absl::Status status = stockade::bench::RunBench(options, results, run);
  if (!status.ok()) {
    std::fprintf(stderr, "stockade-bench: %s (testbed %s removed)\n", std::string(status.message()).c_str(),
                 run.testbed_prefix.c_str());
    return status.code() == absl::StatusCode::kCancelled ? 130 : 1;
  }
  std::vector<std::string> order;
  for (auto kind : options.contenders) order.push_back(stockade::bench::ContenderName(kind));
  for (const char* other : {"iptables-raw", "nft-raw", "stockaded"}) order.push_back(other);
  if (!run.agent_error.empty()) std::printf("agent phase FAILED: %s\n", run.agent_error.c_str());
  std::printf("command: %s\n%s%s\nwritten: %s/results.csv, table.txt, bench.png, bench.svg, machine.txt\n",
              command.c_str(), run.machine.c_str(), results.Table(order).c_str(), out_dir.c_str());
  return 0;
}
