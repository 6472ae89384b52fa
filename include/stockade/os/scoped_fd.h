// SPDX-License-Identifier: Apache-2.0
#ifndef STOCKADE_INCLUDE_STOCKADE_OS_SCOPED_FD_H_
#define STOCKADE_INCLUDE_STOCKADE_OS_SCOPED_FD_H_

#include <unistd.h>

#include <utility>

namespace stockade {

// Owns one file descriptor and closes it when it goes.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ScopedFd(ScopedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~ScopedFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_OS_SCOPED_FD_H_
