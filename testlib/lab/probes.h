// SPDX-License-Identifier: Apache-2.0
//
// Traffic probes between network namespaces, run in-process: a socket is
// made inside a namespace (NetnsGuard, then socket()) and stays there, so a
// single thread can play client and server of one exchange in turn. Every
// probe is bounded by its timeout; none sends anywhere but the address it is
// given, which must belong to a namespace of the caller's own.
//
//   auto server = Listener::Open(web.path, Transport::kTcp, "10.77.0.12", 80);
//   auto result = ProbeListener(frontend.path, *server, {.timeout = 1s});
//   if (result.ok() && result->answered()) ...
#ifndef STOCKADE_TESTLIB_LAB_PROBES_H_
#define STOCKADE_TESTLIB_LAB_PROBES_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "stockade/os/scoped_fd.h"

namespace stockade::lab {

enum class Transport { kTcp, kUdp };

// A listening TCP socket, or a bound UDP socket, inside a namespace. Nothing
// serves it in the background: ProbeListener() does, between the client's
// steps.
class Listener {
 public:
  [[nodiscard]] static absl::StatusOr<Listener> Open(
      std::string_view netns_path, Transport transport,
      std::string_view address, uint16_t port);

  Transport transport() const { return transport_; }
  const std::string& address() const { return address_; }
  uint16_t port() const { return port_; }
  int fd() const { return fd_.get(); }

 private:
  Listener(ScopedFd fd, Transport transport, std::string address, uint16_t port)
      : fd_(std::move(fd)),
        transport_(transport),
        address_(std::move(address)),
        port_(port) {}

  ScopedFd fd_;
  Transport transport_;
  std::string address_;
  uint16_t port_;
};

enum class ProbeOutcome {
  kAnswered,     // the request arrived and its answer came back
  kTimedOut,     // something was lost on the way: `detail` says what
  kRefused,      // a RST or an ICMP port unreachable came back
  kUnreachable,  // no route, or the neighbour could not be resolved
};
std::string_view ProbeOutcomeName(ProbeOutcome outcome);

struct ProbeResult {
  ProbeOutcome outcome = ProbeOutcome::kTimedOut;
  // For a person: "answered in 0.4 ms", "no SYN-ACK within 200 ms".
  std::string detail;

  bool answered() const { return outcome == ProbeOutcome::kAnswered; }
};

struct ProbeOptions {
  // For the whole exchange. An answer on veth takes well under a
  // millisecond, so a probe expected to fail can afford a short one.
  std::chrono::milliseconds timeout{1000};
  // Binds the client to this address; empty: the kernel picks.
  std::string source_address;
  // Request size; the answer echoes it. A UDP request above the path MTU
  // leaves the client as IP fragments.
  size_t payload_bytes = 64;
};

// Sends a request from the namespace at `client_netns` to `server`, which
// echoes it back: over a new connection (TCP) or as one datagram each way
// (UDP). The echo must match the request byte for byte; anything else is an
// error, as are local failures (socket, bind, a message too long).
[[nodiscard]] absl::StatusOr<ProbeResult> ProbeListener(
    std::string_view client_netns, const Listener& server,
    const ProbeOptions& options);

// One ICMP echo: `ping -c 1 -W <timeout>` run inside the namespace.
[[nodiscard]] absl::StatusOr<ProbeResult> ProbeEcho(
    std::string_view client_netns, std::string_view address,
    std::chrono::milliseconds timeout);

}  // namespace stockade::lab

#endif  // STOCKADE_TESTLIB_LAB_PROBES_H_
