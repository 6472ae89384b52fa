// SPDX-License-Identifier: Apache-2.0
#include "stockade/policy/policy_parser.h"

#include <netinet/in.h>

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "userspace/policy/yaml_reader.h"

namespace stockade {
namespace {

constexpr absl::string_view kApiVersion = "stockade/v1";
constexpr absl::string_view kKind = "Policy";

// A keyword and what it stands for. Keywords match in any case: "tcp" can only mean TCP.
template <typename T>
struct Named {
  const char* name;
  T value;
};
constexpr Named<uint8_t> kProtocols[] = {{"TCP", IPPROTO_TCP},   {"UDP", IPPROTO_UDP},       {"SCTP", IPPROTO_SCTP},
                                         {"ICMP", IPPROTO_ICMP}, {"ICMPv6", IPPROTO_ICMPV6}, {"ANY", 0}};
constexpr Named<Entity> kEntities[] = {{"host", Entity::kHost},
                                       {"remote-host", Entity::kRemoteHost},
                                       {"world", Entity::kWorld},
                                       {"unmanaged", Entity::kUnmanaged},
                                       {"all", Entity::kAll}};
constexpr Named<SelectorOperator> kOperators[] = {{"In", SelectorOperator::kIn},
                                                  {"NotIn", SelectorOperator::kNotIn},
                                                  {"Exists", SelectorOperator::kExists},
                                                  {"DoesNotExist", SelectorOperator::kDoesNotExist}};
constexpr Named<EnforcementMode> kModes[] = {
    {"default", EnforcementMode::kDefault}, {"always", EnforcementMode::kAlways}, {"never", EnforcementMode::kNever}};

template <typename T, size_t N>
T ReadNamed(const YamlValue& value, const Named<T> (&table)[N]) {
  const std::string text = value.String();
  std::vector<absl::string_view> names;
  for (const Named<T>& entry : table) {
    if (absl::EqualsIgnoreCase(text, entry.name)) return entry.value;
    names.push_back(entry.name);
  }
  value.Fail(absl::StrCat("\"", text, "\" is not one of ", absl::StrJoin(names, ", ")));
}

// The peer keys of a rule: from* for ingress, to* for egress.
struct PeerKeys {
  const char* endpoints;
  const char* entities;
  const char* cidr;
  const char* cidr_set;
};
constexpr PeerKeys kIngressPeers = {"fromEndpoints", "fromEntities", "fromCIDR", "fromCIDRSet"};
constexpr PeerKeys kEgressPeers = {"toEndpoints", "toEntities", "toCIDR", "toCIDRSet"};

// Kubernetes-style: lowercase letters, digits, '-' and '.', alphanumeric at both ends.
std::string ReadName(const YamlValue& value) {
  const std::string name = value.String();
  auto allowed = [](char c) { return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '.'; };
  auto alnum = [](char c) { return absl::ascii_islower(c) || absl::ascii_isdigit(c); };
  if (name.empty() || name.size() > 253 || !std::all_of(name.begin(), name.end(), allowed) || !alnum(name.front()) ||
      !alnum(name.back()))
    value.Fail(absl::StrCat("\"", name,
                            "\" is not a name: lowercase letters, digits, '-' and '.', "
                            "starting and ending with a letter or digit"));
  return name;
}

// Policy names identity labels without their container-label prefixes.
std::string CheckLabelKey(const YamlValue& where, const std::string& key) {
  if (key.empty()) where.Fail("empty label key");
  if (absl::StartsWith(key, kStockadeLabelPrefix))
    where.Fail(absl::StrCat("write label keys without 'stockade.': '", key.substr(kStockadeLabelPrefix.size()), "'"));
  if (absl::StartsWith(key, "com.docker.compose.") ||
      (absl::StartsWith(key, "compose.") && key != kComposeProjectKey && key != kComposeServiceKey))
    where.Fail(
        absl::StrCat("'", key, "': compose's labels are named ", kComposeProjectKey, " and ", kComposeServiceKey));
  if (key == kNetworkKeyPrefix) where.Fail(absl::StrCat("no network name after '", kNetworkKeyPrefix, "'"));
  return key;
}

// A network label has one value; any other would select nothing, silently.
std::string CheckLabelValue(const YamlValue& where, const std::string& key, const std::string& value) {
  if (absl::StartsWith(key, kNetworkKeyPrefix) && value != kNetworkAttached)
    where.Fail(absl::StrCat("'", key, "' is '", kNetworkAttached, "' on every container on that network, never '",
                            value, "'"));
  return value;
}

SelectorRequirement ReadRequirement(const YamlValue& value) {
  YamlMap map = value.Map({"key", "operator", "values"});
  SelectorRequirement req;
  const YamlValue& key = map.Get("key");
  req.key = CheckLabelKey(key, key.String());
  const YamlValue& op = map.Get("operator");
  req.op = ReadNamed(op, kOperators);

  const bool takes_values = req.op == SelectorOperator::kIn || req.op == SelectorOperator::kNotIn;
  const YamlValue* values = map.Find("values");
  if (takes_values && values == nullptr) value.Fail(absl::StrCat(op.String(), " needs values"));
  if (!takes_values && values != nullptr) values->Fail(absl::StrCat(op.String(), " takes no values"));
  if (values != nullptr)
    for (const YamlValue& v : values->List()) req.values.push_back(CheckLabelValue(v, req.key, v.String()));
  return req;
}

LabelSelector ReadSelector(const YamlValue& value) {
  YamlMap map = value.Map({"matchLabels", "matchExpressions"});
  LabelSelector selector;
  if (const YamlValue* labels = map.Find("matchLabels"))
    for (const YamlEntry& label : labels->Entries())
      selector.match_labels[CheckLabelKey(label.value, label.key)] =
          CheckLabelValue(label.value, label.key, label.value.String());
  if (const YamlValue* expressions = map.Find("matchExpressions"))
    for (const YamlValue& e : expressions->List()) selector.match_expressions.push_back(ReadRequirement(e));
  return selector;
}

IpPrefix ReadPrefix(const YamlValue& value) {
  absl::StatusOr<IpPrefix> prefix = ParseIpPrefix(value.String());
  if (!prefix.ok()) value.Fail(std::string(prefix.status().message()));
  return *prefix;
}

CidrPeer ReadCidrSet(const YamlValue& value) {
  YamlMap map = value.Map({"cidr", "except"});
  CidrPeer peer{.cidr = ReadPrefix(map.Get("cidr"))};
  if (const YamlValue* except = map.Find("except")) {
    for (const YamlValue& e : except->List()) {
      IpPrefix prefix = ReadPrefix(e);
      if (!PrefixCovers(peer.cidr, prefix) || prefix.length == peer.cidr.length)
        e.Fail(absl::StrCat(prefix.ToString(), " is not a smaller part of ", peer.cidr.ToString()));
      peer.except.push_back(prefix);
    }
  }
  return peer;
}

// A port number of at most five digits, nothing else (no sign, no spaces).
bool ParsePortNumber(absl::string_view text, uint32_t min, uint32_t max, uint32_t& out) {
  if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), absl::ascii_isdigit)) return false;
  return absl::SimpleAtoi(text, &out) && out >= min && out <= max;
}

