// SPDX-License-Identifier: Apache-2.0
#include "tests/support/tls_test_env.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/process.h"
#include "stockade/os/scoped_fd.h"

namespace stockade::testing {
namespace {

constexpr char kNewEcKey[] = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

absl::Status Run(const std::string& command) {
  if (std::system(absl::StrCat(command, " >/dev/null 2>&1").c_str()) != 0)
    return absl::InternalError(absl::StrCat("failed: ", command));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TestCertificate> TestCertificates::MakeCa(absl::string_view name) const {
  TestCertificate ca{.cert = absl::StrCat(dir_, "/", name, ".pem"), .key = absl::StrCat(dir_, "/", name, "-key.pem")};
  if (absl::Status s = Run(absl::StrCat("openssl req -x509 ", kNewEcKey, " -subj /CN=", name, " -days 2 -keyout ",
                                        ca.key, " -out ", ca.cert));
      !s.ok())
    return s;
  if (chmod(ca.key.c_str(), 0600) != 0) return ErrnoStatus(errno, absl::StrCat("chmod ", ca.key));
  return ca;
}

absl::StatusOr<TestCertificate> TestCertificates::MakeSigned(absl::string_view name, const TestCertificate& ca,
                                                             absl::string_view san, bool expired,
                                                             absl::string_view subject) const {
  TestCertificate leaf{.cert = absl::StrCat(dir_, "/", name, ".pem"), .key = absl::StrCat(dir_, "/", name, "-key.pem")};
  const std::string csr = absl::StrCat(dir_, "/", name, ".csr");
  const std::string extensions = absl::StrCat(dir_, "/", name, ".ext");
  std::ofstream(extensions) << "subjectAltName=" << san << "\n";
  const std::string subject_text = subject.empty() ? absl::StrCat("/CN=", name) : std::string(subject);
  if (absl::Status s =
          Run(absl::StrCat("openssl req ", kNewEcKey, " -subj ", subject_text, " -keyout ", leaf.key, " -out ", csr));
      !s.ok())
    return s;
  // OpenSSL 3.0's x509 has no -not_after; -days -1 ends the certificate a day
  // before it starts (now), which verifiers report as expired.
  if (absl::Status s = Run(absl::StrCat("openssl x509 -req -in ", csr, " -CA ", ca.cert, " -CAkey ", ca.key,
                                        " -CAcreateserial -days ", expired ? "-1" : "2", " -extfile ", extensions,
                                        " -out ", leaf.cert));
      !s.ok())
    return s;
  if (chmod(leaf.key.c_str(), 0600) != 0) return ErrnoStatus(errno, absl::StrCat("chmod ", leaf.key));
  return leaf;
}

std::vector<std::string> PemBodyPieces(const std::string& path) {
  std::ifstream in(path);
  std::stringstream pem;
  pem << in.rdbuf();
  std::vector<std::string> pieces;
  for (absl::string_view line : absl::StrSplit(pem.str(), '\n')) {
    if (line.empty() || absl::StartsWith(line, "-----")) continue;
    for (size_t at = 0; at + 16 <= line.size(); at += 16) pieces.emplace_back(line.substr(at, 16));
  }
  return pieces;
}

absl::StatusOr<TlsTestServer> TlsTestServer::Start(const TestCertificate& server, const std::string& client_ca) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe for openssl s_server");
  ScopedFd read_end(pipe_fds[0]);
  ScopedFd write_end(pipe_fds[1]);
  std::vector<std::string> argv = {"openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
                                   server.cert, "-key", server.key, "-www"};
  if (!client_ca.empty()) argv.insert(argv.end(), {"-Verify", "1", "-CAfile", client_ca});
  absl::StatusOr<pid_t> pid = SpawnProcess(argv, {.stdout_fd = write_end.get(), .search_path = true});
  if (!pid.ok()) return pid.status();
  TlsTestServer started(*pid, 0);  // stops it on every error below
  write_end = ScopedFd();
  // It prints "ACCEPT 127.0.0.1:<port>" once it listens.
  std::string output;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!absl::StrContains(output, "\n") || !absl::StrContains(output, "ACCEPT")) {
    pollfd p{read_end.get(), POLLIN, 0};
    const int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0 || poll(&p, 1, wait_ms) <= 0)
      return absl::DeadlineExceededError(absl::StrCat("openssl s_server did not listen in 10 s: ", output));
    char buf[256];
    const ssize_t n = read(read_end.get(), buf, sizeof(buf));
    if (n <= 0) return absl::InternalError(absl::StrCat("openssl s_server ended: ", output));
    output.append(buf, n);
  }
  const size_t colon = output.find(':', output.find("ACCEPT"));
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(output.substr(colon + 1, output.find('\n', colon) - colon - 1), &port))
    return absl::InternalError(absl::StrCat("openssl s_server: no port in '", output, "'"));
  started.port_ = static_cast<uint16_t>(port);
  return started;
}

TlsTestServer::~TlsTestServer() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
}

std::string TlsTestServer::docker_host() const { return absl::StrCat("tcp://127.0.0.1:", port_); }

}  // namespace stockade::testing
