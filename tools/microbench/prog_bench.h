// SPDX-License-Identifier: Apache-2.0
//
// The datapath's per-packet cost through BPF_PROG_TEST_RUN: an established
// flow (stockade_tc_ingress), a new flow (bench_new_flow: policy decision and
// conntrack insert every run) and two reference floors (ref_pass,
// ref_min_filter), at several policy and ipcache sizes.
#ifndef STOCKADE_TOOLS_MICROBENCH_PROG_BENCH_H_
#define STOCKADE_TOOLS_MICROBENCH_PROG_BENCH_H_

#include "absl/status/status.h"

namespace stockade::microbench {

// Prints the table and the PASS/FAIL line of each target to stdout.
// quick: fewer repeats and rounds, for a smoke run.
[[nodiscard]] absl::Status RunProgBench(bool quick);

}  // namespace stockade::microbench

#endif  // STOCKADE_TOOLS_MICROBENCH_PROG_BENCH_H_