// requireTLS of a port: its own, or its toPorts element's (Cilium puts TLS
// settings on the element, beside `ports`; the issue wrote it beside the
// port: both are read). Only an allow of TCP can require TLS.
bool ReadRequireTls(const YamlValue* own, const YamlValue* element, uint8_t protocol, bool deny) {
  if (own != nullptr && element != nullptr && own->Bool() != element->Bool())
    own->Fail("contradicts requireTLS of its toPorts entry");
  const YamlValue* flag = own != nullptr ? own : element;
  if (flag == nullptr || !flag->Bool()) return false;
  if (deny) flag->Fail("a deny rule cannot require TLS: requireTLS belongs on an allow rule");
  if (protocol != IPPROTO_TCP)
    flag->Fail(absl::StrCat("requireTLS is for TCP only, and the port's protocol is ", ProtocolKeyword(protocol),
                            protocol == 0 ? " (write protocol: TCP)" : ""));
  return true;
}

// {port: "80"}, {port: "8000-8999"}, {port: "8000", endPort: 8999}, with a
// protocol; for ICMP and ICMPv6 the "port" is the ICMP type.
PortProtocol ReadPort(const YamlValue& value, const YamlValue* element_tls, bool deny) {
  YamlMap map = value.Map({"port", "endPort", "protocol", "requireTLS"});
  PortProtocol out;
  if (const YamlValue* protocol = map.Find("protocol")) out.protocol = ReadNamed(*protocol, kProtocols);
  out.require_tls = ReadRequireTls(map.Find("requireTLS"), element_tls, out.protocol, deny);
  const bool icmp = out.protocol == IPPROTO_ICMP || out.protocol == IPPROTO_ICMPV6;
  const uint32_t min = icmp ? 0 : 1, max = icmp ? 255 : 65535;

  const YamlValue* port = map.Find("port");
  const YamlValue* end_port = map.Find("endPort");
  if (port == nullptr) {
    if (end_port != nullptr) end_port->Fail("endPort needs port");
    return out;
  }
  const std::string text = port->String();
  std::vector<absl::string_view> bounds = absl::StrSplit(text, absl::MaxSplits('-', 1));
  uint32_t first = 0, last = 0;
  if (!ParsePortNumber(bounds[0], min, max, first) ||
      !ParsePortNumber(bounds.size() == 2 ? bounds[1] : bounds[0], min, max, last))
    port->Fail(absl::StrCat("\"", text, "\" is not ", icmp ? "an ICMP type (0-255)" : "a port", " or range"));
  if (end_port != nullptr) {
    if (bounds.size() == 2) end_port->Fail("endPort with a range in port");
    last = static_cast<uint32_t>(end_port->Integer(max));
  }
  if (first > last) port->Fail(absl::StrCat("range ", first, "-", last, " is empty"));
  out.ports = {static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
  return out;
}

PolicyRule ReadRule(const YamlValue& value, RuleSection section, const std::string& source) {
  const PeerKeys& keys = RuleSectionDirection(section) == DIR_INGRESS ? kIngressPeers : kEgressPeers;
  YamlMap map = value.Map({keys.endpoints, keys.entities, keys.cidr, keys.cidr_set, "toPorts"});
  PolicyRule rule{.location = absl::StrCat(source, ":", value.line())};
  if (const YamlValue* list = map.Find(keys.endpoints))
    for (const YamlValue& v : list->List()) rule.endpoints.push_back(ReadSelector(v));
  if (const YamlValue* list = map.Find(keys.entities))
    for (const YamlValue& v : list->List()) rule.entities.push_back(ReadNamed(v, kEntities));
  if (const YamlValue* list = map.Find(keys.cidr))
    for (const YamlValue& v : list->List()) rule.cidrs.push_back({.cidr = ReadPrefix(v)});
  if (const YamlValue* list = map.Find(keys.cidr_set))
    for (const YamlValue& v : list->List()) rule.cidrs.push_back(ReadCidrSet(v));
  if (const YamlValue* list = map.Find("toPorts")) {
    for (const YamlValue& v : list->List()) {
      YamlMap element = v.Map({"ports", "requireTLS"});
      for (const YamlValue& p : element.Get("ports").List())
        rule.ports.push_back(ReadPort(p, element.Find("requireTLS"), RuleSectionDenies(section)));
    }
  }
  if (rule.AnyPeer() && rule.ports.empty())
    value.Fail(absl::StrCat("the rule names neither peers nor ports; for any peer write ", keys.entities, ": [all]"));
  return rule;
}

// The spec of a file policy, or the whole text of a label policy.
void ReadSpec(const YamlValue& spec, bool from_label, const std::string& source, Policy& policy) {
  YamlMap map =
      spec.Map({"endpointSelector", "enforcementMode", "audit", "ingress", "ingressDeny", "egress", "egressDeny"});
  if (const YamlValue* selector = map.Find("endpointSelector")) {
    if (from_label) selector->Fail("a label policy selects the container that carries it: remove endpointSelector");
    policy.endpoint_selector = ReadSelector(*selector);
  } else if (!from_label) {
    spec.Fail("missing key 'endpointSelector'");
  }
  if (const YamlValue* mode = map.Find("enforcementMode")) policy.mode = ReadNamed(*mode, kModes);
  if (const YamlValue* audit = map.Find("audit")) {
    policy.audit = audit->Bool();
    // An audit policy only reports; `never` would open what others enforce.
    if (policy.audit && policy.mode == EnforcementMode::kNever)
      audit->Fail("an audit policy cannot have enforcementMode never");
  }

  bool any_section = false;
  for (RuleSection section : kRuleSections) {
    const YamlValue* list = map.Find(RuleSectionName(section));
    if (list == nullptr) continue;
    std::vector<PolicyRule> rules;
    for (const YamlValue& v : list->ListOrEmpty()) rules.push_back(ReadRule(v, section, source));
    policy.sections[static_cast<size_t>(section)] = std::move(rules);
    any_section = true;
  }
  if (!any_section && policy.mode == EnforcementMode::kDefault)
    spec.Fail("no ingress, ingressDeny, egress or egressDeny: the policy would do nothing");
}

Policy ReadDocument(const YamlValue& doc, const std::string& source) {
  YamlMap map = doc.Map({"apiVersion", "kind", "metadata", "spec"});
  const YamlValue& api_version = map.Get("apiVersion");
  if (api_version.String() != kApiVersion)
    api_version.Fail(absl::StrCat("\"", api_version.String(), "\" is not supported (expected ", kApiVersion, ")"));
  const YamlValue& kind = map.Get("kind");
  if (kind.String() != kKind)
    kind.Fail(absl::StrCat("\"", kind.String(), "\" is not supported (expected ", kKind, ")"));
  Policy policy{.name = ReadName(map.Get("metadata").Map({"name"}).Get("name")),
                .location = absl::StrCat(source, ":", doc.line())};
  ReadSpec(map.Get("spec"), /*from_label=*/false, source, policy);
  return policy;
}

// Runs `read`, turning the first syntax or schema error into "<source>:<line>: <path>: <reason>".
template <typename T, typename Read>
absl::StatusOr<T> Reading(const std::string& source, Read read) {
  try {
    return read();
  } catch (const YamlSchemaError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.line, ": ", e.path, e.path.empty() ? "" : ": ", e.what()));
  }
}

