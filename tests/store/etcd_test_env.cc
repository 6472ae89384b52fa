// SPDX-License-Identifier: Apache-2.0
#include "tests/store/etcd_test_env.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "stockade/netns/netns.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/process.h"
#include "stockade/os/scoped_fd.h"
#include "stockade/store/etcd_client.h"

namespace stockade::testing {
namespace {

std::string LogTail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

// A Get of a probe key from `netns_path` (empty: here): OK once etcd answers.
absl::Status ProbeEtcd(const EtcdClient& client, const std::string& netns_path) {
  std::optional<NetnsGuard> inside;
  if (!netns_path.empty()) {
    absl::StatusOr<NetnsGuard> entered = NetnsGuard::Enter(netns_path);
    if (!entered.ok()) return entered.status();
    inside.emplace(std::move(*entered));
  }
  return client.Get("/stockade-test-probe").status();
}

}  // namespace

absl::StatusOr<uint16_t> FreeLoopbackPort() {
  ScopedFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return ErrnoStatus(errno, "socket for a free port");
  sockaddr_in address{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
    return ErrnoStatus(errno, "bind 127.0.0.1:0");
  socklen_t length = sizeof(address);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
    return ErrnoStatus(errno, "getsockname");
  return ntohs(address.sin_port);
}

absl::StatusOr<EtcdServerTls> MakeEtcdServerTls(const std::string& dir, absl::string_view client_subject) {
  TestCertificates certificates(dir);
  absl::StatusOr<TestCertificate> ca = certificates.MakeCa("ca");
  if (!ca.ok()) return ca.status();
  absl::StatusOr<TestCertificate> server = certificates.MakeSigned("etcd", *ca, "IP:127.0.0.1");
  if (!server.ok()) return server.status();
  absl::StatusOr<TestCertificate> client =
      certificates.MakeSigned("host-a", *ca, "DNS:host-a", /*expired=*/false, client_subject);
  if (!client.ok()) return client.status();
  return EtcdServerTls{.server = *server, .ca = ca->cert, .ca_key = ca->key, .client = *client};
}

absl::StatusOr<std::unique_ptr<EtcdTestServer>> EtcdTestServer::Start(const EtcdServerTls* tls,
                                                                      const EtcdTestOptions& where) {
  if (access(kEtcdBinary, X_OK) != 0)
    return absl::FailedPreconditionError(absl::StrCat(kEtcdBinary, " missing (Debian package etcd-server)"));
  std::unique_ptr<EtcdTestServer> server(new EtcdTestServer());
  char dir_template[] = "/tmp/stockade-etcd-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return ErrnoStatus(errno, "mkdtemp /tmp/stockade-etcd-XXXXXX");
  server->data_dir_ = dir_template;  // from here on the destructor removes it

  // The kernel's free ports, closed before etcd binds them: another process
  // could take one in between, which shows as etcd ending at once; then the
  // start is tried again on new ports.
  const std::string log_path = absl::StrCat(server->data_dir_, "/etcd.log");
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<uint16_t> client_port = FreeLoopbackPort();
    absl::StatusOr<uint16_t> peer_port = FreeLoopbackPort();
    if (!client_port.ok()) return client_port.status();
    if (!peer_port.ok()) return peer_port.status();
    if (*client_port == *peer_port) continue;
    const std::string scheme = tls != nullptr ? "https" : "http";
    server->client_url_ = absl::StrCat(scheme, "://", where.address, ":", *client_port);
    const std::string peer_url = absl::StrCat("http://", where.address, ":", *peer_port);
    std::vector<std::string> argv = {kEtcdBinary,
                                     "--name=stockade-test",
                                     absl::StrCat("--data-dir=", server->data_dir_, "/data"),
                                     absl::StrCat("--listen-client-urls=", server->client_url_),
                                     absl::StrCat("--advertise-client-urls=", server->client_url_),
                                     absl::StrCat("--listen-peer-urls=", peer_url),
                                     absl::StrCat("--initial-advertise-peer-urls=", peer_url),
                                     absl::StrCat("--initial-cluster=stockade-test=", peer_url),
                                     "--initial-cluster-state=new",
                                     "--logger=zap",
                                     "--log-outputs=stderr",
                                     "--log-level=warn"};
    if (tls != nullptr) {
      argv.push_back(absl::StrCat("--cert-file=", tls->server.cert));
      argv.push_back(absl::StrCat("--key-file=", tls->server.key));
      argv.push_back(absl::StrCat("--trusted-ca-file=", tls->ca));
      argv.push_back("--client-cert-auth");
    }
    argv.insert(argv.end(), where.extra_flags.begin(), where.extra_flags.end());
    ScopedFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (log.get() < 0) return ErrnoStatus(errno, absl::StrCat("open ", log_path));
    absl::StatusOr<pid_t> pid =
        SpawnProcess(argv, {.stdout_fd = log.get(), .stderr_fd = log.get(), .own_process_group = true,
                            .netns_path = where.netns_path});
    if (!pid.ok()) return pid.status();
    server->pid_ = *pid;
    server->netns_path_ = where.netns_path;

    EtcdClientOptions probe_options{.endpoints = {server->client_url_},
                                    .dial_timeout = absl::Milliseconds(200),
                                    .command_timeout = absl::Seconds(1)};
    if (tls != nullptr) {
      probe_options.cacert = tls->ca;
      probe_options.cert = tls->client.cert;
      probe_options.key = tls->client.key;
    }
    absl::StatusOr<EtcdClient> probe = EtcdClient::Create(probe_options);
    if (!probe.ok()) return probe.status();
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    absl::Status last = absl::UnknownError("not probed");
    bool exited = false;
    while (absl::Now() < deadline) {
      if (waitpid(server->pid_, nullptr, WNOHANG) == server->pid_) {
        server->pid_ = -1;
        exited = true;
        break;
      }
      last = ProbeEtcd(*probe, where.netns_path);
      if (last.ok()) {
        server->argv_ = argv;
        server->probe_options_ = probe_options;
        server->log_path_ = log_path;
        return server;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    if (!exited)
      return absl::DeadlineExceededError(
          absl::StrCat("etcd did not answer within 10 s (", last.message(), "); its log:\n", LogTail(log_path)));
  }
  return absl::InternalError(absl::StrCat("etcd ended at start three times; its log:\n", LogTail(log_path)));
}

void EtcdTestServer::Stop() {
  if (pid_ <= 0) return;
  // A stopped process would hold SIGTERM pending, and the wait below forever.
  kill(pid_, SIGCONT);
  kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

absl::Status EtcdTestServer::Restart(bool wipe) {
  Stop();
  if (wipe) {
    std::error_code ec;
    std::filesystem::remove_all(data_dir_ + "/data", ec);
    if (ec) return absl::InternalError(absl::StrCat("remove ", data_dir_, "/data: ", ec.message()));
  }
  ScopedFd log(open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (log.get() < 0) return ErrnoStatus(errno, absl::StrCat("open ", log_path_));
  absl::StatusOr<pid_t> pid =
      SpawnProcess(argv_, {.stdout_fd = log.get(), .stderr_fd = log.get(), .own_process_group = true,
                           .netns_path = netns_path_});
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  absl::StatusOr<EtcdClient> probe = EtcdClient::Create(probe_options_);
  if (!probe.ok()) return probe.status();
  absl::Status last;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
    last = ProbeEtcd(*probe, netns_path_);
    if (last.ok()) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("etcd restarted did not answer within 10 s (", last.message(), "); its log:\n", LogTail(log_path_)));
}

void EtcdTestServer::Freeze() {
  if (pid_ <= 0) return;
  kill(pid_, SIGSTOP);
  // kill() returns before every thread has stopped, and a request sent in
  // between would still be answered: wait for the stop to be reported.
  int status = 0;
  waitpid(pid_, &status, WUNTRACED);
}

EtcdTestServer::~EtcdTestServer() {
  Stop();
  if (!data_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(data_dir_, ignored);
  }
}

}  // namespace stockade::testing
