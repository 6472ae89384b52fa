// SPDX-License-Identifier: Apache-2.0
#include "stockade/policy/policy_compiler.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "stockade/policy/policy_parser.h"
#include "userspace/policy/rule_ids.h"

namespace stockade {
namespace {

// A policy in force, and for a label policy the endpoint that carries it.
struct AppliedPolicy {
  const Policy* policy;
  const PolicyEndpoint* carrier = nullptr;  // label policies only
};

// What the policies selecting one identity make of it.
struct IdentityDecision {
  bool enforce[DIR_MAX] = {false, false};
  bool audit = false;
  std::vector<const AppliedPolicy*> applied;  // whose rules go into the map
  std::vector<std::string> notes;
};

bool EnforcesAny(const Policy& policy) {
  return policy.EnforcesDirection(DIR_INGRESS) || policy.EnforcesDirection(DIR_EGRESS);
}

void EnforceAsAnyOf(const std::vector<const AppliedPolicy*>& policies, IdentityDecision& d) {
  for (uint8_t dir : {DIR_INGRESS, DIR_EGRESS})
    d.enforce[dir] = std::any_of(policies.begin(), policies.end(),
                                 [dir](const AppliedPolicy* a) { return a->policy->EnforcesDirection(dir); });
}

// An audit policy never changes what is forwarded, it only reports: its rules
// apply only where nothing else enforces, with the endpoint's audit flag set
// (the flag is per endpoint, so it cannot be set beside an enforcing policy).
// `never` removes enforcement whatever else selects the identity.
IdentityDecision Decide(const std::vector<const AppliedPolicy*>& selecting) {
  IdentityDecision d;
  std::vector<const AppliedPolicy*> enforcing, audits;
  const AppliedPolicy* never = nullptr;
  for (const AppliedPolicy* a : selecting) {
    if (a->policy->audit) {
      audits.push_back(a);
      continue;
    }
    d.applied.push_back(a);
    if (a->policy->mode == EnforcementMode::kNever && never == nullptr) never = a;
    if (EnforcesAny(*a->policy)) enforcing.push_back(a);
  }
  if (never != nullptr) {
    d.notes.push_back(absl::StrCat("not enforced: policy '", never->policy->name, "' (", never->policy->location,
                                   ") has enforcementMode never"));
  } else if (!enforcing.empty()) {
    EnforceAsAnyOf(enforcing, d);
    for (const AppliedPolicy* a : audits)
      d.notes.push_back(absl::StrCat("audit policy '", a->policy->name, "' is not applied: policy '",
                                     enforcing.front()->policy->name, "' enforces this endpoint"));
  } else if (!audits.empty()) {
    d.applied = audits;
    EnforceAsAnyOf(audits, d);
    d.audit = true;
  }
  return d;
}

class Compiler {
 public:
  Compiler(const PolicyInputs& inputs, IdentityAllocator& allocator) : inputs_(inputs), allocator_(allocator) {}

  absl::StatusOr<CompiledPolicy> Run();

 private:
  absl::Status CollectPolicies();
  absl::Status CollectIdentities();
  absl::Status AllocateCidrIdentities();
  std::vector<const AppliedPolicy*> Selecting(uint32_t identity, const LabelSet& labels) const;
  std::set<uint32_t> Remotes(const PolicyRule& rule) const;
  void EmitRules(const Policy& policy, uint32_t local, const RuleIds& ids);

