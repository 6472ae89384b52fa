// SPDX-License-Identifier: Apache-2.0
//
// stockaded end to end, with real containers. Each test starts its own agent
// (the built binary, an instance of its own) and its own containers and
// networks, and removes them all when it ends, passed or not (AgentInstance,
// DockerScratch, lab::Topology).
//
// Every container serves an echo on kPorts, so a probe that goes unanswered
// was dropped, never refused for want of a listener; where it matters the
// test first shows the probe answered without the agent. Policies here are
// ingress rules on the callee, and egress is not enforced: each tier accepts
// only the tier in front of it, and replies cross enforced ingress hooks
// (the backend's reply into web, the db's into backend) only by conntrack.
//
// A probe expected to be answered gets kAnswerTimeout; one expected to be
// dropped kSilenceTimeout, since a drop is immediate and a longer wait could
// not turn silence into an answer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "maps/abi.h"
#include "stockade/datapath/datapath.h"
#include "stockade/netns/netns.h"
#include "stockade/os/process.h"
#include "testlib/lab/topology.h"
#include "tests/docker/agent_e2e_env.h"
#include "tests/docker/docker_test_env.h"
#include "tests/docker/private_dockerd.h"
#include "tests/store/etcd_test_env.h"

namespace stockade::testing {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kAnswerTimeout = absl::Seconds(2);
constexpr absl::Duration kSilenceTimeout = absl::Milliseconds(500);
// Agent start, Docker events and policy reloads take well under a second;
// the bounds leave room for a loaded machine.
constexpr absl::Duration kAgentReady = absl::Seconds(30);
constexpr absl::Duration kEnforcementBound = absl::Seconds(5);
const std::vector<uint16_t> kPorts = {80, 8080, 5432};

// "from -> to:port", for messages.
std::string Describe(const TestContainer& from, const TestContainer& to, uint16_t port) {
  return absl::StrCat(from.name, " -> ", to.name, ":", port);
}

// A policy: containers with tier `tier` accept `from` tiers on tcp/`port`
// and nothing else; no `from` at all closes their ingress.
std::string IngressPolicy(const std::string& name, const std::string& tier, const std::vector<std::string>& from,
                          uint16_t port = 0) {
  std::string yaml = absl::StrCat("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: ", name,
                                  "}\nspec:\n  endpointSelector: {matchLabels: {tier: ", tier, "}}\n");
  if (from.empty()) return yaml + "  ingress: []\n";
  absl::StrAppend(&yaml, "  ingress:\n    - fromEndpoints: [");
  for (size_t i = 0; i < from.size(); ++i) absl::StrAppend(&yaml, i ? ", " : "", "{matchLabels: {tier: ", from[i], "}}");
  absl::StrAppend(&yaml, "]\n      toPorts: [{ports: [{port: \"", port, "\", protocol: TCP}]}]\n");
  return yaml;
}

std::string Documents(const std::vector<std::string>& policies) { return absl::StrJoin(policies, "---\n"); }

// The seed's chain frontend -> web -> backend -> db: each hop, and what
// must drop once it is enforced.
struct Flow {
  std::string from, to;
  uint16_t port;
};
const std::vector<Flow> kChainHops = {{"frontend", "web", 80}, {"web", "backend", 8080}, {"backend", "db", 5432}};
const std::vector<Flow> kChainDenied = {
    // Skips past a tier.
    {"frontend", "backend", 8080},
    {"frontend", "db", 5432},
    {"web", "db", 5432},
    // Lateral moves from an inner tier outwards.
    {"db", "backend", 8080},
    {"backend", "web", 80},
    {"db", "web", 80},
    // A hop on the wrong port.
    {"frontend", "web", 8080},
    {"web", "backend", 5432},
    {"backend", "db", 80},
};

// The link pins of the instance: name -> inode. A re-attached link would
// be pinned anew, under a new inode.
std::map<std::string, ino_t> LinkPins(const std::string& instance) {
  std::map<std::string, ino_t> pins;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(
           absl::StrCat(STOCKADE_PIN_DIR, "/", instance, "/", STOCKADE_PIN_LINKS_SUBDIR), ec)) {
    struct stat st {};
    if (stat(entry.path().c_str(), &st) == 0) pins[entry.path().filename()] = st.st_ino;
  }
  return pins;
}

class AgentE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STOCKADE_REQUIRE_PRIVILEGES();
    STOCKADE_REQUIRE_DOCKER();
    instance_ = std::make_unique<AgentInstance>(scratch_.Name("agent"));
  }

  void TearDown() override {
    if (instance_ && HasFailure()) std::cerr << "stockaded output:\n" << instance_->Log();
    // Agents stopped and the instance uninstalled while the containers still exist.
    instance_.reset();
  }

  // A macvlan network on a veth of the test's own in the daemon's namespace,
  // with no address on either end; returns its name.
  absl::StatusOr<std::string> CreateMacvlanNetwork() {
    auto parent = host_links_.AddVethPair(daemon_netns_, "mv0", daemon_netns_, "mv1");
    if (!parent.ok()) return parent.status();
    for (const lab::TopologyLink& end : {parent->first, parent->second})
      if (absl::Status s = host_links_.SetUp(end); !s.ok()) return s;
    // A subnet no one else uses; the pid spreads concurrent runs.
    const std::string subnet = absl::StrCat("10.213.", 1 + getpid() % 250, ".0/24");
    absl::StatusOr<std::string> id = scratch_.CreateNetwork(
        "macvlan", {"--driver", "macvlan", "--subnet", subnet, "-o", absl::StrCat("parent=", parent->first.ifname)});
    if (!id.ok()) return id.status();
    return scratch_.Name("macvlan");
  }

  // The kinds and names of the tc programs on `ifname` in `netns`, as bpftool shows them.
  static absl::StatusOr<std::vector<std::string>> TcPrograms(const std::string& netns, const std::string& ifname) {
    absl::StatusOr<std::string> shown = RunCommand({"bpftool", "-j", "net", "show", "dev", ifname}, netns);
    if (!shown.ok()) return shown.status();
    std::vector<std::string> kinds;
    for (const nlohmann::json& ns : nlohmann::json::parse(*shown))
      for (const nlohmann::json& tc : ns.value("tc", nlohmann::json::array()))
        kinds.push_back(tc.value("kind", "") + " " + tc.value("name", ""));
    return kinds;
  }

  // backend, web and db on a bridge of their own, and an agent whose policy
  // lets only backend into db, on tcp/5432: shown to hold before returning.
  struct Tiers {
    std::string network;
    TestContainer backend, web, db;
    pid_t agent = -1;
    // Their states in stockadectl.
    std::map<std::string, std::string> states() const {
      return {{backend.name, "allow-all"}, {web.name, "allow-all"}, {db.name, "enforcing"}};
    }
  };
  absl::StatusOr<Tiers> BackendWebDb() {
    Tiers tiers;
    absl::StatusOr<std::string> network = CreateBridge();
    if (!network.ok()) return network.status();
    tiers.network = *network;
    for (auto [tier, container] : {std::pair{"backend", &tiers.backend}, std::pair{"web", &tiers.web},
                                   std::pair{"db", &tiers.db}}) {
      absl::StatusOr<TestContainer> c = RunContainer(tier, *network, tier);
      if (!c.ok()) return c.status();
      *container = *c;
    }
    if (absl::Status s = instance_->WritePolicy(IngressPolicy("db-ingress", "db", {"backend"}, 5432)); !s.ok()) return s;
    absl::StatusOr<pid_t> agent = StartAgent(tiers.states());
    if (!agent.ok()) return agent.status();
    tiers.agent = *agent;
    ExpectAnsweredOnceListening(tiers.backend, tiers.db, 5432);
    ExpectDropped(tiers.web, tiers.db, 5432);
    return tiers;
  }

  absl::StatusOr<std::string> CreateBridge() {
    if (absl::StatusOr<std::string> id = scratch_.CreateNetwork("net", {"--driver", "bridge"}); !id.ok())
      return id.status();
    return scratch_.Name("net");
  }

  // A container on `network` serving echo on kPorts: labelled with `tier`
  // when it is not empty, made from `image`.
  absl::StatusOr<TestContainer> RunContainer(const std::string& what, const std::string& network,
                                             const std::string& tier, const std::string& image = kTestImage) {
    std::vector<std::string> labels;
    if (!tier.empty()) labels.push_back(absl::StrCat("stockade.tier=", tier));
    return RunLabelledContainer(what, network, labels, image);
  }

  // The same with run-time labels ("key=value") of the test's choice.
  absl::StatusOr<TestContainer> RunLabelledContainer(const std::string& what, const std::string& network,
                                                     const std::vector<std::string>& labels,
                                                     const std::string& image = kTestImage) {
    std::vector<std::string> options = {"--network", network};
    for (const std::string& label : labels) options.insert(options.end(), {"--label", label});
    if (absl::StatusOr<std::string> id = scratch_.RunContainer(what, options, image); !id.ok()) return id.status();
    if (absl::Status s = StartEchoServers(scratch_.Name(what), kPorts); !s.ok()) return s;
    return InspectContainer(scratch_.Name(what), network);
  }

  // Starts an agent and waits until it shows each container in its state.
  absl::StatusOr<pid_t> StartAgent(const std::map<std::string, std::string>& state_by_container) {
    absl::StatusOr<pid_t> pid = instance_->StartAgent();
    if (!pid.ok()) return pid.status();
    if (absl::Status s = WaitForEndpoints(state_by_container); !s.ok()) return s;
    return pid;
  }

  absl::Status WaitForEndpoints(const std::map<std::string, std::string>& state_by_container) {
    return WaitUntil(
               [&] {
                 for (const auto& [name, state] : state_by_container) {
                   absl::StatusOr<nlohmann::json> e = Endpoint(name);
                   if (!e.ok() || (*e)["state"] != state || (*e)["error"] != "") return false;
                 }
                 return true;
               },
               kAgentReady, "stockaded shows every container in its state")
        .status();
  }

  // The container's entry in `stockadectl endpoint list -o json`.
  absl::StatusOr<nlohmann::json> Endpoint(const std::string& name) {
    absl::StatusOr<nlohmann::json> list = instance_->Ctl({"endpoint", "list"});
    if (!list.ok()) return list.status();
    for (const nlohmann::json& e : (*list)["endpoints"])
      if (e["name"] == name) return e;
    return absl::NotFoundError(absl::StrCat("stockadectl endpoint list has no ", name));
  }

  nlohmann::json IdentityOf(const std::string& name) {
    absl::StatusOr<nlohmann::json> e = Endpoint(name);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? (*e)["identity"] : nlohmann::json();
  }

  // POLICY_DENIED drops so far, as `stockadectl status -o json` counts them.
  uint64_t PolicyDrops() {
    absl::StatusOr<nlohmann::json> status = instance_->Ctl({"status"});
    EXPECT_TRUE(status.ok()) << status.status();
    return status.ok() ? (*status)["drops"].value("POLICY_DENIED", uint64_t{0}) : 0;
  }

  static void ExpectAnswered(const TestContainer& from, const TestContainer& to, uint16_t port) {
    absl::Status s = Probe(from, to, port, kAnswerTimeout);
    EXPECT_TRUE(s.ok()) << Describe(from, to, port) << " must be answered: " << s;
  }

  static void ExpectDropped(const TestContainer& from, const TestContainer& to, uint16_t port) {
    absl::Status s = Probe(from, to, port, kSilenceTimeout);
    EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << Describe(from, to, port) << " must be dropped: " << s;
  }

  // Right after a container (re)starts its echo servers may not listen yet.
  static void ExpectAnsweredOnceListening(const TestContainer& from, const TestContainer& to, uint16_t port) {
    absl::Status last;
    absl::StatusOr<absl::Duration> answered = WaitUntil(
        [&] { return (last = Probe(from, to, port, kAnswerTimeout)).ok(); }, absl::Seconds(10), "answer");
    EXPECT_TRUE(answered.ok()) << Describe(from, to, port) << " must be answered: " << last;
  }

  // One TCX program each way on the container's eth0, and only one.
  static void ExpectOneTcxPair(const TestContainer& c, const std::string& why) {
    absl::StatusOr<std::vector<std::string>> kinds = TcPrograms(c.netns, "eth0");
    ASSERT_TRUE(kinds.ok()) << kinds.status();
    EXPECT_THAT(*kinds, ::testing::UnorderedElementsAre(HasSubstr("tcx/ingress stockade_tc_ing"),
                                                        HasSubstr("tcx/egress stockade_tc_egr")))
        << c.name << ": " << why;
  }

  // A server tier=server on `network` and an agent whose policy lets clients
  // (tier=client) reach it on tcp/80 only; the server takes anything.
  struct ServerUnderClientEgress {
    TestContainer server;
    pid_t agent = -1;
  };
  absl::StatusOr<ServerUnderClientEgress> ServerAndAgentForClients(const std::string& network) {
    ServerUnderClientEgress out;
    absl::StatusOr<TestContainer> server = RunContainer("server", network, "server");
    if (!server.ok()) return server.status();
    out.server = *server;
    if (absl::Status s = instance_->WritePolicy(
            "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: client-egress}\n"
            "spec:\n  endpointSelector: {matchLabels: {tier: client}}\n  egress:\n"
            "    - toEndpoints: [{matchLabels: {tier: server}}]\n"
            "      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n");
        !s.ok())
      return s;
    absl::StatusOr<pid_t> agent = StartAgent({{server->name, "allow-all"}});
    if (!agent.ok()) return agent.status();
    out.agent = *agent;
    return out;
  }

  // Runs a container labelled tier=client on `network` whose first act is one
  // echo to `server` on port 80, and freezes the agent (SIGSTOP) the moment
  // the client's interface is hooked on sight, in the host namespace (two new
  // pins that carry the host's namespace cookie). With the agent frozen no
  // endpoint record can be written: the first probe, made before anything
  // else, must be dropped (ENDPOINT_UNKNOWN), by the programs on the host-side
  // veth (bridge) or that moved into the container with the interface
  // (macvlan, overlay). Without the early hook it would be answered. Thaws
  // the agent before returning; the caller checks where the programs are.
  void RunClientHookedOnSight(const std::string& network, const TestContainer& server, pid_t agent,
                              std::optional<TestContainer>& client) {
    const std::map<std::string, ino_t> pins_before = LinkPins(instance_->name());
    const std::string first_probe = absl::StrCat(
        "if [ \"$(echo first | nc -w 2 ", server.ip,
        " 80)\" = first ]; then echo answered; else echo dropped; fi >/probe; mv /probe /first; exec sleep 300");
    absl::StatusOr<std::string> client_id;
    std::thread run([&] {
      client_id = scratch_.RunContainer("client", {"--network", network, "--label", "stockade.tier=client"},
                                        kTestImage, {"sh", "-c", first_probe});
    });
    absl::StatusOr<uint64_t> host_cookie = NetnsCookie(daemon_netns_.path);
    bool frozen = false;
    absl::StatusOr<absl::Duration> hooked = WaitUntil(
        [&] {
          std::map<std::string, ino_t> now = LinkPins(instance_->name());
          if (!host_cookie.ok() || std::count_if(now.begin(), now.end(), [&](const auto& pin) {
                                     return !pins_before.contains(pin.first) &&
                                            pin.first.starts_with(absl::StrCat(*host_cookie, "-"));
                                   }) < 2)
            return false;
          instance_->Kill(agent, SIGSTOP);
          return frozen = true;
        },
        kEnforcementBound, "the client's interface hooked on sight");
    run.join();
    absl::Cleanup thaw = [&] {
      if (frozen) instance_->Kill(agent, SIGCONT);
    };
    ASSERT_TRUE(host_cookie.ok()) << host_cookie.status();
    ASSERT_TRUE(hooked.ok()) << hooked.status();
    ASSERT_TRUE(client_id.ok()) << client_id.status();
    absl::StatusOr<TestContainer> inspected = InspectContainer(scratch_.Name("client"), network);
    ASSERT_TRUE(inspected.ok()) << inspected.status();
    client = *inspected;

    // With the agent frozen no record exists: everything the client sends is dropped.
    absl::StatusOr<std::string> first;
    ASSERT_TRUE(WaitUntil([&] { return (first = Docker({"exec", client->name, "cat", "/first"})).ok(); },
                          absl::Seconds(10), "the client's first probe done")
                    .ok());
    EXPECT_EQ(*first, "dropped") << "the client's first probe, before its record existed";
    // Unanswered either way: silence, or no route once the dropped ARP times out.
    absl::Status later = Probe(*client, server, 80, kSilenceTimeout);
    EXPECT_FALSE(later.ok()) << Describe(*client, server, 80) << " must not be answered";
  }

  // A network namespace of the test's own for a private dockerd and the
  // agent that watches it, which then stand in for the host's.
  absl::StatusOr<std::string> UsePrivateDaemonNamespace() {
    absl::StatusOr<lab::TopologyNetns> netns = host_links_.AddNamespace("dockerd");
    if (!netns.ok()) return netns.status();
    daemon_netns_ = *netns;
    instance_->RunIn(netns->path);
    return netns->path;
  }

  lab::Topology host_links_;  // outlives the containers that use its links
  // Where the Docker daemon under test, and so the agent, run: the host's
  // unless the test has a private dockerd.
  lab::TopologyNetns daemon_netns_ = host_links_.host();
  DockerScratch scratch_;
  std::unique_ptr<AgentInstance> instance_;
};

