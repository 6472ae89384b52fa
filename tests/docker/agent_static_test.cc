// SPDX-License-Identifier: Apache-2.0
//
// stockaded without Docker: workloads named in a static endpoints file
// (namespaces made by lab::Topology standing in for workloads that are not
// containers), enforced end to end with real traffic, run as an operator
// would run it:
//
//   stockaded --no-docker --static-endpoints FILE --policy-dir DIR
//
// backend, web and db sit on a bridge in a fourth namespace, each hooked on
// its own eth0 (hook: in-container). The policy lets only backend into db,
// on tcp/5432. Then the agent is restarted with Docker behind TLS that fails
// (an expired certificate): what is pinned goes on being enforced while the
// agent reports why and retries, even when the policy files change.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "maps/pins.h"
#include "stockade/datapath/datapath.h"
#include "stockade/netns/netns.h"
#include "testlib/lab/probes.h"
#include "testlib/lab/topology.h"
#include "tests/docker/agent_e2e_env.h"
#include "tests/support/bpf_test_env.h"
#include "tests/support/tls_test_env.h"

namespace stockade::testing {
namespace {

constexpr absl::Duration kAgentReady = absl::Seconds(30);
constexpr std::chrono::milliseconds kAnswerTimeout{2000};
constexpr std::chrono::milliseconds kSilenceTimeout{500};

TEST(AgentStaticEndpointsTest, EnforcesStaticEndpointsWithoutDockerAndWhileDockerTlsFails) {
  STOCKADE_REQUIRE_PRIVILEGES();
  lab::Topology topology;
  AgentInstance instance(absl::StrCat(topology.prefix(), "-static"));

  const std::map<std::string, std::string> address = {
      {"backend", "10.231.0.4"}, {"db", "10.231.0.3"}, {"web", "10.231.0.2"}};
  absl::StatusOr<StaticLab> scene = MakeStaticLab(topology, address);
  ASSERT_TRUE(scene.ok()) << scene.status();
  const std::string& endpoints = scene->endpoints_yaml;
  ASSERT_TRUE(scene->Listen("db", {5432, 80}).ok());
  auto probe = [&](const std::string& from, uint16_t port, std::chrono::milliseconds timeout) {
    return scene->Probe(from, "db", port, timeout);
  };
  EXPECT_EQ(probe("web", 5432, kAnswerTimeout), lab::ProbeOutcome::kAnswered) << "answered without the agent";

  const std::string endpoints_file = instance.dir() + "/endpoints.yaml";
  std::ofstream(endpoints_file) << endpoints;
  ASSERT_TRUE(instance
                  .WritePolicy("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-ingress}\nspec:\n"
                               "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
                               "    - fromEndpoints: [{matchLabels: {tier: backend}}]\n"
                               "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n")
                  .ok());
  absl::StatusOr<pid_t> agent = instance.StartAgent({"--no-docker", "--static-endpoints", endpoints_file});
  ASSERT_TRUE(agent.ok()) << agent.status();
  nlohmann::json listed;
  absl::StatusOr<absl::Duration> ready = WaitUntil(
      [&] {
        absl::StatusOr<nlohmann::json> list = instance.Ctl({"endpoint", "list"});
        if (!list.ok()) return false;
        listed = (*list)["endpoints"];
        return listed.size() == address.size() &&
               std::all_of(listed.begin(), listed.end(), [](const nlohmann::json& e) { return e["error"] == ""; });
      },
      kAgentReady, "stockaded lists the three static endpoints");
  ASSERT_TRUE(ready.ok()) << ready.status() << "\n" << listed.dump(2) << "\n" << instance.Log();

  for (const nlohmann::json& e : listed) {
    const std::string name = e["name"];
    SCOPED_TRACE(e.dump());
    EXPECT_EQ(e["source"], "static");
    EXPECT_EQ(e["interface"], "eth0");
    EXPECT_EQ(e["ipv4"], address.at(name));
    EXPECT_EQ(e["labels"], nlohmann::json({{"tier", name}}));
    EXPECT_EQ(e["state"], name == "db" ? "enforcing" : "allow-all");
    EXPECT_GT(e["enforced_at_ns"].get<int64_t>(), 0);
  }
  EXPECT_EQ(probe("backend", 5432, kAnswerTimeout), lab::ProbeOutcome::kAnswered);
  EXPECT_EQ(probe("web", 5432, kSilenceTimeout), lab::ProbeOutcome::kTimedOut) << "web is not backend";
  EXPECT_EQ(probe("backend", 80, kSilenceTimeout), lab::ProbeOutcome::kTimedOut) << "only tcp/5432 is open";
  absl::StatusOr<nlohmann::json> status = instance.Ctl({"status"});
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ((*status)["docker"], "disabled");
  EXPECT_GE((*status)["drops"].value("POLICY_DENIED", uint64_t{0}), 2u) << status->dump();

  // A second file opens db to web too; then a bad third file changes
  // nothing: the agent reads each changed file alone, and a bad one keeps
  // the last good set (both files) in force.
  ASSERT_TRUE(instance
                  .WritePolicy("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-from-web}\nspec:\n"
                               "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
                               "    - fromEndpoints: [{matchLabels: {tier: web}}]\n"
                               "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n",
                               "web.yaml")
                  .ok());
  absl::StatusOr<absl::Duration> opened = WaitUntil(
      [&] { return probe("web", 5432, kSilenceTimeout) == lab::ProbeOutcome::kAnswered; }, absl::Seconds(10),
      "web reaches db once web.yaml is read");
  EXPECT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(instance.WritePolicy("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: broken}\nspec: [\n",
                                   "broken.yaml")
                  .ok());
  absl::StatusOr<absl::Duration> rejected = WaitUntil(
      [&] {
        absl::StatusOr<nlohmann::json> s = instance.Ctl({"status"});
        return s.ok() && (*s)["policy_error"].get<std::string>().find("broken.yaml") != std::string::npos;
      },
      absl::Seconds(10), "the bad file is rejected, naming it");
  EXPECT_TRUE(rejected.ok()) << rejected.status();
  EXPECT_EQ(probe("web", 5432, kAnswerTimeout), lab::ProbeOutcome::kAnswered) << "the last good set stays";
  EXPECT_EQ(probe("backend", 5432, kAnswerTimeout), lab::ProbeOutcome::kAnswered);
  EXPECT_EQ(probe("backend", 80, kSilenceTimeout), lab::ProbeOutcome::kTimedOut);
  // Back to the one file: web is shut out again.
  const std::filesystem::path policy_dir = std::filesystem::path(instance.policy_file()).parent_path();
  std::filesystem::remove(policy_dir / "web.yaml");
  std::filesystem::remove(policy_dir / "broken.yaml");
  absl::StatusOr<absl::Duration> closed = WaitUntil(
      [&] { return probe("web", 5432, kSilenceTimeout) == lab::ProbeOutcome::kTimedOut; }, absl::Seconds(10),
      "web shut out once web.yaml is gone");
  ASSERT_TRUE(closed.ok()) << closed.status();

  instance.Kill(*agent, SIGTERM);
  ASSERT_TRUE(instance.WaitExit(*agent, absl::Seconds(10)).ok()) << instance.Log();
  TestCertificates certs(instance.dir());
  auto ca = certs.MakeCa("ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto expired = certs.MakeSigned("dockerd", *ca, "IP:127.0.0.1", /*expired=*/true);
  ASSERT_TRUE(expired.ok()) << expired.status();
  auto dockerd = TlsTestServer::Start(*expired);
  ASSERT_TRUE(dockerd.ok()) << dockerd.status();
  const std::string cert_path = instance.dir() + "/docker";
  std::filesystem::create_directories(cert_path);
  std::filesystem::copy_file(ca->cert, cert_path + "/ca.pem");
  {
    ScopedEnv env({{"DOCKER_HOST", dockerd->docker_host()}, {"DOCKER_TLS_VERIFY", "1"}, {"DOCKER_CERT_PATH", cert_path}});
    agent = instance.StartAgent({"--static-endpoints", endpoints_file});
  }
  ASSERT_TRUE(agent.ok()) << agent.status();
  status = WaitForDockerError(instance, "expired", kAgentReady);
  ASSERT_TRUE(status.ok()) << status.status() << "\n" << instance.Log();
  EXPECT_EQ((*status)["docker"], "disconnected");
  EXPECT_EQ(probe("backend", 5432, kAnswerTimeout), lab::ProbeOutcome::kAnswered) << "Docker down";
  EXPECT_EQ(probe("web", 5432, kSilenceTimeout), lab::ProbeOutcome::kTimedOut) << "Docker down: still enforced";
  // A policy change now must not make the agent forget what it cannot list:
  // it waits for Docker, and the pinned policy stays.
  ASSERT_TRUE(instance
                  .WritePolicy("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-ingress}\nspec:\n"
                               "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
                               "    - fromEndpoints: [{matchLabels: {tier: web}}]\n"
                               "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n")
                  .ok());
  ASSERT_TRUE(WaitUntil([&] { return absl::StrContains(instance.Log(), "reconcile: Docker not listed yet"); },
                        kAgentReady, "the agent holds the new policy back")
                  .ok())
      << instance.Log();
  EXPECT_EQ(probe("web", 5432, kSilenceTimeout), lab::ProbeOutcome::kTimedOut) << "pinned policy still in force";
  EXPECT_EQ(probe("backend", 5432, kAnswerTimeout), lab::ProbeOutcome::kAnswered) << "pinned policy still in force";
  if (HasFailure()) std::cerr << "stockaded output:\n" << instance.Log();
}

// A policy change written while the agent starts is enforced without a
// second look at the directory (the watch is there before the first read),
// and once the agent has caught up with what it puts off for a waiting
// change (naming events, saving identities), drop events name the new rule
// and both ends, and the identity file holds the start's CIDR identities.
// Thousands of CIDR rules make the start's naming long enough for the
// change to come in while the agent is at it (deferred: the log says so).
TEST(AgentStaticEndpointsTest, AChangeDuringStartIsEnforcedAndItsRuleNamedInEvents) {
  STOCKADE_REQUIRE_PRIVILEGES();
  lab::Topology topology;
  AgentInstance instance(absl::StrCat(topology.prefix(), "-early"));
  const std::map<std::string, std::string> address = {{"db", "10.232.0.3"}, {"web", "10.232.0.2"}};
  absl::StatusOr<StaticLab> scene = MakeStaticLab(topology, address);
  ASSERT_TRUE(scene.ok()) << scene.status();
  ASSERT_TRUE(scene->Listen("db", {5432, 80}).ok());
  auto probe = [&](uint16_t port, std::chrono::milliseconds timeout) { return scene->Probe("web", "db", port, timeout); };
  const std::string endpoints_file = instance.dir() + "/endpoints.yaml";
  std::ofstream(endpoints_file) << scene->endpoints_yaml;
  constexpr int kCidrRules = 20000;
  std::string bulk =
      "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-bulk}\nspec:\n"
      "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n";
  for (int i = 0; i < kCidrRules; ++i)
    absl::StrAppend(&bulk, "    - fromCIDR: [198.18.", i / 256, ".", i % 256, "/32]\n      toPorts: [{ports: [{port: \"9\", protocol: TCP}]}]\n");
  ASSERT_TRUE(instance.WritePolicy(bulk).ok());

  absl::StatusOr<pid_t> agent = instance.StartAgent({"--no-docker", "--static-endpoints", endpoints_file});
  ASSERT_TRUE(agent.ok()) << agent.status();
  // As soon as the agent hooked the endpoints (first thing, before it reads
  // the policy), the change: web in on 5432, and an explicit deny on 80
  // whose name the events must carry.
  const std::string links = InstancePinDir(instance.name()) + "/" STOCKADE_PIN_LINKS_SUBDIR;
  ASSERT_TRUE(WaitUntil(
                  [&] {
                    std::error_code none;
                    return !std::filesystem::is_empty(links, none) && !none;
                  },
                  kAgentReady, "the endpoints hooked")
                  .ok())
      << instance.Log();
  ASSERT_TRUE(instance
                  .WritePolicy("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-from-web}\nspec:\n"
                               "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
                               "    - fromEndpoints: [{matchLabels: {tier: web}}]\n"
                               "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n"
                               "  ingressDeny:\n    - fromEndpoints: [{matchLabels: {tier: web}}]\n"
                               "      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
                               "web.yaml")
                  .ok());
  absl::StatusOr<absl::Duration> opened = WaitUntil(
      [&] { return probe(5432, kSilenceTimeout) == lab::ProbeOutcome::kAnswered; }, kAgentReady,
      "web reaches db once web.yaml is read");
  ASSERT_TRUE(opened.ok()) << opened.status() << "\n" << instance.Log();

  // The events of web's denied connections to db:80: wanted, one that names
  // the rule of web.yaml and both ends. One made before the agent caught up
  // may carry the previous names; a later one may not.
  nlohmann::json named;
  auto named_event = [&]() {
    EXPECT_EQ(probe(80, kSilenceTimeout), lab::ProbeOutcome::kTimedOut) << "denied by web.yaml";
    auto out = RunCommand({STOCKADE_TAIL_PATH, "--instance", instance.name(), "--no-follow", "-o", "json", "--to",
                           "tier=db", "--port", "80"},
                          std::nullopt, std::chrono::seconds(10));
    if (!out.ok()) return false;
    for (absl::string_view line : absl::StrSplit(*out, '\n', absl::SkipEmpty())) {
      nlohmann::json e = nlohmann::json::parse(line, nullptr, false);
      if (!e.is_discarded() && e.value("type", "") == "event" &&
          absl::StrContains(e.value("rule", ""), "db-from-web ingressDeny[0] (")) {
        named = e;
        return true;
      }
    }
    return false;
  };
  absl::StatusOr<absl::Duration> seen = WaitUntil(named_event, absl::Seconds(20), "an event naming web.yaml's deny");
  ASSERT_TRUE(seen.ok()) << seen.status() << "\n" << instance.Log();
  EXPECT_EQ(named["source"]["container"], "web") << named.dump();
  EXPECT_EQ(named["source"]["labels"]["tier"], "web") << named.dump();
  EXPECT_EQ(named["destination"]["container"], "db") << named.dump();
  EXPECT_EQ(named["reason"], "POLICY_DENIED") << named.dump();

  // Stopped, it leaves the identity file whole, with every CIDR of the start.
  instance.Kill(*agent, SIGTERM);
  ASSERT_TRUE(instance.WaitExit(*agent, absl::Seconds(10)).ok()) << instance.Log();
  std::ifstream saved(instance.dir() + "/state/identities.json");
  std::stringstream text;
  text << saved.rdbuf();
  EXPECT_THAT(text.str(), ::testing::HasSubstr("\"198.18.0.0/32\""));
  EXPECT_THAT(text.str(), ::testing::HasSubstr(absl::StrCat("\"198.18.", (kCidrRules - 1) / 256, ".",
                                                            (kCidrRules - 1) % 256, "/32\"")));
  std::cerr << "deferred for the change: " << (absl::StrContains(instance.Log(), "deferrals for policy changes") ? "yes" : "no")
            << "\n";
  if (HasFailure()) std::cerr << "stockaded output:\n" << instance.Log();
}

}  // namespace
}  // namespace stockade::testing