  const PolicyInputs& inputs_;
  IdentityAllocator& allocator_;
  std::vector<AppliedPolicy> applied_;
  std::map<uint32_t, LabelSet> labelled_;  // every label identity, endpoints' and known
  std::map<IpPrefix, uint32_t, IpPrefixLess> cidr_ids_;
  CompiledPolicy out_;
};

absl::Status Compiler::CollectPolicies() {
  std::vector<const Policy*> files;
  for (const Policy& policy : inputs_.policies) files.push_back(&policy);
  files.insert(files.end(), inputs_.policies_held.begin(), inputs_.policies_held.end());
  for (const Policy* policy : files) {
    if (!policy->endpoint_selector)
      return absl::InvalidArgumentError(absl::StrCat("policy '", policy->name, "' has no endpointSelector"));
    applied_.push_back({policy});
  }
  for (const PolicyEndpoint& ep : inputs_.endpoints) {
    if (!ep.label_policy) continue;
    // Rules are keyed by identity; every container without labels shares IDENTITY_UNMANAGED.
    if (ep.identity == IDENTITY_UNMANAGED) continue;
    if (ep.label_policy->endpoint_selector)
      return absl::InvalidArgumentError(absl::StrCat("endpoint ", ep.id, ": its label policy has an endpointSelector"));
    applied_.push_back({&*ep.label_policy, &ep});
  }
  std::vector<const Policy*> all;
  all.reserve(applied_.size());
  for (const AppliedPolicy& a : applied_) all.push_back(a.policy);
  return CheckUniquePolicyNames(all);
}

absl::Status Compiler::CollectIdentities() {
  auto add = [this](uint32_t identity, const LabelSet& labels, const std::string& who) -> absl::Status {
    if (identity < STOCKADE_IDENTITY_FIRST_ALLOCATED || labels.empty())
      return absl::InvalidArgumentError(absl::StrCat(who, ": identity ", FormatIdentity(identity), " with labels ",
                                                     FormatLabels(labels), " is not a label identity"));
    auto [it, inserted] = labelled_.try_emplace(identity, labels);
    if (!inserted && it->second != labels)
      return absl::InvalidArgumentError(absl::StrCat(who, ": identity ", identity, " has labels ", FormatLabels(labels),
                                                     " and elsewhere ", FormatLabels(it->second)));
    return absl::OkStatus();
  };
  for (const PolicyEndpoint& ep : inputs_.endpoints) {
    if (ep.identity == IDENTITY_UNMANAGED && ep.labels.empty()) continue;
    if (absl::Status s = add(ep.identity, ep.labels, absl::StrCat("endpoint ", ep.id)); !s.ok()) return s;
  }
  for (const KnownIdentity& known : inputs_.identities)
    if (absl::Status s = add(known.identity, known.labels, "known identity"); !s.ok()) return s;
  return absl::OkStatus();
}

absl::Status Compiler::AllocateCidrIdentities() {
  std::vector<IpPrefix> prefixes;
  for (const AppliedPolicy& a : applied_) {
    for (RuleSection section : kRuleSections) {
      if (!a.policy->section(section)) continue;
      for (const PolicyRule& rule : *a.policy->section(section)) {
        for (const CidrPeer& peer : rule.cidrs) {
          prefixes.push_back(peer.cidr);
          prefixes.insert(prefixes.end(), peer.except.begin(), peer.except.end());
        }
      }
    }
  }
  // In prefix order: the allocator's table is walked where it was walked
  // last, and cidr_ids_ grows at its end (100k tree inserts in rule order
  // missed the cache at every level).
  std::sort(prefixes.begin(), prefixes.end(), IpPrefixLess());
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
  for (const IpPrefix& prefix : prefixes) {
    absl::StatusOr<uint32_t> id = allocator_.ForCidr(prefix);
    if (!id.ok()) return id.status();
    cidr_ids_.emplace_hint(cidr_ids_.end(), prefix, *id);
  }
  for (const auto& [prefix, id] : cidr_ids_) out_.cidr_identities.push_back({prefix, id});
  return absl::OkStatus();
}

std::vector<const AppliedPolicy*> Compiler::Selecting(uint32_t identity, const LabelSet& labels) const {
  std::vector<const AppliedPolicy*> out;
  for (const AppliedPolicy& a : applied_) {
    const bool selects =
        a.carrier != nullptr ? a.carrier->identity == identity : a.policy->endpoint_selector->Matches(labels);
    if (selects) out.push_back(&a);
  }
  return out;
}

// The remote identities a rule's peers stand for; {IDENTITY_ANY} for any peer.
// A CIDR peer is every CIDR identity inside it and outside its excepts: the
// ipcache gives an address the identity of its longest prefix, so nested
// prefixes from other rules and the excepts themselves are separate identities.
std::set<uint32_t> Compiler::Remotes(const PolicyRule& rule) const {
  if (rule.AnyPeer() || std::find(rule.entities.begin(), rule.entities.end(), Entity::kAll) != rule.entities.end())
    return {IDENTITY_ANY};
  std::set<uint32_t> out;
  for (Entity entity : rule.entities) {
    switch (entity) {
      case Entity::kHost:
        out.insert(IDENTITY_HOST);
        break;
      case Entity::kUnmanaged:
        out.insert(IDENTITY_UNMANAGED);
        break;
      case Entity::kWorld:  // outside every container and the host: CIDR identities too
        out.insert(IDENTITY_WORLD);
        for (const auto& [prefix, id] : cidr_ids_) out.insert(id);
        break;
      case Entity::kAll:
        break;
    }
  }
  for (const LabelSelector& selector : rule.endpoints)
    for (const auto& [id, labels] : labelled_)
      if (selector.Matches(labels)) out.insert(id);
  for (const CidrPeer& peer : rule.cidrs) {
    // The prefixes inside peer.cidr are one run of the map (ordered by
    // address, then length) starting at the peer itself: a walk over all
    // CIDR identities here made 100k fromCIDR rules cost 100k x 100k.
    for (auto it = cidr_ids_.lower_bound(peer.cidr); it != cidr_ids_.end() && peer.cidr.Contains(it->first.address);
         ++it) {
      const auto& [prefix, id] = *it;
      auto excepted = [&prefix](const IpPrefix& e) { return PrefixCovers(e, prefix); };
      if (PrefixCovers(peer.cidr, prefix) && std::none_of(peer.except.begin(), peer.except.end(), excepted))
        out.insert(id);
    }
  }
  return out;
}

void Compiler::EmitRules(const Policy& policy, uint32_t local, const RuleIds& ids) {
  for (RuleSection section : kRuleSections) {
    if (!policy.section(section)) continue;
    const std::vector<PolicyRule>& rules = *policy.section(section);
    const bool deny = RuleSectionDenies(section);
    for (size_t i = 0; i < rules.size(); ++i) {
      static const std::vector<PortProtocol> kAnyPort = {{}};
      const std::vector<PortProtocol>& ports = rules[i].ports.empty() ? kAnyPort : rules[i].ports;
      for (uint32_t remote : Remotes(rules[i])) {
        for (const PortProtocol& port : ports) {
          out_.rules.push_back({.rule_id = ids.Id(policy, section, i),
                                .local_identity = local,
                                .remote_identity = remote,
                                .direction = RuleSectionDirection(section),
                                .protocol = port.protocol,
                                .ports = port.ports,
                                .action = static_cast<uint8_t>(deny ? POLICY_ACTION_DENY : POLICY_ACTION_ALLOW),
                                .audit = (deny || port.require_tls) && policy.audit,
                                .require_tls = !deny && port.require_tls});
        }
      }
    }
  }
}

absl::StatusOr<CompiledPolicy> Compiler::Run() {
  if (absl::Status s = CollectPolicies(); !s.ok()) return s;
  if (absl::Status s = CollectIdentities(); !s.ok()) return s;
  if (absl::Status s = AllocateCidrIdentities(); !s.ok()) return s;

  std::vector<const Policy*> policies;
  for (const AppliedPolicy& a : applied_) policies.push_back(a.policy);
  const RuleIds ids(policies);
  out_.rule_origins = ids.origins();

  std::map<uint32_t, IdentityDecision> decisions;
  for (const PolicyEndpoint& ep : inputs_.endpoints) {
    if (ep.identity == IDENTITY_UNMANAGED || decisions.contains(ep.identity)) continue;
    IdentityDecision& d = decisions[ep.identity] = Decide(Selecting(ep.identity, ep.labels));
    for (const AppliedPolicy* a : d.applied) EmitRules(*a->policy, ep.identity, ids);
  }

  for (const PolicyEndpoint& ep : inputs_.endpoints) {
    EndpointPolicy result{.id = ep.id, .identity = ep.identity};
    if (ep.identity == IDENTITY_UNMANAGED) {
      if (ep.label_policy)
        result.notes.push_back(absl::StrCat(kPolicyLabel,
                                            " ignored: the container has no identity labels, and "
                                            "policy rules are per identity"));
      out_.endpoints.push_back(std::move(result));
      continue;
    }
    const IdentityDecision& d = decisions.at(ep.identity);
    result.enforce_ingress = d.enforce[DIR_INGRESS];
    result.enforce_egress = d.enforce[DIR_EGRESS];
    result.audit = d.audit;
    result.notes = d.notes;
    for (const AppliedPolicy* a : d.applied) {
      result.policies.push_back(a->policy->name);
      if (a->carrier != nullptr && a->carrier != &ep)
        result.notes.push_back(absl::StrCat("rules of '", a->policy->name, "' apply here too: same identity labels"));
    }
    std::sort(result.policies.begin(), result.policies.end());
    out_.endpoints.push_back(std::move(result));
  }

  std::sort(out_.rules.begin(), out_.rules.end(), [](const DatapathRule& a, const DatapathRule& b) {
    auto key = [](const DatapathRule& r) {
      return std::tie(r.local_identity, r.direction, r.remote_identity, r.protocol, r.ports.first, r.ports.last,
                      r.action, r.audit, r.require_tls, r.rule_id);
    };
    return key(a) < key(b);
  });
  return std::move(out_);
}

}  // namespace

absl::StatusOr<CompiledPolicy> CompilePolicies(const PolicyInputs& inputs, IdentityAllocator& allocator) {
  return Compiler(inputs, allocator).Run();
}

}  // namespace stockade
