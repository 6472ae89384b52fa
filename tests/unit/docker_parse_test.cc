// SPDX-License-Identifier: Apache-2.0
//
// The Engine API parsers on bodies captured from a real dockerd
// (tests/data/docker/README.md), and DOCKER_HOST resolution.
#include "stockade/docker/docker_parse.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "stockade/docker/docker_endpoint.h"

namespace stockade {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr char kContainerId[] = "4ec25d8f5775d8c3d3266e08cc21778fe520b3ed82db4d9e947158fcd2351b7d";
constexpr char kNetworkId[] = "28fdb672bf071645e0843fd4031ba106fe056bf85d1a4d645df87df9c32c8bd7";
constexpr char kImageId[] = "sha256:9900377e6705f99aa2d3cdfda08a73b69fd56e0118b36e5664bfa263110b7185";

std::string ReadSample(const std::string& name) {
  std::ifstream file(std::string(STOCKADE_DOCKER_TEST_DATA) + "/" + name);
  EXPECT_TRUE(file.good()) << "missing sample " << name;
  std::stringstream content;
  content << file.rdbuf();
  return content.str();
}

IpAddress Ip(const char* text) { return ParseIpAddress(text).value(); }

TEST(DockerParseTest, ContainerListHasNamesStatesAndLabels) {
  auto containers = ParseContainerList(ReadSample("container_list.json"));
  ASSERT_TRUE(containers.ok()) << containers.status();
  ASSERT_EQ(containers->size(), 2u);
  const ContainerSummary& web = (*containers)[1];
  EXPECT_EQ(web.id, kContainerId);
  EXPECT_EQ(web.name, "stk-cap-c-cap31112");
  EXPECT_EQ(web.state, "running");
  EXPECT_EQ(web.image_id, kImageId);
  EXPECT_THAT(web.labels, UnorderedElementsAre(Pair("app", "web"), Pair("stockade.test", "cap31112")));
  EXPECT_EQ((*containers)[0].name, "stk-cap-none-cap31112");
  EXPECT_THAT((*containers)[0].labels, UnorderedElementsAre(Pair("stockade.test", "cap31112")));
}

TEST(DockerParseTest, InspectBridgeContainerGivesStateAndAttachment) {
  auto info = ParseContainerInspect(ReadSample("container_inspect_bridge.json"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id, kContainerId);
  EXPECT_EQ(info->name, "stk-cap-c-cap31112");
  EXPECT_EQ(info->status, "running");
  EXPECT_TRUE(info->running);
  EXPECT_EQ(info->pid, 1935);
  EXPECT_EQ(info->image_id, kImageId);
  EXPECT_EQ(info->network_mode, "stk-cap-cap31112");
  EXPECT_THAT(info->labels, UnorderedElementsAre(Pair("app", "web"), Pair("stockade.test", "cap31112")));
  ASSERT_EQ(info->networks.size(), 1u);
  const NetworkAttachment& net = info->networks[0];
  EXPECT_EQ(net.network_name, "stk-cap-cap31112");
  EXPECT_EQ(net.network_id, kNetworkId);
  EXPECT_EQ(net.endpoint_id, "56f40b787516783879e474bd3795b10466ba72126d6a9e27a60ee6eb8280b267");
  EXPECT_EQ(net.ipv4, Ip("10.231.7.2"));
  EXPECT_EQ(net.ipv4_prefix_length, 24);
  EXPECT_EQ(net.ipv6, Ip("fd00:231:7::2"));
  EXPECT_EQ(net.ipv6_prefix_length, 64);
  EXPECT_EQ(net.mac, ParseMac("02:42:0a:e7:07:02").value());
}

TEST(DockerParseTest, InspectTwoNetworksComesSortedByName) {
  auto info = ParseContainerInspect(ReadSample("container_inspect_two_networks.json"));
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->networks.size(), 2u);
  EXPECT_EQ(info->networks[0].network_name, "stk-cap-cap31112");
  const NetworkAttachment& internal = info->networks[1];
  EXPECT_EQ(internal.network_name, "stk-cap3-cap31112");
  EXPECT_EQ(internal.ipv4, Ip("172.20.0.2"));
  EXPECT_EQ(internal.ipv4_prefix_length, 16);
  EXPECT_FALSE(internal.ipv6.has_value());
  EXPECT_EQ(internal.mac, ParseMac("02:42:ac:14:00:02").value());
}

TEST(DockerParseTest, ExitedContainerHasNoPidEndpointOrAddresses) {
  auto info = ParseContainerInspect(ReadSample("container_inspect_exited.json"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->status, "exited");
  EXPECT_FALSE(info->running);
  EXPECT_EQ(info->pid, 0);
  ASSERT_EQ(info->networks.size(), 2u);
  for (const NetworkAttachment& net : info->networks) {
    EXPECT_FALSE(net.network_id.empty());
    EXPECT_TRUE(net.endpoint_id.empty());
    EXPECT_FALSE(net.ipv4.has_value());
    EXPECT_FALSE(net.ipv6.has_value());
    EXPECT_FALSE(net.mac.has_value());
  }
}

TEST(DockerParseTest, NetworkNoneContainerHasAnAddresslessAttachment) {
  auto info = ParseContainerInspect(ReadSample("container_inspect_none.json"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->network_mode, "none");
  ASSERT_EQ(info->networks.size(), 1u);
  EXPECT_EQ(info->networks[0].network_name, "none");
  EXPECT_FALSE(info->networks[0].ipv4.has_value());
  EXPECT_FALSE(info->networks[0].mac.has_value());
}

// Config.Labels of a container merges the image's labels with the run-time
// ones; only the image's own Config.Labels tells which were which.
TEST(DockerParseTest, ImageLabelsSeparateImageSetFromRunTimeLabels) {
  auto image = ParseImageInspect(ReadSample("image_inspect_labelled.json"));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->id, "sha256:e85fe7d756899585718afd0843c80a749429a19b88d03a6147f3c690cc93a3d7");
  EXPECT_THAT(image->repo_tags, ElementsAre("stockade-test:cap-cap31112"));
  EXPECT_THAT(image->labels, UnorderedElementsAre(Pair("stockade.tier", "db"), Pair("team", "payments")));

  auto container = ParseContainerInspect(ReadSample("container_inspect_image_labels.json"));
  ASSERT_TRUE(container.ok()) << container.status();
  EXPECT_EQ(container->image_id, image->id);
  EXPECT_THAT(container->labels, UnorderedElementsAre(Pair("stockade.test", "cap31112"), Pair("stockade.tier", "web"),
                                                      Pair("team", "payments")));

  auto unlabelled = ParseImageInspect(ReadSample("image_inspect_unlabelled.json"));
  ASSERT_TRUE(unlabelled.ok()) << unlabelled.status();
  EXPECT_EQ(unlabelled->id, kImageId);
  EXPECT_TRUE(unlabelled->labels.empty());
}

TEST(DockerParseTest, BridgeNetworkWithIpv6) {
  auto network = ParseNetworkInspect(ReadSample("network_inspect_bridge_ipv6.json"));
  ASSERT_TRUE(network.ok()) << network.status();
  EXPECT_EQ(network->id, kNetworkId);
  EXPECT_EQ(network->name, "stk-cap-cap31112");
  EXPECT_EQ(network->driver, "bridge");
  EXPECT_EQ(network->scope, "local");
  EXPECT_TRUE(network->enable_ipv6);
  EXPECT_FALSE(network->internal);
  EXPECT_TRUE(network->options.empty());
  EXPECT_THAT(network->labels, UnorderedElementsAre(Pair("stockade.test", "cap31112")));
  ASSERT_EQ(network->ipam_pools.size(), 2u);
  EXPECT_EQ(network->ipam_pools[0].subnet, ParseIpPrefix("10.231.7.0/24").value());
  EXPECT_FALSE(network->ipam_pools[0].gateway.has_value());
  EXPECT_EQ(network->ipam_pools[1].subnet, ParseIpPrefix("fd00:231:7::/64").value());
}

TEST(DockerParseTest, MacvlanNetworkNamesItsParent) {
  auto network = ParseNetworkInspect(ReadSample("network_inspect_macvlan.json"));
  ASSERT_TRUE(network.ok()) << network.status();
  EXPECT_EQ(network->driver, "macvlan");
  EXPECT_FALSE(network->enable_ipv6);
  EXPECT_THAT(network->options, UnorderedElementsAre(Pair("parent", "stkcapm0")));
  ASSERT_EQ(network->ipam_pools.size(), 1u);
  EXPECT_EQ(network->ipam_pools[0].subnet, ParseIpPrefix("10.231.9.0/24").value());
  EXPECT_EQ(network->ipam_pools[0].gateway, Ip("10.231.9.1"));
}

TEST(DockerParseTest, NetworkListCarriesEachNetworksParent) {
  auto networks = ParseNetworkList(ReadSample("network_list_macvlan.json"));
  ASSERT_TRUE(networks.ok()) << networks.status();
  ASSERT_EQ(networks->size(), 1u);
  EXPECT_EQ((*networks)[0].name, "a3c-mv");
  EXPECT_EQ((*networks)[0].driver, "macvlan");
  EXPECT_THAT((*networks)[0].options, UnorderedElementsAre(Pair("parent", "a3c_p0")));
  ASSERT_EQ((*networks)[0].ipam_pools.size(), 1u);
  EXPECT_EQ((*networks)[0].ipam_pools[0].subnet, ParseIpPrefix("10.231.19.0/24").value());

  auto not_a_list = ParseNetworkList(ReadSample("network_inspect_macvlan.json"));
  EXPECT_FALSE(not_a_list.ok());
}

// docker_gwbridge as a single-node swarm's dockerd showed it: a container's
// interface there appears only under the network's Containers.
TEST(DockerParseTest, NetworkInspectListsItsContainersEndpoints) {
  auto network = ParseNetworkInspect(ReadSample("network_inspect_gwbridge.json"));
  ASSERT_TRUE(network.ok()) << network.status();
  EXPECT_EQ(network->name, kDockerGatewayBridge);
  ASSERT_EQ(network->containers.size(), 2u);
  const NetworkAttachment& c =
      network->containers.at("8b9baccd94775b66c3eaf6cd79e9b4a97f24ac0bf8a2e534e619c10359029b9a");
  EXPECT_EQ(c.network_id, network->id);
  EXPECT_EQ(c.network_name, "docker_gwbridge");
  ASSERT_TRUE(c.mac.has_value());
  EXPECT_EQ(FormatMac(c.mac->data()), "02:42:ac:11:00:03");
  EXPECT_EQ(c.ipv4, Ip("172.17.0.3"));
  EXPECT_EQ(c.ipv4_prefix_length, 16);
  EXPECT_FALSE(c.ipv6.has_value());

  std::string bad = ReadSample("network_inspect_gwbridge.json");
  bad.replace(bad.find("172.17.0.3/16"), 13, "172.17.0.3/33");
  auto rejected = ParseNetworkInspect(bad);
  ASSERT_FALSE(rejected.ok());
  EXPECT_THAT(rejected.status().message(), HasSubstr("IPv4Address: bad prefix length in 172.17.0.3/33"));
}

TEST(DockerParseTest, DefaultBridgeAndHostNetworks) {
  auto bridge = ParseNetworkInspect(ReadSample("network_inspect_default_bridge.json"));
  ASSERT_TRUE(bridge.ok()) << bridge.status();
  EXPECT_EQ(bridge->name, "bridge");
  EXPECT_EQ(bridge->options.at("com.docker.network.bridge.name"), "docker0");
  ASSERT_EQ(bridge->ipam_pools.size(), 1u);
  EXPECT_EQ(bridge->ipam_pools[0].subnet, ParseIpPrefix("172.17.0.0/16").value());

  auto host = ParseNetworkInspect(ReadSample("network_inspect_host.json"));
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->driver, "host");
  EXPECT_TRUE(host->ipam_pools.empty());
}

TEST(DockerParseTest, EventStreamLinesBecomeTypedEvents) {
  std::istringstream lines(ReadSample("events.ndjson"));
  std::vector<std::string> described;
  std::vector<DockerEvent> events;
  int skipped = 0;
  for (std::string line; std::getline(lines, line);) {
    auto event = ParseDockerEvent(line);
    ASSERT_TRUE(event.ok()) << event.status() << " in " << line;
    if (!*event) {
      ++skipped;
      continue;
    }
    described.push_back(DescribeDockerEvent(**event));
    events.push_back(**event);
  }
  EXPECT_THAT(described, ElementsAre("network connect", "container start", "network connect", "network disconnect",
                                     "network disconnect", "container rename", "container die", "network disconnect",
                                     "network connect", "container start", "container restart", "container die",
                                     "network disconnect", "container destroy"));
  EXPECT_EQ(skipped, 1) << "the network's own destroy is not subscribed";
  const std::string container = "35fa66ee8f8f066316cd5ed28aa7603c2d6c2d4475757925346e2bc4a099f939";
  for (const DockerEvent& event : events) EXPECT_EQ(event.container_id, container);
  EXPECT_EQ(events[0].type, DockerEventType::kNetwork);
  EXPECT_EQ(events[0].action, DockerEventAction::kConnect);
  EXPECT_EQ(events[0].network_id, kNetworkId);
  EXPECT_EQ(events[0].time, absl::FromUnixNanos(1795682098435531719));
  EXPECT_EQ(events[1].type, DockerEventType::kContainer);
  EXPECT_TRUE(events[1].network_id.empty());
}

TEST(DockerParseTest, EventFilterSelectsTheSubscribedSet) {
  EXPECT_EQ(SubscribedEventFilters(), R"({"event":["start","die","destroy","restart","rename","connect","disconnect"],)"
                                      R"("type":["container","network"]})");
}

TEST(DockerParseTest, ErrorBodiesAndBadInput) {
  EXPECT_EQ(ParseErrorMessage(ReadSample("error_no_such_container.json")), "No such container: nosuchthing");
  EXPECT_EQ(ParseErrorMessage("page not found\n"), "page not found");

  auto truncated = ParseContainerInspect(R"({"Id": "abc", "State": {)");
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(truncated.status().message(), HasSubstr("parse container inspect"));

  auto no_id = ParseNetworkInspect(R"({"Name": "x"})");
  EXPECT_EQ(no_id.status().code(), absl::StatusCode::kInvalidArgument);

  auto bad_ip = ParseContainerInspect(
      R"({"Id": "abc", "State": {}, "NetworkSettings": {"Networks": {"n": {"IPAddress": "10.1.2"}}}})");
  EXPECT_EQ(bad_ip.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_ip.status().message(), HasSubstr("IPAddress"));

  auto wrong_type = ParseContainerList(R"([{"Id": 7}])");
  EXPECT_EQ(wrong_type.status().code(), absl::StatusCode::kInvalidArgument);
}

// Found by fuzz/docker_json_fuzzer (fuzz/corpus/docker_json/regress-timenano-float.json):
// a number that does not fit its field was converted with undefined behaviour
// (a float) or wrapped (an IPPrefixLen of 300 read as 44).
TEST(DockerParseTest, NumbersOutOfRangeAreErrorsNamingTheField) {
  auto huge_time = ParseDockerEvent(
      R"({"Type":"container","Action":"die","Actor":{"ID":"abc"},"timeNano":179568210089332440893324495})");
  EXPECT_EQ(huge_time.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(huge_time.status().message(), HasSubstr("timeNano"));
  auto wide_prefix = ParseContainerInspect(
      R"({"Id": "abc", "State": {}, "NetworkSettings": {"Networks": {"n": {"IPPrefixLen": 300}}}})");
  EXPECT_EQ(wide_prefix.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wide_prefix.status().message(), HasSubstr("IPPrefixLen: expected an integer from 0 to 255, got 300"));
  EXPECT_FALSE(ParseContainerInspect(R"({"Id": "abc", "State": {"Pid": 1e300}})").ok());
  EXPECT_FALSE(ParseContainerInspect(R"({"Id": "abc", "State": {"Pid": -1.5}})").ok());
  auto fits = ParseContainerInspect(
      R"({"Id": "abc", "State": {"Pid": 42}, "NetworkSettings": {"Networks": {"n": {"IPPrefixLen": 24}}}})");
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->pid, 42);
  EXPECT_EQ(fits->networks.at(0).ipv4_prefix_length, 24);
}

DockerEndpoint Resolve(std::string docker_host, std::string tls_verify = "", std::string cert_path = "/nonexistent") {
  auto endpoint = ResolveDockerEndpoint(
      {.docker_host = std::move(docker_host), .tls_verify = std::move(tls_verify), .cert_path = std::move(cert_path)});
  EXPECT_TRUE(endpoint.ok()) << endpoint.status();
  return endpoint.value_or(DockerEndpoint());
}

TEST(DockerEndpointTest, UnixSockets) {
  DockerEndpoint fallback = Resolve("");
  EXPECT_EQ(fallback.host, "unix:///var/run/docker.sock");
  EXPECT_EQ(fallback.unix_socket_path, "/var/run/docker.sock");
  EXPECT_EQ(fallback.base_url, "http://localhost");
  EXPECT_FALSE(fallback.tls.has_value());
  EXPECT_EQ(Resolve("unix:///run/user/1000/docker.sock").unix_socket_path, "/run/user/1000/docker.sock");
  EXPECT_EQ(Resolve("/tmp/d.sock").host, "unix:///tmp/d.sock");
  EXPECT_EQ(Resolve("unix://").unix_socket_path, "/var/run/docker.sock");
}

TEST(DockerEndpointTest, TcpHostsAndDefaultPort) {
  DockerEndpoint plain = Resolve("tcp://192.0.2.10");
  EXPECT_EQ(plain.host, "tcp://192.0.2.10:2375");
  EXPECT_EQ(plain.base_url, "http://192.0.2.10:2375");
  EXPECT_TRUE(plain.unix_socket_path.empty());
  EXPECT_EQ(Resolve("docker.example:2376").base_url, "http://docker.example:2376");
  EXPECT_EQ(Resolve("tcp://[2001:db8::5]:2376/prefix/").base_url, "http://[2001:db8::5]:2376/prefix");
}

TEST(DockerEndpointTest, TlsVerifyUsesCertPathAndSkipsMissingClientCert) {
  const std::string dir = ::testing::TempDir() + "/docker_endpoint_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/ca.pem") << "ca";
  std::ofstream(dir + "/key.pem") << "key";
  std::filesystem::permissions(dir + "/key.pem", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  DockerEndpoint tls = Resolve("tcp://192.0.2.10:2376", "1", dir);
  EXPECT_EQ(tls.base_url, "https://192.0.2.10:2376");
  ASSERT_TRUE(tls.tls.has_value());
  EXPECT_EQ(tls.tls->ca_file, dir + "/ca.pem");
  EXPECT_EQ(tls.tls->cert_file, "") << "cert.pem is missing";
  EXPECT_EQ(tls.tls->key_file, dir + "/key.pem");
  // The CLI's default host with TLS.
  EXPECT_EQ(Resolve("", "1", dir).host, "tcp://localhost:2376");
  std::filesystem::remove_all(dir);
}

TEST(DockerEndpointTest, UnusableHostsAreClearErrors) {
  for (const char* host : {"ssh://user@box", "fd://", "http://x:1", "tcp://x:99999", "tcp://x:port",
                           "tcp://fe80::1:2375", "tcp://unix:///x"}) {
    auto endpoint = ResolveDockerEndpoint({.docker_host = host});
    EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kInvalidArgument) << host;
    EXPECT_THAT(endpoint.status().message(), HasSubstr(host)) << host;
  }
  EXPECT_THAT(ResolveDockerEndpoint({.docker_host = "ssh://user@box"}).status().message(),
              HasSubstr("ssh:// is not supported"));
}

}  // namespace
}  // namespace stockade
