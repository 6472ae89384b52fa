// SPDX-License-Identifier: Apache-2.0
#include "testlib/lab/segmentation_lab.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "stockade/net/addresses.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"

namespace stockade::lab {
namespace {

struct TierSpec {
  const char* name;
  uint32_t identity;
  const char* ipv4;
  const char* ipv6;
};

// Namespaces isolate them, so every lab can use the same addresses.
constexpr TierSpec kChain[] = {
    {"frontend", kFrontendIdentity, "10.77.0.11", "fd00:77::11"},
    {"web", kWebIdentity, "10.77.0.12", "fd00:77::12"},
    {"backend", kBackendIdentity, "10.77.0.13", "fd00:77::13"},
    {"db", kDbIdentity, "10.77.0.14", "fd00:77::14"},
};
constexpr TierSpec kMacvlanSiblings[] = {
    {"web-mv", kWebIdentity, "10.77.1.12", "fd00:77:1::12"},
    {"backend-mv", kBackendIdentity, "10.77.1.13", "fd00:77:1::13"},
};
constexpr char kIpv4PrefixLength[] = "/24";
constexpr char kIpv6PrefixLength[] = "/64";
constexpr size_t kChainLength = std::size(kChain);

// The kernel adds the link-local address when the link comes up with a
// carrier; allow a moment should it ever come later.
constexpr auto kLinkLocalWait = std::chrono::seconds(2);
constexpr auto kLinkLocalPollInterval = std::chrono::milliseconds(10);

struct Hop {
  uint32_t client;
  uint32_t server;
  uint16_t port;
};
constexpr Hop kHops[] = {
    {kFrontendIdentity, kWebIdentity, 80},
    {kWebIdentity, kBackendIdentity, 8080},
    {kBackendIdentity, kDbIdentity, 5432},
};

absl::string_view AbslView(std::string_view view) {
  return absl::string_view(view.data(), view.size());
}

// Adds where an error happened to its message.
absl::Status Annotate(const absl::Status& status, std::string_view where) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(status.message(), " (",
                                                  AbslView(where), ")"));
}

uint8_t HookRole(const Tier& tier) {
  return tier.hook->netns == tier.netns ? HOOK_ROLE_IN_CONTAINER
                                        : HOOK_ROLE_HOST_VETH;
}

// The IPv6 link-local address of `ifname`, if it has one yet.
absl::StatusOr<std::optional<std::string>> LinkLocalAddress(
    const std::string& netns_path, const std::string& ifname) {
  absl::StatusOr<NetnsGuard> guard = NetnsGuard::Enter(netns_path);
  if (!guard.ok()) return guard.status();
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getifaddrs in netns ", netns_path));
  }
  std::optional<std::string> found;
  for (const ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET6 ||
        ifname != entry->ifa_name) {
      continue;
    }
    const in6_addr& address =
        reinterpret_cast<const sockaddr_in6*>(entry->ifa_addr)->sin6_addr;
    if (IN6_IS_ADDR_LINKLOCAL(&address)) {
      found = FormatAddress(STOCKADE_AF_INET6, address.s6_addr);
    }
  }
  ::freeifaddrs(list);
  return found;
}

uint8_t IpProtocol(const Probe& probe) {
  switch (probe.protocol) {
    case ProbeProtocol::kTcp:
      return IPPROTO_TCP;
    case ProbeProtocol::kUdp:
      return IPPROTO_UDP;
    case ProbeProtocol::kIcmpEcho:
      break;
  }
  return probe.family == IpFamily::kIpv4 ? uint8_t{IPPROTO_ICMP}
                                         : uint8_t{IPPROTO_ICMPV6};
}

}  // namespace