// ---------------------------------------------------------------------------
// frontend -> web -> backend -> db

TEST_F(AgentE2eTest, ChainAllowsEachHopAndDropsEverySkip) {
  absl::StatusOr<std::string> network = CreateBridge();
  ASSERT_TRUE(network.ok()) << network.status();
  std::map<std::string, TestContainer> tier;
  for (const char* name : {"frontend", "web", "backend", "db"}) {
    absl::StatusOr<TestContainer> c = RunContainer(name, *network, name);
    ASSERT_TRUE(c.ok()) << c.status();
    tier[name] = *c;
  }
  const std::vector<Flow>& hops = kChainHops;
  const std::vector<Flow>& denied = kChainDenied;
  for (const Flow& f : denied) ExpectAnsweredOnceListening(tier[f.from], tier[f.to], f.port);
  ASSERT_FALSE(HasFailure()) << "without the agent every flow must be answered";

  ASSERT_TRUE(instance_
                  ->WritePolicy(Documents({IngressPolicy("web-ingress", "web", {"frontend"}, 80),
                                           IngressPolicy("backend-ingress", "backend", {"web"}, 8080),
                                           IngressPolicy("db-ingress", "db", {"backend"}, 5432)}))
                  .ok());
  absl::StatusOr<pid_t> agent = StartAgent({{tier["frontend"].name, "allow-all"},
                                            {tier["web"].name, "enforcing"},
                                            {tier["backend"].name, "enforcing"},
                                            {tier["db"].name, "enforcing"}});
  ASSERT_TRUE(agent.ok()) << agent.status();

  const uint64_t drops_before = PolicyDrops();
  // The echo comes back through the caller's enforced ingress: replies pass.
  for (const Flow& f : hops) ExpectAnswered(tier[f.from], tier[f.to], f.port);
  for (const Flow& f : denied) ExpectDropped(tier[f.from], tier[f.to], f.port);
  EXPECT_GE(PolicyDrops(), drops_before + denied.size()) << "every dropped probe is a POLICY_DENIED drop";

  for (const auto& [f, policy] : {std::pair{hops[0], "web-ingress"}, std::pair{hops[1], "backend-ingress"},
                                  std::pair{hops[2], "db-ingress"}}) {
    absl::StatusOr<nlohmann::json> explained =
        instance_->Ctl({"explain", tier[f.from].name, tier[f.to].name, absl::StrCat(f.port, "/tcp")});
    ASSERT_TRUE(explained.ok()) << explained.status();
    EXPECT_EQ((*explained)["verdict"], "allowed") << explained->dump();
    EXPECT_NE((*explained)["ingress_at_destination"].value("rule", 0u), 0u) << explained->dump();
    EXPECT_THAT((*explained)["ingress_at_destination"].value("why", ""), HasSubstr(absl::StrCat(policy, " ingress[0]")))
        << explained->dump();
  }
  absl::StatusOr<nlohmann::json> skip = instance_->Ctl({"explain", tier["frontend"].name, tier["db"].name, "5432"});
  ASSERT_TRUE(skip.ok()) << skip.status();
  EXPECT_EQ((*skip)["verdict"], "denied") << skip->dump();
  EXPECT_EQ((*skip)["ingress_at_destination"]["why"], "no rule matched (default deny)") << skip->dump();
}

// ---------------------------------------------------------------------------
// macvlan: no host-side peer, so the agent hooks the container's own interface.

TEST_F(AgentE2eTest, MacvlanContainersAreEnforcedInsideTheirNamespace) {
  absl::StatusOr<std::string> created = CreateMacvlanNetwork();
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string network = *created;
  absl::StatusOr<TestContainer> client = RunContainer("client", network, "client");
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<TestContainer> server = RunContainer("server", network, "server");
  ASSERT_TRUE(server.ok()) << server.status();
  ExpectAnsweredOnceListening(*client, *server, 5432);
  ExpectAnsweredOnceListening(*server, *client, 5432);
  ASSERT_FALSE(HasFailure()) << "without the agent both directions must be answered";

  ASSERT_TRUE(instance_
                  ->WritePolicy(Documents({IngressPolicy("server-ingress", "server", {"client"}, 5432),
                                           IngressPolicy("client-ingress", "client", {})}))
                  .ok());
  absl::StatusOr<pid_t> agent = StartAgent({{client->name, "enforcing"}, {server->name, "enforcing"}});
  ASSERT_TRUE(agent.ok()) << agent.status();

  for (const TestContainer& c : {*client, *server}) {
    absl::StatusOr<nlohmann::json> e = Endpoint(c.name);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ((*e)["mode"], "macvlan") << e->dump();
    EXPECT_EQ((*e)["interface"], "eth0") << "hooked inside the container: " << e->dump();
    // bpftool, run in the container's namespace, sees the programs on its eth0.
    absl::StatusOr<std::vector<std::string>> kinds = TcPrograms(c.netns, "eth0");
    ASSERT_TRUE(kinds.ok()) << kinds.status();
    EXPECT_THAT(*kinds, ::testing::UnorderedElementsAre(HasSubstr("ingress stockade_tc_ing"),
                                                        HasSubstr("egress stockade_tc_egr")))
        << c.name;
  }
  const uint64_t drops_before = PolicyDrops();
  ExpectAnswered(*client, *server, 5432);
  ExpectDropped(*server, *client, 5432);
  ExpectDropped(*client, *server, 80);
  EXPECT_GE(PolicyDrops(), drops_before + 2);
}

