// SPDX-License-Identifier: Apache-2.0
//
// Two hosts, one policy, through one real etcd (Debian's etcd-server): each
// host a stockaded of its own (its own instance, maps and programs), with
// static endpoints standing in for containers on one lab bridge. Host A has
// web and backend, host B has db, whose policy lets only backend in on
// tcp/5432. B learns who backend is only from what A publishes in etcd:
// without the store, backend's address is world to B and dropped.
//
// Then the failures of issue 20, in one run: etcd down (what is known stays
// enforced, status says so), etcd back with its data and wiped (A
// publishes again, B converges without a restart), A SIGKILLed (B keeps A's
// endpoints for the lease's TTL; A back within it: no gap), A gone for good
// (its endpoints leave B after the TTL), and A stopped cleanly (at once).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "stockade/os/process.h"
#include "stockade/os/scoped_fd.h"
#include "testlib/lab/probes.h"
#include "testlib/lab/topology.h"
#include "tests/docker/agent_e2e_env.h"
#include "stockade/store/endpoint_record.h"
#include "stockade/store/etcd_client.h"
#include "tests/store/etcd_test_env.h"
#include "tests/support/bpf_test_env.h"

namespace stockade::testing {
namespace {

constexpr absl::Duration kAgentReady = absl::Seconds(30);
constexpr std::chrono::milliseconds kAnswerTimeout{2000};
constexpr std::chrono::milliseconds kSilenceTimeout{500};
constexpr int kLeaseTtlSeconds = 6;

TEST(AgentStoreTest, TwoHostsEnforceEachOthersEndpointsThroughEtcdAndItsFailures) {
  STOCKADE_REQUIRE_PRIVILEGES();
  absl::StatusOr<std::unique_ptr<EtcdTestServer>> etcd = EtcdTestServer::Start();
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  lab::Topology topology;
  AgentInstance host_a(absl::StrCat(topology.prefix(), "-a")), host_b(absl::StrCat(topology.prefix(), "-b"));

  const std::map<std::string, std::string> address = {
      {"backend", "10.233.0.4"}, {"db", "10.233.0.3"}, {"web", "10.233.0.2"}};
  absl::StatusOr<StaticLab> scene = MakeStaticLab(topology, address);
  ASSERT_TRUE(scene.ok()) << scene.status();
  ASSERT_TRUE(scene->Listen("db", {5432, 80}).ok());
  auto probe = [&](const std::string& from, uint16_t port, std::chrono::milliseconds timeout) {
    return scene->Probe(from, "db", port, timeout);
  };
  auto backend_reaches_db = [&] { return probe("backend", 5432, kAnswerTimeout) == lab::ProbeOutcome::kAnswered; };
  auto backend_shut_out = [&] { return probe("backend", 5432, kSilenceTimeout) == lab::ProbeOutcome::kTimedOut; };

  const std::string policy =
      "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-ingress}\nspec:\n"
      "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
      "    - fromEndpoints: [{matchLabels: {tier: backend}}]\n"
      "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n";
  ASSERT_TRUE(host_a.WritePolicy(policy).ok());
  ASSERT_TRUE(host_b.WritePolicy(policy).ok());
  const std::string endpoints_a = host_a.dir() + "/endpoints.yaml", endpoints_b = host_b.dir() + "/endpoints.yaml";
  std::ofstream(endpoints_a) << scene->EndpointsYaml({"web", "backend"});
  std::ofstream(endpoints_b) << scene->EndpointsYaml({"db"});
  auto agent_args = [&](const std::string& endpoints, const std::string& host_id) {
    return std::vector<std::string>{"--no-docker",     "--static-endpoints", endpoints,  "--etcd-endpoints",
                                    (*etcd)->client_url(), "--host-id",     host_id,    "--etcd-lease-ttl",
                                    absl::StrCat(kLeaseTtlSeconds)};
  };
  auto store_status = [](const AgentInstance& instance) {
    absl::StatusOr<nlohmann::json> status = instance.Ctl({"status"});
    // An object always (empty while the agent does not answer), for value().
    if (!status.ok() || !(*status)["store"].is_object()) return nlohmann::json::object();
    return (*status)["store"];
  };
  // B's view of host-a: its endpoint count, or -1 when B has no such host.
  auto a_endpoints_at_b = [&] {
    nlohmann::json store = store_status(host_b);
    if (!store.contains("hosts")) return -1;
    for (const nlohmann::json& h : store["hosts"])
      if (h["host"] == "host-a" && h["complete"] == true) return h["endpoints"].get<int>();
    return -1;
  };

  absl::StatusOr<pid_t> agent_b = host_b.StartAgent(agent_args(endpoints_b, "host-b"));
  ASSERT_TRUE(agent_b.ok()) << agent_b.status();
  ASSERT_TRUE(WaitUntil([&] { return store_status(host_b).value("state", "") == "connected"; }, kAgentReady,
                        "host B follows etcd")
                  .ok())
      << host_b.Log();
  ASSERT_TRUE(WaitUntil(
                  [&] {
                    absl::StatusOr<nlohmann::json> list = host_b.Ctl({"endpoint", "list"});
                    return list.ok() && (*list)["endpoints"].size() == 1 &&
                           (*list)["endpoints"][0]["state"] == "enforcing";
                  },
                  kAgentReady, "host B enforces db")
                  .ok())
      << host_b.Log();
  EXPECT_TRUE(backend_shut_out()) << "without host A in etcd, backend is world to host B";

  const absl::Time a_started = absl::Now();
  absl::StatusOr<pid_t> agent_a = host_a.StartAgent(agent_args(endpoints_a, "host-a"));
  ASSERT_TRUE(agent_a.ok()) << agent_a.status();
  ASSERT_TRUE(WaitUntil([&] { return a_endpoints_at_b() == 2; }, kAgentReady, "host B has host A's two endpoints").ok())
      << host_a.Log() << host_b.Log();
  std::cerr << "host B had host A's endpoints " << absl::FormatDuration(absl::Now() - a_started)
            << " after host A's agent started\n";
  ASSERT_TRUE(WaitUntil(backend_reaches_db, absl::Seconds(10), "backend on host A reaches db on host B").ok())
      << host_b.Log();
  EXPECT_EQ(probe("web", 5432, kSilenceTimeout), lab::ProbeOutcome::kTimedOut) << "web is not backend";
  EXPECT_EQ(probe("backend", 80, kSilenceTimeout), lab::ProbeOutcome::kTimedOut) << "only tcp/5432 is open";

  // B lists A's containers with their host, and names them in drop events.
  absl::StatusOr<nlohmann::json> remote = host_b.Ctl({"endpoint", "list", "--remote"});
  ASSERT_TRUE(remote.ok()) << remote.status();
  std::map<std::string, nlohmann::json> remote_by_name;
  for (const nlohmann::json& e : (*remote)["endpoints"])
    if (e["source"] == "store") remote_by_name[e["name"]] = e;
  ASSERT_EQ(remote_by_name.size(), 2u) << remote->dump(2);
  EXPECT_EQ(remote_by_name["backend"]["host"], "host-a");
  EXPECT_EQ(remote_by_name["backend"]["ipv4"], address.at("backend"));
  EXPECT_EQ(remote_by_name["backend"]["labels"], nlohmann::json({{"tier", "backend"}}));
  EXPECT_EQ(remote_by_name["web"]["state"], "remote");
  EXPECT_GT(remote_by_name["web"].value("enforced_at_ns", int64_t{0}), 0);
  EXPECT_NE(store_status(host_b).value("last_change", ""), "") << "status says when the store last changed";
  std::string drops;
  EXPECT_TRUE(WaitUntil(
                  [&] {
                    absl::StatusOr<std::string> text = TailHistory(host_b, {"--from", "web"});
                    drops = text.ok() ? *text : std::string(text.status().message());
                    return absl::StrContains(drops, "POLICY_DENIED");
                  },
                  absl::Seconds(5), "host B's drop of web from host A")
                  .ok());
  EXPECT_THAT(drops, ::testing::HasSubstr("\"container\":\"web\",\"host\":\"host-a\"")) << "named with its host";

  // etcd down: everything known stays enforced; the status says why.
  (*etcd)->Stop();
  ASSERT_TRUE(WaitUntil([&] { return store_status(host_b).value("state", "") == "unreachable"; }, absl::Seconds(10),
                        "host B reports the store unreachable")
                  .ok())
      << store_status(host_b).dump(2);
  EXPECT_TRUE(backend_reaches_db()) << "etcd down: backend still known";
  EXPECT_EQ(probe("web", 5432, kSilenceTimeout), lab::ProbeOutcome::kTimedOut) << "etcd down: web still shut out";
  absl::StatusOr<nlohmann::json> b_status = host_b.Ctl({"status"});
  ASSERT_TRUE(b_status.ok()) << b_status.status();
  absl::StatusOr<std::string> metrics = ScrapeMetrics((*b_status)["metrics"].get<std::string>());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, ::testing::HasSubstr("stockade_store_connected 0"));
  EXPECT_THAT(*metrics, ::testing::HasSubstr("stockade_store_remote_endpoints 2"));

