// SPDX-License-Identifier: Apache-2.0
//
// The interfaces of a network namespace, read over rtnetlink: what the agent
// needs to find a container's host-side veth or its macvlan.
#ifndef STOCKADE_INCLUDE_STOCKADE_NETNS_LINKS_H_
#define STOCKADE_INCLUDE_STOCKADE_NETNS_LINKS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stockade/net/addresses.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {

struct LinkInfo {
  uint32_t ifindex = 0;
  std::string name;
  std::string kind;              // "veth", "macvlan", "vxlan", "bridge", "" for physical
  std::array<uint8_t, 6> mac{};  // all zero when the link has none
  uint32_t peer_ifindex = 0;     // IFLA_LINK: a veth's peer, a macvlan's parent
  bool peer_in_other_netns = false;  // IFLA_LINK_NETNSID present
  int32_t peer_netnsid = -1;         // IFLA_LINK_NETNSID: see NetnsIdOf
  uint32_t master_ifindex = 0;   // the bridge it is enslaved to
  bool up = false;
};

struct LinkAddress {
  uint32_t ifindex = 0;
  uint8_t family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};
  uint8_t prefix_length = 0;
  bool link_local = false;  // IPv6 fe80::/10

  IpAddress address() const;
};

// The links of the calling thread's network namespace (enter another with NetnsGuard).
[[nodiscard]] absl::StatusOr<std::vector<LinkInfo>> ListLinks();
// Its interface addresses.
[[nodiscard]] absl::StatusOr<std::vector<LinkAddress>> ListAddresses();

// The id the calling thread's namespace knows another namespace by: the
// peer_netnsid of links whose other end lives there. -1 (NETNSA_NSID_NOT_ASSIGNED)
// when no link joins the two.
[[nodiscard]] absl::StatusOr<int32_t> NetnsIdOf(int netns_fd);

// Links as they appear or change in the calling thread's namespace
// (RTNLGRP_LINK), so a container's veth can be hooked before it carries a
// packet, not when Docker gets round to saying the container started.
class LinkMonitor {
 public:
  [[nodiscard]] static absl::StatusOr<LinkMonitor> Open();
  int fd() const { return fd_.get(); }
  // The links announced since the last call (RTM_NEWLINK); never blocks.
  [[nodiscard]] absl::StatusOr<std::vector<LinkInfo>> ReadNewLinks();

 private:
  explicit LinkMonitor(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_NETNS_LINKS_H_