// Docker makes a macvlan container's interface in the host namespace and moves
// it into the container's about a second later. The agent hooks it on sight
// there (TCX links follow a device into another namespace), so the
// container's very first packet meets the program, which drops it
// (ENDPOINT_UNKNOWN) until the agent has written the endpoint's record. The
// test freezes the agent (SIGSTOP) as soon as the early hook is pinned: the
// container then starts and probes with no record at all, and the probe must
// be dropped. Without the early hook it would be answered (the server takes
// anything: no policy selects it).
TEST_F(AgentE2eTest, MacvlanContainerIsFailClosedFromItsFirstPacket) {
  absl::StatusOr<std::string> network = CreateMacvlanNetwork();
  ASSERT_TRUE(network.ok()) << network.status();
  absl::StatusOr<ServerUnderClientEgress> setup = ServerAndAgentForClients(*network);
  ASSERT_TRUE(setup.ok()) << setup.status();
  auto& [server, agent] = *setup;

  const size_t pins_before = LinkPins(instance_->name()).size();
  std::optional<TestContainer> client;
  ASSERT_NO_FATAL_FAILURE(RunClientHookedOnSight(*network, server, agent, client));
  ExpectOneTcxPair(*client, "the programs attached in the host namespace moved in with the interface");
  ASSERT_TRUE(WaitForEndpoints({{client->name, "enforcing"}}).ok());
  // The client's ARP went unanswered while frozen: its neighbour entry for
  // the server fails connects until the kernel resolves it again.
  ExpectAnsweredOnceListening(*client, server, 80);
  ExpectDropped(*client, server, 8080);
  ExpectOneTcxPair(*client, "the early links are the ones enforcing, not a second pair");
  EXPECT_EQ(LinkPins(instance_->name()).size(), pins_before + 2) << "the early pins were renamed, not left beside new ones";
  EXPECT_THAT(instance_->Log(), HasSubstr("hooked on sight before Docker moved it"));
  absl::StatusOr<nlohmann::json> status = instance_->Ctl({"status"});
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_GT((*status)["drops"].value("ENDPOINT_UNKNOWN", uint64_t{0}), 0u) << status->dump();
}

// A bridge container is hooked on its host-side veth the moment Docker
// enslaves it to the bridge, before the container runs: fail closed from its
// first packet, like macvlan.
TEST_F(AgentE2eTest, BridgeContainerIsFailClosedFromItsFirstPacket) {
  absl::StatusOr<std::string> network = CreateBridge();
  ASSERT_TRUE(network.ok()) << network.status();
  absl::StatusOr<ServerUnderClientEgress> setup = ServerAndAgentForClients(*network);
  ASSERT_TRUE(setup.ok()) << setup.status();
  auto& [server, agent] = *setup;

  std::optional<TestContainer> client;
  ASSERT_NO_FATAL_FAILURE(RunClientHookedOnSight(*network, server, agent, client));
  ASSERT_TRUE(WaitForEndpoints({{client->name, "enforcing"}}).ok());
  ExpectAnsweredOnceListening(*client, server, 80);
  ExpectDropped(*client, server, 8080);
  absl::StatusOr<nlohmann::json> e = Endpoint(client->name);
  ASSERT_TRUE(e.ok()) << e.status();
  absl::StatusOr<std::vector<std::string>> kinds = TcPrograms(daemon_netns_.path, (*e)["interface"]);
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_THAT(*kinds, ::testing::UnorderedElementsAre(HasSubstr("tcx/ingress stockade_tc_ing"),
                                                      HasSubstr("tcx/egress stockade_tc_egr")))
      << "one pair on the host-side veth, the early one: " << e->dump();
  absl::StatusOr<nlohmann::json> status = instance_->Ctl({"status"});
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_GT((*status)["drops"].value("ENDPOINT_UNKNOWN", uint64_t{0}), 0u) << status->dump();
}

// ---------------------------------------------------------------------------
// Network modes without an interface of their own.

// `--network host` shares the host's stack: shown as host, with the host's
// identity whatever its labels say, and nothing changes for the others.
TEST_F(AgentE2eTest, HostNetworkContainerIsShownAsHostAndChangesNothing) {
  absl::StatusOr<Tiers> tiers = BackendWebDb();
  ASSERT_TRUE(tiers.ok()) << tiers.status();
  const uint64_t drops_before = PolicyDrops();
  // It claims backend's tier: on the host's stack that must grant nothing.
  absl::StatusOr<std::string> id =
      scratch_.RunContainer("hostnet", {"--network", "host", "--label", "stockade.tier=backend"});
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<nlohmann::json> shown;
  ASSERT_TRUE(WaitUntil([&] { return (shown = Endpoint(scratch_.Name("hostnet"))).ok(); }, kEnforcementBound,
                        "the host-network container in endpoint list")
                  .ok());
  EXPECT_EQ((*shown)["state"], "host") << shown->dump();
  EXPECT_EQ((*shown)["mode"], "host") << shown->dump();
  EXPECT_EQ((*shown)["identity"], IDENTITY_HOST) << shown->dump();
  EXPECT_EQ((*shown)["policies"], nlohmann::json::array()) << shown->dump();
  ASSERT_TRUE(WaitForEndpoints(tiers->states()).ok());
  ExpectAnswered(tiers->backend, tiers->db, 5432);
  ExpectDropped(tiers->web, tiers->db, 5432);
  EXPECT_EQ(PolicyDrops(), drops_before + 1) << "the host-network container changed what the others get";
}

// ---------------------------------------------------------------------------
// `docker restart`: a new namespace and a new veth, hooked again.

TEST_F(AgentE2eTest, EnforcementReturnsAfterAContainerRestart) {
  absl::StatusOr<Tiers> tiers = BackendWebDb();
  ASSERT_TRUE(tiers.ok()) << tiers.status();
  auto& [network, backend, web, db, agent] = *tiers;
  absl::StatusOr<nlohmann::json> before = Endpoint(db.name);
  ASSERT_TRUE(before.ok()) << before.status();

  // No grace period: busybox sleep as pid 1 ignores SIGTERM.
  ASSERT_TRUE(Docker({"restart", "--time", "0", db.name}).ok());
  absl::StatusOr<absl::Duration> rehooked = WaitUntil(
      [&] {
        absl::StatusOr<nlohmann::json> e = Endpoint(db.name);
        return e.ok() && (*e)["interface"] != (*before)["interface"] && (*e)["state"] == "enforcing";
      },
      kEnforcementBound, "the restarted db hooked again");
  ASSERT_TRUE(rehooked.ok()) << rehooked.status();
  std::cout << "db hooked again " << absl::FormatDuration(*rehooked) << " after `docker restart` returned\n";

  ASSERT_TRUE(StartEchoServers(db.name, kPorts).ok());
  absl::StatusOr<TestContainer> restarted = InspectContainer(db.name, network);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  db = *restarted;
  ExpectAnsweredOnceListening(backend, db, 5432);
  ExpectDropped(web, db, 5432);
  ExpectDropped(backend, db, 80);
}

// ---------------------------------------------------------------------------
// SIGKILL: the pinned programs and maps enforce on; a new agent adopts them.

TEST_F(AgentE2eTest, EnforcementOutlivesAKilledAgentAndANewAgentAdopts) {
  absl::StatusOr<Tiers> tiers = BackendWebDb();
  ASSERT_TRUE(tiers.ok()) << tiers.status();
  auto& [network, backend, web, db, first] = *tiers;
  const std::map<std::string, std::string> states = tiers->states();

  // A second agent for the same instance refuses, and leaves the first be.
  absl::StatusOr<pid_t> second = instance_->StartAgent();
  ASSERT_TRUE(second.ok()) << second.status();
  absl::StatusOr<int> refused = instance_->WaitExit(*second, absl::Seconds(20));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_TRUE(WIFEXITED(*refused) && WEXITSTATUS(*refused) != 0) << "wait status " << *refused;
  EXPECT_THAT(instance_->Log(), HasSubstr(absl::StrCat("instance '", instance_->name(), "'")));
  ASSERT_TRUE(instance_->Ctl({"status"}).ok()) << "the first agent must still answer";

  std::map<std::string, nlohmann::json> identities;
  for (const TestContainer& c : {backend, web, db}) identities[c.name] = IdentityOf(c.name);
  // Only this test's containers: the agent hooks on sight whatever else runs on the host.
  auto our_pins = [&] {
    std::map<std::string, ino_t> ours;
    std::vector<std::string> ifindexes;
    for (const TestContainer& c : {backend, web, db}) {
      absl::StatusOr<nlohmann::json> e = Endpoint(c.name);
      if (e.ok()) ifindexes.push_back(absl::StrCat("-", if_nametoindex((*e)["interface"].get<std::string>().c_str()), "-"));
    }
    for (const auto& [name, inode] : LinkPins(instance_->name()))
      for (const std::string& ifindex : ifindexes)
        if (name.find(ifindex) != std::string::npos) ours[name] = inode;
    return ours;
  };
  const std::map<std::string, ino_t> pins = our_pins();
  EXPECT_EQ(pins.size(), 6u) << "two links for each container";
  absl::StatusOr<EchoSession> session = EchoSession::Open(backend, db, 5432, kAnswerTimeout);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(session->Echo("before the kill", kAnswerTimeout).ok());

  // New allowed connections all along, while the agent dies.
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0}, unanswered{0};
  std::thread traffic([&] {
    while (!stop) {
      (Probe(backend, db, 5432, kAnswerTimeout).ok() ? answered : unanswered)++;
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  absl::SleepFor(absl::Milliseconds(300));
  instance_->Kill(first, SIGKILL);
  absl::StatusOr<int> killed = instance_->WaitExit(first, absl::Seconds(10));
  absl::SleepFor(absl::Milliseconds(300));
  stop = true;
  traffic.join();
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_TRUE(WIFSIGNALED(*killed) && WTERMSIG(*killed) == SIGKILL) << "wait status " << *killed;
  EXPECT_GT(answered, 0);
  EXPECT_EQ(unanswered, 0) << "allowed connections failed around the kill";

  // No agent now: the pinned datapath decides alone.
  ExpectDropped(web, db, 5432);
  ExpectAnswered(backend, db, 5432);
  EXPECT_TRUE(session->Echo("while no agent runs", kAnswerTimeout).ok());

  absl::StatusOr<pid_t> third = StartAgent(states);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_TRUE(session->Echo("after a new agent adopted", kAnswerTimeout).ok());
  ExpectDropped(web, db, 5432);
  ExpectAnswered(backend, db, 5432);
  for (const auto& [name, identity] : identities) EXPECT_EQ(IdentityOf(name), identity) << name;
  EXPECT_EQ(our_pins(), pins) << "the new agent must adopt the links, not attach anew";
  EXPECT_THAT(instance_->Log(), ::testing::Not(HasSubstr("dropping stale pin")));
}

// ---------------------------------------------------------------------------
// Labels an image sets grant nothing.

TEST_F(AgentE2eTest, AnImageCannotClaimAnIdentityLabel) {
  absl::StatusOr<std::string> network = CreateBridge();
  ASSERT_TRUE(network.ok()) << network.status();
  absl::StatusOr<std::string> image = scratch_.ImportLabelledImage("claims-db", {"stockade.tier=db"});
  ASSERT_TRUE(image.ok()) << image.status();
  absl::StatusOr<TestContainer> impostor = RunContainer("impostor", *network, "", scratch_.Name("claims-db"));
  ASSERT_TRUE(impostor.ok()) << impostor.status();
  absl::StatusOr<TestContainer> db = RunContainer("db", *network, "db");
  ASSERT_TRUE(db.ok()) << db.status();
  absl::StatusOr<TestContainer> backend = RunContainer("backend", *network, "backend");
  ASSERT_TRUE(backend.ok()) << backend.status();
  // What the db identity is worth: db ingress from backend, and a way into backend.
  ASSERT_TRUE(instance_
                  ->WritePolicy(Documents({IngressPolicy("db-ingress", "db", {"backend"}, 5432),
                                           IngressPolicy("backend-ingress", "backend", {"db"}, 8080)}))
                  .ok());
  absl::StatusOr<pid_t> agent =
      StartAgent({{impostor->name, "allow-all"}, {db->name, "enforcing"}, {backend->name, "enforcing"}});
  ASSERT_TRUE(agent.ok()) << agent.status();

  absl::StatusOr<nlohmann::json> e = Endpoint(impostor->name);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)["identity"], IDENTITY_UNMANAGED) << e->dump();
  EXPECT_EQ((*e)["identity_name"], "unmanaged") << e->dump();
  EXPECT_EQ((*e)["labels"], nlohmann::json::object()) << e->dump();
  EXPECT_EQ((*e)["policies"], nlohmann::json::array()) << "db-ingress must not select it: " << e->dump();
  bool tier_ignored = false;
  for (const nlohmann::json& ignored : (*e)["ignored_labels"])
    if (ignored["label"] == "stockade.tier=db") tier_ignored = !ignored.value("reason", "").empty();
  EXPECT_TRUE(tier_ignored) << "stockade.tier=db must be listed as ignored, with a reason: " << e->dump();
  absl::StatusOr<nlohmann::json> real_db = Endpoint(db->name);
  ASSERT_TRUE(real_db.ok()) << real_db.status();
  EXPECT_EQ((*real_db)["labels"]["tier"], "db") << real_db->dump();
  EXPECT_THAT((*real_db)["policies"], ::testing::Contains("db-ingress")) << real_db->dump();

  ExpectAnsweredOnceListening(*db, *backend, 8080);
  ExpectDropped(*impostor, *backend, 8080);
}

