// SPDX-License-Identifier: Apache-2.0
//
// Builder for throwaway network topologies: namespaces, veth pairs, bridges
// and macvlans, all removed again when the Topology goes away. The tests, the
// netns demo and the benchmark build their scenes with it.
//
//   stockade::lab::Topology topology;
//   // Creates /run/netns/stkXXXXX-client:
//   auto client = topology.AddNamespace("client");
//   auto server = topology.AddNamespace("server");
//   auto veth = topology.AddVethPair(*client, "eth0", *server, "eth0");
//   topology.AddAddress(veth->first, "10.0.0.1/24");
//   topology.SetUp(veth->first);
//   topology.Run(*client, {"ping", "-c", "1", "-W", "1", "10.0.0.2"});
//
// Naming: every run gets a prefix "stk" + 5 random base-36 characters.
// Namespaces are called "<prefix>-<name>". Interfaces inside the topology's
// own namespaces keep the name asked for (the namespace isolates them), but
// interfaces created in the host namespace are named "<prefix><name>" so
// parallel runs never collide; always use the name in the returned
// TopologyLink. IFNAMSIZ leaves 7 characters for a host-side name.
//
// Safety: the topology only modifies what it created. Every mutating call
// checks that the link lives in one of its namespaces or is a host-side link
// it created, and Teardown() deletes only those, re-checking each host-side
// link's ifindex before deleting it. Keep addresses off host-side links where
// possible (put the "host" of a test in a namespace of its own): an address on
// a host link adds routes to the real host.
//
// Not thread-safe. Commands run through RunCommand() (`ip` from iproute2),
// each entering its namespace with setns(), never via `ip netns exec`.

#ifndef STOCKADE_TESTLIB_LAB_TOPOLOGY_H_
#define STOCKADE_TESTLIB_LAB_TOPOLOGY_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "stockade/netns/netns.h"

namespace stockade::lab {

// A network namespace of a topology: one it created, or the host namespace
// (the namespace the calling thread was in when the Topology was built).
struct TopologyNetns {
  // Name under /run/netns, e.g. "stkq3x9a-client"; empty for the host.
  std::string name;
  // Usable with NetnsGuard::Enter, IfIndexInNetns, RunCommand and as the
  // `netns` argument of `ip`. For the host it is /proc/<pid>/fd/<fd>, an fd
  // the topology keeps open, so it stays right even if the caller later
  // switches namespaces.
  std::string path;

  bool is_host() const { return name.empty(); }
  friend bool operator==(const TopologyNetns&, const TopologyNetns&) = default;
};

// An interface in a namespace of the topology.
struct TopologyLink {
  TopologyNetns netns;
  std::string ifname;  // the real kernel name

  friend bool operator==(const TopologyLink&, const TopologyLink&) = default;
};

// As stockade/addresses.h parses and formats it.
using MacAddress = std::array<uint8_t, 6>;

enum class MacvlanMode { kBridge, kPrivate, kVepa, kPassthru };

class Topology {
 public:
  // Opens the host namespace fd and picks the random prefix; does not touch
  // the system otherwise, so it cannot fail in a way a test must handle
  // (a failure to open the fd surfaces from the first Add* call).
  Topology();
  // Teardown(); errors are printed to stderr since a destructor cannot fail.
  ~Topology();

  // Owns system state tied to one object; neither copy nor move.
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  // "stk" + 5 characters; every name this topology creates starts with it.
  const std::string& prefix() const { return prefix_; }
  const TopologyNetns& host() const { return host_; }

  // Creates namespace "<prefix>-<name>" with `lo` up. `name`: 1..32 of
  // [A-Za-z0-9_-].
  [[nodiscard]] absl::StatusOr<TopologyNetns> AddNamespace(
      std::string_view name);

  // Creates a veth pair with end `ifname_a` in `netns_a` and `ifname_b` in
  // `netns_b` (either may be host()). Both ends start down.
  [[nodiscard]] absl::StatusOr<std::pair<TopologyLink, TopologyLink>>
  AddVethPair(const TopologyNetns& netns_a, std::string_view ifname_a,
              const TopologyNetns& netns_b, std::string_view ifname_b);

  // Creates a bridge: STP off, forward delay 0 so ports forward at once,
  // multicast snooping off so the bridge sends nothing of its own.
  [[nodiscard]] absl::StatusOr<TopologyLink> AddBridge(
      const TopologyNetns& netns, std::string_view name);

  // Makes `port` a port of `bridge`; both must be in the same namespace.
  [[nodiscard]] absl::Status Enslave(const TopologyLink& port,
                                     const TopologyLink& bridge);

  // Creates a macvlan `child_name` on `parent`, placed in `child_netns`
  // (which may be the parent's own namespace). The parent must be a link of
  // this topology, so nothing ever bridges onto a real host NIC.
  [[nodiscard]] absl::StatusOr<TopologyLink> AddMacvlan(
      const TopologyLink& parent, const TopologyNetns& child_netns,
      std::string_view child_name, MacvlanMode mode = MacvlanMode::kBridge);

  // Adds "10.1.2.3/24" or "fd00::1/64". IPv6 addresses are added with
  // `nodad` so they are usable at once instead of after DAD (~1 s).
  [[nodiscard]] absl::Status AddAddress(const TopologyLink& link,
                                        std::string_view cidr);

  [[nodiscard]] absl::Status SetUp(const TopologyLink& link);
  [[nodiscard]] absl::Status SetMac(const TopologyLink& link,
                                    const MacAddress& mac);

  [[nodiscard]] absl::StatusOr<uint32_t> IfIndex(
      const TopologyLink& link) const;
  [[nodiscard]] absl::StatusOr<MacAddress> Mac(const TopologyLink& link) const;

  // Runs `argv` inside `netns` via setns() (see RunCommand for errors and
  // output). Only the network namespace changes: /sys is still the host's.
  [[nodiscard]] absl::StatusOr<std::string> Run(
      const TopologyNetns& netns, absl::Span<const std::string> argv,
      std::chrono::milliseconds timeout = kDefaultCommandTimeout) const;

  // Deletes everything created so far: host-side links first (synchronously,
  // so they are gone when this returns), then namespaces. Carries on past
  // errors and returns the first. The topology stays usable afterwards.
  [[nodiscard]] absl::Status Teardown();

 private:
  struct HostLink {
    std::string ifname;
    uint32_t ifindex;  // 0 if it could not be read after creation
  };

  [[nodiscard]] absl::Status CheckNetnsOwned(const TopologyNetns& netns) const;
  [[nodiscard]] absl::Status CheckLinkOwned(const TopologyLink& link) const;
  // The kernel name for `ifname` in `netns`: prefixed on the host.
  [[nodiscard]] absl::StatusOr<std::string> KernelIfname(
      const TopologyNetns& netns, std::string_view ifname) const;
  // Remembers a host-side link so Teardown() deletes it.
  void RecordIfHost(const TopologyLink& link);
  // Runs `ip <args>` inside `netns`.
  [[nodiscard]] absl::StatusOr<std::string> RunIp(
      const TopologyNetns& netns, std::vector<std::string> args) const;

  std::string prefix_;
  int host_netns_fd_ = -1;
  absl::Status host_netns_status_;
  TopologyNetns host_;
  std::vector<TopologyNetns> namespaces_;  // creation order
  std::vector<HostLink> host_links_;       // creation order
};

}  // namespace stockade::lab

#endif  // STOCKADE_TESTLIB_LAB_TOPOLOGY_H_
