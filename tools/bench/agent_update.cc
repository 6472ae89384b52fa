// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/agent_update.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "maps/pins.h"
#include "stockade/datapath/datapath.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/process.h"
#include "stockade/os/scoped_fd.h"
#include "stockade/netns/netns.h"
#include "tools/bench/rules.h"
#include "tools/bench/traffic.h"

namespace stockade::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint16_t kFirstChangePort = 5100;
constexpr auto kProbeTimeout = std::chrono::milliseconds(5);

absl::Status WriteAtomically(const std::string& path, const std::string& text) {
  // The agent must never read half a file: write aside, then rename.
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("rename to ", path));
  return absl::OkStatus();
}

// A policy of its own (the agent reloads all files together) allowing the
// client on the first `ports` change ports.
std::string ChangePolicy(int ports) {
  std::string out =
      "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: bench-change}\nspec:\n"
      "  endpointSelector: {matchLabels: {role: server}}\n  ingress:\n";
  absl::StrAppend(&out, "    - fromCIDR: [", kClientIp, "/32]\n      toPorts: [{ports: [");
  for (int i = 0; i < ports; ++i)
    absl::StrAppend(&out, i ? ", " : "", "{port: \"", kFirstChangePort + i, "\", protocol: TCP}");
  absl::StrAppend(&out, "]}]\n");
  return out;
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  ScopedFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log.valid()) return ErrnoStatus(errno, absl::StrCat("open ", log_path));
  // Its own process group: a Ctrl-C at the terminal reaches only the
  // benchmark, which then stops the agent in order and uninstalls it.
  return SpawnProcess(argv, {.stdout_fd = log.get(), .stderr_fd = log.get(), .own_process_group = true});
}