// compose's labels join the identity, so an image must not set them either:
// an image built with compose's project and service labels, run with a plain
// `docker run`, gets nothing from them; a container labelled so at run time
// (as compose labels its containers) gets the identity.
TEST_F(AgentE2eTest, AnImageCannotClaimAComposeService) {
  absl::StatusOr<std::string> network = CreateBridge();
  ASSERT_TRUE(network.ok()) << network.status();
  const std::vector<std::string> compose_db = {"com.docker.compose.project=shop", "com.docker.compose.service=db"};
  absl::StatusOr<std::string> image = scratch_.ImportLabelledImage("claims-compose-db", compose_db);
  ASSERT_TRUE(image.ok()) << image.status();
  absl::StatusOr<TestContainer> impostor = RunContainer("impostor", *network, "", scratch_.Name("claims-compose-db"));
  ASSERT_TRUE(impostor.ok()) << impostor.status();
  absl::StatusOr<TestContainer> db = RunLabelledContainer("db", *network, compose_db);
  ASSERT_TRUE(db.ok()) << db.status();
  absl::StatusOr<TestContainer> backend = RunContainer("backend", *network, "backend");
  ASSERT_TRUE(backend.ok()) << backend.status();
  ASSERT_TRUE(instance_
                  ->WritePolicy("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: backend-ingress}\n"
                                "spec:\n  endpointSelector: {matchLabels: {tier: backend}}\n  ingress:\n"
                                "    - fromEndpoints: [{matchLabels: {compose.project: shop, compose.service: db}}]\n"
                                "      toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n")
                  .ok());
  absl::StatusOr<pid_t> agent =
      StartAgent({{impostor->name, "allow-all"}, {db->name, "allow-all"}, {backend->name, "enforcing"}});
  ASSERT_TRUE(agent.ok()) << agent.status();

  absl::StatusOr<nlohmann::json> e = Endpoint(impostor->name);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)["identity"], IDENTITY_UNMANAGED) << e->dump();
  EXPECT_EQ((*e)["labels"], nlohmann::json::object()) << e->dump();
  std::set<std::string> ignored;
  for (const nlohmann::json& l : (*e)["ignored_labels"])
    if (l.value("reason", "").find("set by the image") != std::string::npos) ignored.insert(l["label"]);
  for (const std::string& label : compose_db)
    EXPECT_TRUE(ignored.contains(label)) << label << " must be listed as set by the image: " << e->dump();
  absl::StatusOr<nlohmann::json> real_db = Endpoint(db->name);
  ASSERT_TRUE(real_db.ok()) << real_db.status();
  EXPECT_EQ((*real_db)["labels"].value("compose.project", ""), "shop") << real_db->dump();
  EXPECT_EQ((*real_db)["labels"].value("compose.service", ""), "db") << real_db->dump();
  EXPECT_THAT((*real_db)["policies"], ::testing::IsEmpty()) << "backend-ingress selects backend only";

  ExpectAnsweredOnceListening(*db, *backend, 8080);
  ExpectDropped(*impostor, *backend, 8080);
}

// `--network none` has nothing to enforce and says so. `--network
// container:<owner>` has no interface of its own: it sends and receives on
// the owner's, so the owner's record decides its traffic, whatever its own
// labels claim, and endpoint list shows it with the owner's identity.
TEST_F(AgentE2eTest, NoneAndSharedNetworkModesAreShownAndDecidedAsTheyRun) {
  absl::StatusOr<Tiers> tiers = BackendWebDb();
  ASSERT_TRUE(tiers.ok()) << tiers.status();
  const std::string backend_label = "stockade.tier=backend";  // what db lets in: must grant neither
  ASSERT_TRUE(scratch_.RunContainer("isolated", {"--network", "none", "--label", backend_label}).ok());
  ASSERT_TRUE(
      scratch_.RunContainer("sidecar", {"--network", "container:" + tiers->web.name, "--label", backend_label}).ok());
  absl::StatusOr<nlohmann::json> isolated, sidecar, web;
  ASSERT_TRUE(WaitUntil(
                  [&] {
                    return (isolated = Endpoint(scratch_.Name("isolated"))).ok() &&
                           (sidecar = Endpoint(scratch_.Name("sidecar"))).ok() && (web = Endpoint(tiers->web.name)).ok();
                  },
                  kEnforcementBound, "the none and container-mode containers in endpoint list")
                  .ok());
  EXPECT_EQ((*isolated)["state"], "none") << isolated->dump();
  EXPECT_EQ((*isolated)["mode"], "none") << isolated->dump();
  EXPECT_EQ((*sidecar)["shares_network_of"], tiers->web.name) << sidecar->dump();
  EXPECT_EQ((*sidecar)["identity"], (*web)["identity"]) << sidecar->dump();
  EXPECT_EQ((*sidecar)["interface"], (*web)["interface"]) << sidecar->dump();
  EXPECT_EQ((*sidecar)["state"], (*web)["state"]) << sidecar->dump();
  EXPECT_EQ((*sidecar)["labels"], (*web)["labels"]) << "decided as web: " << sidecar->dump();

  absl::StatusOr<std::string> pid = Docker({"inspect", "--format", "{{.State.Pid}}", scratch_.Name("sidecar")});
  ASSERT_TRUE(pid.ok()) << pid.status();
  const TestContainer from_sidecar{scratch_.Name("sidecar"), absl::StrCat("/proc/", *pid, "/ns/net"), tiers->web.ip};
  ExpectDropped(from_sidecar, tiers->db, 5432);
  ExpectAnswered(tiers->backend, tiers->db, 5432);
}

// ---------------------------------------------------------------------------
// Segmentation by Docker network: each attached network is an identity label,
// network.<name>: attached, of every container with identity labels.