std::vector<DatapathRule> SegmentationRules() {
  std::vector<DatapathRule> rules;
  for (size_t h = 0; h < std::size(kHops); ++h) {
    const Hop& hop = kHops[h];
    const struct {
      uint8_t protocol;
      uint16_t port;  // ICMP: the type
    } services[] = {
        {IPPROTO_TCP, hop.port},
        {IPPROTO_UDP, kDnsPort},
        {IPPROTO_ICMP, ICMP_ECHO},
        {IPPROTO_ICMPV6, ICMP6_ECHO_REQUEST},
    };
    uint32_t rule_id = 10 * static_cast<uint32_t>(h + 1);
    // Each service needs two allows: out of the client, into the server.
    for (const auto& service : services) {
      rules.push_back({.rule_id = ++rule_id,
                       .local_identity = hop.client,
                       .remote_identity = hop.server,
                       .direction = DIR_EGRESS,
                       .protocol = service.protocol,
                       .ports = {service.port, service.port}});
      rules.push_back({.rule_id = ++rule_id,
                       .local_identity = hop.server,
                       .remote_identity = hop.client,
                       .direction = DIR_INGRESS,
                       .protocol = service.protocol,
                       .ports = {service.port, service.port}});
    }
  }
  const struct {
    uint32_t rule_id, from, to;
  } skips[] = {
      {91, kFrontendIdentity, kBackendIdentity},
      {92, kFrontendIdentity, kDbIdentity},
      {93, kWebIdentity, kDbIdentity},
  };
  for (const auto& skip : skips) {
    rules.push_back({.rule_id = skip.rule_id,
                     .local_identity = skip.from,
                     .remote_identity = skip.to,
                     .direction = DIR_EGRESS,
                     .action = POLICY_ACTION_DENY});
  }
  return rules;
}

std::string Describe(const Probe& probe) {
  std::string service;
  switch (probe.protocol) {
    case ProbeProtocol::kTcp:
      service = absl::StrCat("tcp/", probe.port);
      break;
    case ProbeProtocol::kUdp:
      service = absl::StrCat("udp/", probe.port);
      break;
    case ProbeProtocol::kIcmpEcho:
      service = "ping";
      break;
  }
  return absl::StrFormat("%s -> %s %s %s", probe.from->name, probe.to->name,
                         service,
                         probe.family == IpFamily::kIpv4 ? "IPv4" : "IPv6");
}

bool EventIsFor(const drop_event& event, const Probe& probe) {
  const bool ipv4 = probe.family == IpFamily::kIpv4;
  const uint8_t protocol = IpProtocol(probe);
  if (event.family != (ipv4 ? STOCKADE_AF_INET : STOCKADE_AF_INET6) ||
      event.protocol != protocol) {
    return false;
  }
  if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP) {
    if (ntohs(event.dport) != probe.port) return false;
  }
  absl::StatusOr<IpAddress> source =
      ParseIpAddress(probe.from->address(probe.family));
  absl::StatusOr<IpAddress> destination =
      ParseIpAddress(probe.to->address(probe.family));
  return source.ok() && destination.ok() &&
         std::memcmp(event.saddr, source->bytes.data(), 16) == 0 &&
         std::memcmp(event.daddr, destination->bytes.data(), 16) == 0;
}

absl::StatusOr<std::unique_ptr<SegmentationLab>> SegmentationLab::Create(
    const SegmentationLabOptions& options) {
  // Built in place: if a step fails, the destructor removes what was made.
  std::unique_ptr<SegmentationLab> lab(new SegmentationLab(options));
  if (absl::Status s = lab->BuildChain(); !s.ok()) return s;
  if (options.macvlan_siblings) {
    if (absl::Status s = lab->BuildMacvlanScene(); !s.ok()) return s;
  }
  for (Tier& tier : lab->tiers_) {
    if (absl::Status s = lab->ReadInterfaceAddresses(tier); !s.ok()) return s;
  }
  if (absl::Status s = lab->LoadDatapath(); !s.ok()) return s;
  // Maps first: a program never sees an endpoint it does not know yet.
  if (absl::Status s = lab->WriteMaps(); !s.ok()) return s;
  for (Tier& tier : lab->tiers_) {
    if (!tier.hook) continue;
    if (absl::Status s = lab->AttachPrograms(tier); !s.ok()) return s;
  }
  return lab;
}

