// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/results.h"

#include <algorithm>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "stockade/netns/netns.h"

namespace stockade::bench {

const std::vector<MeasureInfo>& Measures() {
  static const std::vector<MeasureInfo> kMeasures = {
      {"udp_delivered_kpps", "kpps", "allowed UDP flood: datagrams that reached the server, thousands/s", "none"},
      {"udp_sent_kpps", "kpps", "allowed UDP flood: datagrams the generator sent, thousands/s", "none"},
      {"udp_cpu_ns_per_pkt", "ns", "allowed UDP flood: kernel CPU (system+softirq) per delivered datagram", "none"},
      {"udp_prog_ns_per_pkt", "ns", "allowed UDP flood: the BPF program's own time per datagram (run-time stats)", ""},
      {"denied_udp_sent_kpps", "kpps", "denied UDP flood (sendmmsg): datagrams sent, thousands/s", "none"},
      {"denied_udp_cpu_ns_per_pkt", "ns", "denied UDP flood (sendmmsg): kernel CPU per sent datagram", "none"},
      {"tcp_rr_p50_us", "us", "TCP_RR: 1-byte round trip, median", "none"},
      {"tcp_rr_p99_us", "us", "TCP_RR: 1-byte round trip, 99th percentile", "none"},
      {"tcp_crr_per_s", "conn/s", "TCP_CRR: connect, 1 byte each way, close; per second", "none"},
      {"tcp_stream_gbps", "Gbit/s", "iperf3, one TCP stream, receiver's rate", "none"},
      {"update_bulk_ms", "ms", "bulk load of N+3 rules", ""},
      {"update_one_us", "us", "add one rule while N+3 exist (command or map write)", ""},
      {"flood_drop_kpps", "kpps", "trafgen flood of denied UDP: frames dropped, thousands/s", "iptables-raw"},
      {"flood_cpu_ns_per_pkt", "ns", "trafgen flood of denied UDP: kernel CPU per frame", "iptables-raw"},
      {"flood_prog_ns_per_pkt", "ns", "trafgen flood: the BPF program's own time per frame (run-time stats)", ""},
      {"flood_backlog_drop_pct", "%", "trafgen flood: frames lost in the receive backlog, not by the filter", ""},
      {"agent_start_to_enforce_ms", "ms", "stockaded: start to the policy of N+3 rules enforced", ""},
      {"agent_change_to_enforce_ms", "ms", "stockaded: policy file changed to the new rule enforced", ""},
  };
  return kMeasures;
}

std::map<Results::Key, Results::Summary> Results::Summarize() const {
  std::map<Key, Summary> out;
  for (const Sample& s : samples_) {
    Summary& summary = out[{s.measure, s.contender, s.rules}];
    summary.values.Add(s.value);
    if (s.ratio > 0) summary.ratios.Add(s.ratio);
  }
  return out;
}

std::string Results::Csv() const {
  std::string out = "measure,contender,rules,round,value,unit,ratio_to_baseline\n";
  for (const Sample& s : samples_) {
    std::string unit;
    for (const MeasureInfo& m : Measures()) {
      if (s.measure == m.name) unit = m.unit;
    }
    absl::StrAppend(&out, s.measure, ",", s.contender, ",", s.rules, ",", s.round, ",",
                    absl::StrFormat("%.6g", s.value), ",", unit, ",",
                    s.ratio > 0 ? absl::StrFormat("%.4f", s.ratio) : "", "\n");
  }
  return out;
}

namespace {

std::string Cell(const Results::Summary& summary) {
  const Samples& v = summary.values;
  int decimals = v.Median() >= 100 ? 0 : v.Median() >= 10 ? 1 : 2;
  std::string cell = absl::StrFormat("%.*f [%.*f-%.*f]", decimals, v.Median(), decimals, v.Min(), decimals, v.Max());
  if (!summary.ratios.empty()) absl::StrAppend(&cell, absl::StrFormat(" x%.2f", summary.ratios.Median()));
  return cell;
}

}  // namespace

std::string Results::Table(const std::vector<std::string>& order) const {
  auto summary = Summarize();
  std::string out;
  for (const MeasureInfo& m : Measures()) {
    std::set<size_t> ns;
    std::vector<std::string> contenders;
    for (const auto& [key, unused] : summary) {
      if (std::get<0>(key) != m.name) continue;
      ns.insert(std::get<2>(key));
      if (std::find(contenders.begin(), contenders.end(), std::get<1>(key)) == contenders.end())
        contenders.push_back(std::get<1>(key));
    }
    if (ns.empty()) continue;
    // Known contenders in the given order, others (flood drop paths) after them.
    std::stable_sort(contenders.begin(), contenders.end(), [&](const std::string& a, const std::string& b) {
      auto pos = [&](const std::string& c) { return std::find(order.begin(), order.end(), c) - order.begin(); };
      return pos(a) < pos(b);
    });
    absl::StrAppend(&out, "\n", m.name, " (", m.unit, "): ", m.description,
                    *m.baseline ? absl::StrCat("; xR = ratio to ", m.baseline, " of the same round") : "", "\n");
    absl::StrAppend(&out, absl::StrFormat("  %-16s", "contender"));
    for (size_t n : ns) absl::StrAppend(&out, absl::StrFormat(" %-26s", absl::StrCat("N=", n)));
    absl::StrAppend(&out, "\n");
    for (const std::string& c : contenders) {
      absl::StrAppend(&out, absl::StrFormat("  %-16s", c));
      for (size_t n : ns) {
        auto it = summary.find({m.name, c, n});
        absl::StrAppend(&out, absl::StrFormat(" %-26s", it == summary.end() ? "-" : Cell(it->second)));
      }
      absl::StrAppend(&out, "\n");
    }
  }
  return out;
}

std::string Results::PlotData(const std::string& measure, const std::vector<std::string>& order) const {
  auto summary = Summarize();
  std::set<size_t> ns;
  for (const auto& [key, unused] : summary) {
    if (std::get<0>(key) == measure) ns.insert(std::get<2>(key));
  }
  std::string out = absl::StrCat("# ", measure, ": rules(N+3) ", absl::StrJoin(order, " "), "\n");
  for (size_t n : ns) {
    absl::StrAppend(&out, n + 3);
    for (const std::string& c : order) {
      auto it = summary.find({measure, c, n});
      absl::StrAppend(&out, " ", it == summary.end() ? "?" : absl::StrFormat("%.6g", it->second.values.Median()));
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

std::vector<std::string> Results::ContendersOf(const std::string& measure,
                                               const std::vector<std::string>& order) const {
  std::vector<std::string> out;
  for (const std::string& c : order) {
    for (const Sample& s : samples_) {
      if (s.measure == measure && s.contender == c) {
        out.push_back(c);
        break;
      }
    }
  }
  return out;
}

std::string GnuplotScript(const std::vector<Plot>& plots, const std::vector<std::string>& palette,
                          const std::string& data_prefix, const std::string& out_prefix) {
  std::string body;
  for (const auto& [plot, contenders] : plots) {
    std::string unit, description;
    for (const MeasureInfo& m : Measures()) {
      if (plot == m.name) {
        unit = m.unit;
        description = m.description;
      }
    }
    // Where linear rules make one contender 1000x the others, only a log scale shows the rest.
    bool log_y = plot.rfind("update_", 0) == 0 || plot.find("_ns_") != std::string::npos ||
                 plot.find("p99") != std::string::npos;
    absl::StrAppend(&body, "set title \"", plot, "\" noenhanced\nset ylabel \"", unit, "\"\n",
                    log_y ? "set logscale y\nset yrange [*:*]\n" : "unset logscale y\nset yrange [0:*]\n", "plot ");
    for (size_t i = 0; i < contenders.size(); ++i) {
      size_t colour = std::find(palette.begin(), palette.end(), contenders[i]) - palette.begin() + 1;
      absl::StrAppend(&body, i ? ", " : "", "'", data_prefix, plot, ".dat' using 1:", i + 2,
                      " with linespoints linetype ", colour, " title \"", contenders[i], "\" noenhanced");
    }
    absl::StrAppend(&body, "\n");
  }
  size_t rows = (plots.size() + 2) / 3;
  std::string setup = absl::StrCat(
      "set datafile missing '?'\nset logscale x\nset format x \"%.0s%c\"\nset xlabel \"rules (N + 3)\"\nset key outside right font ',9'\n"
      "set grid\n");
  std::string out;
  for (auto [terminal, ext] : {std::pair{"pngcairo size 1800,", ".png"}, {"svg size 1800,", ".svg"}}) {
    absl::StrAppend(&out, "set terminal ", terminal, rows * 450, "\nset output '", out_prefix, ext, "'\n", setup,
                    "set multiplot layout ", rows, ",3\n", body, "unset multiplot\nset output\n");
  }
  return out;
}

absl::Status WriteOutputs(const Results& results, const std::vector<std::string>& contenders, const std::string& dir) {
  auto write = [](const std::string& path, const std::string& text) -> absl::Status {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    out.close();
    return out ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
  };
  if (absl::Status s = write(dir + "/results.csv", results.Csv()); !s.ok()) return s;
  if (absl::Status s = write(dir + "/table.txt", results.Table(contenders)); !s.ok()) return s;
  std::vector<Plot> plots;
  for (const char* measure : {"udp_delivered_kpps", "udp_cpu_ns_per_pkt", "udp_prog_ns_per_pkt", "denied_udp_cpu_ns_per_pkt",
                              "tcp_rr_p99_us", "tcp_crr_per_s", "tcp_stream_gbps", "update_one_us", "update_bulk_ms"}) {
    std::vector<std::string> with_data = results.ContendersOf(measure, contenders);
    if (with_data.empty()) continue;
    std::string data = results.PlotData(measure, with_data);
    if (absl::Status s = write(absl::StrCat(dir, "/", measure, ".dat"), data); !s.ok()) return s;
    plots.push_back({measure, with_data});
  }
  if (plots.empty()) return absl::OkStatus();
  if (absl::Status s = write(dir + "/plot.gp", GnuplotScript(plots, contenders, dir + "/", dir + "/bench")); !s.ok()) return s;
  auto out = RunCommand({"gnuplot", dir + "/plot.gp"}, std::nullopt, std::chrono::milliseconds(60'000));
  return out.ok() ? absl::OkStatus() : out.status();
}

}  // namespace stockade::bench
