// SPDX-License-Identifier: Apache-2.0
//
// Network-namespace helpers shared by the agent and its tests.
//
// Everything here enters namespaces with setns(2) from inside the process.
// `ip netns exec` is deliberately not used for anything that touches BPF: it
// remounts /sys for its child, and the new /sys has no bpffs mount, so pinned
// objects would vanish from the child's view.
//
// setns(CLONE_NEWNET) changes the namespace of the calling *thread* only.
// All functions below therefore act on the calling thread and leave other
// threads alone.

#ifndef STOCKADE_INCLUDE_STOCKADE_NETNS_NETNS_H_
#define STOCKADE_INCLUDE_STOCKADE_NETNS_NETNS_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace stockade {

// Moves the calling thread into a network namespace for the guard's lifetime
// and moves it back to the namespace it came from on destruction.
//
//   absl::StatusOr<NetnsGuard> guard = NetnsGuard::Enter("/run/netns/blue");
//   if (!guard.ok()) return guard.status();
//   ... sockets created here belong to "blue" ...
//   // leaving the scope restores the original namespace
//
// Guards nest; they must be destroyed in reverse order of creation (the
// natural order for scoped objects), and on the thread that created them.
// Move construction transfers the duty to restore; move assignment is deleted
// because overwriting a live guard would unwind namespaces out of order.
class NetnsGuard {
 public:
  // Enters the namespace named by `netns_path`: a bind mount such as
  // /run/netns/NAME, or /proc/PID/ns/net, /proc/PID/task/TID/ns/net.
  [[nodiscard]] static absl::StatusOr<NetnsGuard> Enter(
      std::string_view netns_path);

  // Enters the namespace referred to by the open namespace fd `netns_fd`.
  // Does not take ownership of `netns_fd`; it may be closed right after.
  [[nodiscard]] static absl::StatusOr<NetnsGuard> Enter(int netns_fd);

  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  NetnsGuard(NetnsGuard&& other) noexcept;
  NetnsGuard& operator=(NetnsGuard&&) = delete;

  // Restores the original namespace. If that fails the thread would keep
  // running in the wrong namespace (and e.g. attach programs to the wrong
  // interfaces), so the process is aborted with a message instead. Call
  // Restore() first to handle that error yourself.
  ~NetnsGuard();

  // Returns the thread to the original namespace now. Idempotent; after the
  // first call (successful or not) the destructor does nothing.
  [[nodiscard]] absl::Status Restore();

 private:
  NetnsGuard(int original_netns_fd, std::string target_description)
      : original_netns_fd_(original_netns_fd),
        target_description_(std::move(target_description)) {}

  // Shared by both Enter() overloads; `target_description` names the target
  // in error messages.
  [[nodiscard]] static absl::StatusOr<NetnsGuard> EnterFd(
      int netns_fd, std::string target_description);

  // Owned fd of the namespace the thread was in before Enter(); -1 once
  // restored or moved from.
  int original_netns_fd_ = -1;
  // Where the guard went, for error messages ("/run/netns/x", "fd 7").
  std::string target_description_;
};

// Returns the ifindex of interface `ifname` as seen inside the namespace at
// `netns_path`. NotFound if no such interface exists there.
[[nodiscard]] absl::StatusOr<uint32_t> IfIndexInNetns(
    std::string_view netns_path, std::string_view ifname);

// Returns the kernel's cookie for a network namespace: the same 64-bit value
// that bpf_get_netns_cookie() returns to BPF programs running for sockets and
// packets of that namespace. Read with getsockopt(SO_NETNS_COOKIE) on a socket
// created inside the namespace (needs Linux >= 5.14).
[[nodiscard]] absl::StatusOr<uint64_t> NetnsCookie(std::string_view netns_path);
[[nodiscard]] absl::StatusOr<uint64_t> NetnsCookie(int netns_fd);

inline constexpr std::chrono::milliseconds kDefaultCommandTimeout{10'000};

// Runs `argv` (argv[0] looked up in $PATH, no shell involved) and returns its
// combined stdout and stderr if it exits with status 0. Parsers of the output
// should skip lines they do not expect: tools print warnings on stderr.
// Returns when the command exits, even if a background child it started still
// holds the output pipe (that child is left running).
//
// If `netns_path` is given the child setns()'s into that namespace before
// exec; otherwise it inherits the calling thread's namespace. Only the network
// namespace changes: /sys (and bpffs) stay the caller's, so e.g.
// /sys/class/net lists the caller's interfaces; use `ip` to inspect links.
// stdin is /dev/null. The child gets its own process group, and when `timeout`
// expires the whole group is killed with SIGKILL.
//
// Errors carry the command line, the exit status and the output:
//   NotFound           argv[0] not found / netns_path does not exist
//   DeadlineExceeded   timeout expired
//   Unknown            non-zero exit or killed by a signal
//   (errno-mapped)     fork/pipe/setns/exec failures
[[nodiscard]] absl::StatusOr<std::string> RunCommand(
    absl::Span<const std::string> argv,
    std::optional<std::string_view> netns_path = std::nullopt,
    std::chrono::milliseconds timeout = kDefaultCommandTimeout);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_NETNS_NETNS_H_
