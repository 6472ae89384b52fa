// SPDX-License-Identifier: Apache-2.0

#include "stockade/netns/netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/scoped_fd.h"

extern char** environ;

namespace stockade {
namespace {

// Debian builds Abseil with its own absl::string_view type
// (ABSL_OPTION_USE_STD_STRING_VIEW 0), which std::string_view does not convert
// to implicitly; StrCat and StrSplit need this bridge.
absl::string_view AbslView(std::string_view view) {
  return absl::string_view(view.data(), view.size());
}

constexpr char kThreadNetnsPath[] = "/proc/thread-self/ns/net";

// Bounds the memory a chatty command can make us hold.
constexpr size_t kMaxCommandOutputBytes = size_t{1} << 20;

// Without a pidfd (pre-5.3 kernels) child exit is noticed by polling this
// often.
constexpr int kExitPollFallbackMs = 10;

[[nodiscard]] absl::StatusOr<ScopedFd> OpenNetns(std::string_view netns_path) {
  const std::string path(netns_path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open netns ", path));
  return ScopedFd(fd);
}

[[nodiscard]] absl::Status ValidateIfname(std::string_view ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(
        absl::StrFormat("interface name \"%s\" must be 1..%d characters",
                        ifname, IFNAMSIZ - 1));
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::StatusOr<uint64_t> CookieOfCurrentNetns(
    std::string_view netns_description) {
  // Any socket family works; AF_UNIX needs no IP stack configuration.
  ScopedFd socket_fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!socket_fd.valid()) {
    return ErrnoStatus(
        errno, absl::StrCat("socket in netns ", AbslView(netns_description)));
  }
  uint64_t cookie = 0;
  socklen_t cookie_len = sizeof(cookie);
  if (::getsockopt(socket_fd.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie,
                   &cookie_len) != 0) {
    return ErrnoStatus(
        errno,
        absl::StrCat("getsockopt(SO_NETNS_COOKIE) in netns ",
                     AbslView(netns_description), " (needs Linux >= 5.14)"));
  }
  return cookie;
}

// Quotes an argument the way a POSIX shell would need it, so error messages
// show a command line that can be pasted into a terminal.
std::string ShellQuote(std::string_view arg) {
  const bool plain =
      !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') ||
               std::string_view("_-./:=@%+,").find(c) != std::string_view::npos;
      });
  if (plain) return std::string(arg);
  std::string quoted = "'";
  for (const char c : arg) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += "'";
  return quoted;
}

std::string FormatCommandLine(absl::Span<const std::string> argv,
                              std::optional<std::string_view> netns_path) {
  std::string line = "`";
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i > 0) line += ' ';
    line += ShellQuote(argv[i]);
  }
  line += "`";
  if (netns_path.has_value())
    absl::StrAppend(&line, " in netns ", AbslView(*netns_path));
  return line;
}

// Resolves argv[0] against $PATH in the parent, because execvp() is not
// async-signal-safe and so must not run in the child of a threaded process.
[[nodiscard]] absl::StatusOr<std::string> FindProgram(std::string_view name) {
  if (name.find('/') != std::string_view::npos) return std::string(name);
  const char* path_env = ::getenv("PATH");
  const std::string_view search_path =
      path_env != nullptr && *path_env != '\0'
          ? std::string_view(path_env)
          : std::string_view(
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                "/usr/bin:/sbin:/bin");
  for (const absl::string_view dir :
       absl::StrSplit(AbslView(search_path), ':')) {
    // An empty PATH entry means the current directory; a privileged process
    // should not run whatever happens to lie there.
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", AbslView(name));
    struct stat info;
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::NotFoundError(
      absl::StrFormat("%s: command not found in PATH=%s", name, search_path));
}

// Ensures `fd` is not 0, 1 or 2, so redirecting the child's stdio can never
// clobber it before it has been duplicated (possible when the parent runs
// with closed standard streams).
[[nodiscard]] absl::Status MoveAboveStdio(ScopedFd& fd) {
  if (fd.get() > STDERR_FILENO) return absl::OkStatus();
  const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved < 0) return ErrnoStatus(errno, "fcntl(F_DUPFD_CLOEXEC)");
  fd.Reset(moved);
  return absl::OkStatus();
}

[[nodiscard]] absl::StatusOr<std::pair<ScopedFd, ScopedFd>> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  std::pair<ScopedFd, ScopedFd> ends{ScopedFd(fds[0]), ScopedFd(fds[1])};
  if (absl::Status s = MoveAboveStdio(ends.first); !s.ok()) return s;
  if (absl::Status s = MoveAboveStdio(ends.second); !s.ok()) return s;
  return ends;
}

// What the child was doing when it failed before exec; sent to the parent
// together with errno over a close-on-exec pipe.
enum class ChildStage : int { kSetns = 1, kRedirect = 2, kExec = 3 };