  // Back with its data: B follows again, no restart.
  ASSERT_TRUE((*etcd)->Restart(/*wipe=*/false).ok());
  ASSERT_TRUE(WaitUntil([&] { return store_status(host_b).value("state", "") == "connected"; }, absl::Seconds(10),
                        "host B follows etcd again")
                  .ok())
      << host_b.Log();
  EXPECT_TRUE(backend_reaches_db());

  // Back without its data: A's lease is gone, A publishes again, B keeps
  // A's endpoints meanwhile (a host missing from a fresh listing is kept
  // for a TTL) and converges.
  ASSERT_TRUE((*etcd)->Restart(/*wipe=*/true).ok());
  EXPECT_TRUE(backend_reaches_db()) << "etcd wiped: host B keeps what it knew";
  const absl::Time wiped = absl::Now();
  ASSERT_TRUE(WaitUntil(
                  [&] {
                    nlohmann::json store = store_status(host_b);
                    return store.value("state", "") == "connected" && store.value("revision", 0) > 0 &&
                           a_endpoints_at_b() == 2 && store_status(host_a).value("published_keys", 0) == 4;
                  },
                  absl::Seconds(15), "host A publishes again into the wiped etcd, host B has it")
                  .ok())
      << host_a.Log() << host_b.Log();
  std::cerr << "reconverged " << absl::FormatDuration(absl::Now() - wiped) << " after etcd came back empty\n";
  EXPECT_TRUE(backend_reaches_db());

