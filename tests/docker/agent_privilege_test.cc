// SPDX-License-Identifier: Apache-2.0
//
// The running agent's privileges and secrets, read from the outside:
//   - every thread of stockaded holds exactly kAgentCapabilities (effective,
//     permitted, bounding; nothing inheritable or ambient) and no_new_privs;
//   - with Docker behind TLS that fails (a real server on 127.0.0.1 with an
//     expired certificate), the agent says why in its status, keeps retrying,
//     and neither its log, its control answers nor its metrics carry a byte
//     of the client key it loaded; and no other process may read its memory.
#include <sys/capability.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "stockade/os/capabilities.h"
#include "stockade/netns/netns.h"
#include "stockade/os/process.h"
#include "tests/docker/agent_e2e_env.h"
#include "tests/support/bpf_test_env.h"
#include "tests/support/tls_test_env.h"

namespace stockade::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kAgentReady = absl::Seconds(30);

// "Name:\tvalue" of a /proc status file.
std::map<std::string, std::string> ProcStatus(const std::filesystem::path& path) {
  std::map<std::string, std::string> fields;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits(":\t", 1));
    fields[kv.first] = kv.second;
  }
  return fields;
}

uint64_t HexMask(const std::string& text) {
  uint64_t value = ~uint64_t{0};
  EXPECT_TRUE(absl::SimpleHexAtoi(text, &value)) << "'" << text << "'";
  return value;
}

TEST(AgentPrivilegeTest, KeepsOnlyItsCapabilitiesInEveryThreadAndSetsNoNewPrivs) {
  STOCKADE_REQUIRE_PRIVILEGES();
  AgentInstance instance(absl::StrCat("priv", getpid()));
  absl::StatusOr<pid_t> agent = instance.StartAgent({"--no-docker"});
  ASSERT_TRUE(agent.ok()) << agent.status();
  absl::StatusOr<nlohmann::json> status;
  ASSERT_TRUE(WaitUntil([&] { return (status = instance.Ctl({"status"})).ok(); }, kAgentReady, "agent answers").ok())
      << instance.Log();

  uint64_t kept = 0;
  std::vector<std::string> names;
  for (const Capability& c : kAgentCapabilities) {
    kept |= uint64_t{1} << c.number;
    names.push_back(c.name);
  }
  // The agent lists them by number: NET_ADMIN 12, SYS_PTRACE 19, SYS_ADMIN 21, BPF 39.
  EXPECT_EQ((*status)["capabilities"], nlohmann::json({"CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN", "CAP_BPF"}));
  EXPECT_THAT(names, ::testing::UnorderedElementsAreArray((*status)["capabilities"].get<std::vector<std::string>>()));

  // Threads started before the drop would show more: each thread has its own.
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator(absl::StrCat("/proc/", *agent, "/task"))) {
    std::map<std::string, std::string> fields = ProcStatus(task.path() / "status");
    const std::string where = absl::StrCat("thread ", task.path().filename().string(), " (", fields["Name"], ")");
    EXPECT_EQ(HexMask(fields["CapEff"]), kept) << where;
    EXPECT_EQ(HexMask(fields["CapPrm"]), kept) << where;
    EXPECT_EQ(HexMask(fields["CapBnd"]), kept) << where;
    EXPECT_EQ(HexMask(fields["CapInh"]), 0u) << where;
    EXPECT_EQ(HexMask(fields["CapAmb"]), 0u) << where;
    EXPECT_EQ(fields["NoNewPrivs"], "1") << where;
    ++threads;
  }
  EXPECT_GE(threads, 3) << "the agent runs its event and control threads too";
}

TEST(AgentPrivilegeTest, RefusesToStartWithoutACapabilityItKeeps) {
  STOCKADE_REQUIRE_PRIVILEGES();
  AgentInstance instance(absl::StrCat("privmiss", getpid()));
  // Root's exec permits what the bounding set holds: here all it keeps but CAP_SYS_PTRACE.
  absl::StatusOr<std::string> started =
      RunCommand({"setpriv", "--bounding-set", "-all,+bpf,+net_admin,+sys_admin", "--inh-caps", "-all", STOCKADED_PATH,
                  "--instance", instance.name(), "--no-docker", "--no-metrics", "--state-dir", instance.dir() + "/state"},
                 std::nullopt, std::chrono::seconds(20));
  ASSERT_FALSE(started.ok()) << "stockaded ran without CAP_SYS_PTRACE:\n" << *started;
  EXPECT_THAT(std::string(started.status().message()),
              HasSubstr("stockaded: missing capabilities: CAP_SYS_PTRACE (opening a container process's "
                        "/proc/<pid>/ns/net); run as root or grant them"));
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat("/sys/fs/bpf/stockade/", instance.name())))
      << "refused before loading anything";
}

