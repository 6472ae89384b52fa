// SPDX-License-Identifier: Apache-2.0
#include "tests/docker/private_dockerd.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/process.h"
#include "stockade/os/scoped_fd.h"
#include "stockade/netns/netns.h"

namespace stockade::testing {
namespace {

constexpr std::chrono::milliseconds kCommandTimeout{60'000};

// Waits up to `timeout` for our child `pid` to exit; true if it did.
bool Reap(pid_t pid, absl::Duration timeout) {
  for (absl::Time until = absl::Now() + timeout; absl::Now() < until; absl::SleepFor(absl::Milliseconds(50)))
    if (waitpid(pid, nullptr, WNOHANG) == pid) return true;
  return false;
}

}  // namespace

PrivateDockerd::PrivateDockerd(const std::string& name, std::string netns_path, Networking networking)
    : root_("/tmp/" + name + "-dockerd"),
      exec_("/run/" + name + "-x"),
      socket_("/run/" + name + "-docker.sock"),
      pidfile_("/run/" + name + "-docker.pid"),
      log_(root_ + ".log"),
      netns_path_(std::move(netns_path)),
      networking_(networking) {}

absl::Status PrivateDockerd::Start(absl::Duration timeout) {
  if (pid_ > 0) return absl::FailedPreconditionError("private dockerd already runs");
  if (netns_path_.empty()) return absl::InvalidArgumentError("a private dockerd needs a network namespace of its own");
  std::filesystem::create_directories(root_);
  std::vector<std::string> args = {"dockerd",   "--data-root", root_,     "--exec-root",      exec_,
                                   "--pidfile", pidfile_,      "-H",      host(),             "--storage-driver",
                                   "vfs"};
  if (networking_ == Networking::kNone)
    args.insert(args.end(), {"--bridge", "none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                             "--userland-proxy=false"});
  ScopedFd log(open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return ErrnoStatus(errno, absl::StrCat("open ", log_));
  absl::StatusOr<pid_t> pid = SpawnProcess(
      args, {.stdout_fd = log.get(), .stderr_fd = log.get(), .search_path = true, .netns_path = netns_path_});
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  for (absl::Time until = absl::Now() + timeout; absl::Now() < until; absl::SleepFor(absl::Milliseconds(200))) {
    if (Docker({"version", "--format", "{{.Server.Version}}"}).ok()) return absl::OkStatus();
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("private dockerd exited at start; see ", log_));
    }
  }
  return absl::DeadlineExceededError(absl::StrCat("private dockerd did not answer within ",
                                                  absl::FormatDuration(timeout), "; see ", log_));
}

absl::Status PrivateDockerd::Crash() {
  if (pid_ <= 0) return absl::FailedPreconditionError("private dockerd does not run");
  kill(pid_, SIGKILL);
  if (!Reap(pid_, absl::Seconds(10))) return absl::InternalError("private dockerd survived SIGKILL");
  pid_ = -1;
  std::filesystem::remove(socket_);
  // Its managed containerd dies with it (a parent-death signal), but the pid
  // file stays, and a new dockerd would wait for that pid's socket: end it
  // if it lingers and remove the file, so Start() brings a fresh one up. The
  // containers' shims outlive both.
  StopContainerd();
  std::filesystem::remove(exec_ + "/containerd/containerd.pid");
  return absl::OkStatus();
}

void PrivateDockerd::StopContainerd() {
  std::ifstream pid_in(exec_ + "/containerd/containerd.pid");
  pid_t containerd = 0;
  if (!(pid_in >> containerd) || containerd <= 0) return;
  // Ours only: its command line names our exec root.
  auto ours = [&] {
    std::ifstream cmdline(absl::StrCat("/proc/", containerd, "/cmdline"));
    std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    return absl::StrContains(args, exec_);
  };
  for (absl::Time until = absl::Now() + absl::Seconds(5); ours() && absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(50)))
    kill(containerd, SIGTERM);
  if (ours()) kill(containerd, SIGKILL);
}

absl::StatusOr<std::string> PrivateDockerd::Docker(std::vector<std::string> args) const {
  args.insert(args.begin(), {"docker", "-H", host()});
  absl::StatusOr<std::string> output = RunCommand(args, std::nullopt, kCommandTimeout);
  if (!output.ok()) return output.status();
  return std::string(absl::StripAsciiWhitespace(*output));
}

absl::Status PrivateDockerd::CopyImage(const std::string& image) const {
  return RunCommand({"sh", "-c", absl::StrCat("docker save ", image, " | docker -H ", host(), " load")}, std::nullopt,
                    kCommandTimeout)
      .status();
}

void PrivateDockerd::Stop() {
  if (pid_ > 0) {
    if (absl::StatusOr<std::string> ids = Docker({"ps", "-aq"}); ids.ok() && !ids->empty())
      (void)RunCommand({"sh", "-c", absl::StrCat("docker -H ", host(), " rm -f ", absl::StrReplaceAll(*ids, {{"\n", " "}}))},
                       std::nullopt, kCommandTimeout);
    kill(pid_, SIGTERM);  // a graceful stop also stops its managed containerd
    if (!Reap(pid_, absl::Seconds(20))) {
      kill(pid_, SIGKILL);
      Reap(pid_, absl::Seconds(5));
    }
    pid_ = -1;
  }
  StopContainerd();
}

void PrivateDockerd::KillOrphans() {
  // Shims whose daemon could not remove their containers (it did not come
  // back, say): each shim with the process tree under it. Ours only: their
  // command line names our exec root.
  std::multimap<pid_t, pid_t> children;  // parent -> child
  std::vector<pid_t> shims;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    pid_t pid = atoi(entry.path().filename().c_str());
    if (pid <= 0) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    pid_t parent = 0;
    char state = 0;
    if (sscanf(line.c_str() + close + 1, " %c %d", &state, &parent) == 2) children.emplace(parent, pid);
    std::ifstream cmdline(entry.path() / "cmdline");
    std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    if (absl::StrContains(args, "containerd-shim") && absl::StrContains(args, exec_)) shims.push_back(pid);
  }
  std::vector<pid_t> doomed = shims;
  for (size_t i = 0; i < doomed.size(); ++i)
    for (auto [it, end] = children.equal_range(doomed[i]); it != end; ++it) doomed.push_back(it->second);
  for (pid_t pid : doomed) kill(pid, SIGKILL);
  // Mounts dockerd made and left: its data root bound on itself, the
  // containers' namespaces under the exec root.
  std::ifstream mounts("/proc/self/mounts");
  std::vector<std::string> points;
  for (std::string device, point, rest; mounts >> device >> point && std::getline(mounts, rest);)
    if (point.starts_with(root_) || point.starts_with(exec_)) points.push_back(point);
  std::sort(points.rbegin(), points.rend());  // deepest first
  for (const std::string& point : points) umount2(point.c_str(), MNT_DETACH);
}

PrivateDockerd::~PrivateDockerd() {
  Stop();
  KillOrphans();
  std::error_code ignored;
  for (const std::string& path : {root_, exec_, socket_, pidfile_, log_}) std::filesystem::remove_all(path, ignored);
}

}  // namespace stockade::testing
