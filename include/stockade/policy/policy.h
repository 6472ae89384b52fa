// SPDX-License-Identifier: Apache-2.0
//
// The policy model, as parsed from a policy file or a container's
// stockade.policy label (docs/policy.md). One model, two carriers: a file
// policy selects endpoints with its endpointSelector, a label policy selects
// the container that carries it. Pure logic.
#ifndef STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_H_
#define STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "stockade/net/addresses.h"
#include "stockade/identity/labels.h"
#include "stockade/policy/policy_entries.h"

namespace stockade {

enum class SelectorOperator { kIn, kNotIn, kExists, kDoesNotExist };

struct SelectorRequirement {
  std::string key;
  SelectorOperator op = SelectorOperator::kExists;
  std::vector<std::string> values;  // In and NotIn only
};

// Kubernetes label selector semantics: every matchLabels pair and every
// requirement must hold; NotIn holds when the key is absent. The empty
// selector selects every labelled identity. Selectors never match the
// reserved identities (host, world, unmanaged): entities name those.
struct LabelSelector {
  LabelSet match_labels;
  std::vector<SelectorRequirement> match_expressions;

  bool Matches(const LabelSet& labels) const;
  std::string ToString() const;  // "{tier=db, env In (prod,staging)}"
};

enum class Entity { kHost, kRemoteHost, kWorld, kUnmanaged, kAll };
// As policy text writes them (the parser's keywords): "remote-host"; "TCP", "ICMPv6", "ANY" for 0.
const char* EntityKeyword(Entity entity);
const char* ProtocolKeyword(uint8_t protocol);

struct CidrPeer {
  IpPrefix cidr;
  std::vector<IpPrefix> except;  // each strictly inside cidr
};

// Whether every address of `inner` is in `outer`.
bool PrefixCovers(const IpPrefix& outer, const IpPrefix& inner);

// A protocol and its ports; ICMP and ICMPv6 carry the ICMP type in the port.
struct PortProtocol {
  uint8_t protocol = 0;  // IPPROTO_*; 0: any (ports then apply to TCP, UDP and SCTP)
  PortRange ports;       // the default: all ports (or all ICMP types)
  // TCP allows only: the client's first payload must be a TLS ClientHello.
  bool require_tls = false;
};

struct PolicyRule {
  std::string location;  // "policies/db.yaml:9", where the rule starts
  // Peers; all empty: any peer.
  std::vector<LabelSelector> endpoints;
  std::vector<Entity> entities;
  std::vector<CidrPeer> cidrs;
  std::vector<PortProtocol> ports;  // empty: every protocol and port

  bool AnyPeer() const { return endpoints.empty() && entities.empty() && cidrs.empty(); }
};

// The four rule lists of a spec, in this order everywhere.
enum class RuleSection { kIngress = 0, kIngressDeny = 1, kEgress = 2, kEgressDeny = 3 };
inline constexpr std::array<RuleSection, 4> kRuleSections = {RuleSection::kIngress, RuleSection::kIngressDeny,
                                                             RuleSection::kEgress, RuleSection::kEgressDeny};
const char* RuleSectionName(RuleSection section);   // "ingress", "ingressDeny", ...
uint8_t RuleSectionDirection(RuleSection section);  // DIR_INGRESS or DIR_EGRESS
bool RuleSectionDenies(RuleSection section);

enum class EnforcementMode {
  kDefault,  // default deny in each direction the spec has a section for
  kAlways,   // default deny in both directions
  kNever,    // the selected endpoints are not enforced at all, whatever else selects them
};

struct Policy {
  std::string name;      // file policies: metadata.name; label policies: "container/<name>"
  std::string location;  // where it starts: "policies/db.yaml:1"
  // File policies only; a label policy selects the container carrying it.
  std::optional<LabelSelector> endpoint_selector;
  EnforcementMode mode = EnforcementMode::kDefault;
  bool audit = false;
  // Set by the parser: a hash of the text and the source the policy was read
  // from, which is all it depends on, so equal fingerprints mean equal
  // policies and a compile cache (PolicyCompiler) keeps its rules. 0 for a
  // policy built otherwise: never served from a cache. Edit a parsed policy
  // only after setting it to 0.
  uint64_t fingerprint = 0;
  // Indexed by RuleSection; absent and empty differ: `ingress: []` denies all ingress.
  std::array<std::optional<std::vector<PolicyRule>>, 4> sections;

  const std::optional<std::vector<PolicyRule>>& section(RuleSection s) const {
    return sections[static_cast<size_t>(s)];
  }
  // Whether the policy puts the endpoints it selects in default deny in `direction`.
  bool EnforcesDirection(uint8_t direction) const;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_H_
