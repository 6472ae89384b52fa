// SPDX-License-Identifier: Apache-2.0
//
// One contender's testbed: client -- veth -- host -- veth -- server, three
// namespaces of a lab::Topology. "host" stands for a Docker host: it routes,
// its "srv" veth is the server container's host-side veth (where Docker
// users filter and stockade hooks), "cli" the client container's. Each
// contender gets a testbed of its own, so one contender's netfilter tables or
// conntrack hooks never tax another's packets. Addresses are in rules.h;
// neighbours are permanent, so no ARP happens inside a measurement.
#ifndef STOCKADE_TOOLS_BENCH_TESTBED_H_
#define STOCKADE_TOOLS_BENCH_TESTBED_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "testlib/lab/topology.h"

namespace stockade::bench {

struct Testbed {
  lab::TopologyNetns client, host, server;
  lab::TopologyLink client_eth0, host_cli, host_srv, server_eth0;
  uint32_t host_cli_ifindex = 0, host_srv_ifindex = 0, server_eth0_ifindex = 0;
  uint64_t host_cookie = 0, server_cookie = 0;
  lab::MacAddress client_mac{}, host_cli_mac{}, host_srv_mac{}, server_mac{};
};

// Builds the testbed "<label>-c", "<label>-h", "<label>-s" in `topology`,
// which removes it when it goes.
[[nodiscard]] absl::StatusOr<Testbed> BuildTestbed(lab::Topology& topology, const std::string& label);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_TESTBED_H_
