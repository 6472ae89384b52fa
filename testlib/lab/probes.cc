// SPDX-License-Identifier: Apache-2.0
#include "testlib/lab/probes.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "stockade/net/addresses.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"

namespace stockade::lab {
namespace {

using Clock = std::chrono::steady_clock;

// Debian's Abseil has its own absl::string_view, which std::string_view does
// not convert to implicitly.
absl::string_view AbslView(std::string_view view) {
  return absl::string_view(view.data(), view.size());
}

std::string Milliseconds(Clock::duration duration) {
  return absl::StrFormat(
      "%.1f ms", std::chrono::duration<double, std::milli>(duration).count());
}

class Deadline {
 public:
  explicit Deadline(std::chrono::milliseconds budget)
      : start_(Clock::now()), end_(start_ + budget) {}

  // Whole milliseconds left, rounded up so that poll() never returns early.
  int RemainingMs() const {
    const auto left = end_ - Clock::now();
    if (left <= Clock::duration::zero()) return 0;
    return static_cast<int>(
        std::chrono::ceil<std::chrono::milliseconds>(left).count());
  }
  std::string Elapsed() const { return Milliseconds(Clock::now() - start_); }

 private:
  Clock::time_point start_;
  Clock::time_point end_;
};

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const {
    return reinterpret_cast<const sockaddr*>(&storage);
  }
  // Address and port, which is all that tells one probe's socket from another.
  bool operator==(const SocketAddress& other) const {
    if (family() != other.family()) return false;
    if (family() == AF_INET) {
      const auto& a = reinterpret_cast<const sockaddr_in&>(storage);
      const auto& b = reinterpret_cast<const sockaddr_in&>(other.storage);
      return a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr;
    }
    const auto& a = reinterpret_cast<const sockaddr_in6&>(storage);
    const auto& b = reinterpret_cast<const sockaddr_in6&>(other.storage);
    return a.sin6_port == b.sin6_port &&
           std::memcmp(&a.sin6_addr, &b.sin6_addr, sizeof(a.sin6_addr)) == 0;
  }
};

[[nodiscard]] absl::StatusOr<SocketAddress> MakeSocketAddress(
    std::string_view address, uint16_t port) {
  absl::StatusOr<IpAddress> ip = ParseIpAddress(AbslView(address));
  if (!ip.ok()) return ip.status();
  SocketAddress result;
  if (ip->family == STOCKADE_AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(result.storage);
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    in.sin_addr.s_addr = ip->ipv4_network_order();
    result.length = sizeof(in);
  } else {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(result.storage);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    std::memcpy(&in6.sin6_addr, ip->bytes.data(), sizeof(in6.sin6_addr));
    result.length = sizeof(in6);
  }
  return result;
}

[[nodiscard]] absl::StatusOr<SocketAddress> LocalAddress(int fd) {
  SocketAddress local;
  local.length = sizeof(local.storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local.storage),
                    &local.length) != 0) {
    return ErrnoStatus(errno, "getsockname of the probe's client socket");
  }
  return local;
}

// A non-blocking socket of the namespace at `netns_path`.
[[nodiscard]] absl::StatusOr<ScopedFd> SocketIn(std::string_view netns_path,
                                                int family, int type) {
  absl::StatusOr<NetnsGuard> guard = NetnsGuard::Enter(netns_path);
  if (!guard.ok()) return guard.status();
  ScopedFd fd(::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const int socket_errno = errno;
  if (absl::Status s = guard->Restore(); !s.ok()) return s;
  if (!fd.valid()) {
    return ErrnoStatus(socket_errno,
                       absl::StrCat("socket in netns ", AbslView(netns_path)));
  }
  return fd;
}

[[nodiscard]] absl::Status Bind(int fd, const SocketAddress& address,
                                std::string_view description) {
  if (::bind(fd, address.get(), address.length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("bind ", AbslView(description)));
  }
  return absl::OkStatus();
}

// Waits for `events` on `fd`; false when the deadline passed first.
[[nodiscard]] absl::StatusOr<bool> WaitFor(int fd, short events,
                                           const Deadline& deadline) {
  for (;;) {
    pollfd entry = {.fd = fd, .events = events, .revents = 0};
    const int ready = ::poll(&entry, 1, deadline.RemainingMs());
    if (ready > 0) return true;  // errors show in the call that follows
    if (ready == 0) return false;
    if (errno != EINTR) return ErrnoStatus(errno, "poll a probe socket");
  }
}

// The outcome an errno of connect(), send() or recv() stands for, if any.
std::optional<ProbeOutcome> OutcomeOfErrno(int err) {
  switch (err) {
    case ECONNREFUSED:
      return ProbeOutcome::kRefused;
    case EHOSTUNREACH:
    case ENETUNREACH:
      return ProbeOutcome::kUnreachable;
    default:
      return std::nullopt;
  }
}

[[nodiscard]] absl::StatusOr<ProbeResult> ResultOfErrno(int err,
                                                        std::string_view what) {
  if (std::optional<ProbeOutcome> outcome = OutcomeOfErrno(err)) {
    return ProbeResult{*outcome,
                       absl::StrCat(AbslView(what), ": ", std::strerror(err))};
  }
  return ErrnoStatus(err, what);
}

std::vector<uint8_t> MakePayload(size_t size) {
  std::vector<uint8_t> payload(size);
  for (size_t i = 0; i < size; ++i) payload[i] = static_cast<uint8_t>(i * 7);
  return payload;
}

// Sends all of `data` on a stream socket; false if the deadline passed.
[[nodiscard]] absl::StatusOr<bool> SendAll(int fd,
                                           const std::vector<uint8_t>& data,
                                           const Deadline& deadline) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n =
        ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (errno != EAGAIN && errno != EINTR) {
      return ErrnoStatus(errno, "send on a probe connection");
    }
    absl::StatusOr<bool> writable = WaitFor(fd, POLLOUT, deadline);
    if (!writable.ok() || !*writable) return writable;
  }
  return true;
}