struct ChildFailure {
  ChildStage stage;
  int err;
};

struct ChildSetup {
  const char* program;
  char* const* argv;
  char* const* envp;
  int netns_fd;  // -1: stay in the parent's netns.
  int stdin_fd;
  int output_fd;
  int failure_report_fd;
};

[[noreturn]] void ReportChildFailure(int report_fd, ChildStage stage) {
  const ChildFailure failure{stage, errno};
  // Best effort: if this write fails the parent still sees exit code 127.
  [[maybe_unused]] const ssize_t written =
      ::write(report_fd, &failure, sizeof(failure));
  ::_exit(127);
}

bool RedirectFd(int from, int to) {
  if (from == to) return ::fcntl(to, F_SETFD, 0) == 0;  // drop CLOEXEC
  return ::dup2(from, to) == to;
}

// Runs in the forked child. Only async-signal-safe calls are allowed here: the
// parent may be multi-threaded, and another thread may have held a lock (e.g.
// malloc's) at the moment of fork.
[[noreturn]] void ExecChild(const ChildSetup& setup) {
  // Own process group, so a timeout can kill the command and its children.
  ::setpgid(0, 0);

  // Undo signal state the parent may have set up; exec keeps both the mask
  // and ignored dispositions, and many tools misbehave with SIGPIPE ignored.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &default_action, nullptr);
  sigset_t empty_set;
  ::sigemptyset(&empty_set);
  ::sigprocmask(SIG_SETMASK, &empty_set, nullptr);

  if (setup.netns_fd >= 0 && ::setns(setup.netns_fd, CLONE_NEWNET) != 0) {
    ReportChildFailure(setup.failure_report_fd, ChildStage::kSetns);
  }
  if (!RedirectFd(setup.stdin_fd, STDIN_FILENO) ||
      !RedirectFd(setup.output_fd, STDOUT_FILENO) ||
      !RedirectFd(setup.output_fd, STDERR_FILENO)) {
    ReportChildFailure(setup.failure_report_fd, ChildStage::kRedirect);
  }
  // Keep the agent's other fds (BPF maps, sockets, other commands' pipes)
  // out of the command. Best effort: older kernels lack close_range().
  ::close_range(STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC);

  ::execve(setup.program, setup.argv, setup.envp);
  ReportChildFailure(setup.failure_report_fd, ChildStage::kExec);
}

