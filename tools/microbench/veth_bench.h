// SPDX-License-Identifier: Apache-2.0
//
// TC against XDP on a veth, with real traffic: a sender namespace floods UDP
// over a veth pair to a receiver namespace whose veth end carries stockade
// (as the endpoint's own interface, HOOK_ROLE_IN_CONTAINER): no program, the
// TC ingress program, or the XDP program. An allowed flow measures what gets
// through, a denied flow how fast it is dropped; /proc/stat gives the CPU
// time a packet costs.
#ifndef STOCKADE_TOOLS_MICROBENCH_VETH_BENCH_H_
#define STOCKADE_TOOLS_MICROBENCH_VETH_BENCH_H_

#include "absl/status/status.h"

namespace stockade::microbench {

// Prints the table and which hook is faster. quick: fewer, shorter rounds.
[[nodiscard]] absl::Status RunVethBench(bool quick);

}  // namespace stockade::microbench

#endif  // STOCKADE_TOOLS_MICROBENCH_VETH_BENCH_H_
