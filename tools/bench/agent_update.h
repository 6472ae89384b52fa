// SPDX-License-Identifier: Apache-2.0
//
// Rule updates through the real agent: runs `stockaded --no-docker` as an
// instance of its own on the testbed's server (a static endpoint, hooked on
// its own interface), with a policy of N+3 rules, and measures by probing
// from the client: how long from start until that policy is enforced, and
// how long from a policy file change (one more allowed port) until a
// connection to that port gets through. Ends the agent by pid and uninstalls
// its instance (links, pins, socket) whatever happens.
#ifndef STOCKADE_TOOLS_BENCH_AGENT_UPDATE_H_
#define STOCKADE_TOOLS_BENCH_AGENT_UPDATE_H_

#include <string>

#include "absl/status/status.h"
#include "tools/bench/results.h"
#include "tools/bench/testbed.h"

namespace stockade::bench {

struct AgentBenchOptions {
  std::string stockaded_path;
  std::string instance;    // unique to the run
  std::string scratch_dir; // policies, endpoints file, state, log
  size_t filler_rules = 0;
  int changes = 3;         // policy changes measured
  std::string log_copy;    // the agent's output is copied here at the end
};

// An echo server must answer on kTcpRrPort of `bed`'s server already.
[[nodiscard]] absl::Status MeasureAgentUpdates(const AgentBenchOptions& options, const Testbed& bed, Results& results);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_AGENT_UPDATE_H_
