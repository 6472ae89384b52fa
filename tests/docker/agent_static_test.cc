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
// on tcp/5432.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "stockade/lab/probes.h"
#include "stockade/lab/topology.h"
#include "tests/docker/agent_e2e_env.h"
#include "tests/support/bpf_test_env.h"

namespace stockade::testing {
namespace {

constexpr absl::Duration kAgentReady = absl::Seconds(30);
constexpr std::chrono::milliseconds kAnswerTimeout{2000};
constexpr std::chrono::milliseconds kSilenceTimeout{500};

TEST(AgentStaticEndpointsTest, EnforcesStaticEndpointsWithoutDocker) {
  STOCKADE_REQUIRE_PRIVILEGES();
  lab::Topology topology;
  AgentInstance instance(absl::StrCat(topology.prefix(), "-static"));

  const std::map<std::string, std::string> address = {
      {"backend", "10.231.0.4"}, {"db", "10.231.0.3"}, {"web", "10.231.0.2"}};
  absl::StatusOr<StaticLab> scene = MakeStaticLab(topology, address);
  ASSERT_TRUE(scene.ok()) << scene.status();
  std::map<std::string, lab::TopologyNetns>& netns = scene->netns;
  const std::string& endpoints = scene->endpoints_yaml;
  std::map<uint16_t, lab::Listener> db;
  for (uint16_t port : {5432, 80}) {
    auto listener = lab::Listener::Open(netns["db"].path, lab::Transport::kTcp, address.at("db"), port);
    ASSERT_TRUE(listener.ok()) << listener.status();
    db.emplace(port, std::move(*listener));
  }
  auto probe = [&](const std::string& from, uint16_t port, std::chrono::milliseconds timeout) {
    auto result = lab::ProbeListener(netns[from].path, db.at(port), {.timeout = timeout});
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->outcome : lab::ProbeOutcome::kTimedOut;
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
  if (HasFailure()) std::cerr << "stockaded output:\n" << instance.Log();
}

}  // namespace
}  // namespace stockade::testing
