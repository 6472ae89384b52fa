// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/control_socket.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "stockade/os/errno_status.h"

namespace stockade {
namespace {

constexpr size_t kMaxMessage = 16 << 20;

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Reads until the peer shuts down its side, or `deadline`.
absl::StatusOr<std::string> ReadAll(int fd, absl::Time deadline) {
  std::string data;
  char buf[65536];
  for (;;) {
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0) return absl::DeadlineExceededError("no answer in time");
    pollfd p{fd, POLLIN, 0};
    int ready = poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return absl::DeadlineExceededError("no answer in time");
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read control socket");
    if (n == 0) return data;
    data.append(buf, n);
    if (data.size() > kMaxMessage) return absl::ResourceExhaustedError("control message too large");
  }
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write control socket");
    done += n;
  }
  return absl::OkStatus();
}

}  // namespace

std::string DefaultControlSocketPath(const std::string& instance) {
  return absl::StrCat("/run/stockade/", instance, ".sock");
}

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& path, Handler handler) {
  auto addr = Address(path);
  if (!addr.ok()) return addr.status();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  ScopedFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.valid()) return ErrnoStatus(errno, "create control socket");
  unlink(path.c_str());  // a stale file of a dead agent; the instance lock keeps live ones apart
  mode_t old_mask = umask(0077);  // root only, from the first moment
  int bound = bind(listener.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  umask(old_mask);
  if (bound != 0) return ErrnoStatus(errno, absl::StrCat("bind control socket ", path));
  if (listen(listener.get(), 16) != 0) return ErrnoStatus(errno, absl::StrCat("listen on ", path));
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(listener), path, std::move(handler)));
}

ControlServer::ControlServer(ScopedFd listener, std::string path, Handler handler)
    : listener_(std::move(listener)),
      wakeup_(eventfd(0, EFD_CLOEXEC)),
      path_(std::move(path)),
      handler_(std::move(handler)) {
  thread_ = std::thread([this] { Serve(); });
}

ControlServer::~ControlServer() {
  uint64_t one = 1;
  (void)!write(wakeup_.get(), &one, sizeof(one));
  thread_.join();
  unlink(path_.c_str());
}

void ControlServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wakeup_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    ScopedFd client(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client.valid()) continue;
    nlohmann::json answer;
    auto request = ReadAll(client.get(), absl::Now() + absl::Seconds(5));
    if (!request.ok()) continue;
    nlohmann::json parsed = nlohmann::json::parse(*request, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      answer = {{"error", "request is not JSON"}};
    } else {
      answer = handler_(parsed);
    }
    // Answers quote operators' files (a policy error names the bad text),
    // which need not be UTF-8; the default handler would throw here and end
    // the agent, so bad bytes become U+FFFD.
    (void)WriteAll(client.get(), answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

absl::StatusOr<nlohmann::json> ControlRequest(const std::string& path, const nlohmann::json& request,
                                              absl::Duration timeout) {
  auto addr = Address(path);
  if (!addr.ok()) return addr.status();
  ScopedFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus(errno, "create socket");
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED)
      return absl::UnavailableError(absl::StrCat("stockaded is not running (nothing listens at ", path, ")"));
    if (err == EACCES || err == EPERM)
      return absl::PermissionDeniedError(absl::StrCat("permission denied on ", path, ": run as root"));
    return ErrnoStatus(err, absl::StrCat("connect to ", path));
  }
  if (auto s = WriteAll(fd.get(), request.dump()); !s.ok()) return s;
  shutdown(fd.get(), SHUT_WR);
  auto answer = ReadAll(fd.get(), absl::Now() + timeout);
  if (!answer.ok()) return answer.status();
  nlohmann::json parsed = nlohmann::json::parse(*answer, nullptr, false);
  if (parsed.is_discarded()) return absl::DataLossError(absl::StrCat("stockaded answered garbage on ", path));
  if (parsed.contains("error")) return absl::FailedPreconditionError(parsed["error"].get<std::string>());
  return parsed;
}

}  // namespace stockade
