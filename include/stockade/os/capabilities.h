// SPDX-License-Identifier: Apache-2.0
//
// Least privilege for stockaded. Loading the programs, pinning the maps and
// binding the sockets happen first; then the agent keeps only what running
// takes, in every set (effective, permitted, inheritable, ambient, bounding),
// and sets no_new_privs, so that a bug in the agent (it parses Docker's
// answers, policy files and control requests) cannot be turned into more
// than these. packaging/systemd/stockaded.service grants the same list;
// tests/unit/systemd_unit_test.cc holds the two together.
#ifndef STOCKADE_INCLUDE_STOCKADE_OS_CAPABILITIES_H_
#define STOCKADE_INCLUDE_STOCKADE_OS_CAPABILITIES_H_

#include <array>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace stockade {

struct Capability {
  int number;        // CAP_* of <linux/capability.h>
  const char* name;  // as systemd and capabilities(7) spell it: "CAP_BPF"
  const char* why;   // what of the agent's needs it, for the failure message
};

// What stockaded needs after start-up, found by running the Docker and netns
// end-to-end tests with less (docs/security.md has the list and its reasons).
inline constexpr std::array<Capability, 4> kAgentCapabilities = {{
    {39, "CAP_BPF", "map reads and writes, link updates"},
    {12, "CAP_NET_ADMIN", "attaching TC and XDP programs, querying TCX links"},
    // setns() into a network namespace takes it over both the caller's and
    // the namespace's user namespace; nothing narrower grants it.
    {21, "CAP_SYS_ADMIN", "entering a container's network namespace"},
    // /proc/<pid>/ns/net of a container's process is behind a ptrace access
    // check: without this it fails unless the container's own capabilities
    // are a subset of the agent's, which Docker's default set is not.
    {19, "CAP_SYS_PTRACE", "opening a container process's /proc/<pid>/ns/net"},
}};

// OK when the process may raise every capability in `needed` (its permitted
// set); else PermissionDenied naming each missing one and what it is for.
[[nodiscard]] absl::Status CheckCapabilities(absl::Span<const Capability> needed);

// Keeps `kept` in the effective and permitted sets and nothing else in any
// set, including the bounding set, and sets no_new_privs. Must run before
// the process starts a thread: capabilities belong to each thread, and
// threads started earlier would keep the rest (FailedPrecondition then).
[[nodiscard]] absl::Status KeepOnlyCapabilities(absl::Span<const Capability> kept);

// The calling thread's effective capabilities, "CAP_BPF" style, ascending by number.
[[nodiscard]] std::vector<std::string> EffectiveCapabilities();

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_OS_CAPABILITIES_H_