// db is on backnet and on frontnet; its policy lets in only what is on
// backnet. A client on backnet is answered; a client on frontnet only,
// which reaches db's frontnet address without the agent, is dropped, and so
// is one that claims backnet with a label. An unmanaged container on backnet
// (no identity labels of its own) stays unmanaged: network labels alone do
// not make a container managed, so the rule does not let it in.
TEST_F(AgentE2eTest, OnlyContainersOnBacknetReachDb) {
  ASSERT_TRUE(scratch_.CreateNetwork("backnet", {"--driver", "bridge"}).ok());
  ASSERT_TRUE(scratch_.CreateNetwork("frontnet", {"--driver", "bridge"}).ok());
  const std::string backnet = scratch_.Name("backnet"), frontnet = scratch_.Name("frontnet");
  absl::StatusOr<TestContainer> db_on_backnet = RunContainer("db", backnet, "db");
  ASSERT_TRUE(db_on_backnet.ok()) << db_on_backnet.status();
  ASSERT_TRUE(Docker({"network", "connect", frontnet, db_on_backnet->name}).ok());
  absl::StatusOr<TestContainer> db_on_frontnet = InspectContainer(db_on_backnet->name, frontnet);
  ASSERT_TRUE(db_on_frontnet.ok()) << db_on_frontnet.status();
  absl::StatusOr<TestContainer> back = RunContainer("back", backnet, "client");
  ASSERT_TRUE(back.ok()) << back.status();
  absl::StatusOr<TestContainer> front = RunContainer("front", frontnet, "client");
  ASSERT_TRUE(front.ok()) << front.status();
  const std::string claim = absl::StrCat("stockade.network.", backnet, "=attached");
  absl::StatusOr<TestContainer> impostor =
      RunLabelledContainer("impostor", frontnet, {"stockade.tier=client", claim});
  ASSERT_TRUE(impostor.ok()) << impostor.status();
  // The scratch's own stockade.test label, set by this image, grants nothing: unmanaged.
  ASSERT_TRUE(scratch_.ImportLabelledImage("plain", {}).ok());
  absl::StatusOr<TestContainer> plain = RunContainer("plain", backnet, "", scratch_.Name("plain"));
  ASSERT_TRUE(plain.ok()) << plain.status();
  ExpectAnsweredOnceListening(*back, *db_on_backnet, 5432);
  ExpectAnsweredOnceListening(*plain, *db_on_backnet, 5432);
  ExpectAnsweredOnceListening(*front, *db_on_frontnet, 5432);
  ExpectAnsweredOnceListening(*impostor, *db_on_frontnet, 5432);
  ASSERT_FALSE(HasFailure()) << "without the agent every client must reach db";

  ASSERT_TRUE(instance_
                  ->WritePolicy(absl::StrCat(
                      "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: db-backnet}\nspec:\n"
                      "  endpointSelector: {matchLabels: {tier: db}}\n  ingress:\n"
                      "    - fromEndpoints: [{matchLabels: {network.",
                      backnet, ": attached}}]\n      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n"))
                  .ok());
  absl::StatusOr<pid_t> agent = StartAgent({{db_on_backnet->name, "enforcing"},
                                            {back->name, "allow-all"},
                                            {front->name, "allow-all"},
                                            {impostor->name, "allow-all"},
                                            {plain->name, "allow-all"}});
  ASSERT_TRUE(agent.ok()) << agent.status();

  const std::string on_backnet = absl::StrCat("network.", backnet), on_frontnet = absl::StrCat("network.", frontnet);
  absl::StatusOr<nlohmann::json> db = Endpoint(db_on_backnet->name);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ((*db)["labels"].value(on_backnet, ""), "attached") << db->dump();
  EXPECT_EQ((*db)["labels"].value(on_frontnet, ""), "attached") << db->dump();
  absl::StatusOr<nlohmann::json> back_shown = Endpoint(back->name);
  ASSERT_TRUE(back_shown.ok()) << back_shown.status();
  EXPECT_EQ((*back_shown)["labels"].value(on_backnet, ""), "attached") << back_shown->dump();
  EXPECT_FALSE((*back_shown)["labels"].contains(on_frontnet)) << back_shown->dump();
  absl::StatusOr<nlohmann::json> impostor_shown = Endpoint(impostor->name);
  ASSERT_TRUE(impostor_shown.ok()) << impostor_shown.status();
  EXPECT_FALSE((*impostor_shown)["labels"].contains(on_backnet)) << impostor_shown->dump();
  EXPECT_EQ((*impostor_shown)["labels"].value(on_frontnet, ""), "attached") << impostor_shown->dump();
  bool claim_ignored = false;
  for (const nlohmann::json& ignored : (*impostor_shown)["ignored_labels"])
    if (ignored["label"] == claim) claim_ignored = absl::StrContains(ignored.value("reason", ""), "network.*");
  EXPECT_TRUE(claim_ignored) << claim << " must be listed as ignored, with the reason: " << impostor_shown->dump();
  EXPECT_EQ(IdentityOf(plain->name), IDENTITY_UNMANAGED) << "network labels alone do not make it managed";

  const uint64_t drops_before = PolicyDrops();
  ExpectAnswered(*back, *db_on_backnet, 5432);
  ExpectDropped(*back, *db_on_backnet, 80);
  ExpectDropped(*front, *db_on_frontnet, 5432);
  ExpectDropped(*impostor, *db_on_frontnet, 5432);
  ExpectDropped(*plain, *db_on_backnet, 5432);
  EXPECT_GE(PolicyDrops(), drops_before + 4) << "every dropped probe is a POLICY_DENIED drop";
  absl::StatusOr<nlohmann::json> explained = instance_->Ctl({"explain", back->name, db_on_backnet->name, "5432/tcp"});
  ASSERT_TRUE(explained.ok()) << explained.status();
  EXPECT_EQ((*explained)["verdict"], "allowed") << explained->dump();
  EXPECT_THAT((*explained)["ingress_at_destination"].value("why", ""), HasSubstr("db-backnet ingress[0]"))
      << explained->dump();
}

// ---------------------------------------------------------------------------
// Compose as a real client: examples/compose/ (the chain as a compose project,
// db's policy in its stockade.policy label) with Debian's docker-compose,
// under a project name of the test's own, across up, restart, scale and down.

absl::StatusOr<std::string> Compose(const std::string& project, std::vector<std::string> args) {
  args.insert(args.begin(), {"docker-compose", "--no-ansi", "-p", project, "-f",
                             STOCKADE_SOURCE_DIR "/examples/compose/docker-compose.yml"});
  return RunCommand(args, std::nullopt, std::chrono::seconds(120));
}

TEST_F(AgentE2eTest, ComposeChainThroughUpRestartScaleAndDown) {
  // compose 1.x keeps [a-z0-9_-] of a project name; the run id makes it unique.
  const std::string project = absl::StrCat("stk", scratch_.run_id());
  const std::string network = project + "_default";
  auto name = [&](const std::string& service, int n = 1) { return absl::StrCat(project, "_", service, "_", n); };
  absl::Cleanup down = [&] { (void)Compose(project, {"down", "--timeout", "1"}); };
  absl::StatusOr<std::string> up = Compose(project, {"up", "-d"});
  ASSERT_TRUE(up.ok()) << up.status();
  std::ifstream policies(STOCKADE_SOURCE_DIR "/examples/compose/policies/chain.yaml");
  ASSERT_TRUE(instance_->WritePolicy(std::string(std::istreambuf_iterator<char>(policies), {})).ok());
  const std::map<std::string, std::string> states = {{name("frontend"), "allow-all"},
                                                     {name("web"), "enforcing"},
                                                     {name("backend"), "enforcing"},
                                                     {name("db"), "enforcing"}};
  absl::StatusOr<pid_t> agent = StartAgent(states);
  ASSERT_TRUE(agent.ok()) << agent.status();

  auto inspect = [&](const std::string& container) {
    absl::StatusOr<TestContainer> c = InspectContainer(container, network);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.value_or(TestContainer{});
  };
  // Each hop answers; each skip, lateral move and wrong port drops.
  auto expect_chain = [&](const std::string& when) {
    SCOPED_TRACE(when);
    const TestContainer frontend = inspect(name("frontend")), web = inspect(name("web")),
                        backend = inspect(name("backend")), db = inspect(name("db"));
    ExpectAnsweredOnceListening(frontend, web, 80);
    ExpectAnsweredOnceListening(web, backend, 8080);
    ExpectAnsweredOnceListening(backend, db, 5432);
    ExpectDropped(frontend, backend, 8080);
    ExpectDropped(frontend, db, 5432);
    ExpectDropped(web, db, 5432);
    ExpectDropped(backend, web, 80);
    ExpectDropped(db, backend, 8080);
    ExpectDropped(web, backend, 5432);
    ExpectDropped(backend, db, 80);
  };
  expect_chain("after up");
  absl::StatusOr<nlohmann::json> db = Endpoint(name("db"));
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_THAT((*db)["policies"], ::testing::Contains(absl::StrCat("container/", name("db")))) << db->dump();
  EXPECT_EQ((*db)["labels"].value("compose.service", ""), "db") << db->dump();

  const std::string backend_netns = inspect(name("backend")).netns;
  absl::StatusOr<std::string> restarted = Compose(project, {"restart", "--timeout", "1", "backend"});
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  ASSERT_NE(inspect(name("backend")).netns, backend_netns) << "a restart gives the container a new namespace";
  ASSERT_TRUE(WaitForEndpoints(states).ok());
  expect_chain("after restart of backend");

  absl::StatusOr<std::string> scaled = Compose(project, {"up", "-d", "--no-recreate", "--scale", "web=2"});
  ASSERT_TRUE(scaled.ok()) << scaled.status();
  ASSERT_TRUE(WaitForEndpoints({{name("web", 2), "enforcing"}}).ok());
  const TestContainer web2 = inspect(name("web", 2));
  ExpectAnsweredOnceListening(inspect(name("frontend")), web2, 80);
  ExpectAnsweredOnceListening(web2, inspect(name("backend")), 8080);
  ExpectDropped(web2, inspect(name("db")), 5432);
  ExpectDropped(inspect(name("backend")), web2, 80);

  absl::StatusOr<std::string> downed = Compose(project, {"down", "--timeout", "1"});
  ASSERT_TRUE(downed.ok()) << downed.status();
  absl::StatusOr<absl::Duration> gone = WaitUntil(
      [&] {
        absl::StatusOr<nlohmann::json> list = instance_->Ctl({"endpoint", "list"});
        if (!list.ok()) return false;
        for (const nlohmann::json& e : (*list)["endpoints"])
          if (absl::StartsWith(e.value("name", ""), project)) return false;
        return true;
      },
      kEnforcementBound, "the project's endpoints gone after down");
  EXPECT_TRUE(gone.ok()) << gone.status();
  EXPECT_FALSE(Docker({"network", "inspect", network}).ok()) << "down removes the project's network";
}

// A dockerd of the test's own (the host's is shared with other tests and is
// never stopped or put in swarm mode), in a network namespace of the test's
// own where the agent runs too (UsePrivateDaemonNamespace: nothing it makes
// or deletes touches the host's links), with the test image, to which every
// docker command of the test goes while this lives: the test's own, its
// helpers' and the agent's (DOCKER_HOST). Declared after the fixture's
// members, it ends first: the fixture then cleans up on the host's daemon.
class PrivateDockerdScope {
 public:
  PrivateDockerdScope(const std::string& name, absl::StatusOr<std::string> netns_path,
                      PrivateDockerd::Networking networking = PrivateDockerd::Networking::kNone)
      : netns_status_(netns_path.status()), dockerd_(name, netns_path.value_or(""), networking) {
    if (const char* host = getenv("DOCKER_HOST")) saved_ = host;
  }
  ~PrivateDockerdScope() {
    if (saved_) {
      setenv("DOCKER_HOST", saved_->c_str(), 1);
    } else {
      unsetenv("DOCKER_HOST");
    }
  }
  absl::Status Start() {
    if (!netns_status_.ok()) return netns_status_;
    if (absl::Status s = dockerd_.Start(absl::Seconds(60)); !s.ok()) return s;
    if (absl::Status s = dockerd_.CopyImage(kTestImage); !s.ok()) return s;
    setenv("DOCKER_HOST", dockerd_.host().c_str(), 1);
    return absl::OkStatus();
  }
  PrivateDockerd* operator->() { return &dockerd_; }

 private:
  std::optional<std::string> saved_;
  absl::Status netns_status_;
  PrivateDockerd dockerd_;
};

// ---------------------------------------------------------------------------
// Docker as it runs out of the box (iptables NAT, docker-proxy), in a namespace
// of the test's own that stands in for the host, with two clients outside it
// (namespaces routed to it over veths: an "internet" of test addresses). A
// published port is reached only as the container's ingress policy allows for
// the source each path presents (docs/policy.md, "Published ports"):
//   from outside            the client's own address (DNAT keeps the source)
//   from the host           its own address (DNAT in OUTPUT): host, since
//                           the agent knows the host's addresses; at
//                           127.0.0.1, the gateway through docker-proxy: host
//   from another container  the same: docker-proxy answers for the host
// Egress to the world is decided before the masquerade, on the real
// destination; a name lookup through Docker's embedded resolver needs no rule.