// The documents of a text; empty ones (a trailing ---, only comments) are skipped.
std::vector<YamlValue> Documents(absl::string_view text) {
  std::vector<YamlValue> out;
  for (YamlValue& doc : LoadYamlDocuments(text))
    if (!doc.IsNull()) out.push_back(std::move(doc));
  return out;
}

// Never 0, which marks a policy that did not come from the parser.
uint64_t Fingerprint(absl::string_view text, absl::string_view source, size_t document) {
  return absl::HashOf(text, source, document) | 1;
}

}  // namespace

// The keyword tables serve both ways, so what is written is what is read.
const char* EntityKeyword(Entity entity) {
  for (const Named<Entity>& entry : kEntities)
    if (entry.value == entity) return entry.name;
  return "?";
}

const char* ProtocolKeyword(uint8_t protocol) {
  for (const Named<uint8_t>& entry : kProtocols)
    if (entry.value == protocol) return entry.name;
  return "?";
}

absl::StatusOr<std::vector<Policy>> ParsePolicyText(absl::string_view text, absl::string_view source) {
  const std::string name(source);
  absl::StatusOr<std::vector<Policy>> policies = Reading<std::vector<Policy>>(name, [&] {
    std::vector<Policy> out;
    for (const YamlValue& doc : Documents(text)) {
      out.push_back(ReadDocument(doc, name));
      out.back().fingerprint = Fingerprint(text, name, out.size());
    }
    return out;
  });
  if (!policies.ok()) return policies.status();
  if (absl::Status s = CheckUniquePolicyNames(*policies); !s.ok()) return s;
  return policies;
}

