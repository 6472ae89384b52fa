// SPDX-License-Identifier: Apache-2.0
//
// A four-tier application as network namespaces standing in for containers,
// with stockade enforcing between them:
//
//   frontend --tcp/80--> web --tcp/8080--> backend --tcp/5432--> db
//
// Each tier's eth0 is a veth whose other end sits, like Docker's host-side
// veth, on a bridge. The bridge lives in a "switch" namespace of the lab's
// own, so the host's iptables and br_netfilter settings never matter. The
// datapath's programs are attached to those host-side veths inside the
// switch namespace (role HOOK_ROLE_HOST_VETH).
//
// Optionally a second scene: two macvlan "containers", web-mv and backend-mv,
// children (bridge mode) of a veth in a namespace of the lab. They carry the
// web and backend identities, and the programs sit INSIDE web-mv on its
// macvlan (role HOOK_ROLE_IN_CONTAINER); backend-mv is not enforced.
//
// Everything is named after a random prefix and removed when the lab goes,
// including when Create() fails half way.
#ifndef STOCKADE_TESTLIB_LAB_SEGMENTATION_LAB_H_
#define STOCKADE_TESTLIB_LAB_SEGMENTATION_LAB_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "maps/abi.h"
#include "stockade/datapath/attach.h"
#include "stockade/datapath/datapath.h"
#include "stockade/datapath/event_reader.h"
#include "stockade/policy/policy_entries.h"
#include "testlib/lab/probes.h"
#include "testlib/lab/topology.h"

namespace stockade::lab {

// Identities of the tiers.
inline constexpr uint32_t kFrontendIdentity = 1001;
inline constexpr uint32_t kWebIdentity = 1002;
inline constexpr uint32_t kBackendIdentity = 1003;
inline constexpr uint32_t kDbIdentity = 1004;

// The policy, by rule id. Hop h (1: frontend->web tcp/80, 2: web->backend
// tcp/8080, 3: backend->db tcp/5432) is allowed by rules 10h+k:
//   k=1 client egress tcp/<port>    k=2 server ingress tcp/<port>
//   k=3 client egress udp/53        k=4 server ingress udp/53
//   k=5 client egress icmp echo     k=6 server ingress icmp echo
//   k=7 client egress icmpv6 echo   k=8 server ingress icmpv6 echo
// Skipping a tier is denied outright, any protocol:
//   91 frontend -> backend   92 frontend -> db   93 web -> db
// Everything else (lateral and backward moves, other ports) meets the
// default deny and is reported with rule 0. Replies pass by conntrack.
std::vector<DatapathRule> SegmentationRules();
inline constexpr uint16_t kDnsPort = 53;

enum class IpFamily { kIpv4, kIpv6 };

// A namespace standing in for a container.
struct Tier {
  std::string name;  // "web"
  uint32_t identity = 0;
  TopologyNetns netns;
  TopologyLink eth0;
  std::string ipv4;             // "10.77.0.12"
  std::string ipv6;             // "fd00:77::12"
  std::string ipv6_link_local;  // as the kernel made it on eth0
  MacAddress mac{};             // eth0's
  // Where stockade enforces for the tier; none for a tier it leaves alone.
  std::optional<TopologyLink> hook;
  endpoint_key endpoint{};  // the key of its endpoint record, if hooked

