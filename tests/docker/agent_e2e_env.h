// SPDX-License-Identifier: Apache-2.0
//
// What the agent's end-to-end tests share: a stockaded instance of the test's
// own (the built binary, started by fork/exec and stopped by pid), stockadectl
// as an operator runs it, echo servers inside containers, and TCP clients
// inside a container's network namespace. A client socket made there leaves
// through the container's interface exactly as the container's own traffic
// does, and its timeouts are precise enough to time enforcement.
#ifndef STOCKADE_TESTS_DOCKER_AGENT_E2E_ENV_H_
#define STOCKADE_TESTS_DOCKER_AGENT_E2E_ENV_H_

#include <sys/types.h>

#include <cstdint>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "stockade/os/scoped_fd.h"
#include "testlib/lab/probes.h"
#include "testlib/lab/topology.h"

namespace stockade::testing {

// A container as traffic sees it.
struct TestContainer {
  std::string name;   // Docker's name, as stockadectl shows it
  std::string netns;  // /proc/<pid>/ns/net
  std::string ip;     // on the network the test asked for
};

// Reads where `name` lives now: after `docker restart` both change.
[[nodiscard]] absl::StatusOr<TestContainer> InspectContainer(const std::string& name, const std::string& network);

// Starts busybox `nc -ll -p PORT -e cat` in the container for each port:
// every connection echoes what it receives. Gone when the container stops.
[[nodiscard]] absl::Status StartEchoServers(const std::string& container, const std::vector<uint16_t>& ports);

// A TCP connection from inside `from`'s namespace to an echo server.
class EchoSession {
 public:
  // DeadlineExceeded when no SYN-ACK comes back in time (a drop on the way).
  [[nodiscard]] static absl::StatusOr<EchoSession> Open(const TestContainer& from, const TestContainer& to,
                                                        uint16_t port, absl::Duration timeout);
  // Sends `line` and waits for it to come back; DeadlineExceeded if it does not.
  [[nodiscard]] absl::Status Echo(absl::string_view line, absl::Duration timeout);

 private:
  EchoSession(ScopedFd fd, std::string peer) : fd_(std::move(fd)), peer_(std::move(peer)) {}

  ScopedFd fd_;
  std::string peer_;  // "name ip:port", for messages
};

// A new connection and one echo over it: OK when the request and its answer
// both passed, DeadlineExceeded when something was dropped, Unavailable when
// refused.
[[nodiscard]] absl::Status Probe(const TestContainer& from, const TestContainer& to, uint16_t port,
                                 absl::Duration timeout);

// One stockaded instance: a unique name, its own policy and state directories
// and log, and the agents started for it. The destructor stops every agent
// still running (by pid), uninstalls the instance (`stockaded --uninstall`)
// and removes the directories, whatever became of the test.
class AgentInstance {
 public:
  explicit AgentInstance(absl::string_view name);
  AgentInstance(const AgentInstance&) = delete;
  AgentInstance& operator=(const AgentInstance&) = delete;
  ~AgentInstance();

  const std::string& name() const { return name_; }
  std::string policy_file() const { return policy_dir_ + "/policy.yaml"; }

  // Replaces the policy file in one step (a rename, as editors save), so the
  // agent never reads half of it.
  [[nodiscard]] absl::Status WritePolicy(absl::string_view yaml, absl::string_view file = "policy.yaml") const;

  // A directory of the instance's own for the test's files; removed with it.
  const std::string& dir() const { return dir_; }

  // Agents started from now on, and the uninstall at the end, run in the
  // network namespace at `path` (a private dockerd's, which then stands in
  // for the host's); it must outlive the instance.
  void RunIn(std::string netns_path) { netns_path_ = std::move(netns_path); }

  // fork/exec of stockaded for this instance with `extra_args` (e.g.
  // --no-docker), output appended to the log.
  [[nodiscard]] absl::StatusOr<pid_t> StartAgent(const std::vector<std::string>& extra_args = {});
  // Waits up to `timeout` for `pid` to exit and returns its wait status.
  [[nodiscard]] absl::StatusOr<int> WaitExit(pid_t pid, absl::Duration timeout);
  void Kill(pid_t pid, int signal) const;

  // `stockadectl --instance NAME -o json args...`, parsed.
  [[nodiscard]] absl::StatusOr<nlohmann::json> Ctl(std::vector<std::string> args) const;
  // The agents' output so far, for failure messages.
  std::string Log() const;

 private:
  std::string name_;
  std::string dir_;  // holds policy/, state/, the log and scratch files
  std::string policy_dir_;
  std::string log_path_;
  std::string netns_path_;  // empty: the test's own
  std::set<pid_t> running_;  // started and not yet reaped
};

// Sets environment variables (for an agent the test starts next, which
// inherits them) and restores them when it ends.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::initializer_list<std::pair<const char*, std::string>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      setenv(name, value.c_str(), 1);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    for (const auto& [name, old] : saved_) old ? (void)setenv(name, old->c_str(), 1) : (void)unsetenv(name);
  }

 private:
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

// Polls `stockadectl status` until its docker_error contains `text`, for up
// to `timeout`; the status that did, or DeadlineExceeded with the last one.
[[nodiscard]] absl::StatusOr<nlohmann::json> WaitForDockerError(const AgentInstance& instance, absl::string_view text,
                                                                absl::Duration timeout);

// GET http://address/metrics: the body of a 200 answer; its Content-Type
// into `content_type` when given.
[[nodiscard]] absl::StatusOr<std::string> ScrapeMetrics(const std::string& address,
                                                        std::string* content_type = nullptr);
// Workloads without Docker: one namespace per name on a bridge, each hooked
// in-container on its eth0 with the given address (/24) and the label
// tier=<name>, and the static endpoints file that names them.
struct StaticLab {
  std::map<std::string, lab::TopologyNetns> netns;
  std::string endpoints_yaml;
  std::map<std::string, std::string> endpoint_entries;  // each name's entry of endpoints_yaml
  std::map<std::string, std::string> address;
  std::map<std::pair<std::string, uint16_t>, lab::Listener> listeners;  // by name and port

  // A static endpoints file of only `names` (one host's, of several).
  std::string EndpointsYaml(const std::vector<std::string>& names) const;
  // TCP listeners in `name`'s namespace on its address, one per port.
  [[nodiscard]] absl::Status Listen(const std::string& name, const std::vector<uint16_t>& ports);
  // A TCP probe from `from` to `to`'s listener on `port`; a probe that
  // cannot be made is a test failure (and kTimedOut).
  lab::ProbeOutcome Probe(const std::string& from, const std::string& to, uint16_t port,
                          std::chrono::milliseconds timeout);
};
[[nodiscard]] absl::StatusOr<StaticLab> MakeStaticLab(lab::Topology& topology,
                                                      const std::map<std::string, std::string>& address);

// `stockade-tail --no-follow -o json ARGS` for `instance`: its output (the
// agent's history of events that match), within 10 s.
[[nodiscard]] absl::StatusOr<std::string> TailHistory(const AgentInstance& instance, std::vector<std::string> args);

// Polls `done` every 50 ms until it holds or `timeout` passes; returns how
// long it took, or DeadlineExceeded naming `what`.
[[nodiscard]] absl::StatusOr<absl::Duration> WaitUntil(const std::function<bool()>& done, absl::Duration timeout,
                                                       absl::string_view what);

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_DOCKER_AGENT_E2E_ENV_H_
