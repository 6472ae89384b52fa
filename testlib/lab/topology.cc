// SPDX-License-Identifier: Apache-2.0

#include "testlib/lab/topology.h"

#include <fcntl.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "stockade/net/addresses.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"

namespace stockade::lab {
namespace {

// Debian's Abseil has its own absl::string_view, which std::string_view does
// not convert to implicitly.
absl::string_view AbslView(std::string_view view) {
  return absl::string_view(view.data(), view.size());
}

constexpr size_t kSuffixLength = 5;
constexpr size_t kMaxNamespaceNameLength = 32;

// Random enough that concurrent runs (several test binaries, CI shards) do
// not pick the same prefix; the pid and clock guard against a weak
// random_device.
std::string MakePrefix() {
  std::random_device random_device;
  uint64_t seed = (uint64_t{random_device()} << 32) ^ random_device();
  seed ^= static_cast<uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ULL;
  seed ^= static_cast<uint64_t>(
      std::chrono::steady_clock::now().time_since_epoch().count());
  std::mt19937_64 generator(seed);
  constexpr std::string_view kAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::uniform_int_distribution<size_t> pick(0, kAlphabet.size() - 1);
  std::string prefix = "stk";
  for (size_t i = 0; i < kSuffixLength; ++i) {
    prefix += kAlphabet[pick(generator)];
  }
  return prefix;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-';
}

[[nodiscard]] absl::Status ValidateNamespaceName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNamespaceNameLength ||
      !std::all_of(name.begin(), name.end(), IsNameChar)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("namespace name \"%s\" must be 1..%d of [A-Za-z0-9_-]",
                        name, kMaxNamespaceNameLength));
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::Status ValidateIfname(std::string_view ifname) {
  // The kernel also rejects '/', ':' and whitespace; "." and ".." are
  // directory names under /sys/class/net. Staying with the namespace-name
  // alphabet keeps every name safe to pass around unquoted.
  if (ifname.empty() || ifname.size() >= IFNAMSIZ ||
      !std::all_of(ifname.begin(), ifname.end(), IsNameChar)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("interface name \"%s\" must be 1..%d of [A-Za-z0-9_-]",
                        ifname, IFNAMSIZ - 1));
  }
  return absl::OkStatus();
}

const char* MacvlanModeName(MacvlanMode mode) {
  switch (mode) {
    case MacvlanMode::kBridge:
      return "bridge";
    case MacvlanMode::kPrivate:
      return "private";
    case MacvlanMode::kVepa:
      return "vepa";
    case MacvlanMode::kPassthru:
      return "passthru";
  }
  return "bridge";
}

// `ip link` reports a missing device as "Cannot find device" (exit 1).
bool IsMissingDevice(const absl::Status& status) {
  return absl::IsNotFound(status) ||
         absl::StrContains(status.message(), "Cannot find device");
}

}  // namespace

Topology::Topology() : prefix_(MakePrefix()) {
  // Pin the host namespace by fd: "host" then keeps meaning the namespace
  // the topology was made in, even while the caller holds a NetnsGuard.
  host_netns_fd_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (host_netns_fd_ < 0) {
    host_netns_status_ =
        ErrnoStatus(errno, "open /proc/thread-self/ns/net for the host netns");
    return;
  }
  host_.path = absl::StrFormat("/proc/%d/fd/%d", ::getpid(), host_netns_fd_);
}

Topology::~Topology() {
  if (const absl::Status status = Teardown(); !status.ok()) {
    std::fprintf(stderr, "Topology %s: teardown failed: %s\n", prefix_.c_str(),
                 status.ToString().c_str());
  }
  if (host_netns_fd_ >= 0) ::close(host_netns_fd_);
}

absl::Status Topology::CheckNetnsOwned(const TopologyNetns& netns) const {
  if (!host_netns_status_.ok()) return host_netns_status_;
  if (netns == host_) return absl::OkStatus();
  if (std::find(namespaces_.begin(), namespaces_.end(), netns) !=
      namespaces_.end()) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrFormat("netns %s (%s) does not belong to topology %s",
                      netns.name, netns.path, prefix_));
}

absl::Status Topology::CheckLinkOwned(const TopologyLink& link) const {
  if (absl::Status s = CheckNetnsOwned(link.netns); !s.ok()) return s;
  if (!link.netns.is_host()) return absl::OkStatus();
  const bool created_here =
      std::any_of(host_links_.begin(), host_links_.end(),
                  [&](const HostLink& h) { return h.ifname == link.ifname; });
  if (created_here) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "host interface %s was not created by topology %s; refusing to touch it",
      link.ifname, prefix_));
}

absl::StatusOr<std::string> Topology::KernelIfname(
    const TopologyNetns& netns, std::string_view ifname) const {
  if (absl::Status s = ValidateIfname(ifname); !s.ok()) return s;
  if (!netns.is_host()) return std::string(ifname);
  std::string kernel_name = absl::StrCat(prefix_, AbslView(ifname));
  if (kernel_name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "host interface name \"%s\" is too long: with the prefix \"%s\" it "
        "must stay within %d characters",
        ifname, prefix_, IFNAMSIZ - 1));
  }
  return kernel_name;
}