SegmentationLab::~SegmentationLab() {
  if (absl::Status s = Teardown(); !s.ok()) {
    std::fprintf(stderr, "segmentation lab %s: teardown failed: %s\n",
                 topology_.prefix().c_str(), s.ToString().c_str());
  }
}

absl::Status SegmentationLab::BuildChain() {
  absl::StatusOr<TopologyNetns> switch_netns = topology_.AddNamespace("switch");
  if (!switch_netns.ok()) return switch_netns.status();
  switch_netns_ = *switch_netns;
  absl::StatusOr<TopologyLink> bridge =
      topology_.AddBridge(switch_netns_, "br0");
  if (!bridge.ok()) return bridge.status();
  if (absl::Status s = topology_.SetUp(*bridge); !s.ok()) return s;

  for (const TierSpec& spec : kChain) {
    absl::StatusOr<TopologyNetns> netns = topology_.AddNamespace(spec.name);
    if (!netns.ok()) return netns.status();
    auto veth = topology_.AddVethPair(*netns, "eth0", switch_netns_,
                                      absl::StrCat("veth-", spec.name));
    if (!veth.ok()) return veth.status();
    // A braced list runs every step, in order, before the loop looks: after
    // a failure the later steps still run (and fail); the first error wins.
    for (const absl::Status& s :
         {topology_.Enslave(veth->second, *bridge),
          topology_.SetUp(veth->second),
          topology_.AddAddress(veth->first,
                               absl::StrCat(spec.ipv4, kIpv4PrefixLength)),
          topology_.AddAddress(veth->first,
                               absl::StrCat(spec.ipv6, kIpv6PrefixLength)),
          topology_.SetUp(veth->first)}) {
      if (!s.ok()) return s;
    }
    tiers_.push_back({.name = spec.name,
                      .identity = spec.identity,
                      .netns = *netns,
                      .eth0 = veth->first,
                      .ipv4 = spec.ipv4,
                      .ipv6 = spec.ipv6,
                      .hook = veth->second});
  }
  return absl::OkStatus();
}

absl::Status SegmentationLab::BuildMacvlanScene() {
  absl::StatusOr<TopologyNetns> uplink = topology_.AddNamespace("mv-uplink");
  if (!uplink.ok()) return uplink.status();
  // A macvlan needs a lower device with a carrier: a veth pair whose other
  // end stays unused.
  auto wire = topology_.AddVethPair(*uplink, "parent", *uplink, "peer");
  if (!wire.ok()) return wire.status();
  // As in BuildChain(): every step runs; the first error wins.
  for (const absl::Status& s :
       {topology_.SetUp(wire->first), topology_.SetUp(wire->second)}) {
    if (!s.ok()) return s;
  }
  for (const TierSpec& spec : kMacvlanSiblings) {
    absl::StatusOr<TopologyNetns> netns = topology_.AddNamespace(spec.name);
    if (!netns.ok()) return netns.status();
    absl::StatusOr<TopologyLink> child =
        topology_.AddMacvlan(wire->first, *netns, "eth0", MacvlanMode::kBridge);
    if (!child.ok()) return child.status();
    for (const absl::Status& s :
         {topology_.AddAddress(*child,
                               absl::StrCat(spec.ipv4, kIpv4PrefixLength)),
          topology_.AddAddress(*child,
                               absl::StrCat(spec.ipv6, kIpv6PrefixLength)),
          topology_.SetUp(*child)}) {
      if (!s.ok()) return s;
    }
    tiers_.push_back({.name = spec.name,
                      .identity = spec.identity,
                      .netns = *netns,
                      .eth0 = *child,
                      .ipv4 = spec.ipv4,
                      .ipv6 = spec.ipv6});
  }
  // Enforced from inside the first sibling, on its own interface.
  tiers_[kChainLength].hook = tiers_[kChainLength].eth0;
  return absl::OkStatus();
}

