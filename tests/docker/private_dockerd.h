// SPDX-License-Identifier: Apache-2.0
//
// A dockerd of the test's own, for tests that stop and restart Docker: the
// host's daemon, which other tests use, is never touched. Its own data root
// (vfs storage: no mounts to leave behind), exec root (and so its own
// managed containerd), pidfile and socket, and a network namespace of its
// own, so its bridges, links and rules can never touch the host's. (It must:
// a dockerd started with --bridge none deletes whatever docker0 its
// namespace has, and in the host namespace that was the host's default
// bridge.) By default it has no default bridge, no iptables rules and no
// ip_forward change; with Networking::kDockerDefaults it runs as Docker runs
// out of the box (docker0, iptables NAT and filter rules, docker-proxy), all
// of it inside its namespace.
// The destructor removes its containers, stops it and its containerd (by
// the pids they wrote) and removes its directories.
#ifndef STOCKADE_TESTS_DOCKER_PRIVATE_DOCKERD_H_
#define STOCKADE_TESTS_DOCKER_PRIVATE_DOCKERD_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stockade::testing {

class PrivateDockerd {
 public:
  enum class Networking { kNone, kDockerDefaults };

  // `name`: unique for the run; the daemon's directories are named after it.
  // `netns_path`: the network namespace it runs in, made by the test (never
  // the host's); it must outlive the daemon.
  PrivateDockerd(const std::string& name, std::string netns_path, Networking networking = Networking::kNone);
  PrivateDockerd(const PrivateDockerd&) = delete;
  PrivateDockerd& operator=(const PrivateDockerd&) = delete;
  ~PrivateDockerd();

  // Starts dockerd (again) and waits until it answers.
  [[nodiscard]] absl::Status Start(absl::Duration timeout);
  // SIGKILL, as a crash: the containers and containerd live on.
  [[nodiscard]] absl::Status Crash();
  // unix:///...: for DOCKER_HOST.
  std::string host() const { return "unix://" + socket_; }
  // `docker -H host() args...`; its output, trimmed.
  [[nodiscard]] absl::StatusOr<std::string> Docker(std::vector<std::string> args) const;
  // Copies an image from the host's daemon (docker save | docker load).
  [[nodiscard]] absl::Status CopyImage(const std::string& image) const;

 private:
  void Stop();
  // The managed containerd of our exec root, if it still runs.
  void StopContainerd();
  // What a daemon that is gone could not clean up: shims and their
  // containers, mounts under our directories.
  void KillOrphans();

  std::string root_;    // data root, log
  std::string exec_;    // exec root (kept short: containerd's socket lives in it)
  std::string socket_;
  std::string pidfile_;
  std::string log_;
  std::string netns_path_;
  Networking networking_;
  pid_t pid_ = -1;  // our dockerd, while it runs
};

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_DOCKER_PRIVATE_DOCKERD_H_