TEST_F(AgentE2eTest, PublishedPortsAndTheWorldUnderDockersDefaults) {
  PrivateDockerdScope dockerd(scratch_.Name("d"), UsePrivateDaemonNamespace(),
                              PrivateDockerd::Networking::kDockerDefaults);
  ASSERT_TRUE(dockerd.Start().ok());
  const int n = 1 + getpid() % 250;
  struct Outside {
    TestContainer client;   // the namespace outside, as a probe's source
    TestContainer gateway;  // the "host" address it reaches the published port at
  };
  std::vector<Outside> outside, outside_over_ipv6;
  for (int i : {1, 2}) {
    const std::string subnet = absl::StrCat("10.", 215 + i, ".", n, ".");
    absl::StatusOr<lab::TopologyNetns> world = host_links_.AddNamespace(absl::StrCat("world", i));
    ASSERT_TRUE(world.ok()) << world.status();
    auto link = host_links_.AddVethPair(daemon_netns_, absl::StrCat("up", i), *world, "eth0");
    ASSERT_TRUE(link.ok()) << link.status();
    ASSERT_TRUE(host_links_.AddAddress(link->first, subnet + "1/24").ok());
    ASSERT_TRUE(host_links_.AddAddress(link->second, subnet + "2/24").ok());
    ASSERT_TRUE(host_links_.SetUp(link->first).ok() && host_links_.SetUp(link->second).ok());
    ASSERT_TRUE(host_links_.Run(*world, {"ip", "route", "add", "default", "via", subnet + "1"}).ok());
    // IPv6 too, on the second link: Docker (20.10) publishes on [::] as well, through docker-proxy.
    const std::string subnet6 = absl::StrCat("fd00:", 215 + i, ":", n, "::");
    ASSERT_TRUE(host_links_.AddAddress(link->first, subnet6 + "1/64").ok());
    ASSERT_TRUE(host_links_.AddAddress(link->second, subnet6 + "2/64").ok());
    outside.push_back({{absl::StrCat("world", i), world->path, subnet + "2"},
                       {absl::StrCat("published port via up", i), daemon_netns_.path, subnet + "1"}});
    outside_over_ipv6.push_back({{absl::StrCat("world", i, " over IPv6"), world->path, subnet6 + "2"},
                                 {absl::StrCat("published port via up", i, " over IPv6"), daemon_netns_.path,
                                  subnet6 + "1"}});
  }
  // A server on tcp/9000 in each outside namespace, for egress.
  std::vector<pid_t> servers;
  absl::Cleanup stop_servers = [&] {
    for (pid_t pid : servers) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  };
  for (const Outside& o : outside) {
    absl::StatusOr<pid_t> pid = SpawnProcess({"busybox", "nc", "-ll", "-p", "9000", "-e", "cat"},
                                             {.search_path = true, .netns_path = o.client.netns});
    ASSERT_TRUE(pid.ok()) << pid.status();
    servers.push_back(*pid);
  }

  absl::StatusOr<std::string> network = CreateBridge();
  ASSERT_TRUE(network.ok()) << network.status();
  absl::StatusOr<std::string> web_id =
      scratch_.RunContainer("web", {"--network", *network, "--label", "stockade.tier=web", "-p", "8080:80"});
  ASSERT_TRUE(web_id.ok()) << web_id.status();
  ASSERT_TRUE(StartEchoServers(scratch_.Name("web"), kPorts).ok());
  absl::StatusOr<TestContainer> web = InspectContainer(scratch_.Name("web"), *network);
  ASSERT_TRUE(web.ok()) << web.status();
  absl::StatusOr<TestContainer> client = RunContainer("client", *network, "client");
  ASSERT_TRUE(client.ok()) << client.status();
  const TestContainer host{"the host", daemon_netns_.path, outside[0].gateway.ip};
  const TestContainer client_via_published_port{client->name, client->netns, outside[0].gateway.ip};
  // Without the agent every path carries the probe.
  ExpectAnsweredOnceListening(outside[1].client, outside[1].gateway, 8080);
  ExpectAnsweredOnceListening(outside_over_ipv6[1].client, outside_over_ipv6[1].gateway, 8080);
  ExpectAnsweredOnceListening(*web, outside[1].client, 9000);
  ASSERT_FALSE(HasFailure()) << "without the agent, the published port and the way out must work";

  ASSERT_TRUE(instance_
                  ->WritePolicy(absl::StrCat(
                      "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: web-published}\nspec:\n"
                      "  endpointSelector: {matchLabels: {tier: web}}\n  ingress:\n"
                      "    - fromCIDR: [", outside[0].client.ip, "/32]\n"
                      "      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"
                      "    - fromEntities: [host]\n"
                      "      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n  egress:\n"
                      "    - toCIDR: [", outside[0].client.ip, "/32]\n"
                      "      toPorts: [{ports: [{port: \"9000\", protocol: TCP}]}]\n"))
                  .ok());
  absl::StatusOr<pid_t> agent = StartAgent({{web->name, "enforcing"}, {client->name, "allow-all"}});
  ASSERT_TRUE(agent.ok()) << agent.status();

  // The published port (8080 on the host, 80 in the container: policy names the container's).
  ExpectAnsweredOnceListening(outside[0].client, outside[0].gateway, 8080);
  ExpectDropped(outside[1].client, outside[1].gateway, 8080);
  ExpectAnswered(host, outside[0].gateway, 8080);
  ExpectAnswered(host, TestContainer{"the host's loopback", daemon_netns_.path, "127.0.0.1"}, 8080);
  ExpectAnswered(client_via_published_port, outside[0].gateway, 8080);
  ExpectDropped(*client, *web, 80);  // directly, with its own identity
  // The same outside client over IPv6 reaches the port through docker-proxy,
  // which connects from the network's gateway: it is host, and fromCIDR
  // cannot name it (docs/policy.md says what to do about it).
  ExpectAnswered(outside_over_ipv6[1].client, outside_over_ipv6[1].gateway, 8080);
  // The world, past the masquerade, and back.
  ExpectAnswered(*web, outside[0].client, 9000);
  ExpectDropped(*web, outside[1].client, 9000);
  // Docker's embedded resolver answers inside the container's namespace.
  absl::StatusOr<std::string> lookup = Docker({"exec", web->name, "nslookup", client->name});
  EXPECT_TRUE(lookup.ok() && absl::StrContains(*lookup, client->ip)) << lookup.status() << " " << lookup.value_or("");

  // stockade-tail names the outside client that was dropped, by its address.
  absl::StatusOr<std::string> tail =
      RunCommand({STOCKADE_TAIL_PATH, "--instance", instance_->name(), "--no-follow", "--since", "5m", "-o", "json",
                  "--to", web->name, "--reason", "POLICY_DENIED"});
  ASSERT_TRUE(tail.ok()) << tail.status();
  bool named = false;
  for (absl::string_view line : absl::StrSplit(*tail, '\n', absl::SkipEmpty())) {
    nlohmann::json event = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (event.is_object() && event["source"].value("ip", "") == outside[1].client.ip &&
        event["destination"].value("port", 0) == 80)
      named = true;
  }
  EXPECT_TRUE(named) << "stockade-tail must show the drop of " << outside[1].client.ip << ":\n" << *tail;
}

// ---------------------------------------------------------------------------
// Docker crashes and comes back. A dockerd of the test's own (the host's is
// shared with other tests and never stopped) on a macvlan network: the
// agent enforces on from the maps while Docker is away and says so in
// `stockadectl status`; once Docker answers again it resubscribes and
// resyncs, and containers started since are enforced.

TEST_F(AgentE2eTest, DockerGoingDownAndComingBack) {
  PrivateDockerdScope dockerd(scratch_.Name("d"), UsePrivateDaemonNamespace());
  ASSERT_TRUE(dockerd.Start().ok());

  absl::StatusOr<std::string> network = CreateMacvlanNetwork();
  ASSERT_TRUE(network.ok()) << network.status();
  absl::StatusOr<TestContainer> backend = RunContainer("backend", *network, "backend");
  ASSERT_TRUE(backend.ok()) << backend.status();
  absl::StatusOr<TestContainer> db = RunContainer("db", *network, "db");
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE(instance_->WritePolicy(IngressPolicy("db-ingress", "db", {"backend"}, 5432)).ok());
  absl::StatusOr<pid_t> agent = StartAgent({{backend->name, "allow-all"}, {db->name, "enforcing"}});
  ASSERT_TRUE(agent.ok()) << agent.status();
  ExpectAnsweredOnceListening(*backend, *db, 5432);
  ExpectDropped(*backend, *db, 80);

  auto status = [&](const std::string& key) {
    absl::StatusOr<nlohmann::json> s = instance_->Ctl({"status"});
    return s.ok() ? (*s)[key] : nlohmann::json();
  };
  const int resyncs_before = status("resyncs").get<int>();
  ASSERT_TRUE(dockerd->Crash().ok());
  ASSERT_TRUE(WaitUntil([&] { return status("docker") == "disconnected"; }, absl::Seconds(10),
                        "stockadectl status shows docker disconnected")
                  .ok());
  // The containers live on without their daemon, and so does enforcement.
  ExpectAnswered(*backend, *db, 5432);
  ExpectDropped(*backend, *db, 80);
  EXPECT_EQ(Endpoint(db->name).value_or(nlohmann::json())["state"], "enforcing");

  ASSERT_TRUE(dockerd->Start(absl::Seconds(60)).ok());
  // Started as soon as Docker answers, most likely before the agent's
  // backoff lets it look again: only the resync can find these.
  absl::StatusOr<TestContainer> late_backend = RunContainer("late-backend", *network, "backend");
  ASSERT_TRUE(late_backend.ok()) << late_backend.status();
  absl::StatusOr<TestContainer> late_db = RunContainer("late-db", *network, "db");
  ASSERT_TRUE(late_db.ok()) << late_db.status();
  absl::StatusOr<absl::Duration> reconnected = WaitUntil(
      [&] { return status("docker") == "connected"; }, absl::Seconds(45), "the agent back on Docker's events");
  ASSERT_TRUE(reconnected.ok()) << reconnected.status();
  std::cout << "agent reconnected " << absl::FormatDuration(*reconnected) << " after the late containers ran\n";
  EXPECT_GT(status("resyncs").get<int>(), resyncs_before);
  ASSERT_TRUE(WaitForEndpoints({{late_backend->name, "allow-all"}, {late_db->name, "enforcing"}}).ok());
  ExpectAnsweredOnceListening(*late_backend, *late_db, 5432);
  ExpectDropped(*late_backend, *late_db, 80);
}

// ---------------------------------------------------------------------------
// Overlay: a single-node swarm of a private dockerd, advertising and
// listening on 127.0.0.1 only, so no traffic leaves the host. Containers are
// enforced inside their namespaces, and one started under a running agent is
// fail closed from its first packet.

