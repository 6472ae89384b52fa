// SPDX-License-Identifier: Apache-2.0
//
// DockerClient and DockerEventStream against the real dockerd: containers,
// networks and images made here with the docker CLI, then seen through the
// client, and checked against the kernel where the kernel knows better.
#include "stockade/docker/docker_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "stockade/docker/docker_parse.h"
#include "stockade/netns/netns.h"
#include "tests/docker/docker_test_env.h"

namespace stockade {
namespace {

using ::testing::Contains;
using testing::DockerScratch;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

// Events of a container driven by the test arrive well within this.
constexpr absl::Duration kEventWait = absl::Seconds(30);

DockerClient DefaultClient() {
  absl::StatusOr<DockerClient> client = DockerClient::FromEnvironment();
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : DockerClient(DockerEndpoint());
}

DockerClient ClientFor(const std::string& docker_host) {
  absl::StatusOr<DockerEndpoint> endpoint = ResolveDockerEndpoint({.docker_host = docker_host});
  EXPECT_TRUE(endpoint.ok()) << endpoint.status();
  return DockerClient(endpoint.value_or(DockerEndpoint()), {.connect_timeout = absl::Seconds(2)});
}

// A ULA /64 of its own per run, so concurrent runs do not collide.
std::string RandomUlaSubnet() {
  std::random_device random;
  return absl::StrFormat("fd5c:%04x:%04x::/64", random() & 0xffff, random() & 0xffff);
}

TEST(DockerClientTest, PingAnswers) {
  STOCKADE_REQUIRE_DOCKER();
  EXPECT_TRUE(DefaultClient().Ping().ok()) << DefaultClient().Ping();
}

TEST(DockerClientTest, ListSeesContainerWithItsLabels) {
  STOCKADE_REQUIRE_DOCKER();
  DockerScratch scratch;
  auto id = scratch.RunContainer("listed", {"--network", "none", "--label", "app=web", "--label", "tier=front"});
  ASSERT_TRUE(id.ok()) << id.status();

  auto containers = DefaultClient().ListContainers();
  ASSERT_TRUE(containers.ok()) << containers.status();
  auto found =
      std::find_if(containers->begin(), containers->end(), [&](const ContainerSummary& c) { return c.id == *id; });
  ASSERT_NE(found, containers->end()) << "container " << *id << " not listed";
  EXPECT_EQ(found->name, scratch.Name("listed"));
  EXPECT_EQ(found->state, "running");
  EXPECT_THAT(found->labels, Contains(Pair("app", "web")));
  EXPECT_THAT(found->labels, Contains(Pair("tier", "front")));
  EXPECT_THAT(found->labels, Contains(Pair(testing::kTestLabel, scratch.run_id())));
}

TEST(DockerClientTest, InspectGivesPidAttachmentAndAddressesTheKernelHas) {
  STOCKADE_REQUIRE_DOCKER();
  DockerScratch scratch;
  const std::string subnet6 = RandomUlaSubnet();
  auto network_id = scratch.CreateNetwork("net", {"--ipv6", "--subnet", subnet6});
  ASSERT_TRUE(network_id.ok()) << network_id.status();
  auto id = scratch.RunContainer("inspected", {"--network", scratch.Name("net")});
  ASSERT_TRUE(id.ok()) << id.status();
  DockerClient client = DefaultClient();

  auto info = client.InspectContainer(scratch.Name("inspected"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id, *id);
  EXPECT_EQ(info->name, scratch.Name("inspected"));
  EXPECT_TRUE(info->running);
  EXPECT_EQ(info->status, "running");
  EXPECT_EQ(info->network_mode, scratch.Name("net"));
  ASSERT_GT(info->pid, 0);
  std::ifstream comm(absl::StrCat("/proc/", info->pid, "/comm"));
  std::string process;
  comm >> process;
  EXPECT_EQ(process, "sleep") << "State.Pid is not the container's process";

  ASSERT_EQ(info->networks.size(), 1u);
  const NetworkAttachment& attachment = info->networks[0];
  EXPECT_EQ(attachment.network_name, scratch.Name("net"));
  EXPECT_EQ(attachment.network_id, *network_id);
  EXPECT_FALSE(attachment.endpoint_id.empty());
  ASSERT_TRUE(attachment.ipv4.has_value());
  ASSERT_TRUE(attachment.ipv6.has_value());
  ASSERT_TRUE(attachment.mac.has_value());
  EXPECT_TRUE(ParseIpPrefix(subnet6)->Contains(*attachment.ipv6));
  EXPECT_EQ(attachment.ipv6_prefix_length, 64);

  // What the container's namespace really has.
  const std::string netns = absl::StrCat("/proc/", info->pid, "/ns/net");
  auto addresses = RunCommand({"ip", "-o", "addr", "show"}, netns);
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_THAT(*addresses, HasSubstr(absl::StrCat(attachment.ipv4->ToString(), "/", attachment.ipv4_prefix_length)));
  EXPECT_THAT(*addresses, HasSubstr(absl::StrCat(attachment.ipv6->ToString(), "/64")));
  auto links = RunCommand({"ip", "-o", "link", "show"}, netns);
  ASSERT_TRUE(links.ok()) << links.status();
  EXPECT_THAT(*links, HasSubstr(FormatMac(attachment.mac->data())));

  auto network = client.InspectNetwork(*network_id);
  ASSERT_TRUE(network.ok()) << network.status();
  EXPECT_EQ(network->name, scratch.Name("net"));
  EXPECT_EQ(network->driver, "bridge");
  EXPECT_TRUE(network->enable_ipv6);
  EXPECT_THAT(network->labels, Contains(Pair(testing::kTestLabel, scratch.run_id())));
  bool ipv4_pool_holds_address = false;
  for (const IpamPool& pool : network->ipam_pools) ipv4_pool_holds_address |= pool.subnet.Contains(*attachment.ipv4);
  EXPECT_TRUE(ipv4_pool_holds_address) << attachment.ipv4->ToString() << " in none of the network's pools";
  EXPECT_THAT(network->ipam_pools, Contains(::testing::Field(&IpamPool::subnet, *ParseIpPrefix(subnet6))));
}

TEST(DockerClientTest, ImageLabelsAreTheImagesOwn) {
  STOCKADE_REQUIRE_DOCKER();
  DockerScratch scratch;
  auto image_id = scratch.ImportLabelledImage("db-image", {"stockade.tier=db"});
  ASSERT_TRUE(image_id.ok()) << image_id.status();
  auto id = scratch.RunContainer("db", {"--network", "none", "--label", "app=postgres"}, scratch.Name("db-image"));
  ASSERT_TRUE(id.ok()) << id.status();
  DockerClient client = DefaultClient();

  auto container = client.InspectContainer(*id);
  ASSERT_TRUE(container.ok()) << container.status();
  EXPECT_EQ(container->image_id, *image_id);
  // The container's labels merge both sources...
  EXPECT_THAT(container->labels, Contains(Pair("stockade.tier", "db")));
  EXPECT_THAT(container->labels, Contains(Pair("app", "postgres")));
  // ...the image's are only what the image set.
  auto image = client.InspectImage(container->image_id);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->id, *image_id);
  EXPECT_THAT(image->labels, Contains(Pair("stockade.tier", "db")));
  EXPECT_THAT(image->labels, Not(Contains(Pair("app", "postgres"))));
  EXPECT_THAT(image->repo_tags, Contains(absl::StrCat(scratch.Name("db-image"), ":latest")));
}

struct Seen {
  std::string what;  // DescribeDockerEvent
  std::string network_id;
};

// Whether `expected` occurs in `seen` in this order (other events may come between).
bool InOrder(const std::vector<Seen>& seen, const std::vector<Seen>& expected) {
  size_t next = 0;
  for (const Seen& event : seen) {
    if (next < expected.size() && event.what == expected[next].what &&
        (expected[next].network_id.empty() || event.network_id == expected[next].network_id))
      ++next;
  }
  return next == expected.size();
}

TEST(DockerEventStreamTest, DeliversLifecycleAndNetworkEventsOfADrivenContainer) {
  STOCKADE_REQUIRE_DOCKER();
  DockerScratch scratch;
  // Subscribe first: everything the test does from here on must arrive.
  auto stream = DefaultClient().SubscribeEvents();
  ASSERT_TRUE(stream.ok()) << stream.status();
  auto net_a = scratch.CreateNetwork("a", {});
  auto net_b = scratch.CreateNetwork("b", {});
  ASSERT_TRUE(net_a.ok() && net_b.ok()) << net_a.status() << " " << net_b.status();
  auto id = scratch.RunContainer("driven", {"--network", scratch.Name("a")});
  ASSERT_TRUE(id.ok()) << id.status();
  for (const std::vector<std::string>& step :
       std::vector<std::vector<std::string>>{{"network", "connect", scratch.Name("b"), *id},
                                             {"network", "disconnect", scratch.Name("b"), *id},
                                             {"rename", *id, scratch.Name("renamed")},
                                             {"rm", "-f", *id}}) {
    auto done = testing::Docker(step);
    ASSERT_TRUE(done.ok()) << done.status();
  }

  std::vector<Seen> seen;
  const absl::Time deadline = absl::Now() + kEventWait;
  while (seen.empty() || seen.back().what != "container destroy") {
    ASSERT_LT(absl::Now(), deadline) << "no destroy event within " << kEventWait;
    auto event = (*stream)->Next(absl::Seconds(1));
    ASSERT_TRUE(event.ok()) << event.status();
    if (*event && (*event)->container_id == *id) seen.push_back({DescribeDockerEvent(**event), (*event)->network_id});
  }
  EXPECT_TRUE(InOrder(seen, {{"network connect", *net_a},
                             {"container start", ""},
                             {"network connect", *net_b},
                             {"network disconnect", *net_b},
                             {"container rename", ""},
                             {"container die", ""},
                             {"network disconnect", *net_a},
                             {"container destroy", ""}}))
      << [&] {
           std::string all;
           for (const Seen& s : seen) absl::StrAppend(&all, s.what, " ", s.network_id, "\n");
           return all;
         }();
}

TEST(DockerEventStreamTest, StopReturnsABlockedNextPromptly) {
  STOCKADE_REQUIRE_DOCKER();
  auto stream = DefaultClient().SubscribeEvents();
  ASSERT_TRUE(stream.ok()) << stream.status();
  absl::StatusOr<std::optional<DockerEvent>> result;
  absl::Time returned;
  std::thread reader([&] {
    // Skips events of others on the host; only Stop() may end this.
    do {
      result = (*stream)->Next(absl::Seconds(60));
    } while (result.ok());
    returned = absl::Now();
  });
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time stopped = absl::Now();
  (*stream)->Stop();
  reader.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
  EXPECT_LT(returned - stopped, absl::Milliseconds(500));
  EXPECT_EQ((*stream)->Next(absl::Seconds(5)).status().code(), absl::StatusCode::kCancelled);
}

TEST(DockerEventStreamTest, EndOfStreamIsReportedForReconnect) {
  STOCKADE_REQUIRE_DOCKER();
  // dockerd closes the stream at `until`, as it does when it shuts down.
  auto stream = DefaultClient().SubscribeEvents({.until = absl::Now() + absl::Seconds(1)});
  ASSERT_TRUE(stream.ok()) << stream.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  absl::StatusOr<std::optional<DockerEvent>> result;
  do {
    result = (*stream)->Next(absl::Seconds(1));
  } while (result.ok() && absl::Now() < deadline);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr("ended the stream"));
}

TEST(DockerClientTest, MissingObjectsAreNotFoundWithTheDaemonsMessage) {
  STOCKADE_REQUIRE_DOCKER();
  DockerScratch scratch;
  const std::string missing = scratch.Name("never-created");
  DockerClient client = DefaultClient();
  auto container = client.InspectContainer(missing);
  EXPECT_EQ(container.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(container.status().message(),
            absl::StrCat("inspect container ", missing, ": 404 No such container: ", missing));
  EXPECT_EQ(client.InspectNetwork(missing).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client.InspectImage(missing).status().code(), absl::StatusCode::kNotFound);
}

// No daemon needed: these never reach one.
TEST(DockerClientTest, BadDockerHostGivesAClearError) {
  auto no_socket = ClientFor("unix:///nonexistent/docker.sock").Ping();
  EXPECT_EQ(no_socket.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(no_socket.message(), "ping: connect to unix:///nonexistent/docker.sock: No such file or directory");

  auto refused = ClientFor("tcp://127.0.0.1:1").ListContainers();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(refused.status().message(), "list containers: connect to tcp://127.0.0.1:1: Connection refused");

  auto events = ClientFor("unix:///nonexistent/docker.sock").SubscribeEvents();
  EXPECT_EQ(events.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(events.status().message(), HasSubstr("connect to unix:///nonexistent/docker.sock"));

  // Read from the environment, as the docker CLI reads it.
  const char* saved = std::getenv("DOCKER_HOST");
  const std::string saved_value = saved == nullptr ? "" : saved;
  setenv("DOCKER_HOST", "ssh://admin@docker-host", 1);
  auto ssh = DockerClient::FromEnvironment();
  setenv("DOCKER_HOST", "unix:///nonexistent/env.sock", 1);
  auto from_env = DockerClient::FromEnvironment();
  if (saved == nullptr) {
    unsetenv("DOCKER_HOST");
  } else {
    setenv("DOCKER_HOST", saved_value.c_str(), 1);
  }
  EXPECT_EQ(ssh.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ssh.status().message(), HasSubstr("ssh:// is not supported"));
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->Ping().message(), "ping: connect to unix:///nonexistent/env.sock: No such file or directory");
}

}  // namespace
}  // namespace stockade