void Topology::RecordIfHost(const TopologyLink& link) {
  if (!link.netns.is_host()) return;
  absl::StatusOr<uint32_t> ifindex = IfIndexInNetns(host_.path, link.ifname);
  host_links_.push_back({link.ifname, ifindex.ok() ? *ifindex : 0});
}

absl::StatusOr<std::string> Topology::RunIp(
    const TopologyNetns& netns, std::vector<std::string> args) const {
  args.insert(args.begin(), "ip");
  return RunCommand(args, netns.path);
}

absl::StatusOr<TopologyNetns> Topology::AddNamespace(std::string_view name) {
  if (!host_netns_status_.ok()) return host_netns_status_;
  if (absl::Status s = ValidateNamespaceName(name); !s.ok()) return s;
  TopologyNetns netns;
  netns.name = absl::StrCat(prefix_, "-", AbslView(name));
  netns.path = absl::StrCat("/run/netns/", netns.name);
  // `ip netns add` fails if the name exists, so a collision can never make
  // this topology adopt (and later delete) somebody else's namespace.
  if (absl::StatusOr<std::string> out =
          RunIp(host_, {"netns", "add", netns.name});
      !out.ok()) {
    return out.status();
  }
  namespaces_.push_back(netns);
  // Loopback is down in a fresh namespace; much software (and ping to one's
  // own address) expects it up.
  if (absl::StatusOr<std::string> out =
          RunIp(netns, {"link", "set", "dev", "lo", "up"});
      !out.ok()) {
    return out.status();
  }
  return netns;
}

absl::StatusOr<std::pair<TopologyLink, TopologyLink>> Topology::AddVethPair(
    const TopologyNetns& netns_a, std::string_view ifname_a,
    const TopologyNetns& netns_b, std::string_view ifname_b) {
  if (absl::Status s = CheckNetnsOwned(netns_a); !s.ok()) return s;
  if (absl::Status s = CheckNetnsOwned(netns_b); !s.ok()) return s;
  absl::StatusOr<std::string> name_a = KernelIfname(netns_a, ifname_a);
  if (!name_a.ok()) return name_a.status();
  absl::StatusOr<std::string> name_b = KernelIfname(netns_b, ifname_b);
  if (!name_b.ok()) return name_b.status();

  // Issued from the host with an explicit netns per end: the kernel creates
  // each end directly in its namespace, so a name never has to be free in
  // the host, and a failure leaves nothing half-made.
  std::vector<std::string> args = {"link", "add", "name", *name_a};
  if (!netns_a.is_host()) args.insert(args.end(), {"netns", netns_a.path});
  args.insert(args.end(), {"type", "veth", "peer", "name", *name_b});
  if (!netns_b.is_host()) args.insert(args.end(), {"netns", netns_b.path});
  if (absl::StatusOr<std::string> out = RunIp(host_, std::move(args));
      !out.ok()) {
    return out.status();
  }
  std::pair<TopologyLink, TopologyLink> pair{{netns_a, *name_a},
                                             {netns_b, *name_b}};
  RecordIfHost(pair.first);
  RecordIfHost(pair.second);
  return pair;
}

absl::StatusOr<TopologyLink> Topology::AddBridge(const TopologyNetns& netns,
                                                 std::string_view name) {
  if (absl::Status s = CheckNetnsOwned(netns); !s.ok()) return s;
  absl::StatusOr<std::string> kernel_name = KernelIfname(netns, name);
  if (!kernel_name.ok()) return kernel_name.status();
  // Multicast snooping off: with it, the bridge joins the all-snoopers
  // groups and sends its own IGMP/MLD reports to every port, traffic no test
  // asked for.
  if (absl::StatusOr<std::string> out =
          RunIp(netns, {"link", "add", "name", *kernel_name, "type", "bridge",
                        "stp_state", "0", "forward_delay", "0",
                        "mcast_snooping", "0"});
      !out.ok()) {
    return out.status();
  }
  TopologyLink bridge{netns, *kernel_name};
  RecordIfHost(bridge);
  return bridge;
}

absl::Status Topology::Enslave(const TopologyLink& port,
                               const TopologyLink& bridge) {
  if (absl::Status s = CheckLinkOwned(port); !s.ok()) return s;
  if (absl::Status s = CheckLinkOwned(bridge); !s.ok()) return s;
  if (port.netns != bridge.netns) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cannot enslave %s to %s: they are in different namespaces",
        port.ifname, bridge.ifname));
  }
  return RunIp(port.netns,
               {"link", "set", "dev", port.ifname, "master", bridge.ifname})
      .status();
}

