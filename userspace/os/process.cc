// SPDX-License-Identifier: Apache-2.0
#include "stockade/os/process.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {

absl::StatusOr<pid_t> SpawnProcess(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("nothing to run");
  // Everything the child needs is made here: after fork only async-signal-safe calls.
  std::vector<std::string> args = argv;
  std::vector<char*> pointers;
  for (std::string& a : args) pointers.push_back(a.data());
  pointers.push_back(nullptr);
  ScopedFd null_fd(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null_fd.valid()) return ErrnoStatus(errno, "open /dev/null");
  const int out = options.stdout_fd >= 0 ? options.stdout_fd : null_fd.get();
  const int err = options.stderr_fd >= 0 ? options.stderr_fd : null_fd.get();
  ScopedFd netns_fd;
  if (!options.netns_path.empty()) {
    netns_fd = ScopedFd(open(options.netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns_fd.valid()) return ErrnoStatus(errno, absl::StrCat("open ", options.netns_path, " for ", argv[0]));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return ErrnoStatus(errno, absl::StrCat("fork for ", argv[0]));
  if (pid == 0) {
    if (options.die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(126);  // the parent died before prctl took
    }
    if (options.own_process_group) setpgid(0, 0);
    if (netns_fd.valid() && setns(netns_fd.get(), CLONE_NEWNET) != 0) _exit(125);
    dup2(null_fd.get(), STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    if (options.search_path) {
      execvp(pointers[0], pointers.data());
    } else {
      execv(pointers[0], pointers.data());
    }
    _exit(127);
  }
  return pid;
}

}  // namespace stockade