absl::Status SegmentationLab::ReadInterfaceAddresses(Tier& tier) {
  absl::StatusOr<MacAddress> mac = topology_.Mac(tier.eth0);
  if (!mac.ok()) return mac.status();
  tier.mac = *mac;
  const auto give_up = std::chrono::steady_clock::now() + kLinkLocalWait;
  for (;;) {
    auto link_local = LinkLocalAddress(tier.netns.path, tier.eth0.ifname);
    if (!link_local.ok()) return link_local.status();
    if (link_local->has_value()) {
      tier.ipv6_link_local = **link_local;
      return absl::OkStatus();
    }
    if (std::chrono::steady_clock::now() > give_up) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "no IPv6 link-local address on eth0 of %s after %d ms",
          tier.netns.name, std::chrono::milliseconds(kLinkLocalWait).count()));
    }
    std::this_thread::sleep_for(kLinkLocalPollInterval);
  }
}

absl::Status SegmentationLab::LoadDatapath() {
  if (options_.pin_maps) {
    // Set before loading, so that Teardown() removes a half-made pin
    // directory too.
    instance_ = absl::StrCat("lab-", topology_.prefix());
    std::error_code error;
    created_pin_root_ = !std::filesystem::exists(STOCKADE_PIN_DIR, error);
  }
  absl::StatusOr<std::unique_ptr<Datapath>> datapath =
      Datapath::Load({.instance = instance_,
                      .conntrack_max = options_.conntrack_max,
                      .events_ringbuf_bytes = 1u << 20});
  if (!datapath.ok()) return datapath.status();
  datapath_ = *std::move(datapath);

  absl::StatusOr<std::unique_ptr<EventReader>> reader = EventReader::Open(
      datapath_->events_fd(),
      [this](const drop_event& event) { pending_events_.push_back(event); });
  if (!reader.ok()) return reader.status();
  event_reader_ = *std::move(reader);
  return absl::OkStatus();
}

endpoint_info SegmentationLab::EndpointInfo(const Tier& tier, uint8_t role,
                                            uint32_t flags) const {
  endpoint_info info{};
  info.identity = tier.identity;
  info.flags = flags;
  info.policy_revision = 1;
  info.role = role;
  std::memcpy(info.mac, tier.mac.data(), sizeof(info.mac));
  // The addresses were parsed when they were assigned; they are valid.
  info.ipv4 = ParseIpAddress(tier.ipv4)->ipv4_network_order();
  std::memcpy(info.ipv6, ParseIpAddress(tier.ipv6)->bytes.data(), 16);
  std::memcpy(info.ipv6_link_local,
              ParseIpAddress(tier.ipv6_link_local)->bytes.data(), 16);
  return info;
}

