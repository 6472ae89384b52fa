// SPDX-License-Identifier: Apache-2.0
//
// Real TLS for the Docker client's tests: certificates made by the openssl
// tool (EC P-256, a fraction of a second each) and `openssl s_server` on
// 127.0.0.1, on a port the kernel picks, answering HTTP GETs with 200 (-www),
// so a handshake that passes makes a Docker ping that passes.
#ifndef STOCKADE_TESTS_SUPPORT_TLS_TEST_ENV_H_
#define STOCKADE_TESTS_SUPPORT_TLS_TEST_ENV_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stockade::testing {

struct TestCertificate {
  std::string cert;  // PEM file
  std::string key;   // PEM file, mode 0600
};

// Files under `dir`, named by the caller; each Make* fails naming the command.
class TestCertificates {
 public:
  explicit TestCertificates(std::string dir) : dir_(std::move(dir)) {}

  // A self-signed CA.
  [[nodiscard]] absl::StatusOr<TestCertificate> MakeCa(absl::string_view name) const;
  // A leaf signed by `ca`: `san` is its subjectAltName ("IP:127.0.0.1",
  // "DNS:elsewhere.example"); `expired` makes it end before now. Its
  // subject is /CN=<name> unless `subject` says otherwise ("/O=stockade").
  [[nodiscard]] absl::StatusOr<TestCertificate> MakeSigned(absl::string_view name, const TestCertificate& ca,
                                                           absl::string_view san, bool expired = false,
                                                           absl::string_view subject = "") const;

 private:
  std::string dir_;
};

// Every 16 characters of the base64 body of the PEM file at `path` (the
// BEGIN/END lines left out): any one of them in a message would be a leak.
std::vector<std::string> PemBodyPieces(const std::string& path);

// `openssl s_server` with `server`'s certificate; with `client_ca` set it
// demands a client certificate signed by it. Stopped (by pid) when destroyed.
class TlsTestServer {
 public:
  [[nodiscard]] static absl::StatusOr<TlsTestServer> Start(const TestCertificate& server,
                                                           const std::string& client_ca = "");
  TlsTestServer(TlsTestServer&& other) noexcept : pid_(other.pid_), port_(other.port_) { other.pid_ = -1; }
  TlsTestServer& operator=(TlsTestServer&&) = delete;
  ~TlsTestServer();

  uint16_t port() const { return port_; }
  // "tcp://127.0.0.1:<port>", a DOCKER_HOST.
  std::string docker_host() const;

 private:
  TlsTestServer(pid_t pid, uint16_t port) : pid_(pid), port_(port) {}
  pid_t pid_;
  uint16_t port_;
};

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_SUPPORT_TLS_TEST_ENV_H_