TEST_F(AgentE2eTest, OverlayContainersAreEnforcedInsideTheirNamespace) {
  PrivateDockerdScope dockerd(scratch_.Name("d"), UsePrivateDaemonNamespace());
  ASSERT_TRUE(dockerd.Start().ok());
  const std::string listen = absl::StrCat("127.0.0.1:", 20000 + getpid() % 20000);
  absl::StatusOr<std::string> swarm =
      Docker({"swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", listen});
  ASSERT_TRUE(swarm.ok()) << swarm.status();
  // Swarm made docker_gwbridge, a bridge (in the daemon's namespace) it keeps after leaving: removed
  // while the daemon still runs (the scope stops it after this).
  absl::Cleanup leave = [&] {
    (void)Docker({"rm", "-f", scratch_.Name("backend"), scratch_.Name("db"), scratch_.Name("client")});
    (void)Docker({"network", "rm", scratch_.Name("overlay")});
    (void)Docker({"swarm", "leave", "--force"});
    (void)Docker({"network", "rm", "docker_gwbridge"});
  };
  absl::StatusOr<std::string> created =
      scratch_.CreateNetwork("overlay", {"--driver", "overlay", "--attachable", "--subnet",
                                         absl::StrCat("10.215.", 1 + getpid() % 250, ".0/24")});
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string network = scratch_.Name("overlay");
  absl::StatusOr<TestContainer> backend = RunContainer("backend", network, "backend");
  ASSERT_TRUE(backend.ok()) << backend.status();
  absl::StatusOr<TestContainer> db = RunContainer("db", network, "db");
  ASSERT_TRUE(db.ok()) << db.status();
  ExpectAnsweredOnceListening(*backend, *db, 80);
  ASSERT_FALSE(HasFailure()) << "without the agent the overlay must carry the probe";

  ASSERT_TRUE(instance_->WritePolicy(IngressPolicy("db-ingress", "db", {"backend"}, 5432)).ok());
  absl::StatusOr<pid_t> agent = StartAgent({{backend->name, "allow-all"}, {db->name, "enforcing"}});
  ASSERT_TRUE(agent.ok()) << agent.status();
  absl::StatusOr<nlohmann::json> e = Endpoint(db->name);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)["mode"], "overlay") << e->dump();
  EXPECT_EQ((*e)["ipv4"], db->ip) << e->dump();
  // Hooked on the container's own interface, inside its namespace.
  absl::StatusOr<std::vector<std::string>> kinds = TcPrograms(db->netns, (*e)["interface"]);
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_THAT(*kinds, ::testing::UnorderedElementsAre(HasSubstr("ingress stockade_tc_ing"),
                                                      HasSubstr("egress stockade_tc_egr")))
      << e->dump();
  const uint64_t drops_before = PolicyDrops();
  ExpectAnsweredOnceListening(*backend, *db, 5432);
  ExpectDropped(*backend, *db, 80);
  EXPECT_GE(PolicyDrops(), drops_before + 1);

  // Docker makes an overlay container's end of its veth in the host
  // namespace, puts the other end on the network's bridge, and moves this end
  // into the container seconds later: it is hooked on sight there.
  std::optional<TestContainer> client;
  ASSERT_NO_FATAL_FAILURE(RunClientHookedOnSight(network, *backend, *agent, client));
  ExpectOneTcxPair(*client, "the programs attached in the host namespace moved in with the interface");
  ASSERT_TRUE(WaitForEndpoints({{client->name, "allow-all"}}).ok());
  ExpectAnsweredOnceListening(*client, *backend, 80);
  ExpectOneTcxPair(*client, "the early links are the ones enforcing, not a second pair");
  EXPECT_THAT(instance_->Log(), HasSubstr("a veth into a Docker overlay network"));

  // The way off the overlay, to the host and out, is a second interface on the
  // host bridge docker_gwbridge: enforced too, on its host-side veth.
  absl::StatusOr<nlohmann::json> list = instance_->Ctl({"endpoint", "list"});
  ASSERT_TRUE(list.ok()) << list.status();
  auto gateway = std::find_if((*list)["endpoints"].begin(), (*list)["endpoints"].end(), [&](const nlohmann::json& ep) {
    return ep["name"] == db->name && ep["network"] == "docker_gwbridge";
  });
  ASSERT_NE(gateway, (*list)["endpoints"].end()) << list->dump();
  EXPECT_EQ((*gateway)["state"], "enforcing") << gateway->dump();
  EXPECT_EQ((*gateway)["identity"], (*e)["identity"]) << gateway->dump();
  absl::StatusOr<std::vector<std::string>> gateway_kinds = TcPrograms(daemon_netns_.path, (*gateway)["interface"]);
  ASSERT_TRUE(gateway_kinds.ok()) << gateway_kinds.status();
  EXPECT_THAT(*gateway_kinds, ::testing::UnorderedElementsAre(HasSubstr("ingress stockade_tc_ing"),
                                                              HasSubstr("egress stockade_tc_egr")))
      << gateway->dump();
}

// ---------------------------------------------------------------------------
// Two Docker hosts, one policy (docs/multihost.md): each host a namespace of
// the test's own with a dockerd of its own, the two on one wire (a veth);
// one etcd (in host A's namespace, reached over the wire) and one stockaded
// per host. The seed's chain split across them, frontend and web on host A,
// backend and db on host B, on a network that spans both: a swarm overlay,
// or macvlan networks with the wire's ends as parents (one segment). A host
// knows the other's containers only from etcd: without it, a container of
// the other host is world.

struct DockerHost {
  std::string id;  // its --host-id
  lab::TopologyNetns netns;
  std::string ip;  // on the wire
  lab::TopologyLink uplink;  // its end of the wire
  std::unique_ptr<PrivateDockerd> dockerd;
};

struct TwoDockerHosts {
  int n = 1 + getpid() % 250;  // spreads concurrent runs' subnets
  DockerHost a, b;
  std::unique_ptr<EtcdTestServer> etcd;
  std::unique_ptr<AgentInstance> agent_b;  // host A's agent is the fixture's instance_
  std::map<std::string, DockerHost*> host_of;  // tier -> host
  std::map<std::string, TestContainer> tier;
};

class TwoHostsTest : public AgentE2eTest {
 protected:
  // The namespaces, the wire, etcd and the two daemons with the test image.
  void MakeHosts(TwoDockerHosts& hosts) {
    int octet = 1;
    for (auto [host, id] : {std::pair{&hosts.a, "host-a"}, std::pair{&hosts.b, "host-b"}}) {
      absl::StatusOr<lab::TopologyNetns> netns = host_links_.AddNamespace(id);
      ASSERT_TRUE(netns.ok()) << netns.status();
      *host = {.id = id, .netns = *netns, .ip = absl::StrCat("10.217.", hosts.n, ".", octet++)};
    }
    auto wire = host_links_.AddVethPair(hosts.a.netns, "uplink", hosts.b.netns, "uplink");
    ASSERT_TRUE(wire.ok()) << wire.status();
    hosts.a.uplink = wire->first;
    hosts.b.uplink = wire->second;
    for (DockerHost* host : {&hosts.a, &hosts.b}) {
      ASSERT_TRUE(host_links_.AddAddress(host->uplink, host->ip + "/24").ok());
      ASSERT_TRUE(host_links_.SetUp(host->uplink).ok());
    }
    absl::StatusOr<std::unique_ptr<EtcdTestServer>> etcd =
        EtcdTestServer::Start(nullptr, {.netns_path = hosts.a.netns.path, .address = hosts.a.ip});
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    hosts.etcd = std::move(*etcd);
    for (DockerHost* host : {&hosts.a, &hosts.b}) {
      host->dockerd = std::make_unique<PrivateDockerd>(scratch_.Name(host->id), host->netns.path);
      ASSERT_TRUE(host->dockerd->Start(absl::Seconds(60)).ok());
      ASSERT_TRUE(host->dockerd->CopyImage(kTestImage).ok());
    }
    hosts.host_of = {{"frontend", &hosts.a}, {"web", &hosts.a}, {"backend", &hosts.b}, {"db", &hosts.b}};
  }

  // The four tiers on `network` (named so on each host), with echo servers.
  void RunChain(TwoDockerHosts& hosts, const std::string& network) {
    for (const auto& [name, host] : hosts.host_of) {
      ScopedEnv docker_host({{"DOCKER_HOST", host->dockerd->host()}});  // the helpers' docker commands
      absl::StatusOr<std::string> id =
          scratch_.RunContainer(name, {"--network", network, "--label", absl::StrCat("stockade.tier=", name)});
      ASSERT_TRUE(id.ok()) << id.status();
      ASSERT_TRUE(StartEchoServers(scratch_.Name(name), kPorts).ok());
      absl::StatusOr<TestContainer> c = InspectContainer(scratch_.Name(name), network);
      ASSERT_TRUE(c.ok()) << c.status();
      hosts.tier[name] = *c;
    }
    for (const Flow& f : kChainDenied) ExpectAnsweredOnceListening(hosts.tier[f.from], hosts.tier[f.to], f.port);
    ASSERT_FALSE(HasFailure()) << "without the agents every flow must be answered, across hosts too";
  }

  // Both agents under the chain's policy; then every hop answers, every
  // other flow drops, and each side's drops name the other host's container
  // with its host.
  void ExpectChainEnforcedAcrossHosts(TwoDockerHosts& hosts) {
    const std::string policy = Documents({IngressPolicy("web-ingress", "web", {"frontend"}, 80),
                                          IngressPolicy("backend-ingress", "backend", {"web"}, 8080),
                                          IngressPolicy("db-ingress", "db", {"backend"}, 5432)});
    hosts.agent_b = std::make_unique<AgentInstance>(scratch_.Name("agentb"));
    std::map<std::string, AgentInstance*> agent_of = {{"host-a", instance_.get()}, {"host-b", hosts.agent_b.get()}};
    for (DockerHost* host : {&hosts.a, &hosts.b}) {
      AgentInstance& agent = *agent_of[host->id];
      ASSERT_TRUE(agent.WritePolicy(policy).ok());
      agent.RunIn(host->netns.path);
      ScopedEnv docker_host({{"DOCKER_HOST", host->dockerd->host()}});
      absl::StatusOr<pid_t> pid = agent.StartAgent({"--etcd-endpoints", hosts.etcd->client_url(), "--host-id", host->id});
      ASSERT_TRUE(pid.ok()) << pid.status();
    }
    // Each host lists the other's two containers, from etcd.
    auto remote_names = [](AgentInstance& agent) {
      std::set<std::string> names;
      absl::StatusOr<nlohmann::json> list = agent.Ctl({"endpoint", "list", "--remote"});
      if (list.ok())
        for (const nlohmann::json& e : (*list)["endpoints"])
          if (e.value("source", "") == "store" && e.value("state", "") == "remote")
            names.insert(absl::StrCat(e.value("name", ""), "@", e.value("host", "")));
      return names;
    };
    std::map<std::string, std::set<std::string>> expected;  // host -> the other's containers
    for (const auto& [name, host] : hosts.host_of)
      expected[host == &hosts.a ? "host-b" : "host-a"].insert(absl::StrCat(hosts.tier[name].name, "@", host->id));
    absl::StatusOr<absl::Duration> shared = WaitUntil(
        [&] { return remote_names(*instance_) == expected["host-a"] && remote_names(*hosts.agent_b) == expected["host-b"]; },
        kAgentReady, "each host has the other's containers from etcd");
    ASSERT_TRUE(shared.ok()) << shared.status() << "\nhost B:\n" << hosts.agent_b->Log();

    for (const Flow& f : kChainHops) ExpectAnsweredOnceListening(hosts.tier[f.from], hosts.tier[f.to], f.port);
    for (const Flow& f : kChainDenied) ExpectDropped(hosts.tier[f.from], hosts.tier[f.to], f.port);
    // web (A) -> db (B) drops at B, backend (B) -> web (A) at A.
    for (auto [agent, from] : {std::pair{hosts.agent_b.get(), "web"}, std::pair{instance_.get(), "backend"}}) {
      std::string drops;
      EXPECT_TRUE(WaitUntil(
                      [&] {
                        absl::StatusOr<std::string> text = TailHistory(*agent, {"--from", hosts.tier[from].name});
                        drops = text.ok() ? *text : std::string(text.status().message());
                        return absl::StrContains(drops, "POLICY_DENIED");
                      },
                      absl::Seconds(5), "a drop of the other host's container")
                      .ok());
      EXPECT_THAT(drops, HasSubstr(absl::StrCat("\"container\":\"", hosts.tier[from].name, "\",\"host\":\"",
                                                hosts.host_of[from]->id, "\"")));
    }
    if (HasFailure()) std::cerr << "host B's stockaded:\n" << hosts.agent_b->Log();
  }