// In a child process as root with every capability permitted but
// CAP_SYS_PTRACE not effective: process_vm_readv of `pid`'s (unmapped) page 0.
// EFAULT means the kernel let it at the memory; EPERM means `pid` is not
// dumpable (with the permitted set a superset of the target's, the
// dumpable flag is the only check left that needs CAP_SYS_PTRACE).
int ReadMemoryErrno(pid_t pid) {
  const pid_t child = fork();
  if (child == 0) {
    cap_t caps = cap_get_proc();
    const cap_value_t ptrace = CAP_SYS_PTRACE;
    if (caps == nullptr || cap_set_flag(caps, CAP_EFFECTIVE, 1, &ptrace, CAP_CLEAR) != 0 || cap_set_proc(caps) != 0)
      _exit(100);
    char buf[8];
    iovec local{buf, sizeof(buf)};
    iovec remote{nullptr, sizeof(buf)};
    _exit(process_vm_readv(pid, &local, 1, &remote, 1, 0) < 0 ? errno : 0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(AgentPrivilegeTest, DockerTlsFailureIsReportedRetriedAndLeaksNoKey) {
  STOCKADE_REQUIRE_PRIVILEGES();
  AgentInstance instance(absl::StrCat("privtls", getpid()));
  TestCertificates certs(instance.dir());
  auto ca = certs.MakeCa("ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto server = certs.MakeSigned("server", *ca, "IP:127.0.0.1", /*expired=*/true);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = certs.MakeSigned("client", *ca, "DNS:stockaded");
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string cert_path = instance.dir() + "/docker";
  std::filesystem::create_directories(cert_path);
  std::filesystem::copy_file(ca->cert, cert_path + "/ca.pem");
  std::filesystem::copy_file(client->cert, cert_path + "/cert.pem");
  std::filesystem::copy_file(client->key, cert_path + "/key.pem");  // 0600, as made
  auto tls_server = TlsTestServer::Start(*server, ca->cert);
  ASSERT_TRUE(tls_server.ok()) << tls_server.status();

  absl::StatusOr<pid_t> agent;
  {
    ScopedEnv env({{"DOCKER_HOST", tls_server->docker_host()}, {"DOCKER_TLS_VERIFY", "1"},
                   {"DOCKER_CERT_PATH", cert_path}});
    agent = instance.StartAgent();
  }
  ASSERT_TRUE(agent.ok()) << agent.status();

  absl::StatusOr<nlohmann::json> status = WaitForDockerError(instance, "expired", kAgentReady);
  ASSERT_TRUE(status.ok()) << status.status() << "\n" << instance.Log();
  EXPECT_EQ((*status)["docker"], "disconnected");
  EXPECT_THAT((*status)["docker_error"].get<std::string>(),
              HasSubstr(absl::StrCat(tls_server->docker_host(), ": TLS expired: the daemon's certificate has expired")));
  // Retried with backoff (1 s, then 2 s), not given up on.
  ASSERT_TRUE(WaitUntil([&] { return absl::StrContains(instance.Log(), "docker resync failed, retrying in 2s"); },
                        absl::Seconds(15), "a second retry")
                  .ok())
      << instance.Log();

  // Everything the agent tells anyone, after it loaded the key and failed.
  status = instance.Ctl({"status"});
  ASSERT_TRUE(status.ok()) << status.status();
  absl::StatusOr<nlohmann::json> endpoints = instance.Ctl({"endpoint", "list"});
  ASSERT_TRUE(endpoints.ok()) << endpoints.status();
  absl::StatusOr<std::string> metrics = ScrapeMetrics((*status)["metrics"]);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string log = instance.Log();
  EXPECT_THAT(log, HasSubstr("TLS expired")) << "the log has the connection errors to search";
  const std::vector<std::string> pieces = PemBodyPieces(cert_path + "/key.pem");
  EXPECT_GT(pieces.size(), 4u) << "the key file holds a real key";
  for (const std::string& piece : pieces) {
    EXPECT_THAT(log, Not(HasSubstr(piece))) << "log";
    EXPECT_THAT(status->dump(), Not(HasSubstr(piece))) << "status";
    EXPECT_THAT(endpoints->dump(), Not(HasSubstr(piece))) << "endpoint list";
    EXPECT_THAT(*metrics, Not(HasSubstr(piece))) << "metrics";
  }

  // The control case first: the same reader gets at a dumpable process of ours.
  absl::StatusOr<pid_t> dumpable = SpawnProcess({"/bin/sleep", "30"});
  ASSERT_TRUE(dumpable.ok()) << dumpable.status();
  absl::Cleanup stop_sleep = [&] {
    kill(*dumpable, SIGKILL);
    waitpid(*dumpable, nullptr, 0);
  };
  EXPECT_EQ(ReadMemoryErrno(*dumpable), EFAULT) << "a dumpable process is readable";
  EXPECT_EQ(ReadMemoryErrno(*agent), EPERM) << "stockaded must not be dumpable: it holds the key";
}

}  // namespace
}  // namespace stockade::testing