absl::Status SegmentationLab::WriteMaps() {
  for (Tier& tier : tiers_) {
    for (const std::string& address : {tier.ipv4, tier.ipv6}) {
      absl::StatusOr<IpPrefix> prefix = ParseIpPrefix(address);
      if (!prefix.ok()) return prefix.status();
      absl::Status s = datapath_->ipcache().Update(
          prefix->ToIpcacheKey(), {.identity = tier.identity, .flags = 0});
      if (!s.ok()) return s;
    }
    if (!tier.hook) continue;
    absl::StatusOr<uint64_t> cookie = NetnsCookie(tier.hook->netns.path);
    if (!cookie.ok()) return cookie.status();
    absl::StatusOr<uint32_t> ifindex = topology_.IfIndex(*tier.hook);
    if (!ifindex.ok()) return ifindex.status();
    tier.endpoint = {.netns_cookie = *cookie, .ifindex = *ifindex, .pad = 0};
    absl::Status s = datapath_->endpoints().Update(
        tier.endpoint,
        EndpointInfo(tier, HookRole(tier),
                     ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS));
    if (!s.ok()) return s;
  }
  absl::StatusOr<std::vector<PolicyEntry>> entries =
      CompilePolicyEntries(SegmentationRules());
  if (!entries.ok()) return entries.status();
  for (const PolicyEntry& entry : *entries) {
    if (absl::Status s = datapath_->WritePolicy(entry.key, entry.value);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status SegmentationLab::AttachPrograms(Tier& tier) {
  const TopologyLink& link = *tier.hook;
  const std::string where =
      absl::StrCat(link.ifname, " in netns ", link.netns.name);
  absl::StatusOr<NetnsGuard> guard = NetnsGuard::Enter(link.netns.path);
  if (!guard.ok()) return guard.status();
  const uint32_t ifindex = tier.endpoint.ifindex;
  const bool xdp =
      options_.xdp_on_host_veths && HookRole(tier) == HOOK_ROLE_HOST_VETH;
  absl::StatusOr<Attachment> ingress =
      xdp ? Attachment::AttachXdp(datapath_->xdp_fd(), ifindex,
                                  XdpAttachMode::kGeneric)
          : Attachment::AttachTc(datapath_->tc_ingress_fd(), ifindex,
                                 TcHook::kIngress, options_.tc_mode);
  if (!ingress.ok()) return Annotate(ingress.status(), where);
  attachments_.push_back(*std::move(ingress));
  absl::StatusOr<Attachment> egress = Attachment::AttachTc(
      datapath_->tc_egress_fd(), ifindex, TcHook::kEgress, options_.tc_mode);
  if (!egress.ok()) return Annotate(egress.status(), where);
  attachments_.push_back(*std::move(egress));
  return guard->Restore();
}

absl::Status SegmentationLab::Teardown() {
  absl::Status first_error;
  auto note = [&first_error](const absl::Status& status) {
    if (!status.ok() && first_error.ok()) first_error = status;
  };
  for (Attachment& attachment : attachments_) note(attachment.Detach());
  attachments_.clear();
  event_reader_.reset();
  datapath_.reset();
  if (!instance_.empty()) {
    note(UninstallInstance(instance_));
    // Leave the pin root as we found it; rmdir fails, harmlessly, if
    // someone else's instance is in there now.
    if (created_pin_root_) ::rmdir(STOCKADE_PIN_DIR);
    instance_.clear();
  }
  note(topology_.Teardown());
  return first_error;
}

std::vector<const Tier*> SegmentationLab::chain() const {
  std::vector<const Tier*> chain;
  for (size_t i = 0; i < kChainLength; ++i) chain.push_back(&tiers_[i]);
  return chain;
}

const Tier* SegmentationLab::web_macvlan() const {
  return tiers_.size() > kChainLength ? &tiers_[kChainLength] : nullptr;
}

const Tier* SegmentationLab::backend_macvlan() const {
  return tiers_.size() > kChainLength + 1 ? &tiers_[kChainLength + 1] : nullptr;
}

absl::StatusOr<ProbeResult> SegmentationLab::Run(const Probe& probe,
                                                 const ProbeOptions& options) {
  const std::string& target = probe.to->address(probe.family);
  if (probe.protocol == ProbeProtocol::kIcmpEcho) {
    return ProbeEcho(probe.from->netns.path, target, options.timeout);
  }
  absl::StatusOr<Listener> listener = Listener::Open(
      probe.to->netns.path,
      probe.protocol == ProbeProtocol::kTcp ? Transport::kTcp : Transport::kUdp,
      target, probe.port);
  if (!listener.ok()) return listener.status();
  return ProbeListener(probe.from->netns.path, *listener, options);
}

absl::StatusOr<std::vector<drop_event>> SegmentationLab::DrainEvents() {
  absl::StatusOr<int> drained = event_reader_->Drain();
  if (!drained.ok()) return drained.status();
  return std::exchange(pending_events_, {});
}

absl::Status SegmentationLab::SetEndpointFlags(const Tier& tier,
                                               uint32_t flags) {
  if (!tier.hook) {
    return absl::FailedPreconditionError(
        absl::StrCat("tier ", tier.name, " is not enforced"));
  }
  absl::StatusOr<std::optional<endpoint_info>> info =
      datapath_->endpoints().Lookup(tier.endpoint);
  if (!info.ok()) return info.status();
  if (!info->has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no endpoint record for tier ", tier.name));
  }
  endpoint_info updated = **info;
  updated.flags = flags;
  return datapath_->endpoints().Update(tier.endpoint, updated);
}

}  // namespace stockade::lab
