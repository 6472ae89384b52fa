// SPDX-License-Identifier: Apache-2.0
#include "stockade/policy/policy_compiler.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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

// The rules of a datapath group: one local identity, one remote, one
// direction. Entries never fold across groups (CompilePolicyEntries), so a
// group's entries are made from its own rules alone.
struct GroupKey {
  uint32_t local, remote;
  uint8_t direction;
  bool operator==(const GroupKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const GroupKey& g) {
    return H::combine(std::move(h), g.local, g.remote, g.direction);
  }
};

GroupKey GroupOf(const DatapathRule& r) { return {r.local_identity, r.remote_identity, r.direction}; }

// CompiledPolicy::rules order: a group's rules are one run.
auto RuleOrder(const DatapathRule& r) {
  return std::tie(r.local_identity, r.direction, r.remote_identity, r.protocol, r.ports.first, r.ports.last, r.action,
                  r.audit, r.require_tls, r.rule_id);
}
bool RuleLess(const DatapathRule& a, const DatapathRule& b) { return RuleOrder(a) < RuleOrder(b); }

bool KeyLess(const policy_key& a, const policy_key& b) { return std::memcmp(&a, &b, sizeof(policy_key)) < 0; }

// Every policy in force with its carrier: file policies, then label policies.
absl::StatusOr<std::vector<AppliedPolicy>> CollectPolicies(const PolicyInputs& inputs) {
  std::vector<AppliedPolicy> applied;
  std::vector<const Policy*> files;
  for (const Policy& policy : inputs.policies) files.push_back(&policy);
  files.insert(files.end(), inputs.policies_held.begin(), inputs.policies_held.end());
  for (const Policy* policy : files) {
    if (!policy->endpoint_selector)
      return absl::InvalidArgumentError(absl::StrCat("policy '", policy->name, "' has no endpointSelector"));
    applied.push_back({policy});
  }
  for (const PolicyEndpoint& ep : inputs.endpoints) {
    if (!ep.label_policy) continue;
    // Rules are keyed by identity; every container without labels shares IDENTITY_UNMANAGED.
    if (ep.identity == IDENTITY_UNMANAGED) continue;
    if (ep.label_policy->endpoint_selector)
      return absl::InvalidArgumentError(absl::StrCat("endpoint ", ep.id, ": its label policy has an endpointSelector"));
    applied.push_back({&*ep.label_policy, &ep});
  }
  std::vector<const Policy*> all;
  all.reserve(applied.size());
  for (const AppliedPolicy& a : applied) all.push_back(a.policy);
  if (absl::Status s = CheckUniquePolicyNames(all); !s.ok()) return s;
  return applied;
}

// Every label identity, endpoints' and known, with its labels.
absl::StatusOr<std::map<uint32_t, LabelSet>> CollectIdentities(const PolicyInputs& inputs) {
  std::map<uint32_t, LabelSet> labelled;
  auto add = [&labelled](uint32_t identity, const LabelSet& labels, const std::string& who) -> absl::Status {
    if (identity < STOCKADE_IDENTITY_FIRST_ALLOCATED || labels.empty())
      return absl::InvalidArgumentError(absl::StrCat(who, ": identity ", FormatIdentity(identity), " with labels ",
                                                     FormatLabels(labels), " is not a label identity"));
    auto [it, inserted] = labelled.try_emplace(identity, labels);
    if (!inserted && it->second != labels)
      return absl::InvalidArgumentError(absl::StrCat(who, ": identity ", identity, " has labels ", FormatLabels(labels),
                                                     " and elsewhere ", FormatLabels(it->second)));
    return absl::OkStatus();
  };
  for (const PolicyEndpoint& ep : inputs.endpoints) {
    if (ep.identity == IDENTITY_UNMANAGED && ep.labels.empty()) continue;
    if (absl::Status s = add(ep.identity, ep.labels, absl::StrCat("endpoint ", ep.id)); !s.ok()) return s;
  }
  for (const KnownIdentity& known : inputs.identities)
    if (absl::Status s = add(known.identity, known.labels, "known identity"); !s.ok()) return s;
  return labelled;
}