absl::StatusOr<TopologyLink> Topology::AddMacvlan(
    const TopologyLink& parent, const TopologyNetns& child_netns,
    std::string_view child_name, MacvlanMode mode) {
  if (absl::Status s = CheckLinkOwned(parent); !s.ok()) return s;
  if (absl::Status s = CheckNetnsOwned(child_netns); !s.ok()) return s;
  absl::StatusOr<std::string> kernel_name =
      KernelIfname(child_netns, child_name);
  if (!kernel_name.ok()) return kernel_name.status();
  // Issued in the parent's namespace (where `link` is looked up); the child
  // is created directly in its own namespace.
  std::vector<std::string> args = {"link",        "add",  "link",
                                   parent.ifname, "name", *kernel_name};
  if (child_netns != parent.netns) {
    args.insert(args.end(), {"netns", child_netns.path});
  }
  args.insert(args.end(), {"type", "macvlan", "mode", MacvlanModeName(mode)});
  if (absl::StatusOr<std::string> out = RunIp(parent.netns, std::move(args));
      !out.ok()) {
    return out.status();
  }
  TopologyLink child{child_netns, *kernel_name};
  RecordIfHost(child);
  return child;
}

absl::Status Topology::AddAddress(const TopologyLink& link,
                                  std::string_view cidr) {
  if (absl::Status s = CheckLinkOwned(link); !s.ok()) return s;
  std::vector<std::string> args = {"addr", "add", std::string(cidr), "dev",
                                   link.ifname};
  // Without nodad the address stays "tentative" for about a second and
  // connect()/bind() to it fail, which would make tests race DAD.
  if (cidr.find(':') != std::string_view::npos) args.push_back("nodad");
  return RunIp(link.netns, std::move(args)).status();
}

absl::Status Topology::SetUp(const TopologyLink& link) {
  if (absl::Status s = CheckLinkOwned(link); !s.ok()) return s;
  return RunIp(link.netns, {"link", "set", "dev", link.ifname, "up"}).status();
}

absl::Status Topology::SetMac(const TopologyLink& link, const MacAddress& mac) {
  if (absl::Status s = CheckLinkOwned(link); !s.ok()) return s;
  return RunIp(link.netns, {"link", "set", "dev", link.ifname, "address",
                            FormatMac(mac.data())})
      .status();
}

absl::StatusOr<uint32_t> Topology::IfIndex(const TopologyLink& link) const {
  if (absl::Status s = CheckNetnsOwned(link.netns); !s.ok()) return s;
  return IfIndexInNetns(link.netns.path, link.ifname);
}

absl::StatusOr<MacAddress> Topology::Mac(const TopologyLink& link) const {
  if (absl::Status s = CheckNetnsOwned(link.netns); !s.ok()) return s;
  absl::StatusOr<std::string> out =
      RunIp(link.netns, {"-o", "link", "show", "dev", link.ifname});
  if (!out.ok()) return out.status();
  // One line: "7: eth0@if6: <...> ... link/ether 02:00:00:00:00:01 brd ...".
  const std::vector<absl::string_view> fields =
      absl::StrSplit(*out, ' ', absl::SkipEmpty());
  for (size_t i = 0; i + 1 < fields.size(); ++i) {
    if (absl::StartsWith(fields[i], "link/")) {
      const absl::string_view mac = fields[i + 1];
      return ParseMac(mac);
    }
  }
  return absl::InternalError(absl::StrCat("no link/ address in `ip link` for ",
                                          link.ifname, ": ", *out));
}

absl::StatusOr<std::string> Topology::Run(
    const TopologyNetns& netns, absl::Span<const std::string> argv,
    std::chrono::milliseconds timeout) const {
  if (absl::Status s = CheckNetnsOwned(netns); !s.ok()) return s;
  return RunCommand(argv, netns.path, timeout);
}

absl::Status Topology::Teardown() {
  absl::Status first_error;
  auto note = [&first_error](const absl::Status& status) {
    if (!status.ok() && first_error.ok()) first_error = status;
  };

  // Host-side links first and explicitly: deleting a namespace destroys its
  // devices (and their host-side veth peers) asynchronously, and the caller
  // wants the host clean when this returns.
  for (auto it = host_links_.rbegin(); it != host_links_.rend(); ++it) {
    absl::StatusOr<uint32_t> ifindex = IfIndexInNetns(host_.path, it->ifname);
    if (!ifindex.ok()) {
      // Gone already, e.g. the other end of a veth pair deleted earlier.
      if (!IsMissingDevice(ifindex.status())) note(ifindex.status());
      continue;
    }
    if (it->ifindex != 0 && *ifindex != it->ifindex) {
      // Same name, different device: not ours, leave it alone.
      continue;
    }
    absl::StatusOr<std::string> out =
        RunIp(host_, {"link", "del", "dev", it->ifname});
    if (!out.ok() && !IsMissingDevice(out.status())) note(out.status());
  }
  host_links_.clear();

  for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it) {
    note(RunIp(host_, {"netns", "del", it->name}).status());
  }
  namespaces_.clear();
  return first_error;
}

}  // namespace stockade::lab
