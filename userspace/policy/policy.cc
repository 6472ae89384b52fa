// SPDX-License-Identifier: Apache-2.0
#include "stockade/policy/policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stockade {
namespace {

bool Holds(const SelectorRequirement& req, const LabelSet& labels) {
  auto found = labels.find(req.key);
  const bool present = found != labels.end();
  auto listed = [&] { return std::find(req.values.begin(), req.values.end(), found->second) != req.values.end(); };
  switch (req.op) {
    case SelectorOperator::kIn:
      return present && listed();
    case SelectorOperator::kNotIn:
      return !present || !listed();
    case SelectorOperator::kExists:
      return present;
    case SelectorOperator::kDoesNotExist:
      return !present;
  }
  return false;
}

std::string RequirementString(const SelectorRequirement& req) {
  switch (req.op) {
    case SelectorOperator::kIn:
      return absl::StrCat(req.key, " In (", absl::StrJoin(req.values, ","), ")");
    case SelectorOperator::kNotIn:
      return absl::StrCat(req.key, " NotIn (", absl::StrJoin(req.values, ","), ")");
    case SelectorOperator::kExists:
      return absl::StrCat(req.key, " Exists");
    case SelectorOperator::kDoesNotExist:
      return absl::StrCat(req.key, " DoesNotExist");
  }
  return "";
}

}  // namespace

bool LabelSelector::Matches(const LabelSet& labels) const {
  for (const auto& [key, value] : match_labels) {
    auto found = labels.find(key);
    if (found == labels.end() || found->second != value) return false;
  }
  return std::all_of(match_expressions.begin(), match_expressions.end(),
                     [&](const SelectorRequirement& req) { return Holds(req, labels); });
}

std::string LabelSelector::ToString() const {
  std::vector<std::string> parts;
  for (const auto& [key, value] : match_labels) parts.push_back(absl::StrCat(key, "=", value));
  for (const SelectorRequirement& req : match_expressions) parts.push_back(RequirementString(req));
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

bool PrefixCovers(const IpPrefix& outer, const IpPrefix& inner) {
  return outer.length <= inner.length && outer.Contains(inner.address);
}

const char* RuleSectionName(RuleSection section) {
  switch (section) {
    case RuleSection::kIngress:
      return "ingress";
    case RuleSection::kIngressDeny:
      return "ingressDeny";
    case RuleSection::kEgress:
      return "egress";
    case RuleSection::kEgressDeny:
      return "egressDeny";
  }
  return "";
}

uint8_t RuleSectionDirection(RuleSection section) {
  return section == RuleSection::kIngress || section == RuleSection::kIngressDeny ? DIR_INGRESS : DIR_EGRESS;
}

bool RuleSectionDenies(RuleSection section) {
  return section == RuleSection::kIngressDeny || section == RuleSection::kEgressDeny;
}

bool Policy::EnforcesDirection(uint8_t direction) const {
  switch (mode) {
    case EnforcementMode::kAlways:
      return true;
    case EnforcementMode::kNever:
      return false;
    case EnforcementMode::kDefault:
      return std::any_of(kRuleSections.begin(), kRuleSections.end(),
                         [&](RuleSection s) { return RuleSectionDirection(s) == direction && section(s).has_value(); });
  }
  return false;
}

}  // namespace stockade
