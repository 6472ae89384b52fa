// SPDX-License-Identifier: Apache-2.0
//
// stockade-microbench: what the datapath costs a packet.
//
//   stockade-microbench [--quick]          BPF_PROG_TEST_RUN: established flow, new flow and
//                                          reference floors at 10 to 100k policy entries
//   stockade-microbench --veth [--quick]   real UDP floods over a veth pair: no program, TC, XDP
//   stockade-microbench --events [--quick] the drop-event pipeline to stockade-tail, and a flood
//
// Needs root. Prints the command line and the machine first, so a pasted
// result says where it came from. Targets are reported as PASS/FAIL lines,
// never as an exit status: a benchmark measures, it does not gate.
#include <cstdio>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "stockade/version/version.h"
#include "tools/microbench/common.h"
#include "tools/microbench/event_bench.h"
#include "tools/microbench/prog_bench.h"
#include "tools/microbench/veth_bench.h"

int main(int argc, char** argv) {
  bool quick = false, veth = false, events = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--veth") {
      veth = true;
    } else if (arg == "--events") {
      events = true;
    } else if (arg == "--version") {
      return stockade::PrintVersion("stockade-microbench");
    } else {
      std::fprintf(stderr, "usage: %s [--veth|--events] [--quick] | --version\n", argv[0]);
      return 2;
    }
  }
  std::printf("command: %s\n%s", absl::StrJoin(argv, argv + argc, " ").c_str(),
              stockade::microbench::MachineInfo().c_str());
  std::fflush(stdout);
  absl::Status status = veth     ? stockade::microbench::RunVethBench(quick)
                        : events ? stockade::microbench::RunEventBench(quick)
                                 : stockade::microbench::RunProgBench(quick);
  if (!status.ok()) {
    std::fprintf(stderr, "stockade-microbench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
