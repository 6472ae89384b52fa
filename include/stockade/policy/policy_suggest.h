// SPDX-License-Identifier: Apache-2.0
//
// Learn, then enforce: from flows observed while nothing was enforced (or
// only audited) to least-privilege policy files that allow exactly those
// flows. Pure logic: the observations come in as JSON text (`stockadectl
// policy suggest --from-file`, later the agent's own collection) and the
// files go out as text; reading and writing them is the caller's.
//
// The JSON form of the observations (FlowObservations):
//
//   {
//     "endpoints": [                       // optional: every endpoint known while
//       {"name": "db-1",                   // observing, so that a selector is checked
//        "labels": {"tier": "db"}}         // against them all; flows add their own
//     ],
//     "flows": [                           // one aggregate per (local, peer, port, ...)
//       {
//         "local": {"name": "web-1", "labels": {"tier": "web", "compose.service": "web"}},
//         "peer": {"name": "proxy-1", "labels": {"tier": "proxy"}},
//                 // or {"entity": "world", "address": "203.0.113.7"}
//                 // or {"entity": "host"}, {"entity": "remote-host"}, {"entity": "unmanaged"}
//         "direction": "ingress",          // or "egress": the hook that saw it, at the local endpoint
//         "protocol": "tcp",               // tcp, udp, sctp, icmp, icmpv6
//         "server_port": 8080,             // the server's port (ICMP: the request's type)
//         "local_side": "server",          // or "client": which end the local endpoint is
//                                          // (conntrack knows who opened the flow)
//         "verdict": "allowed",            // or "audited", "denied"
//         "count": 12,                     // flows in this aggregate, at least 1
//         "first_seen": "2026-12-07T10:00:00Z",  // RFC 3339
//         "last_seen": "2026-12-07T11:30:00Z"
//       }
//     ]
//   }
//
// Names are optional, for comments. Labels are identity labels as policy
// names them (`tier`, not `stockade.tier`; `compose.service`;
// `network.<name>: attached`). An endpoint with no labels is unmanaged. The local side decides where a rule
// goes, not the direction: a record can come from a reply packet.
#ifndef STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_SUGGEST_H_
#define STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_SUGGEST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "stockade/identity/labels.h"
#include "stockade/net/addresses.h"
#include "stockade/policy/policy.h"

namespace stockade {

struct ObservedEndpoint {
  std::string name;  // the container's name, for comments only
  LabelSet labels;   // identity labels; empty: unmanaged
};

// A known endpoint (`entity` unset), or an entity: host, remote-host, world
// (with its address) or unmanaged.
struct ObservedPeer {
  std::optional<Entity> entity;
  ObservedEndpoint endpoint;       // entity unset only
  std::optional<IpAddress> address;  // world: required; other entities: ignored
};

enum class FlowSide { kClient, kServer };
enum class FlowVerdict { kAllowed, kAudited, kDenied };

struct ObservedFlow {
  ObservedEndpoint local;
  ObservedPeer peer;
  uint8_t direction = DIR_INGRESS;  // informative: the hook that reported it
  uint8_t protocol = 0;             // IPPROTO_TCP, _UDP, _SCTP, _ICMP, _ICMPV6
  uint16_t server_port = 0;         // host order; ICMP: the type
  FlowSide local_side = FlowSide::kServer;
  FlowVerdict verdict = FlowVerdict::kAllowed;
  uint64_t count = 1;
  absl::Time first_seen;
  absl::Time last_seen;
};

struct FlowObservations {
  std::vector<ObservedEndpoint> endpoints;  // known besides the flows' own
  std::vector<ObservedFlow> flows;
};

// The JSON above; errors name `source`, the field and what is wrong:
// "obs.json: flows[3].peer.entity: \"wrld\" is not one of host, remote-host, world, unmanaged".
[[nodiscard]] absl::StatusOr<FlowObservations> ParseFlowObservations(absl::string_view json_text,
                                                                     absl::string_view source);

struct SuggestOptions {
  // World peers as CIDRs, addresses aggregated to these lengths; unset:
  // `world` with the addresses in a comment.
  std::optional<uint8_t> world_ipv4_prefix;
  uint8_t world_ipv6_prefix = 64;  // with world_ipv4_prefix set only; a /64 is one IPv6 subnet
};

struct SuggestedPolicyFile {
  std::string file_name;  // "web.yaml"
  std::string text;       // one policy document, parseable by ParsePolicyText
};

struct PolicySuggestion {
  std::vector<SuggestedPolicyFile> files;  // sorted by file name
  std::vector<std::string> notes;          // what was left out, and why
};

// One policy per local identity (all replicas of a service share one), that
// allows exactly the observed allowed and audited flows; denied ones are
// counted in a note, never allowed. Deterministic: the order of the
// observations does not change a byte. What it writes, and why:
//  - ingress first, as Cilium users expect: each endpoint's file has the
//    ingress it served (`ingress: []` if none), on server ports only;
//  - egress only where no ingress enforces the flow: an endpoint that opened
//    flows to the world, the host, remote-host or unmanaged containers gets
//    an egress section, which then lists its flows to other endpoints too
//    (a section closes its direction); one whose flows all went to other
//    endpoints gets none: their ingress decides;
//  - peers by the fewest identity labels that select exactly the observed
//    peers among the known endpoints (one selector for many clients when one
//    fits, else one per peer), never `{}` and never an address;
//  - the world as `world` (so any outside address, on the ports seen) unless
//    options ask for CIDRs; loopback peers (the embedded DNS resolver)
//    never cross the veth and are skipped;
//  - one rule per set of ports with the same peers, commented with its
//    flows, peers, first and last seen.
// Fails if a world peer has no address, or if a file would not parse (a
// label the parser refuses): it never returns a file the agent would reject.
[[nodiscard]] absl::StatusOr<PolicySuggestion> SuggestPolicies(const FlowObservations& observations,
                                                               const SuggestOptions& options);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_SUGGEST_H_