void Stop(pid_t pid) {
  kill(pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// Polls until `done` holds, at most `limit`; milliseconds it took.
template <typename Check>
absl::StatusOr<double> WaitFor(Clock::time_point since, std::chrono::seconds limit, pid_t agent,
                               const std::string& what, Check done) {
  while (Clock::now() - since < limit && !g_interrupted) {
    auto ok = done();
    if (!ok.ok()) return ok.status();
    if (*ok) return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
    if (waitpid(agent, nullptr, WNOHANG) == agent) return absl::InternalError(absl::StrCat("stockaded exited while ", what));
  }
  return absl::DeadlineExceededError(absl::StrCat("not seen within ", limit.count(), " s: ", what));
}

}  // namespace

absl::Status MeasureAgentUpdates(const AgentBenchOptions& options, const Testbed& bed, Results& results) {
  namespace fs = std::filesystem;
  std::string dir = options.scratch_dir + "/agent";
  std::error_code ec;
  fs::create_directories(dir + "/policies", ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", dir, ": ", ec.message()));
  std::string endpoints = dir + "/endpoints.yaml";
  if (absl::Status s = WriteAtomically(endpoints, absl::StrCat("endpoints:\n  - name: bench-server\n    netns: ",
                                                               bed.server.path, "\n    interface: eth0\n",
                                                               "    hook: in-container\n    ipv4: ", kServerIp,
                                                               "\n    labels: {role: server}\n"));
      !s.ok())
    return s;
  if (absl::Status s = WriteAtomically(dir + "/policies/bulk.yaml",
                                       StockadePolicyYaml(MakeRuleSet(options.filler_rules), "bench-bulk"));
      !s.ok())
    return s;
  // kTcpRrPort is served by the testbed's own echo server.
  std::vector<uint16_t> ports;
  for (int i = 0; i < options.changes; ++i) ports.push_back(kFirstChangePort + i);
  auto echo = EchoServer::Start(bed.server.path, ports);
  if (!echo.ok()) return echo.status();

  std::string socket = dir + "/stockaded.sock";
  std::vector<std::string> argv = {options.stockaded_path, "--no-docker",     "--instance", options.instance,
                                   "--policy-dir",         dir + "/policies", "--static-endpoints", endpoints,
                                   "--socket",             socket,            "--state-dir", dir + "/state",
                                   "--no-metrics"};
  auto start = Clock::now();
  auto pid = Spawn(argv, dir + "/stockaded.log");
  if (!pid.ok()) return pid.status();
  absl::Cleanup uninstall = [&] {
    Stop(*pid);
    std::error_code copy_error;
    fs::copy_file(dir + "/stockaded.log", options.log_copy, fs::copy_options::overwrite_existing, copy_error);
    auto out = RunCommand({options.stockaded_path, "--uninstall", "--instance", options.instance, "--socket", socket,
                           "--state-dir", dir + "/state"});
    if (!out.ok()) std::fprintf(stderr, "stockade-bench: uninstall %s: %s\n", options.instance.c_str(),
                                std::string(out.status().message()).c_str());
  };

  // Enforced: the allowed flow (the last rule of the file) connects, a port
  // of no rule does not, and the allowed flow connects again after that. The
  // sandwich tells enforcement from the windows before it: before the hook
  // everything connects, and a freshly hooked interface drops everything
  // (fail closed) until its record is written. Three in a row, to be sure.
  //
  // Enforcement counts only once the agent has hooked the server, and fail
  // open is looked for, not inferred: once the agent has pinned a link
  // (it hooks static endpoints first thing, before reading the policy), a
  // port no rule allows must never connect, during the first sync or after.
  const std::string links_dir = absl::StrCat(InstancePinDir(options.instance), "/" STOCKADE_PIN_LINKS_SUBDIR);
  bool hooked = false;
  int in_a_row = 0;
  auto enforced_now = [&]() -> absl::StatusOr<bool> {
    std::error_code no_dir;
    hooked = hooked || (fs::exists(links_dir, no_dir) && !fs::is_empty(links_dir, no_dir));
    for (uint16_t port : {kTcpRrPort, kFirstChangePort, kTcpRrPort}) {
      auto connects = TcpConnects(bed.client.path, port, std::chrono::milliseconds(20));
      if (!connects.ok()) return connects.status();
      if (hooked && port == kFirstChangePort && *connects)
        return absl::InternalError(absl::StrCat("fail open: tcp/", port,
                                                " (no rule allows it) connects after the agent hooked the server"));
      if (*connects != (port == kTcpRrPort)) return false;
    }
    // Before the hook a probe of the unallowed port that times out (20 ms,
    // on a loaded machine) is not a deny: three of those in a row once read
    // as "enforced", and the port's later connect as a fail-open window.
    return hooked;
  };
  auto started = WaitFor(start, std::chrono::seconds(300), *pid, "the initial policy enforced",
                         [&]() -> absl::StatusOr<bool> {
                           auto now = enforced_now();
                           if (!now.ok()) return now.status();
                           in_a_row = *now ? in_a_row + 1 : 0;
                           return in_a_row == 3;
                         });
  if (!started.ok()) return started.status();
  results.Add({.measure = "agent_start_to_enforce_ms", .contender = "stockaded", .rules = options.filler_rules,
               .value = *started});

  for (int change = 0; change < options.changes; ++change) {
    uint16_t port = kFirstChangePort + change;
    // Before the change the port must be closed, or the time below means nothing.
    auto before = TcpConnects(bed.client.path, port, std::chrono::milliseconds(20));
    if (!before.ok()) return before.status();
    if (*before) return absl::InternalError(absl::StrCat("tcp/", port, " connects before the policy allows it"));
    auto changed_at = Clock::now();
    if (absl::Status s = WriteAtomically(dir + "/policies/change.yaml", ChangePolicy(change + 1)); !s.ok()) return s;
    auto enforced = WaitFor(changed_at, std::chrono::seconds(120), *pid, absl::StrCat("tcp/", port, " allowed"),
                            [&] { return TcpConnects(bed.client.path, port, kProbeTimeout); });
    if (!enforced.ok()) return enforced.status();
    results.Add({.measure = "agent_change_to_enforce_ms", .contender = "stockaded", .rules = options.filler_rules,
                 .round = change, .value = *enforced});
  }
  return absl::OkStatus();
}

}  // namespace stockade::bench