// A policy's CIDR peers and their excepts, sorted, each once.
std::vector<IpPrefix> CidrPrefixesOf(const Policy& policy) {
  std::vector<IpPrefix> prefixes;
  for (RuleSection section : kRuleSections) {
    if (!policy.section(section)) continue;
    for (const PolicyRule& rule : *policy.section(section)) {
      for (const CidrPeer& peer : rule.cidrs) {
        prefixes.push_back(peer.cidr);
        prefixes.insert(prefixes.end(), peer.except.begin(), peer.except.end());
      }
    }
  }
  // In prefix order: the allocator's table is walked where it was walked
  // last, and the CIDR map grows at its end (100k tree inserts in rule order
  // missed the cache at every level).
  std::sort(prefixes.begin(), prefixes.end(), IpPrefixLess());
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
  return prefixes;
}

// Whether a prefix of `sorted` lies inside `outer`: those are a run of the
// order (by address, then length) that starts at `outer` itself.
bool AnyInside(const std::vector<IpPrefix>& sorted, const IpPrefix& outer) {
  for (auto it = std::lower_bound(sorted.begin(), sorted.end(), outer, IpPrefixLess());
       it != sorted.end() && outer.Contains(it->address); ++it)
    if (PrefixCovers(outer, *it)) return true;
  return false;
}

}  // namespace

struct PolicyCompiler::State {
  // One policy, compiled for whichever identities it applies to.
  struct Unit {
    uint64_t fingerprint = 0;
    uint32_t carrier = 0;                 // a label policy's identity; 0 for a file policy
    std::vector<uint32_t> wanted_ids;     // WantedRuleIds
    std::vector<uint32_t> ids;            // as taken, per rule in section order
    std::vector<IpPrefix> prefixes;       // CidrPrefixesOf
    std::vector<DatapathRule> templates;  // its rules with local identity 0
    std::vector<uint32_t> locals;         // the identities it applies to, sorted
  };
  // A CIDR identity and the number of policies naming its prefix.
  struct CidrUse {
    uint32_t identity = 0;
    uint32_t users = 0;
  };

  bool empty = true;
  std::map<std::string, Unit> units;  // by policy name: the order rule ids are taken in
  std::map<IpPrefix, CidrUse, IpPrefixLess> cidrs;
  std::map<uint32_t, LabelSet> labelled;
};

namespace {

using State = PolicyCompiler::State;

// One update's work on the state, in the steps of Run.
class Updater {
 public:
  Updater(State& state, CompiledPolicy& out, const PolicyInputs& inputs)
      : state_(state), out_(out), inputs_(inputs) {}

  // Everything that can fail but the allocator's answers, before anything changes.
  absl::Status Prepare();
  const std::vector<IpPrefix>& unnamed() const { return unnamed_; }
  absl::StatusOr<PolicyEntryDelta> Run(const IdentityAllocator& allocator, size_t& recompiled,
                                       std::vector<uint32_t>& origins_changed);

 private:
  void DropReplaced();
  void AddCidrUses();
  void DiffLabelled();
  void TakeRuleIds();
  bool InputsChanged(const Policy& policy) const;
  std::set<uint32_t> Remotes(const PolicyRule& rule) const;
  void Build(State::Unit& unit, const Policy& policy);
  void MarkGroups(const State::Unit& unit, const std::vector<uint32_t>& locals);
  void Decide();

  State& state_;
  CompiledPolicy& out_;
  const PolicyInputs& inputs_;