absl::StatusOr<Policy> ParseLabelPolicy(absl::string_view text, absl::string_view container_name) {
  const std::string source = absl::StrCat("container ", container_name, " label ", kPolicyLabel);
  return Reading<Policy>(source, [&] {
    std::vector<YamlValue> docs = Documents(text);
    if (docs.size() != 1)
      throw YamlSchemaError(1, "", absl::StrCat("expected one spec, found ", docs.size(), " documents"));
    Policy policy{.name = absl::StrCat("container/", container_name),
                  .location = absl::StrCat(source, ":", docs[0].line())};
    ReadSpec(docs[0], /*from_label=*/true, source, policy);
    policy.fingerprint = Fingerprint(text, source, 1);
    return policy;
  });
}

absl::Status CheckUniquePolicyNames(const std::vector<const Policy*>& policies) {
  absl::flat_hash_map<absl::string_view, const Policy*> seen;
  seen.reserve(policies.size());
  for (const Policy* policy : policies) {
    auto [it, inserted] = seen.try_emplace(policy->name, policy);
    if (!inserted)
      return absl::InvalidArgumentError(absl::StrCat(
          "policy name '", policy->name, "' is defined twice: ", it->second->location, " and ", policy->location));
  }
  return absl::OkStatus();
}

absl::Status CheckUniquePolicyNames(const std::vector<Policy>& policies) {
  std::vector<const Policy*> pointers;
  pointers.reserve(policies.size());
  for (const Policy& policy : policies) pointers.push_back(&policy);
  return CheckUniquePolicyNames(pointers);
}

}  // namespace stockade