  // How soon host B enforces a container started on host A: from its start
  // (Docker's StartedAt, on A) to its entry in B's maps (B's enforced_at for
  // it) and to its first answer from db on B (it is a backend). A
  // measurement, printed with its command (docs/benchmarks.md); the sample
  // count is STOCKADE_CROSS_HOST_SAMPLES (5 by default).
  void MeasureCrossHostEnforcement(TwoDockerHosts& hosts, const std::string& network) {
    int samples = 5;
    if (const char* env = getenv("STOCKADE_CROSS_HOST_SAMPLES")) {
      ASSERT_TRUE(absl::SimpleAtoi(env, &samples) && samples > 0) << env;
    }
    std::vector<absl::Duration> to_map, to_answer;
    for (int i = 0; i < samples; ++i) {
      ScopedEnv docker_host({{"DOCKER_HOST", hosts.a.dockerd->host()}});
      const std::string what = absl::StrCat("late", i), name = scratch_.Name(what);
      ASSERT_TRUE(scratch_.RunContainer(what, {"--network", network, "--label", "stockade.tier=backend"}).ok());
      absl::Cleanup remove = [&] { (void)Docker({"rm", "-f", name}); };
      absl::StatusOr<std::string> started_text = Docker({"inspect", "--format", "{{.State.StartedAt}}", name});
      ASSERT_TRUE(started_text.ok()) << started_text.status();
      absl::Time started;
      std::string error;
      ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, *started_text, &started, &error)) << *started_text << ": " << error;
      absl::StatusOr<TestContainer> late = InspectContainer(name, network);
      ASSERT_TRUE(late.ok()) << late.status();
      ASSERT_TRUE(WaitUntil([&] { return Probe(*late, hosts.tier["db"], 5432, absl::Milliseconds(50)).ok(); },
                            absl::Seconds(10), "a backend started on host A reaches db on host B")
                      .ok());
      to_answer.push_back(absl::Now() - started);
      int64_t enforced_ns = 0;
      ASSERT_TRUE(WaitUntil(
                      [&] {
                        absl::StatusOr<nlohmann::json> list = hosts.agent_b->Ctl({"endpoint", "list", "--remote"});
                        if (list.ok())
                          for (const nlohmann::json& e : (*list)["endpoints"])
                            if (e.value("name", "") == name) enforced_ns = e.value("enforced_at_ns", int64_t{0});
                        return enforced_ns > 0;
                      },
                      absl::Seconds(5), "host B's enforced_at for it")
                      .ok());
      to_map.push_back(absl::FromUnixNanos(enforced_ns) - started);
    }
    auto summary = [](std::vector<absl::Duration> d) {
      std::sort(d.begin(), d.end());
      auto at = [&](double q) { return absl::FormatDuration(absl::Trunc(d[size_t(q * (d.size() - 1))], absl::Milliseconds(1))); };
      return absl::StrCat("p50 ", at(0.5), " p99 ", at(0.99), " max ", at(1.0));
    };
    std::cout << "cross-host enforcement, " << samples << " containers started on host A (command: "
              << "STOCKADE_CROSS_HOST_SAMPLES=" << samples
              << " build/tests/agent_e2e_tests --gtest_filter='TwoHostsTest.*Macvlan*'):\n"
              << "  start on A -> entry in B's maps:     " << summary(to_map) << "\n"
              << "  start on A -> first answer from B:   " << summary(to_answer) << "\n";
  }
};

TEST_F(TwoHostsTest, ChainSplitAcrossTwoSwarmHostsOnAnOverlay) {
  TwoDockerHosts hosts;
  ASSERT_NO_FATAL_FAILURE(MakeHosts(hosts));
  const std::string overlay = scratch_.Name("span");
  // Swarm state and docker_gwbridge outlive the containers: removed while the daemons run.
  absl::Cleanup leave = [&] {
    for (const auto& [tier, host] : hosts.host_of) (void)host->dockerd->Docker({"rm", "-f", scratch_.Name(tier)});
    (void)hosts.a.dockerd->Docker({"network", "rm", overlay});
    for (DockerHost* host : {&hosts.b, &hosts.a}) {
      (void)host->dockerd->Docker({"swarm", "leave", "--force"});
      (void)host->dockerd->Docker({"network", "rm", "docker_gwbridge"});
    }
  };
  const std::string manager = hosts.a.ip + ":2377";
  ASSERT_TRUE(hosts.a.dockerd->Docker({"swarm", "init", "--advertise-addr", hosts.a.ip, "--listen-addr", manager}).ok());
  absl::StatusOr<std::string> token = hosts.a.dockerd->Docker({"swarm", "join-token", "-q", "worker"});
  ASSERT_TRUE(token.ok()) << token.status();
  absl::StatusOr<std::string> joined = hosts.b.dockerd->Docker({"swarm", "join", "--token", *token, "--advertise-addr",
                                                                hosts.b.ip, "--listen-addr", hosts.b.ip + ":2377", manager});
  ASSERT_TRUE(joined.ok()) << joined.status();
  absl::StatusOr<std::string> created = hosts.a.dockerd->Docker({"network", "create", "--driver", "overlay", "--attachable",
                                                                 "--subnet", absl::StrCat("10.218.", hosts.n, ".0/24"), overlay});
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_NO_FATAL_FAILURE(RunChain(hosts, overlay));
  ExpectChainEnforcedAcrossHosts(hosts);
}

TEST_F(TwoHostsTest, ChainSplitAcrossTwoHostsOnOneMacvlanSegment) {
  TwoDockerHosts hosts;
  ASSERT_NO_FATAL_FAILURE(MakeHosts(hosts));
  // One subnet, a range of it per host, so the daemons never hand out one address twice.
  const std::string lan = scratch_.Name("lan");
  for (auto [host, range] : {std::pair{&hosts.a, "0/26"}, std::pair{&hosts.b, "64/26"}}) {
    absl::StatusOr<std::string> created = host->dockerd->Docker(
        {"network", "create", "--driver", "macvlan", "--subnet", absl::StrCat("10.219.", hosts.n, ".0/24"), "--ip-range",
         absl::StrCat("10.219.", hosts.n, ".", range), "-o", absl::StrCat("parent=", host->uplink.ifname), lan});
    ASSERT_TRUE(created.ok()) << created.status();
  }
  ASSERT_NO_FATAL_FAILURE(RunChain(hosts, lan));
  ASSERT_NO_FATAL_FAILURE(ExpectChainEnforcedAcrossHosts(hosts));
  MeasureCrossHostEnforcement(hosts, lan);
}

// ---------------------------------------------------------------------------
// Policy files change under a running agent.

TEST_F(AgentE2eTest, PolicyHotReload) {
  absl::StatusOr<Tiers> tiers = BackendWebDb();
  ASSERT_TRUE(tiers.ok()) << tiers.status();
  auto& [network, backend, web, db, agent] = *tiers;

  // A valid change: web may reach db too.
  ASSERT_TRUE(instance_->WritePolicy(IngressPolicy("db-ingress", "db", {"backend", "web"}, 5432)).ok());
  absl::StatusOr<absl::Duration> opened =
      WaitUntil([&] { return Probe(web, db, 5432, absl::Milliseconds(200)).ok(); }, absl::Seconds(15),
                "web reaches db after the policy allows it");
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::cout << "policy change enforced " << absl::FormatDuration(*opened) << " after the file was written\n";
  EXPECT_LE(*opened, kEnforcementBound);

  // An invalid file is rejected whole; the last good policy stays.
  const std::string broken =
      absl::StrReplaceAll(IngressPolicy("db-ingress", "db", {"backend"}, 5432), {{"fromEndpoints", "fromEndpoint"}});
  const std::vector<std::string> lines = absl::StrSplit(broken, '\n');
  const size_t typo_line = std::find_if(lines.begin(), lines.end(),
                                        [](const std::string& l) { return l.find("fromEndpoint") != l.npos; }) -
                           lines.begin() + 1;
  ASSERT_TRUE(instance_->WritePolicy(broken).ok());
  nlohmann::json status;
  absl::StatusOr<absl::Duration> rejected = WaitUntil(
      [&] {
        absl::StatusOr<nlohmann::json> s = instance_->Ctl({"status"});
        if (s.ok()) status = *s;
        return s.ok() && status["policy_error"] != "";
      },
      kEnforcementBound, "status shows the policy error");
  ASSERT_TRUE(rejected.ok()) << rejected.status();
  EXPECT_THAT(status["policy_error"].get<std::string>(),
              HasSubstr(absl::StrCat(instance_->policy_file(), ":", typo_line, ":")));
  EXPECT_EQ(status["policies"], nlohmann::json::array({"db-ingress"}));
  ExpectAnswered(web, db, 5432);
  ExpectAnswered(backend, db, 5432);
  ExpectDropped(web, db, 8080);

  // Revoking an allow cuts a connection it let in.
  absl::StatusOr<EchoSession> session = EchoSession::Open(backend, db, 5432, kAnswerTimeout);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(session->Echo("before the revocation", kAnswerTimeout).ok());
  ASSERT_TRUE(instance_->WritePolicy(IngressPolicy("db-ingress", "db", {"web"}, 5432)).ok());
  int sent = 0;
  absl::StatusOr<absl::Duration> cut = WaitUntil(
      [&] { return absl::IsDeadlineExceeded(session->Echo(absl::StrCat("line ", ++sent), absl::Milliseconds(200))); },
      absl::Seconds(15), "the established backend -> db connection is cut");
  ASSERT_TRUE(cut.ok()) << cut.status();
  std::cout << "established connection cut " << absl::FormatDuration(*cut) << " after the revocation was written\n";
  EXPECT_LE(*cut, kEnforcementBound);
  absl::Status after_cut = session->Echo("after the cut", absl::Seconds(1));
  EXPECT_TRUE(absl::IsDeadlineExceeded(after_cut)) << after_cut;
  ExpectDropped(backend, db, 5432);
  ExpectAnswered(web, db, 5432);
  absl::StatusOr<nlohmann::json> after = instance_->Ctl({"status"});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)["policy_error"], "") << "a good file clears the error";
}

}  // namespace
}  // namespace stockade::testing