  std::vector<AppliedPolicy> applied_;
  std::map<std::string, const AppliedPolicy*> by_name_;
  std::map<uint32_t, LabelSet> labelled_;
  std::map<std::string, State::Unit> fresh_;  // new or edited policies, not built yet
  std::vector<IpPrefix> unnamed_;             // sorted: prefixes no policy named before
  std::vector<std::pair<IpPrefix, uint32_t>> new_cidrs_;  // prefixes no policy named before, their ids
  std::set<std::string> build_;                // units whose templates are made again
  std::vector<IpPrefix> cidrs_changed_;        // sorted: CIDR identities added or gone
  std::vector<LabelSet> labels_changed_;       // label identities added, gone or relabelled
  absl::flat_hash_set<GroupKey> dirty_;        // groups whose rules are made again
  std::map<std::string, std::vector<uint32_t>> locals_;  // per policy name
  std::vector<std::pair<uint32_t, RuleOrigin>> origins_;  // of the rules built
  std::vector<uint32_t> origins_erased_;
};

absl::Status Updater::Prepare() {
  auto applied = CollectPolicies(inputs_);
  if (!applied.ok()) return applied.status();
  applied_ = std::move(*applied);
  auto labelled = CollectIdentities(inputs_);
  if (!labelled.ok()) return labelled.status();
  labelled_ = std::move(*labelled);
  for (const AppliedPolicy& a : applied_) by_name_[a.policy->name] = &a;

  for (const auto& [name, a] : by_name_) {
    const uint32_t carrier = a->carrier != nullptr ? a->carrier->identity : 0;
    auto known = state_.units.find(name);
    if (known != state_.units.end() && a->policy->fingerprint != 0 &&
        known->second.fingerprint == a->policy->fingerprint && known->second.carrier == carrier)
      continue;
    State::Unit unit{.fingerprint = a->policy->fingerprint, .carrier = carrier};
    unit.wanted_ids = WantedRuleIds(*a->policy);
    unit.prefixes = CidrPrefixesOf(*a->policy);
    // What CompilePolicyEntries would refuse, refused now: later the cache is
    // half changed and a failure could not leave it as it was.
    for (RuleSection section : kRuleSections) {
      if (!a->policy->section(section)) continue;
      for (const PolicyRule& rule : *a->policy->section(section))
        for (const PortProtocol& port : rule.ports)
          if (absl::Status s = CheckDatapathRule({.local_identity = STOCKADE_IDENTITY_FIRST_ALLOCATED,
                                                  .direction = RuleSectionDirection(section),
                                                  .protocol = port.protocol,
                                                  .ports = port.ports,
                                                  .action = static_cast<uint8_t>(RuleSectionDenies(section)
                                                                                     ? POLICY_ACTION_DENY
                                                                                     : POLICY_ACTION_ALLOW),
                                                  .require_tls = port.require_tls});
              !s.ok())
            return absl::InvalidArgumentError(absl::StrCat("policy '", name, "' (", rule.location, "): ", s.message()));
    }
    for (const IpPrefix& prefix : unit.prefixes)
      if (!state_.cidrs.contains(prefix)) unnamed_.push_back(prefix);
    fresh_.emplace(name, std::move(unit));
  }
  // In prefix order, as a compile from nothing takes them: new prefixes get
  // the same ids either way.
  std::sort(unnamed_.begin(), unnamed_.end(), IpPrefixLess());
  unnamed_.erase(std::unique(unnamed_.begin(), unnamed_.end()), unnamed_.end());
  return absl::OkStatus();
}

void Updater::MarkGroups(const State::Unit& unit, const std::vector<uint32_t>& locals) {
  if (state_.empty) return;  // every group is new: no need to list them
  for (uint32_t local : locals)
    for (const DatapathRule& t : unit.templates) dirty_.insert({local, t.remote_identity, t.direction});
}

// Policies gone or edited leave, with their rules, rule ids and CIDR uses.
void Updater::DropReplaced() {
  for (auto it = state_.units.begin(); it != state_.units.end();) {
    if (by_name_.contains(it->first) && !fresh_.contains(it->first)) {
      ++it;
      continue;
    }
    MarkGroups(it->second, it->second.locals);
    for (const IpPrefix& prefix : it->second.prefixes) --state_.cidrs.at(prefix).users;
    for (uint32_t id : it->second.ids) out_.rule_origins.erase(id);
    origins_erased_.insert(origins_erased_.end(), it->second.ids.begin(), it->second.ids.end());
    it = state_.units.erase(it);
  }
}

// The edited and new policies join with their CIDR uses; prefixes no policy
// names any more leave. The prefixes that came or went are what kept
// policies' CIDR peers may stand for differently now.
void Updater::AddCidrUses() {
  for (const auto& [prefix, id] : new_cidrs_) {
    state_.cidrs[prefix].identity = id;
    cidrs_changed_.push_back(prefix);
  }
  for (auto& [name, unit] : fresh_)
    for (const IpPrefix& prefix : unit.prefixes) ++state_.cidrs.at(prefix).users;
  for (auto it = state_.cidrs.begin(); it != state_.cidrs.end();) {
    if (it->second.users != 0) {
      ++it;
      continue;
    }
    cidrs_changed_.push_back(it->first);
    it = state_.cidrs.erase(it);
  }
  std::sort(cidrs_changed_.begin(), cidrs_changed_.end(), IpPrefixLess());
  for (auto& [name, unit] : fresh_) {
    build_.insert(name);
    state_.units.emplace(name, std::move(unit));
  }
}

// The label identities that came, went or were relabelled: what peer
// selectors of kept policies may match differently now.
void Updater::DiffLabelled() {
  auto it = state_.labelled.begin();
  auto jt = labelled_.begin();
  while (it != state_.labelled.end() || jt != labelled_.end()) {
    if (jt == labelled_.end() || (it != state_.labelled.end() && it->first < jt->first)) {
      labels_changed_.push_back((it++)->second);
    } else if (it == state_.labelled.end() || jt->first < it->first) {
      labels_changed_.push_back((jt++)->second);
    } else {
      if (it->second != jt->second) {
        labels_changed_.push_back(it->second);
        labels_changed_.push_back(jt->second);
      }
      ++it;
      ++jt;
    }
  }
}

// Ids for every rule, in name order. A kept policy whose ids moved (a
// colliding policy came or went) is built again.
void Updater::TakeRuleIds() {
  absl::flat_hash_set<uint32_t> taken;
  size_t rules = 0;
  for (const auto& [name, unit] : state_.units) rules += unit.wanted_ids.size();
  taken.reserve(rules);
  std::vector<uint32_t> ids;
  for (auto& [name, unit] : state_.units) {
    ids.clear();
    for (uint32_t wanted : unit.wanted_ids) ids.push_back(TakeRuleId(wanted, taken));
    if (ids == unit.ids) continue;
    if (!build_.contains(name)) {
      MarkGroups(unit, unit.locals);
      for (uint32_t id : unit.ids) out_.rule_origins.erase(id);
      origins_erased_.insert(origins_erased_.end(), unit.ids.begin(), unit.ids.end());
      build_.insert(name);
    }
    unit.ids = ids;
  }
}

// Whether a kept policy's rules could differ now: a peer selector matches an
// identity that came, went or was relabelled, a CIDR peer holds a CIDR
// identity that came or went, or `world` (every CIDR identity) changed.
bool Updater::InputsChanged(const Policy& policy) const {
  if (labels_changed_.empty() && cidrs_changed_.empty()) return false;
  for (RuleSection section : kRuleSections) {
    if (!policy.section(section)) continue;
    for (const PolicyRule& rule : *policy.section(section)) {
      for (const LabelSelector& selector : rule.endpoints)
        for (const LabelSet& labels : labels_changed_)
          if (selector.Matches(labels)) return true;
      if (cidrs_changed_.empty()) continue;
      for (Entity entity : rule.entities)
        if (entity == Entity::kWorld) return true;
      for (const CidrPeer& peer : rule.cidrs)
        if (AnyInside(cidrs_changed_, peer.cidr)) return true;
    }
  }
  return false;
}

// The remote identities a rule's peers stand for; {IDENTITY_ANY} for any peer.
// A CIDR peer is every CIDR identity inside it and outside its excepts: the
// ipcache gives an address the identity of its longest prefix, so nested
// prefixes from other rules and the excepts themselves are separate identities.
std::set<uint32_t> Updater::Remotes(const PolicyRule& rule) const {
  if (rule.AnyPeer() || std::find(rule.entities.begin(), rule.entities.end(), Entity::kAll) != rule.entities.end())
    return {IDENTITY_ANY};
  std::set<uint32_t> out;
  for (Entity entity : rule.entities) {
    switch (entity) {
      case Entity::kHost:
        out.insert(IDENTITY_HOST);
        break;
      case Entity::kRemoteHost:
        out.insert(IDENTITY_REMOTE_HOST);
        break;
      case Entity::kUnmanaged:
        out.insert(IDENTITY_UNMANAGED);
        break;
      case Entity::kWorld:  // outside every container and the host: CIDR identities too
        out.insert(IDENTITY_WORLD);
        for (const auto& [prefix, use] : state_.cidrs) out.insert(use.identity);
        break;
      case Entity::kAll:
        break;
    }
  }
  for (const LabelSelector& selector : rule.endpoints)
    for (const auto& [id, labels] : labelled_)
      if (selector.Matches(labels)) out.insert(id);
  for (const CidrPeer& peer : rule.cidrs) {
    // The prefixes inside peer.cidr are one run of the map starting at the
    // peer itself: a walk over all CIDR identities here made 100k fromCIDR
    // rules cost 100k x 100k.
    for (auto it = state_.cidrs.lower_bound(peer.cidr);
         it != state_.cidrs.end() && peer.cidr.Contains(it->first.address); ++it) {
      const IpPrefix& prefix = it->first;
      auto excepted = [&prefix](const IpPrefix& e) { return PrefixCovers(e, prefix); };
      if (PrefixCovers(peer.cidr, prefix) && std::none_of(peer.except.begin(), peer.except.end(), excepted))
        out.insert(it->second.identity);
    }
  }
  return out;
}

void Updater::Build(State::Unit& unit, const Policy& policy) {
  unit.templates.clear();
  size_t k = 0;
  for (RuleSection section : kRuleSections) {
    if (!policy.section(section)) continue;
    const std::vector<PolicyRule>& rules = *policy.section(section);
    const bool deny = RuleSectionDenies(section);
    for (size_t i = 0; i < rules.size(); ++i, ++k) {
      origins_.push_back({unit.ids[k], RuleOrigin{policy.name, section, i, rules[i].location}});
      static const std::vector<PortProtocol> kAnyPort = {{}};
      const std::vector<PortProtocol>& ports = rules[i].ports.empty() ? kAnyPort : rules[i].ports;
      for (uint32_t remote : Remotes(rules[i])) {
        for (const PortProtocol& port : ports) {
          unit.templates.push_back({.rule_id = unit.ids[k],
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

std::vector<const AppliedPolicy*> Selecting(const std::vector<AppliedPolicy>& applied, uint32_t identity,
                                            const LabelSet& labels) {
  std::vector<const AppliedPolicy*> out;
  for (const AppliedPolicy& a : applied) {
    const bool selects =
        a.carrier != nullptr ? a.carrier->identity == identity : a.policy->endpoint_selector->Matches(labels);
    if (selects) out.push_back(&a);
  }
  return out;
}

// Which policies apply to which identity, and each endpoint's flags and notes.
void Updater::Decide() {
  std::map<uint32_t, IdentityDecision> decisions;
  for (const PolicyEndpoint& ep : inputs_.endpoints) {
    if (ep.identity == IDENTITY_UNMANAGED || decisions.contains(ep.identity)) continue;
    IdentityDecision& d = decisions[ep.identity] = stockade::Decide(Selecting(applied_, ep.identity, ep.labels));
    for (const AppliedPolicy* a : d.applied) locals_[a->policy->name].push_back(ep.identity);
  }
  out_.endpoints.clear();
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
}

absl::StatusOr<PolicyEntryDelta> Updater::Run(const IdentityAllocator& allocator, size_t& recompiled,
                                              std::vector<uint32_t>& origins_changed) {
  recompiled = 0;
  origins_changed.clear();
  for (const IpPrefix& prefix : unnamed_) {
    auto id = allocator.table().cidrs.find(prefix);
    if (id == allocator.table().cidrs.end())
      return absl::FailedPreconditionError(
          absl::StrCat("policy compile: CIDR ", prefix.ToString(), " has no identity; allocate it before Apply"));
    new_cidrs_.push_back({prefix, id->second});
  }
  // Nothing below fails.
  PolicyEntryDelta delta{.full = state_.empty};
  DropReplaced();
  AddCidrUses();
  DiffLabelled();
  TakeRuleIds();
  for (const auto& [name, unit] : state_.units) {
    if (build_.contains(name) || !InputsChanged(*by_name_.at(name)->policy)) continue;
    MarkGroups(unit, unit.locals);
    build_.insert(name);
  }
  recompiled = build_.size();
  Decide();
  for (auto& [name, unit] : state_.units) {
    std::vector<uint32_t> locals = std::move(locals_[name]);
    std::sort(locals.begin(), locals.end());
    locals.erase(std::unique(locals.begin(), locals.end()), locals.end());
    if (build_.contains(name)) {
      Build(unit, *by_name_.at(name)->policy);
      MarkGroups(unit, locals);
    } else if (locals != unit.locals) {
      std::vector<uint32_t> moved;
      std::set_symmetric_difference(locals.begin(), locals.end(), unit.locals.begin(), unit.locals.end(),
                                    std::back_inserter(moved));
      MarkGroups(unit, moved);
    }
    unit.locals = std::move(locals);
  }

  // Sorted, then into the map at its end when it is empty: a tree filled
  // in hash order missed the cache at every level (a fifth of a 100k compile).
  std::sort(origins_.begin(), origins_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  origins_changed = std::move(origins_erased_);
  for (auto& [id, origin] : origins_) {
    origins_changed.push_back(id);
    out_.rule_origins.insert_or_assign(out_.rule_origins.end(), id, std::move(origin));
  }

  // The dirty groups' rules, old and new.
  std::vector<DatapathRule> before, after;
  if (state_.empty) {
    for (const auto& [name, unit] : state_.units)
      for (uint32_t local : unit.locals)
        for (DatapathRule rule : unit.templates) {
          rule.local_identity = local;
          after.push_back(rule);
        }
    std::sort(after.begin(), after.end(), RuleLess);
    out_.rules = after;
  } else if (!dirty_.empty()) {
    std::vector<DatapathRule>& rules = out_.rules;
    auto kept = std::stable_partition(rules.begin(), rules.end(),
                                      [this](const DatapathRule& r) { return !dirty_.contains(GroupOf(r)); });
    before.assign(kept, rules.end());
    rules.erase(kept, rules.end());
    for (const auto& [name, unit] : state_.units)
      for (uint32_t local : unit.locals)
        for (DatapathRule rule : unit.templates) {
          rule.local_identity = local;
          if (dirty_.contains(GroupOf(rule))) after.push_back(rule);
        }
    std::sort(after.begin(), after.end(), RuleLess);
    const size_t middle = rules.size();
    rules.insert(rules.end(), after.begin(), after.end());
    std::inplace_merge(rules.begin(), rules.begin() + middle, rules.end(), RuleLess);
  }
  if (delta.full || !cidrs_changed_.empty()) {
    out_.cidr_identities.clear();
    out_.cidr_identities.reserve(state_.cidrs.size());
    for (const auto& [prefix, use] : state_.cidrs) out_.cidr_identities.push_back({prefix, use.identity});
  }
  state_.labelled = std::move(labelled_);
  state_.empty = false;

  // Checked in Prepare: these do not fail. Should one, the cache is half
  // changed: it is dropped, and the next update compiles everything.
  auto old_entries = CompilePolicyEntries(before);
  auto new_entries = CompilePolicyEntries(after);
  for (const absl::Status& s : {old_entries.status(), new_entries.status()}) {
    if (s.ok()) continue;
    state_ = State();
    out_ = CompiledPolicy();
    return s;
  }
  delta.entries = std::move(*new_entries);
  if (delta.full) return delta;
  for (const std::vector<PolicyEntry>* entries : {&*old_entries, &delta.entries})
    for (const PolicyEntry& e : *entries) delta.scope.push_back(e.key);
  std::sort(delta.scope.begin(), delta.scope.end(), KeyLess);
  delta.scope.erase(std::unique(delta.scope.begin(), delta.scope.end(), ByteEq<policy_key>()), delta.scope.end());
  return delta;
}

}  // namespace

PolicyCompiler::PolicyCompiler() : state_(std::make_unique<State>()) {}
PolicyCompiler::~PolicyCompiler() = default;

struct PolicyCompiler::PreparedUpdate::Work {
  Updater updater;
};

PolicyCompiler::PreparedUpdate::PreparedUpdate(std::unique_ptr<Work> work) : work_(std::move(work)) {}
PolicyCompiler::PreparedUpdate::PreparedUpdate(PreparedUpdate&&) noexcept = default;
PolicyCompiler::PreparedUpdate& PolicyCompiler::PreparedUpdate::operator=(PreparedUpdate&&) noexcept = default;
PolicyCompiler::PreparedUpdate::~PreparedUpdate() = default;
const std::vector<IpPrefix>& PolicyCompiler::PreparedUpdate::unnamed_prefixes() const {
  return work_->updater.unnamed();
}

absl::StatusOr<PolicyCompiler::PreparedUpdate> PolicyCompiler::Prepare(const PolicyInputs& inputs) {
  auto work = std::make_unique<PreparedUpdate::Work>(Updater(*state_, compiled_, inputs));
  if (absl::Status s = work->updater.Prepare(); !s.ok()) return s;
  return PreparedUpdate(std::move(work));
}

absl::StatusOr<PolicyEntryDelta> PolicyCompiler::Apply(PreparedUpdate update, const IdentityAllocator& allocator) {
  return update.work_->updater.Run(allocator, recompiled_, origins_changed_);
}

absl::StatusOr<PolicyEntryDelta> AllocateThenUpdate(PolicyCompiler& compiler, const PolicyInputs& inputs,
                                                    IdentityAllocator& allocator) {
  auto update = compiler.Prepare(inputs);
  if (!update.ok()) return update.status();
  for (const IpPrefix& prefix : update->unnamed_prefixes())
    if (absl::StatusOr<uint32_t> id = allocator.ForCidr(prefix); !id.ok()) return id.status();
  return compiler.Apply(std::move(*update), allocator);
}

absl::StatusOr<CompiledPolicy> CompilePolicies(const PolicyInputs& inputs, IdentityAllocator& allocator) {
  PolicyCompiler compiler;
  if (auto delta = AllocateThenUpdate(compiler, inputs, allocator); !delta.ok()) return delta.status();
  return compiler.compiled();
}

}  // namespace stockade