  const std::string& address(IpFamily family) const {
    return family == IpFamily::kIpv4 ? ipv4 : ipv6;
  }
};

enum class ProbeProtocol { kTcp, kUdp, kIcmpEcho };

// One flow to try.
struct Probe {
  const Tier* from = nullptr;
  const Tier* to = nullptr;
  ProbeProtocol protocol = ProbeProtocol::kTcp;
  uint16_t port = 0;  // unused for ICMP
  IpFamily family = IpFamily::kIpv4;
};

// "frontend -> web tcp/80 IPv4".
std::string Describe(const Probe& probe);
// Whether a drop event reports this probe's flow (addresses, protocol and,
// for TCP and UDP, the destination port).
bool EventIsFor(const drop_event& event, const Probe& probe);

struct SegmentationLabOptions {
  // How TC programs are attached everywhere.
  TcAttachMode tc_mode = TcAttachMode::kAuto;
  // On the host-side veths, stockade_xdp (generic mode) judges what a tier
  // sends, in place of stockade_tc_ingress.
  bool xdp_on_host_veths = false;
  // Pin the maps under /sys/fs/bpf/stockade/lab-<prefix>; otherwise nothing
  // is pinned.
  bool pin_maps = false;
  // Also build the macvlan scene.
  bool macvlan_siblings = false;
  uint32_t conntrack_max = 16384;
};

class SegmentationLab {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SegmentationLab>> Create(
      const SegmentationLabOptions& options);
  // Teardown(); errors go to stderr.
  ~SegmentationLab();
  SegmentationLab(const SegmentationLab&) = delete;
  SegmentationLab& operator=(const SegmentationLab&) = delete;

  // Detaches the programs, unloads the datapath, removes its pins and the
  // namespaces. Carries on past errors and returns the first. Afterwards
  // only the destructor may be called.
  [[nodiscard]] absl::Status Teardown();

  const Tier& frontend() const { return tiers_[0]; }
  const Tier& web() const { return tiers_[1]; }
  const Tier& backend() const { return tiers_[2]; }
  const Tier& db() const { return tiers_[3]; }
  // The four above, in chain order.
  std::vector<const Tier*> chain() const;
  // The macvlan scene; nullptr unless asked for.
  const Tier* web_macvlan() const;
  const Tier* backend_macvlan() const;

  Topology& topology() { return topology_; }
  Datapath& datapath() { return *datapath_; }
  const TopologyNetns& switch_netns() const { return switch_netns_; }
  // The pin directory name under /sys/fs/bpf/stockade; empty if unpinned.
  const std::string& instance() const { return instance_; }

  // Listens on the target tier, sends from the source tier, bounded by
  // options.timeout.
  [[nodiscard]] absl::StatusOr<ProbeResult> Run(
      const Probe& probe, const ProbeOptions& options = {});

  // The drop events the datapath reported since the last call.
  [[nodiscard]] absl::StatusOr<std::vector<drop_event>> DrainEvents();

  // Rewrites a tier's endpoint flags (ENDPOINT_F_*), e.g. to stop enforcing
  // one direction.
  [[nodiscard]] absl::Status SetEndpointFlags(const Tier& tier, uint32_t flags);

 private:
  explicit SegmentationLab(const SegmentationLabOptions& options)
      : options_(options) {}

  [[nodiscard]] absl::Status BuildChain();
  [[nodiscard]] absl::Status BuildMacvlanScene();
  [[nodiscard]] absl::Status ReadInterfaceAddresses(Tier& tier);
  [[nodiscard]] absl::Status LoadDatapath();
  [[nodiscard]] absl::Status WriteMaps();
  [[nodiscard]] absl::Status AttachPrograms(Tier& tier);
  endpoint_info EndpointInfo(const Tier& tier, uint8_t role,
                             uint32_t flags) const;

  SegmentationLabOptions options_;
  Topology topology_;
  TopologyNetns switch_netns_;
  // The chain, then the macvlan scene if built. Never resized after
  // building: the accessors hand out references.
  std::vector<Tier> tiers_;
  std::string instance_;
  bool created_pin_root_ = false;  // /sys/fs/bpf/stockade did not exist
  std::unique_ptr<Datapath> datapath_;
  std::unique_ptr<EventReader> event_reader_;
  std::vector<drop_event> pending_events_;
  std::vector<Attachment> attachments_;
};

}  // namespace stockade::lab

#endif  // STOCKADE_TESTLIB_LAB_SEGMENTATION_LAB_H_