  // A SIGKILLed: its keys stay until the lease runs out, so B goes on.
  host_a.Kill(*agent_a, SIGKILL);
  ASSERT_TRUE(host_a.WaitExit(*agent_a, absl::Seconds(5)).ok());
  EXPECT_TRUE(backend_reaches_db()) << "host A's agent killed: its lease still runs";
  // Back within the TTL: its keys move onto a new lease, values unchanged.
  agent_a = host_a.StartAgent(agent_args(endpoints_a, "host-a"));
  ASSERT_TRUE(agent_a.ok()) << agent_a.status();
  ASSERT_TRUE(WaitUntil([&] { return store_status(host_a).value("published_keys", 0) == 4; }, kAgentReady,
                        "host A publishes again")
                  .ok())
      << host_a.Log();
  absl::SleepFor(absl::Seconds(kLeaseTtlSeconds + 1));  // past the old lease
  EXPECT_EQ(a_endpoints_at_b(), 2) << "the old lease's end took nothing: the keys are on the new one";
  EXPECT_TRUE(backend_reaches_db());

  // A gone for good: B lets its endpoints go after the TTL.
  host_a.Kill(*agent_a, SIGKILL);
  ASSERT_TRUE(host_a.WaitExit(*agent_a, absl::Seconds(5)).ok());
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(WaitUntil([&] { return a_endpoints_at_b() == -1; }, absl::Seconds(kLeaseTtlSeconds + 5),
                        "host A's endpoints leave host B after the TTL")
                  .ok())
      << store_status(host_b).dump(2);
  EXPECT_GE(absl::Now() - killed, absl::Seconds(kLeaseTtlSeconds - 2)) << "not before the lease could expire";
  EXPECT_TRUE(WaitUntil(backend_shut_out, absl::Seconds(5), "backend is world again at host B").ok());

