// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/testbed.h"

#include "absl/strings/str_cat.h"
#include "stockade/net/addresses.h"
#include "stockade/netns/netns.h"
#include "tools/bench/rules.h"

namespace stockade::bench {
namespace {

absl::Status Run(lab::Topology& topology, const lab::TopologyNetns& netns, std::vector<std::string> argv) {
  auto out = topology.Run(netns, argv);
  return out.ok() ? absl::OkStatus() : out.status();
}

absl::Status Neighbour(lab::Topology& topology, const lab::TopologyNetns& netns, const char* ip,
                       const lab::MacAddress& mac, const std::string& dev) {
  return Run(topology, netns, {"ip", "neigh", "replace", ip, "lladdr", FormatMac(mac.data()), "dev", dev, "nud",
                               "permanent"});
}

}  // namespace

absl::StatusOr<Testbed> BuildTestbed(lab::Topology& topology, const std::string& label) {
  Testbed bed;
  for (auto [netns, suffix] : {std::pair{&bed.client, "-c"}, {&bed.host, "-h"}, {&bed.server, "-s"}}) {
    auto made = topology.AddNamespace(label + suffix);
    if (!made.ok()) return made.status();
    *netns = *made;
  }
  auto left = topology.AddVethPair(bed.client, "eth0", bed.host, "cli");
  if (!left.ok()) return left.status();
  auto right = topology.AddVethPair(bed.host, "srv", bed.server, "eth0");
  if (!right.ok()) return right.status();
  bed.client_eth0 = left->first;
  bed.host_cli = left->second;
  bed.host_srv = right->first;
  bed.server_eth0 = right->second;
  for (auto [link, cidr] : {std::pair{&bed.client_eth0, "10.214.0.1/24"}, {&bed.host_cli, "10.214.0.254/24"},
                            {&bed.host_srv, "10.214.1.254/24"}, {&bed.server_eth0, "10.214.1.2/24"}}) {
    if (absl::Status s = topology.AddAddress(*link, cidr); !s.ok()) return s;
    if (absl::Status s = topology.SetUp(*link); !s.ok()) return s;
  }
  for (auto [link, mac] : {std::pair{&bed.client_eth0, &bed.client_mac}, {&bed.host_cli, &bed.host_cli_mac},
                           {&bed.host_srv, &bed.host_srv_mac}, {&bed.server_eth0, &bed.server_mac}}) {
    auto read = topology.Mac(*link);
    if (!read.ok()) return read.status();
    *mac = *read;
  }
  for (auto [link, index] : {std::pair{&bed.host_cli, &bed.host_cli_ifindex}, {&bed.host_srv, &bed.host_srv_ifindex},
                             {&bed.server_eth0, &bed.server_eth0_ifindex}}) {
    auto read = topology.IfIndex(*link);
    if (!read.ok()) return read.status();
    *index = *read;
  }
  for (auto [netns, cookie] : {std::pair{&bed.host, &bed.host_cookie}, {&bed.server, &bed.server_cookie}}) {
    auto read = NetnsCookie(netns->path);
    if (!read.ok()) return read.status();
    *cookie = *read;
  }
  std::vector<absl::Status> steps = {
      Run(topology, bed.client, {"ip", "route", "add", "default", "via", kHostClientSideIp}),
      Run(topology, bed.server, {"ip", "route", "add", "default", "via", kHostServerSideIp}),
      Run(topology, bed.host, {"sysctl", "-qw", "net.ipv4.ip_forward=1"}),
      // TCP_CRR opens thousands of connections a second from one address.
      Run(topology, bed.client, {"sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"}),
      Run(topology, bed.client, {"sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"}),
      Neighbour(topology, bed.client, kHostClientSideIp, bed.host_cli_mac, "eth0"),
      Neighbour(topology, bed.host, kClientIp, bed.client_mac, "cli"),
      Neighbour(topology, bed.host, kServerIp, bed.server_mac, "srv"),
      Neighbour(topology, bed.server, kHostServerSideIp, bed.host_srv_mac, "eth0"),
  };
  for (const absl::Status& s : steps) {
    if (!s.ok()) return s;
  }
  return bed;
}

}  // namespace stockade::bench
