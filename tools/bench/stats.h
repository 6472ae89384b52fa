// SPDX-License-Identifier: Apache-2.0
//
// Statistics of stockade-bench. Samples (median with min-max spread) and the
// ABBA order come from the microbenchmark's common code, so both tools
// summarise alike; what only this tool needs is here.
#ifndef STOCKADE_TOOLS_BENCH_STATS_H_
#define STOCKADE_TOOLS_BENCH_STATS_H_

#include <vector>

#include "tools/microbench/common.h"

namespace stockade::bench {

using microbench::InterleavedOrder;
using microbench::Samples;

// The p-th percentile (0..100) by nearest rank; 0 for no values.
double Percentile(std::vector<double> values, double p);

// value / baseline, or 0 when there is no baseline to compare with.
double Ratio(double value, double baseline);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_STATS_H_
