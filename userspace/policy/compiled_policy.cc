// SPDX-License-Identifier: Apache-2.0
//
// Renderings of the compiler's output: endpoint flags, rule origins, Describe.
#include <netinet/in.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "stockade/policy/policy_compiler.h"

namespace stockade {
namespace {

std::string ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case 0:
      return "any";
    case IPPROTO_TCP:
      return "tcp";
    case IPPROTO_UDP:
      return "udp";
    case IPPROTO_SCTP:
      return "sctp";
    case IPPROTO_ICMP:
      return "icmp";
    case IPPROTO_ICMPV6:
      return "icmpv6";
    default:
      return absl::StrCat("proto", protocol);
  }
}

// "tcp/5432", "any/8000-8999", "icmp/8" (the type), "udp", "any".
std::string PortsText(const DatapathRule& rule) {
  std::string out = ProtocolName(rule.protocol);
  if (rule.ports.IsAny()) return out;
  absl::StrAppend(&out, "/", rule.ports.first);
  if (rule.ports.last != rule.ports.first) absl::StrAppend(&out, "-", rule.ports.last);
  return out;
}

std::string EndpointLine(const EndpointPolicy& ep) {
  std::vector<std::string> enforced;
  if (ep.enforce_ingress) enforced.push_back("ingress");
  if (ep.enforce_egress) enforced.push_back("egress");
  std::string out = absl::StrCat("endpoint ", ep.id, " identity ", FormatIdentity(ep.identity), ": ");
  absl::StrAppend(&out, enforced.empty() ? "not enforced" : absl::StrCat("enforce ", absl::StrJoin(enforced, "+")));
  if (ep.audit) absl::StrAppend(&out, ", audit");
  return out;
}

}  // namespace

uint32_t EndpointPolicy::Flags() const {
  uint32_t flags = 0;
  if (enforce_ingress) flags |= ENDPOINT_F_ENFORCE_INGRESS;
  if (enforce_egress) flags |= ENDPOINT_F_ENFORCE_EGRESS;
  if (audit) flags |= ENDPOINT_F_AUDIT;
  return flags;
}

std::string RuleOrigin::ToString() const {
  return absl::StrCat(policy, " ", RuleSectionName(section), "[", index, "] (", location, ")");
}

std::string CompiledPolicy::Describe() const {
  std::string out;
  for (const EndpointPolicy& ep : endpoints) {
    absl::StrAppend(&out, EndpointLine(ep), "\n");
    if (!ep.policies.empty()) absl::StrAppend(&out, "  policies: ", absl::StrJoin(ep.policies, ", "), "\n");
    for (const std::string& note : ep.notes) absl::StrAppend(&out, "  note: ", note, "\n");
  }
  for (const CidrIdentity& cidr : cidr_identities)
    absl::StrAppend(&out, "cidr ", cidr.prefix.ToString(), " identity ", cidr.identity, "\n");
  for (const DatapathRule& rule : rules) {
    const RuleOrigin& origin = rule_origins.at(rule.rule_id);
    const bool ingress = rule.direction == DIR_INGRESS;
    absl::StrAppend(&out, ingress ? "ingress " : "egress ", FormatIdentity(rule.local_identity),
                    ingress ? " <- " : " -> ", FormatIdentity(rule.remote_identity), " ", PortsText(rule), " ",
                    rule.action == POLICY_ACTION_DENY ? "deny" : "allow", rule.require_tls ? " requireTLS" : "",
                    rule.audit ? " audit" : "", " [",
                    origin.policy, " ", RuleSectionName(origin.section), "[", origin.index, "]]\n");
  }
  return out;
}

}  // namespace stockade
