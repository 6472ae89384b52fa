// SPDX-License-Identifier: Apache-2.0
//
// Starting a program in the background: the agent under test, stockade-tail,
// a private dockerd. One way of doing it, so that each caller gets the same
// care: only async-signal-safe calls between fork and exec, and a child that
// does not outlive its parent.
#ifndef STOCKADE_INCLUDE_STOCKADE_OS_PROCESS_H_
#define STOCKADE_INCLUDE_STOCKADE_OS_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace stockade {

struct SpawnOptions {
  int stdout_fd = -1;  // -1: /dev/null
  int stderr_fd = -1;  // -1: /dev/null
  // SIGTERM to the child when the caller dies: a crashed test leaves nothing running.
  bool die_with_parent = true;
  // A process group of its own: a Ctrl-C at the terminal reaches only the caller,
  // which then stops the child in order.
  bool own_process_group = false;
  bool search_path = false;  // argv[0] looked up in PATH
  // A network namespace to run in (a /run/netns/NAME or /proc/PID/ns/net
  // path); empty: the caller's. Only the network namespace changes.
  std::string netns_path;
};

// fork/exec of `argv`; stdin is /dev/null. Returns the child's pid; the caller waits for it.
[[nodiscard]] absl::StatusOr<pid_t> SpawnProcess(const std::vector<std::string>& argv,
                                                 const SpawnOptions& options = {});

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_OS_PROCESS_H_