// Appends whatever can be read from non-blocking `fd` right now. Returns false
// once the write side is closed (EOF) or the pipe failed.
bool ReadAvailable(int fd, std::string& output, bool& truncated) {
  char buffer[16384];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      const size_t room = kMaxCommandOutputBytes - output.size();
      if (static_cast<size_t>(n) > room) truncated = true;
      output.append(buffer, std::min(static_cast<size_t>(n), room));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

// Reaps `pid`. nullopt if its status cannot be collected, which happens when
// the process ignores SIGCHLD (the kernel then reaps children itself).
std::optional<int> WaitForExit(pid_t pid) {
  int wait_status = 0;
  while (true) {
    if (::waitpid(pid, &wait_status, 0) == pid) return wait_status;
    if (errno != EINTR) return std::nullopt;
  }
}

std::string DescribeWaitStatus(std::optional<int> maybe_wait_status) {
  if (!maybe_wait_status.has_value()) {
    return "ended with an unknown status (is SIGCHLD ignored?)";
  }
  const int wait_status = *maybe_wait_status;
  if (WIFEXITED(wait_status)) {
    return absl::StrCat("exited with status ", WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* abbrev = ::sigabbrev_np(sig);
    return absl::StrFormat("was killed by signal %d (SIG%s)", sig,
                           abbrev != nullptr ? abbrev : "?");
  }
  return absl::StrFormat("ended with wait status 0x%x", wait_status);
}

}  // namespace

// ---------------------------------------------------------------------------
// NetnsGuard

absl::StatusOr<NetnsGuard> NetnsGuard::Enter(std::string_view netns_path) {
  absl::StatusOr<ScopedFd> target = OpenNetns(netns_path);
  if (!target.ok()) return target.status();
  return EnterFd(target->get(), std::string(netns_path));
}

absl::StatusOr<NetnsGuard> NetnsGuard::Enter(int netns_fd) {
  return EnterFd(netns_fd, absl::StrCat("netns fd ", netns_fd));
}

absl::StatusOr<NetnsGuard> NetnsGuard::EnterFd(int netns_fd,
                                               std::string target_description) {
  // thread-self, not self: setns() moves only this thread, and /proc/self
  // names the main thread's namespace.
  ScopedFd original(::open(kThreadNetnsPath, O_RDONLY | O_CLOEXEC));
  if (!original.valid()) {
    return ErrnoStatus(errno, absl::StrCat("open ", kThreadNetnsPath));
  }
  if (::setns(netns_fd, CLONE_NEWNET) != 0) {
    // EINVAL here usually means the fd/path is not a network namespace.
    return ErrnoStatus(errno, absl::StrCat("setns into ", target_description));
  }
  return NetnsGuard(original.Release(), std::move(target_description));
}

NetnsGuard::NetnsGuard(NetnsGuard&& other) noexcept
    : original_netns_fd_(std::exchange(other.original_netns_fd_, -1)),
      target_description_(std::move(other.target_description_)) {}

NetnsGuard::~NetnsGuard() {
  if (original_netns_fd_ < 0) return;
  if (const absl::Status status = Restore(); !status.ok()) {
    std::fprintf(stderr, "stockade: fatal: %s\n", status.ToString().c_str());
    std::abort();
  }
}

absl::Status NetnsGuard::Restore() {
  if (original_netns_fd_ < 0) return absl::OkStatus();
  ScopedFd original(std::exchange(original_netns_fd_, -1));
  if (::setns(original.get(), CLONE_NEWNET) != 0) {
    return ErrnoStatus(errno,
                       absl::StrCat("setns back to the original netns from ",
                                    target_description_));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Lookups

absl::StatusOr<uint32_t> IfIndexInNetns(std::string_view netns_path,
                                        std::string_view ifname) {
  if (absl::Status s = ValidateIfname(ifname); !s.ok()) return s;
  absl::StatusOr<NetnsGuard> guard = NetnsGuard::Enter(netns_path);
  if (!guard.ok()) return guard.status();
  const std::string name(ifname);
  const unsigned int ifindex = ::if_nametoindex(name.c_str());
  if (ifindex == 0) {
    return ErrnoStatus(
        errno, absl::StrFormat("interface %s in netns %s", ifname, netns_path));
  }
  if (absl::Status s = guard->Restore(); !s.ok()) return s;
  return static_cast<uint32_t>(ifindex);
}

absl::StatusOr<uint64_t> NetnsCookie(std::string_view netns_path) {
  absl::StatusOr<NetnsGuard> guard = NetnsGuard::Enter(netns_path);
  if (!guard.ok()) return guard.status();
  absl::StatusOr<uint64_t> cookie = CookieOfCurrentNetns(netns_path);
  if (absl::Status s = guard->Restore(); !s.ok()) return s;
  return cookie;
}

absl::StatusOr<uint64_t> NetnsCookie(int netns_fd) {
  absl::StatusOr<NetnsGuard> guard = NetnsGuard::Enter(netns_fd);
  if (!guard.ok()) return guard.status();
  absl::StatusOr<uint64_t> cookie =
      CookieOfCurrentNetns(absl::StrCat("fd ", netns_fd));
  if (absl::Status s = guard->Restore(); !s.ok()) return s;
  return cookie;
}

// ---------------------------------------------------------------------------
// RunCommand

absl::StatusOr<std::string> RunCommand(
    absl::Span<const std::string> argv,
    std::optional<std::string_view> netns_path,
    std::chrono::milliseconds timeout) {
  if (argv.empty()) return absl::InvalidArgumentError("RunCommand: empty argv");
  const std::string command = FormatCommandLine(argv, netns_path);
  auto with_context = [&command](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat("running ", command, ": ",
                                                    status.message()));
  };

  // Everything the child needs is prepared here, before fork().
  absl::StatusOr<std::string> program = FindProgram(argv[0]);
  if (!program.ok()) return with_context(program.status());
  std::vector<char*> child_argv;
  child_argv.reserve(argv.size() + 1);
  for (const std::string& arg : argv) {
    child_argv.push_back(const_cast<char*>(arg.c_str()));
  }
  child_argv.push_back(nullptr);

  ScopedFd netns_fd;
  if (netns_path.has_value()) {
    absl::StatusOr<ScopedFd> opened = OpenNetns(*netns_path);
    if (!opened.ok()) return with_context(opened.status());
    netns_fd = *std::move(opened);
  }
  ScopedFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!dev_null.valid()) {
    return with_context(ErrnoStatus(errno, "open /dev/null"));
  }
  if (absl::Status s = MoveAboveStdio(dev_null); !s.ok()) {
    return with_context(s);
  }
  absl::StatusOr<std::pair<ScopedFd, ScopedFd>> output_pipe = MakePipe();
  if (!output_pipe.ok()) return with_context(output_pipe.status());
  absl::StatusOr<std::pair<ScopedFd, ScopedFd>> failure_pipe = MakePipe();
  if (!failure_pipe.ok()) return with_context(failure_pipe.status());
  auto& [output_read, output_write] = *output_pipe;
  auto& [failure_read, failure_write] = *failure_pipe;

  const ChildSetup setup{
      .program = program->c_str(),
      .argv = child_argv.data(),
      .envp = environ,
      .netns_fd = netns_fd.get(),
      .stdin_fd = dev_null.get(),
      .output_fd = output_write.get(),
      .failure_report_fd = failure_write.get(),
  };
  const pid_t pid = ::fork();
  if (pid < 0) return with_context(ErrnoStatus(errno, "fork"));
  if (pid == 0) ExecChild(setup);

  // Also set the group from this side, so it is in place whatever the child
  // has reached when the timeout fires (the classic setpgid race).
  ::setpgid(pid, pid);
  output_write.Reset();
  failure_write.Reset();
  dev_null.Reset();
  netns_fd.Reset();

  // Both read ends are drained without blocking: a command that fills the
  // output pipe must never wait on us, and the failure report (if any) is in
  // its pipe before the child exits, so it is read after the exit.
  for (const ScopedFd* fd : {&output_read, &failure_read}) {
    if (::fcntl(fd->get(), F_SETFL, O_NONBLOCK) != 0) {
      const int err = errno;
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      WaitForExit(pid);
      return with_context(ErrnoStatus(err, "fcntl(O_NONBLOCK)"));
    }
  }
  // A pidfd makes child exit pollable alongside the output, so a command that
  // leaves a background process holding the pipe open still returns promptly.
  // Raw syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C", so its
  // pidfd_open() cannot be linked from C++.
  ScopedFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string output;
  bool truncated = false;
  bool output_open = true;
  bool exited = false;
  std::optional<int> wait_status;
  while (!exited) {
    const auto remaining = std::chrono::ceil<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);  // in case it never got its own group
      WaitForExit(pid);
      if (output_open) ReadAvailable(output_read.get(), output, truncated);
      return absl::DeadlineExceededError(absl::StrCat(
          "running ", command, ": timed out after ", timeout.count(),
          " ms; output so far: ", absl::StripTrailingAsciiWhitespace(output)));
    }
    pollfd poll_fds[2];
    nfds_t poll_count = 0;
    int output_index = -1;
    int pidfd_index = -1;
    if (output_open) {
      output_index = static_cast<int>(poll_count);
      poll_fds[poll_count++] = {output_read.get(), POLLIN, 0};
    }
    if (pidfd.valid()) {
      pidfd_index = static_cast<int>(poll_count);
      poll_fds[poll_count++] = {pidfd.get(), POLLIN, 0};
    }
    int wait_ms = static_cast<int>(
        std::min<int64_t>(remaining.count(), std::numeric_limits<int>::max()));
    if (!pidfd.valid()) wait_ms = std::min(wait_ms, kExitPollFallbackMs);
    if (::poll(poll_fds, poll_count, wait_ms) < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::kill(-pid, SIGKILL);
      WaitForExit(pid);
      return with_context(ErrnoStatus(err, "poll"));
    }
    if (output_index >= 0 && poll_fds[output_index].revents != 0) {
      output_open = ReadAvailable(output_read.get(), output, truncated);
    }
    if (pidfd_index >= 0) {
      if (poll_fds[pidfd_index].revents != 0) {
        wait_status = WaitForExit(pid);
        exited = true;
      }
    } else {
      int status = 0;
      const pid_t reaped = ::waitpid(pid, &status, WNOHANG);
      if (reaped == pid) {
        wait_status = status;
        exited = true;
      } else if (reaped < 0 && errno != EINTR) {
        exited = true;  // wait_status stays unknown
      }
    }
  }
  // setns, dup2 or exec failed in the child: report that, not exit code 127.
  ChildFailure failure{};
  if (::read(failure_read.get(), &failure, sizeof(failure)) ==
      static_cast<ssize_t>(sizeof(failure))) {
    switch (failure.stage) {
      case ChildStage::kSetns:
        return with_context(ErrnoStatus(
            failure.err, absl::StrCat("setns into ", AbslView(*netns_path))));
      case ChildStage::kRedirect:
        return with_context(ErrnoStatus(failure.err, "redirect stdio"));
      case ChildStage::kExec:
        return with_context(ErrnoStatus(failure.err, "exec " + *program));
    }
    return with_context(ErrnoStatus(failure.err, "start"));
  }

  // Everything the command wrote before exiting is already in the pipe.
  if (output_open) ReadAvailable(output_read.get(), output, truncated);
  if (truncated) {
    absl::StrAppend(&output, "\n[output truncated at ", kMaxCommandOutputBytes,
                    " bytes]");
  }

  if (wait_status.has_value() && WIFEXITED(*wait_status) &&
      WEXITSTATUS(*wait_status) == 0) {
    return output;
  }
  return absl::UnknownError(
      absl::StrCat(command, " ", DescribeWaitStatus(wait_status),
                   "; output: ", absl::StripTrailingAsciiWhitespace(output)));
}

}  // namespace stockade