// Reads exactly `size` bytes from a stream socket; nullopt if the deadline
// passed first.
[[nodiscard]] absl::StatusOr<std::optional<std::vector<uint8_t>>> ReceiveAll(
    int fd, size_t size, const Deadline& deadline) {
  std::vector<uint8_t> data(size);
  size_t received = 0;
  while (received < size) {
    const ssize_t n = ::recv(fd, data.data() + received, size - received, 0);
    if (n > 0) {
      received += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrFormat(
          "probe connection closed after %d of %d bytes", received, size));
    }
    if (errno != EAGAIN && errno != EINTR) {
      return ErrnoStatus(errno, "recv on a probe connection");
    }
    absl::StatusOr<bool> readable = WaitFor(fd, POLLIN, deadline);
    if (!readable.ok()) return readable.status();
    if (!*readable) return std::nullopt;
  }
  return data;
}

// Accepts the connection that `client` made; connections left over from
// earlier probes are closed on the way.
[[nodiscard]] absl::StatusOr<ScopedFd> AcceptFrom(int listener_fd,
                                                  const SocketAddress& client,
                                                  const Deadline& deadline) {
  for (;;) {
    SocketAddress peer;
    peer.length = sizeof(peer.storage);
    ScopedFd accepted(::accept4(listener_fd,
                                reinterpret_cast<sockaddr*>(&peer.storage),
                                &peer.length, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (accepted.valid()) {
      if (peer == client) return accepted;
      continue;
    }
    if (errno != EAGAIN && errno != EINTR) {
      return ErrnoStatus(errno, "accept a probe connection");
    }
    absl::StatusOr<bool> readable = WaitFor(listener_fd, POLLIN, deadline);
    if (!readable.ok()) return readable.status();
    if (!*readable) {
      // The client saw the handshake complete, so the kernel queued it.
      return absl::InternalError(
          "connected, but the listener never saw the connection");
    }
  }
}

[[nodiscard]] absl::Status CheckEcho(const std::vector<uint8_t>& expected,
                                     const std::vector<uint8_t>& got,
                                     std::string_view what) {
  if (got == expected) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrFormat("%s arrived damaged: %d bytes where %d were sent",
                      AbslView(what), got.size(), expected.size()));
}

[[nodiscard]] absl::StatusOr<ScopedFd> ClientSocket(
    std::string_view client_netns, int family, int type,
    const ProbeOptions& options) {
  absl::StatusOr<ScopedFd> client = SocketIn(client_netns, family, type);
  if (!client.ok() || options.source_address.empty()) return client;
  absl::StatusOr<SocketAddress> source =
      MakeSocketAddress(options.source_address, 0);
  if (!source.ok()) return source.status();
  if (absl::Status s =
          Bind(client->get(), *source,
               absl::StrCat("probe client to ", options.source_address));
      !s.ok()) {
    return s;
  }
  return client;
}

// One direction of the TCP probe's echo: `payload` sent on `from` must arrive whole on `to`.
struct EchoLeg {
  int from;
  int to;
  const char* context;  // what had already worked, for the message
  const char* what;     // "request" or "answer"
};

// An empty optional when the leg worked; a timed-out result when it did not.
[[nodiscard]] absl::StatusOr<std::optional<ProbeResult>> CarryEcho(const EchoLeg& leg,
                                                                  const std::vector<uint8_t>& payload,
                                                                  const Deadline& deadline) {
  absl::StatusOr<bool> sent = SendAll(leg.from, payload, deadline);
  if (!sent.ok()) return sent.status();
  if (!*sent)
    return ProbeResult{ProbeOutcome::kTimedOut, absl::StrCat(leg.context, " the ", leg.what, " could not be sent")};
  auto arrived = ReceiveAll(leg.to, payload.size(), deadline);
  if (!arrived.ok()) return arrived.status();
  if (!arrived->has_value())
    return ProbeResult{ProbeOutcome::kTimedOut, absl::StrCat(leg.context, " the ", leg.what, " did not arrive")};
  if (absl::Status s = CheckEcho(payload, **arrived, absl::StrCat("the ", leg.what)); !s.ok()) return s;
  return std::nullopt;
}

absl::StatusOr<ProbeResult> ProbeTcp(std::string_view client_netns,
                                     const Listener& server,
                                     const ProbeOptions& options) {
  const Deadline deadline(options.timeout);
  absl::StatusOr<SocketAddress> target =
      MakeSocketAddress(server.address(), server.port());
  if (!target.ok()) return target.status();
  absl::StatusOr<ScopedFd> client =
      ClientSocket(client_netns, target->family(), SOCK_STREAM, options);
  if (!client.ok()) return client.status();

  if (::connect(client->get(), target->get(), target->length) != 0 &&
      errno != EINPROGRESS) {
    return ResultOfErrno(errno, "connect");
  }
  absl::StatusOr<bool> connected = WaitFor(client->get(), POLLOUT, deadline);
  if (!connected.ok()) return connected.status();
  if (!*connected) {
    return ProbeResult{
        ProbeOutcome::kTimedOut,
        absl::StrCat("no SYN-ACK within ", options.timeout.count(), " ms")};
  }
  int error = 0;
  socklen_t error_length = sizeof(error);
  if (::getsockopt(client->get(), SOL_SOCKET, SO_ERROR, &error,
                   &error_length) != 0) {
    return ErrnoStatus(errno, "getsockopt(SO_ERROR) of a probe connection");
  }
  if (error != 0) return ResultOfErrno(error, "connect");

  absl::StatusOr<SocketAddress> local = LocalAddress(client->get());
  if (!local.ok()) return local.status();
  absl::StatusOr<ScopedFd> accepted = AcceptFrom(server.fd(), *local, deadline);
  if (!accepted.ok()) return accepted.status();

  const std::vector<uint8_t> request = MakePayload(options.payload_bytes);
  for (const EchoLeg& leg : {EchoLeg{client->get(), accepted->get(), "connected, but", "request"},
                             EchoLeg{accepted->get(), client->get(), "the request arrived;", "answer"}}) {
    absl::StatusOr<std::optional<ProbeResult>> failed = CarryEcho(leg, request, deadline);
    if (!failed.ok()) return failed.status();
    if (failed->has_value()) return **failed;
  }
  return ProbeResult{ProbeOutcome::kAnswered,
                     absl::StrCat("answered in ", deadline.Elapsed())};
}

absl::StatusOr<ProbeResult> ProbeUdp(std::string_view client_netns,
                                     const Listener& server,
                                     const ProbeOptions& options) {
  const Deadline deadline(options.timeout);
  absl::StatusOr<SocketAddress> target =
      MakeSocketAddress(server.address(), server.port());
  if (!target.ok()) return target.status();
  absl::StatusOr<ScopedFd> client =
      ClientSocket(client_netns, target->family(), SOCK_DGRAM, options);
  if (!client.ok()) return client.status();
  // Connected, so that an ICMP port unreachable comes back as ECONNREFUSED.
  if (::connect(client->get(), target->get(), target->length) != 0) {
    return ResultOfErrno(errno, "connect a UDP probe");
  }
  absl::StatusOr<SocketAddress> local = LocalAddress(client->get());
  if (!local.ok()) return local.status();

  const std::vector<uint8_t> request = MakePayload(options.payload_bytes);
  if (::send(client->get(), request.data(), request.size(), 0) < 0) {
    return ResultOfErrno(
        errno, absl::StrCat("send a ", request.size(), "-byte UDP request"));
  }

  // Serve the request: the first datagram from this client. A datagram is
  // reassembled whole or not delivered at all, so one recv reads it.
  std::vector<uint8_t> datagram(65536);
  SocketAddress sender;
  ssize_t size = -1;
  while (size < 0) {
    absl::StatusOr<bool> readable = WaitFor(server.fd(), POLLIN, deadline);
    if (!readable.ok()) return readable.status();
    if (!*readable) {
      return ProbeResult{ProbeOutcome::kTimedOut,
                         absl::StrCat("the request did not arrive within ",
                                      options.timeout.count(), " ms")};
    }
    sender.length = sizeof(sender.storage);
    size = ::recvfrom(server.fd(), datagram.data(), datagram.size(), 0,
                      reinterpret_cast<sockaddr*>(&sender.storage),
                      &sender.length);
    if (size < 0 && errno != EAGAIN && errno != EINTR) {
      return ErrnoStatus(errno, "recvfrom on a UDP listener");
    }
    if (size >= 0 && !(sender == *local)) size = -1;  // an earlier probe's
  }
  datagram.resize(static_cast<size_t>(size));
  if (absl::Status s = CheckEcho(request, datagram, "the request"); !s.ok()) {
    return s;
  }
  if (::sendto(server.fd(), datagram.data(), datagram.size(), 0, sender.get(),
               sender.length) < 0) {
    return ErrnoStatus(errno, "send the answer of a UDP probe");
  }

  for (;;) {
    absl::StatusOr<bool> readable = WaitFor(client->get(), POLLIN, deadline);
    if (!readable.ok()) return readable.status();
    if (!*readable) {
      return ProbeResult{ProbeOutcome::kTimedOut,
                         "the request arrived; the answer did not"};
    }
    std::vector<uint8_t> answer(65536);
    const ssize_t n = ::recv(client->get(), answer.data(), answer.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return ResultOfErrno(errno, "receive the answer");
    answer.resize(static_cast<size_t>(n));
    if (absl::Status s = CheckEcho(request, answer, "the answer"); !s.ok()) {
      return s;
    }
    return ProbeResult{ProbeOutcome::kAnswered,
                       absl::StrCat("answered in ", deadline.Elapsed())};
  }
}

}  // namespace

std::string_view ProbeOutcomeName(ProbeOutcome outcome) {
  switch (outcome) {
    case ProbeOutcome::kAnswered:
      return "answered";
    case ProbeOutcome::kTimedOut:
      return "timed out";
    case ProbeOutcome::kRefused:
      return "refused";
    case ProbeOutcome::kUnreachable:
      return "unreachable";
  }
  return "unknown";
}

absl::StatusOr<Listener> Listener::Open(std::string_view netns_path,
                                        Transport transport,
                                        std::string_view address,
                                        uint16_t port) {
  absl::StatusOr<SocketAddress> bind_address = MakeSocketAddress(address, port);
  if (!bind_address.ok()) return bind_address.status();
  const bool tcp = transport == Transport::kTcp;
  absl::StatusOr<ScopedFd> fd = SocketIn(netns_path, bind_address->family(),
                                         tcp ? SOCK_STREAM : SOCK_DGRAM);
  if (!fd.ok()) return fd.status();
  // The previous probe's connection may linger in TIME_WAIT on this port.
  const int on = 1;
  if (::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) {
    return ErrnoStatus(errno, "setsockopt(SO_REUSEADDR) on a listener");
  }
  const std::string description = absl::StrFormat(
      "%s listener to %s port %d in netns %s", tcp ? "tcp" : "udp",
      AbslView(address), port, AbslView(netns_path));
  if (absl::Status s = Bind(fd->get(), *bind_address, description); !s.ok()) {
    return s;
  }
  if (tcp && ::listen(fd->get(), 16) != 0) {
    return ErrnoStatus(errno, absl::StrCat("listen on ", description));
  }
  return Listener(*std::move(fd), transport, std::string(address), port);
}

absl::StatusOr<ProbeResult> ProbeListener(std::string_view client_netns,
                                          const Listener& server,
                                          const ProbeOptions& options) {
  return server.transport() == Transport::kTcp
             ? ProbeTcp(client_netns, server, options)
             : ProbeUdp(client_netns, server, options);
}

absl::StatusOr<ProbeResult> ProbeEcho(std::string_view client_netns,
                                      std::string_view address,
                                      std::chrono::milliseconds timeout) {
  absl::StatusOr<IpAddress> ip = ParseIpAddress(AbslView(address));
  if (!ip.ok()) return ip.status();
  const std::vector<std::string> argv = {
      "ping",
      ip->family == STOCKADE_AF_INET6 ? "-6" : "-4",
      "-n",
      "-q",
      "-c",
      "1",
      "-W",
      absl::StrFormat("%.3f", static_cast<double>(timeout.count()) / 1000),
      std::string(address)};
  const Deadline deadline(timeout);
  // ping keeps to -W; the margin only catches a ping that hangs.
  absl::StatusOr<std::string> output =
      RunCommand(argv, client_netns, timeout + std::chrono::milliseconds(2000));
  if (output.ok()) {
    return ProbeResult{ProbeOutcome::kAnswered,
                       absl::StrCat("answered in ", deadline.Elapsed())};
  }
  // ping exits with 1 when no reply came, with 2 on any other error.
  if (absl::IsUnknown(output.status()) &&
      absl::StrContains(output.status().message(), "exited with status 1")) {
    return ProbeResult{
        ProbeOutcome::kTimedOut,
        absl::StrCat("no echo reply within ", timeout.count(), " ms")};
  }
  return output.status();
}

}  // namespace stockade::lab
