// SPDX-License-Identifier: Apache-2.0
//
// A real etcd for the store tests: Debian's etcd (package etcd-server) on
// 127.0.0.1, on ports picked free, with a data directory of its own. Stopped
// by pid and its directory removed when the object ends, however the test
// ended (a crashed test's etcd gets SIGTERM through die_with_parent).
#ifndef STOCKADE_TESTS_STORE_ETCD_TEST_ENV_H_
#define STOCKADE_TESTS_STORE_ETCD_TEST_ENV_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stockade/store/etcd_client.h"
#include "tests/support/tls_test_env.h"

namespace stockade::testing {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";

struct EtcdServerTls {
  TestCertificate server;  // its certificate and key, for 127.0.0.1
  std::string ca;          // signed the server's and the clients' certificates
  std::string ca_key;      // to sign more clients' certificates
  TestCertificate client;  // what the readiness probe shows
};

// Where etcd listens (by default the test's own loopback; for agents in
// namespaces of a test's own, an address in one of them that all reach),
// and flags of its own.
struct EtcdTestOptions {
  std::string netns_path;  // empty: the test's namespace
  std::string address = "127.0.0.1";
  std::vector<std::string> extra_flags;  // on etcd's command line ("--auth-token-ttl=1")
};

// Under `dir`: a test CA, etcd's certificate for 127.0.0.1, and a client's
// ("host-a", subject /CN=host-a unless `client_subject` says otherwise).
[[nodiscard]] absl::StatusOr<EtcdServerTls> MakeEtcdServerTls(const std::string& dir,
                                                              absl::string_view client_subject = "");

class EtcdTestServer {
 public:
  // Returns once etcd answers a range on its client URL (10 s at most). With
  // `tls`, clients must show a certificate signed by tls->ca.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EtcdTestServer>> Start(const EtcdServerTls* tls = nullptr,
                                                                             const EtcdTestOptions& where = {});
  EtcdTestServer(const EtcdTestServer&) = delete;
  EtcdTestServer& operator=(const EtcdTestServer&) = delete;
  ~EtcdTestServer();

  // "http://127.0.0.1:<port>" (https with TLS).
  const std::string& client_url() const { return client_url_; }
  // SIGTERM and wait; the data directory stays until the object ends.
  void Stop();
  // Stop(), then etcd again on the same ports, with its data or (`wipe`)
  // without: a store that lost everything. Returns once it answers.
  [[nodiscard]] absl::Status Restart(bool wipe);
  // SIGSTOP: etcd keeps its sockets but answers nothing, as a hung server.
  // Stop() and the destructor continue it first.
  void Freeze();

 private:
  EtcdTestServer() = default;

  pid_t pid_ = -1;
  std::vector<std::string> argv_;  // as started: Restart() runs it again
  EtcdClientOptions probe_options_;
  std::string netns_path_;  // where it runs, and where it is probed from
  std::string log_path_;
  std::string data_dir_;
  std::string client_url_;
};

// A TCP port on 127.0.0.1 that nothing listens on (the kernel's pick).
[[nodiscard]] absl::StatusOr<uint16_t> FreeLoopbackPort();

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_STORE_ETCD_TEST_ENV_H_