  // A back, then stopped cleanly: it revokes its lease, B lets go at once.
  agent_a = host_a.StartAgent(agent_args(endpoints_a, "host-a"));
  ASSERT_TRUE(agent_a.ok()) << agent_a.status();
  ASSERT_TRUE(WaitUntil(backend_reaches_db, kAgentReady, "host A back: backend reaches db").ok()) << host_a.Log();
  host_a.Kill(*agent_a, SIGTERM);
  ASSERT_TRUE(host_a.WaitExit(*agent_a, absl::Seconds(10)).ok()) << host_a.Log();
  const absl::Time stopped = absl::Now();
  ASSERT_TRUE(WaitUntil([&] { return a_endpoints_at_b() == -1; }, absl::Seconds(kLeaseTtlSeconds),
                        "host A's endpoints leave host B when A stops cleanly")
                  .ok());
  EXPECT_LT(absl::Now() - stopped, absl::Seconds(2)) << "a clean stop does not wait for the TTL";
  EXPECT_TRUE(WaitUntil(backend_shut_out, absl::Seconds(5), "backend is world again at host B").ok());
  if (HasFailure()) std::cerr << "host A:\n" << host_a.Log() << "\nhost B:\n" << host_b.Log();
}


// The same two hosts with etcd's own auth on (scripts/etcd-auth-setup.sh:
// a user and role per host, its subtree read-write, the prefix read-only):
// each agent publishes as its own user and follows the other, and host A's
// user cannot touch host B's keys.
TEST(AgentStoreTest, AgentsPublishAndFollowAsTheirOwnEtcdUsers) {
  STOCKADE_REQUIRE_PRIVILEGES();
  absl::StatusOr<std::unique_ptr<EtcdTestServer>> etcd = EtcdTestServer::Start();
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  lab::Topology topology;
  AgentInstance host_a(absl::StrCat(topology.prefix(), "-ua")), host_b(absl::StrCat(topology.prefix(), "-ub"));
  auto secret = [&](const AgentInstance& owner, const std::string& name, const std::string& password) {
    const std::string path = owner.dir() + "/" + name;
    std::ofstream(path) << password << "\n";
    EXPECT_EQ(chmod(path.c_str(), 0600), 0);
    return path;
  };
  const std::string root = secret(host_a, "root.password", "root-pw-3Hd"),
                    a_password = secret(host_a, "etcd.password", "host-a-pw-8Lq"),
                    b_password = secret(host_b, "etcd.password", "host-b-pw-1Vz");
  const std::string setup = absl::StrCat(STOCKADE_SOURCE_DIR, "/scripts/etcd-auth-setup.sh --endpoint ",
                                         (*etcd)->client_url(), " --root-password-file ", root, " --host host-a:",
                                         a_password, " --host host-b:", b_password, " >", host_a.dir(), "/setup.log 2>&1");
  ASSERT_EQ(std::system(setup.c_str()), 0) << setup;

  const std::map<std::string, std::string> address = {{"backend", "10.234.0.4"}, {"db", "10.234.0.3"}};
  absl::StatusOr<StaticLab> scene = MakeStaticLab(topology, address);
  ASSERT_TRUE(scene.ok()) << scene.status();
  ASSERT_TRUE(scene->Listen("db", {5432}).ok());
  const std::string policy =
      "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-ingress}\nspec:\n"
      "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
      "    - fromEndpoints: [{matchLabels: {tier: backend}}]\n"
      "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n";
  for (auto [agent, id, tier, password] : {std::tuple{&host_a, "host-a", "backend", a_password},
                                           std::tuple{&host_b, "host-b", "db", b_password}}) {
    ASSERT_TRUE(agent->WritePolicy(policy).ok());
    const std::string endpoints = agent->dir() + "/endpoints.yaml";
    std::ofstream(endpoints) << scene->EndpointsYaml({tier});
    absl::StatusOr<pid_t> pid = agent->StartAgent({"--no-docker", "--static-endpoints", endpoints, "--etcd-endpoints",
                                                   (*etcd)->client_url(), "--host-id", id, "--etcd-user",
                                                   absl::StrCat("stockade-", id), "--etcd-password-file", password});
    ASSERT_TRUE(pid.ok()) << pid.status();
  }
  auto published = [](const AgentInstance& agent) {
    absl::StatusOr<nlohmann::json> status = agent.Ctl({"status"});
    return status.ok() && (*status)["store"].is_object() && (*status)["store"]["published_keys"] == 3 &&
           (*status)["remote_enforced"] == 1;
  };
  ASSERT_TRUE(WaitUntil([&] { return published(host_a) && published(host_b); }, kAgentReady,
                        "each agent publishes as its own etcd user and has the other's endpoint")
                  .ok())
      << "host A:\n" << host_a.Log() << "\nhost B:\n" << host_b.Log();
  EXPECT_EQ(scene->Probe("backend", "db", 5432, kAnswerTimeout), lab::ProbeOutcome::kAnswered);
  for (AgentInstance* agent : {&host_a, &host_b}) {
    absl::StatusOr<nlohmann::json> status = agent->Ctl({"status"});
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ((*status)["store"]["publish_error"], "") << status->dump(2);
    EXPECT_EQ((*status)["store"]["published_keys"], 3) << "its endpoint, node and complete";
    EXPECT_THAT(agent->Log(), ::testing::Not(::testing::HasSubstr("pw-"))) << "no password in the agent's log";
  }
  // Host A's credentials do not reach host B's subtree.
  absl::StatusOr<EtcdClient> as_a = EtcdClient::Create(
      {.endpoints = {(*etcd)->client_url()}, .user = "stockade-host-a", .password_file = a_password});
  ASSERT_TRUE(as_a.ok()) << as_a.status();
  absl::StatusOr<int64_t> overwritten = as_a->Put(CompleteKey("host-b"), "{\"host\":\"host-b\"}");
  EXPECT_TRUE(absl::IsPermissionDenied(overwritten.status())) << overwritten.status();
  absl::StatusOr<int64_t> deleted = as_a->DeletePrefix(HostKeyPrefix("host-b"));
  EXPECT_TRUE(absl::IsPermissionDenied(deleted.status())) << deleted.status();
  EXPECT_EQ(scene->Probe("backend", "db", 5432, kAnswerTimeout), lab::ProbeOutcome::kAnswered);
}

}  // namespace
}  // namespace stockade::testing
