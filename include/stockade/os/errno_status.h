// SPDX-License-Identifier: Apache-2.0
//
// One place that turns a failed syscall into an absl::Status, so every module
// reports errors the same way: "<what>: <strerror>", with the canonical code
// nearest to the errno (ENOENT -> NotFound, EPERM -> PermissionDenied, ...).

#ifndef STOCKADE_INCLUDE_STOCKADE_OS_ERRNO_STATUS_H_
#define STOCKADE_INCLUDE_STOCKADE_OS_ERRNO_STATUS_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace stockade {

// Returns a non-OK status for errno value `err`, e.g.
//   ErrnoStatus(EPERM, "setns into /run/netns/x")
//   -> PermissionDenied "setns into /run/netns/x: Operation not permitted".
// `what` should name the operation and its object, because the errno text
// alone never says which of many syscalls failed.
[[nodiscard]] inline absl::Status ErrnoStatus(int err, std::string_view what) {
  // absl::ErrnoToStatus(0, ...) would be OK; a caller that reached here with
  // errno 0 still failed (errno was clobbered), so never report success.
  // Debian builds Abseil with its own absl::string_view type, which
  // std::string_view does not convert to implicitly.
  const absl::string_view what_view(what.data(), what.size());
  if (err == 0) {
    return absl::UnknownError(
        absl::StrCat(what_view, ": unknown error (errno 0)"));
  }
  // ErrnoToStatus picks the nearest canonical code and appends the thread-safe
  // strerror text.
  return absl::ErrnoToStatus(err, what_view);
}

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_OS_ERRNO_STATUS_H_
