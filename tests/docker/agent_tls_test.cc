// SPDX-License-Identifier: Apache-2.0
//
// requireTLS end to end, without Docker: stockaded with static endpoints (db,
// web, plain on a bridge, each in a namespace of the test's own), a policy
// that lets web and plain into db on tcp/8443 with requireTLS, a real
// `openssl s_server` in db. `openssl s_client` from web completes the
// handshake and exchanges data; a plaintext client from plain connects (the
// TCP handshake carries no payload) and its first bytes cut the flow. Then
// stockadectl shows the TLS_REQUIRED drops and reports one TLS and one
// plaintext flow.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "stockade/netns/netns.h"
#include "stockade/os/process.h"
#include "testlib/lab/topology.h"
#include "tests/docker/agent_e2e_env.h"
#include "tests/support/bpf_test_env.h"

namespace stockade::testing {
namespace {

constexpr absl::Duration kAgentReady = absl::Seconds(30);
constexpr uint16_t kPort = 8443;
constexpr std::chrono::milliseconds kOpensslTimeout{10000};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(AgentTlsTest, RequireTlsPassesTlsAndCutsPlaintext) {
  STOCKADE_REQUIRE_PRIVILEGES();
  lab::Topology topology;
  AgentInstance instance(absl::StrCat(topology.prefix(), "-tls"));
  const std::map<std::string, std::string> address = {
      {"db", "10.232.0.3"}, {"plain", "10.232.0.4"}, {"web", "10.232.0.2"}};
  absl::StatusOr<StaticLab> scene = MakeStaticLab(topology, address);
  ASSERT_TRUE(scene.ok()) << scene.status();

  // A throwaway key and self-signed certificate for db.
  const std::string key = instance.dir() + "/db.key", cert = instance.dir() + "/db.crt";
  absl::StatusOr<std::string> made =
      RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-subj", "/CN=db", "-days", "1", "-keyout", key, "-out", cert},
                 std::nullopt, kOpensslTimeout);
  ASSERT_TRUE(made.ok()) << made.status();

  const std::string endpoints_file = instance.dir() + "/endpoints.yaml";
  std::ofstream(endpoints_file) << scene->endpoints_yaml;
  ASSERT_TRUE(instance
                  .WritePolicy(absl::StrCat("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-tls}\nspec:\n"
                                            "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
                                            "    - fromEndpoints: [{matchLabels: {tier: web}}, "
                                            "{matchLabels: {tier: plain}}]\n"
                                            "      toPorts: [{ports: [{port: \"",
                                            kPort, "\", protocol: TCP}], requireTLS: true}]\n"))
                  .ok());
  absl::StatusOr<pid_t> agent = instance.StartAgent({"--no-docker", "--static-endpoints", endpoints_file});
  ASSERT_TRUE(agent.ok()) << agent.status();
  absl::StatusOr<absl::Duration> ready = WaitUntil(
      [&] {
        absl::StatusOr<nlohmann::json> list = instance.Ctl({"endpoint", "list"});
        if (!list.ok()) return false;
        const nlohmann::json& e = (*list)["endpoints"];
        return e.size() == address.size() && std::all_of(e.begin(), e.end(), [](const nlohmann::json& x) {
                 return x["state"] == (x["name"] == "db" ? "enforcing" : "allow-all");
               });
      },
      kAgentReady, "stockaded enforces db's policy");
  ASSERT_TRUE(ready.ok()) << ready.status() << "\n" << instance.Log();

  // s_server -rev answers each line reversed and closes on "CLOSE".
  const std::string server_log = instance.dir() + "/s_server.log";
  ScopedFd server_out(open(server_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(server_out.valid());
  absl::StatusOr<pid_t> server = SpawnProcess(
      {"nsenter", absl::StrCat("--net=", scene->netns["db"].path), "openssl", "s_server", "-accept",
       absl::StrCat(address.at("db"), ":", kPort), "-cert", cert, "-key", key, "-rev"},
      {.stdout_fd = server_out.get(), .stderr_fd = server_out.get(), .search_path = true});
  ASSERT_TRUE(server.ok()) << server.status();
  absl::Cleanup stop_server = [pid = *server] {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
  };
  ASSERT_TRUE(WaitUntil([&] { return absl::StrContains(ReadFile(server_log), "ACCEPT"); }, absl::Seconds(10),
                        "s_server listens")
                  .ok())
      << ReadFile(server_log);

  // TLS from web: handshake, a line each way, then the server closes.
  absl::StatusOr<std::string> tls = RunCommand(
      {"sh", "-c",
       absl::StrCat("printf 'hello tls\\nCLOSE\\n' | openssl s_client -connect ", address.at("db"), ":", kPort,
                    " -quiet")},
      scene->netns["web"].path, kOpensslTimeout);
  ASSERT_TRUE(tls.ok()) << tls.status() << "\n" << ReadFile(server_log);
  EXPECT_THAT(*tls, ::testing::HasSubstr("slt olleh"));

  // Plaintext from plain on the same port: the TCP handshake passes, the first bytes cut the flow.
  const TestContainer plain{.name = "plain", .netns = scene->netns["plain"].path, .ip = address.at("plain")};
  const TestContainer db{.name = "db", .netns = scene->netns["db"].path, .ip = address.at("db")};
  absl::StatusOr<EchoSession> session = EchoSession::Open(plain, db, kPort, absl::Seconds(5));
  ASSERT_TRUE(session.ok()) << session.status();
  absl::Status echoed = session->Echo("GET / HTTP/1.0\r\n", absl::Seconds(1));
  EXPECT_TRUE(absl::IsDeadlineExceeded(echoed)) << echoed;

  absl::StatusOr<nlohmann::json> status = instance.Ctl({"status"});
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_GE((*status)["drops"].value("TLS_REQUIRED", uint64_t{0}), 1u) << status->dump();

  // The report, from db's conntrack: web's flow began in TLS, plain's in plaintext.
  absl::StatusOr<nlohmann::json> report = instance.Ctl({"tls"});
  ASSERT_TRUE(report.ok()) << report.status();
  std::map<std::string, nlohmann::json> at_db;
  for (const nlohmann::json& row : (*report)["flows"])
    if (row["local"] == "db" && row["port"] == kPort) at_db[row["remote"]] = row;
  ASSERT_EQ(at_db.size(), 2u) << report->dump(2);
  EXPECT_EQ(at_db["web"]["tls"], 1) << report->dump(2);
  EXPECT_EQ(at_db["web"]["plaintext"], 0);
  EXPECT_EQ(at_db["plain"]["tls"], 0);
  EXPECT_EQ(at_db["plain"]["plaintext"], 1);
  for (const auto& [remote, row] : at_db) {
    EXPECT_EQ(row["require_tls"], true) << remote;
    EXPECT_EQ(row["direction"], "ingress") << remote;
  }
  if (HasFailure()) std::cerr << "stockaded output:\n" << instance.Log() << "\ns_server:\n" << ReadFile(server_log);
}

}  // namespace
}  // namespace stockade::testing
