// SPDX-License-Identifier: Apache-2.0
//
// What stockade-bench measured and how it is shown: every sample as a CSV row
// (with its ratio to the baseline of the same round), a summary table for the
// terminal (median, min-max spread, median ratio), and the gnuplot script
// that draws the figures. Pure: no syscalls beyond writing the files asked for.
#ifndef STOCKADE_TOOLS_BENCH_RESULTS_H_
#define STOCKADE_TOOLS_BENCH_RESULTS_H_

#include <cstddef>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "tools/bench/stats.h"

namespace stockade::bench {

struct Sample {
  std::string measure;    // e.g. "udp_delivered_kpps"
  std::string contender;  // e.g. "iptables-nft"
  size_t rules = 0;       // N, the filler rules (the real flows add 3)
  int round = 0;
  double value = 0;
  double ratio = 0;  // to the baseline of the same round; 0: none
};

struct MeasureInfo {
  const char* name;
  const char* unit;
  const char* description;
  const char* baseline;  // what `ratio` compares with; "" for none
};
// Every measure, in the order the table shows them.
const std::vector<MeasureInfo>& Measures();

class Results {
 public:
  void Add(Sample sample) { samples_.push_back(std::move(sample)); }
  const std::vector<Sample>& samples() const { return samples_; }

  struct Summary {
    Samples values;
    Samples ratios;
  };
  using Key = std::tuple<std::string, std::string, size_t>;  // measure, contender, rules
  // Samples grouped by measure, contender and N.
  std::map<Key, Summary> Summarize() const;

  std::string Csv() const;
  // The terminal table; contenders in `order`.
  std::string Table(const std::vector<std::string>& order) const;
  // The contenders of `order` that have samples of `measure`.
  std::vector<std::string> ContendersOf(const std::string& measure, const std::vector<std::string>& order) const;
  // Data file for gnuplot: one line per N, "N+3" then each of `contenders`' median ('?' if missing).
  std::string PlotData(const std::string& measure, const std::vector<std::string>& contenders) const;

 private:
  std::vector<Sample> samples_;
};

struct Plot {
  std::string measure;  // data in "<data_prefix><measure>.dat", as PlotData writes it
  std::vector<std::string> contenders;  // its columns 2, 3, ...
};
// The gnuplot script drawing `plots` into <out_prefix>.png and .svg; a
// contender keeps its colour (its place in `palette`) in every plot.
std::string GnuplotScript(const std::vector<Plot>& plots, const std::vector<std::string>& palette,
                          const std::string& data_prefix, const std::string& out_prefix);

// Writes CSV, data files and script into `dir`, and runs gnuplot.
[[nodiscard]] absl::Status WriteOutputs(const Results& results, const std::vector<std::string>& contenders,
                                        const std::string& dir);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_RESULTS_H_
