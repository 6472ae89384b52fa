// SPDX-License-Identifier: Apache-2.0
#include "stockade/events/event_filter.h"

#include <netinet/in.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace stockade {
namespace {

template <typename T>
bool AnyOrContains(const std::vector<T>& wanted, const T& value) {
  return wanted.empty() || std::find(wanted.begin(), wanted.end(), value) != wanted.end();
}

bool AnySelects(const std::vector<WorkloadSelector>& selectors, const EventWorkload* workload) {
  if (selectors.empty()) return true;
  return std::any_of(selectors.begin(), selectors.end(), [&](const WorkloadSelector& s) { return s.Matches(workload); });
}

// A list of T from `json[field]`, each checked by `parse`.
template <typename T, typename Parse>
absl::Status ReadList(const nlohmann::json& json, const char* field, std::vector<T>& out, Parse parse) {
  if (!json.contains(field)) return absl::OkStatus();
  const nlohmann::json& list = json.at(field);
  if (!list.is_array()) return absl::InvalidArgumentError(absl::StrCat("filter field '", field, "' must be a list"));
  for (const nlohmann::json& item : list) {
    absl::StatusOr<T> value = parse(item);
    if (!value.ok())
      return absl::InvalidArgumentError(absl::StrCat("filter field '", field, "': ", value.status().message()));
    out.push_back(*value);
  }
  return absl::OkStatus();
}

// What an item is, for an error: a scalar as written, a list or object by its
// kind only. Dumping a deeply nested one would recurse once per level on the
// agent's stack, and a subscriber chooses the depth.
std::string Describe(const nlohmann::json& item) {
  if (item.is_array()) return "a list";
  if (item.is_object()) return "an object";
  return item.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<std::string> AsString(const nlohmann::json& item) {
  if (!item.is_string()) return absl::InvalidArgumentError(absl::StrCat("expected a string, got ", Describe(item)));
  return item.get<std::string>();
}

template <typename T>
absl::StatusOr<T> AsNumber(const nlohmann::json& item, uint64_t max) {
  if (!item.is_number_integer() || item.get<int64_t>() < 0 || item.get<uint64_t>() > max)
    return absl::InvalidArgumentError(absl::StrCat("expected a number up to ", max, ", got ", Describe(item)));
  return static_cast<T>(item.get<uint64_t>());
}

}  // namespace

absl::StatusOr<WorkloadSelector> WorkloadSelector::Parse(const std::string& text) {
  WorkloadSelector s;
  if (text.empty()) return absl::InvalidArgumentError("empty container selector");
  if (text.find('=') == std::string::npos) {
    s.name = text;
    return s;
  }
  for (absl::string_view pair : absl::StrSplit(text, ',')) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    std::string key(absl::StripAsciiWhitespace(kv[0]));
    if (kv.size() != 2 || key.empty())
      return absl::InvalidArgumentError(absl::StrCat("'", pair, "' in '", text, "' is not key=value"));
    s.labels[key] = std::string(absl::StripAsciiWhitespace(kv[1]));
  }
  return s;
}

bool WorkloadSelector::Matches(const EventWorkload* w) const {
  if (!w) return false;
  if (labels.empty()) return w->container == name || (name.size() >= 12 && w->container_id.starts_with(name));
  return std::all_of(labels.begin(), labels.end(), [&](const auto& kv) {
    auto it = w->labels.find(kv.first);
    return it != w->labels.end() && it->second == kv.second;
  });
}

std::string WorkloadSelector::ToString() const {
  if (labels.empty()) return name;
  return absl::StrJoin(labels, ",", absl::PairFormatter("="));
}

bool EventFilter::Matches(const EventRecord& e) const {
  const drop_event& r = e.raw;
  if (!AnyOrContains(reasons, static_cast<int>(r.reason))) return false;
  if (verdicts.empty() ? r.verdict == VERDICT_FORWARDED : !AnyOrContains(verdicts, r.verdict)) return false;
  if (!AnyOrContains(protocols, r.protocol)) return false;
  if (direction && *direction != r.direction) return false;
  if (!identities.empty() && !AnyOrContains(identities, e.source_identity()) &&
      !AnyOrContains(identities, e.destination_identity()))
    return false;
  if (!ports.empty() && !AnyOrContains(ports, e.source_port()) && !AnyOrContains(ports, e.destination_port()))
    return false;
  if (from.empty() && to.empty() && container.empty()) return true;
  const EventWorkload* src = e.source();
  const EventWorkload* dst = e.destination();
  if (!AnySelects(from, src) || !AnySelects(to, dst)) return false;
  return container.empty() || AnySelects(container, src) || AnySelects(container, dst);
}

nlohmann::json EventFilter::ToJson() const {
  nlohmann::json j = nlohmann::json::object();
  auto selectors = [](const std::vector<WorkloadSelector>& list) {
    nlohmann::json out = nlohmann::json::array();
    for (const WorkloadSelector& s : list) out.push_back(s.ToString());
    return out;
  };
  if (!from.empty()) j["from"] = selectors(from);
  if (!to.empty()) j["to"] = selectors(to);
  if (!container.empty()) j["container"] = selectors(container);
  if (!identities.empty()) j["identity"] = identities;
  if (!reasons.empty()) {
    j["reason"] = nlohmann::json::array();
    for (int r : reasons) j["reason"].push_back(std::string(DropReasonName(r)));
  }
  if (!verdicts.empty()) {
    j["verdict"] = nlohmann::json::array();
    for (uint8_t v : verdicts) j["verdict"].push_back(std::string(VerdictName(v)));
  }
  if (!ports.empty()) j["port"] = ports;
  if (!protocols.empty()) {
    j["protocol"] = nlohmann::json::array();
    for (uint8_t p : protocols) j["protocol"].push_back(ProtocolName(p));
  }
  if (direction) j["direction"] = std::string(DirectionName(*direction));
  return j;
}

absl::StatusOr<EventFilter> EventFilter::FromJson(const nlohmann::json& json) {
  EventFilter f;
  if (json.is_null()) return f;
  if (!json.is_object()) return absl::InvalidArgumentError("the filter must be a JSON object");
  static const std::vector<std::string> kFields = {"from", "to", "container", "identity", "reason",
                                                   "verdict", "port", "protocol", "direction"};
  for (const auto& [key, value] : json.items())
    if (std::find(kFields.begin(), kFields.end(), key) == kFields.end())
      return absl::InvalidArgumentError(absl::StrCat("unknown filter field '", key, "'"));
  auto selector = [](const nlohmann::json& item) -> absl::StatusOr<WorkloadSelector> {
    auto text = AsString(item);
    if (!text.ok()) return text.status();
    return WorkloadSelector::Parse(*text);
  };
  auto named = [](auto parse) {
    return [parse](const nlohmann::json& item) -> decltype(parse(std::string())) {
      auto text = AsString(item);
      if (!text.ok()) return text.status();
      return parse(*text);
    };
  };
  absl::Status s;
  if (s = ReadList(json, "from", f.from, selector); !s.ok()) return s;
  if (s = ReadList(json, "to", f.to, selector); !s.ok()) return s;
  if (s = ReadList(json, "container", f.container, selector); !s.ok()) return s;
  if (s = ReadList(json, "identity", f.identities, [](const nlohmann::json& i) { return AsNumber<uint32_t>(i, UINT32_MAX); });
      !s.ok())
    return s;
  if (s = ReadList(json, "reason", f.reasons, named(ParseDropReason)); !s.ok()) return s;
  if (s = ReadList(json, "verdict", f.verdicts, named(ParseVerdict)); !s.ok()) return s;
  if (s = ReadList(json, "port", f.ports, [](const nlohmann::json& i) { return AsNumber<uint16_t>(i, 65535); }); !s.ok())
    return s;
  if (s = ReadList(json, "protocol", f.protocols, named(ParseProtocol)); !s.ok()) return s;
  if (json.contains("direction")) {
    auto text = AsString(json.at("direction"));
    if (!text.ok()) return absl::InvalidArgumentError("filter field 'direction' must be a string");
    auto d = ParseDirection(*text);
    if (!d.ok()) return d.status();
    f.direction = *d;
  }
  return f;
}

absl::StatusOr<int> ParseDropReason(const std::string& name) {
  std::string upper = absl::AsciiStrToUpper(name);
  std::vector<std::string> known;
#define STOCKADE_REASON_MATCH(id, value, text) \
  if (upper == text) return id;                \
  known.push_back(text);
  STOCKADE_DROP_REASONS(STOCKADE_REASON_MATCH)
#undef STOCKADE_REASON_MATCH
  return absl::InvalidArgumentError(
      absl::StrCat("unknown drop reason '", name, "'; known: ", absl::StrJoin(known, ", ")));
}

absl::StatusOr<uint8_t> ParseVerdict(const std::string& name) {
  std::string lower = absl::AsciiStrToLower(name);
  if (lower == "dropped" || lower == "drop") return uint8_t{VERDICT_DROPPED};
  if (lower == "audit") return uint8_t{VERDICT_AUDIT};
  if (lower == "forwarded") return uint8_t{VERDICT_FORWARDED};
  return absl::InvalidArgumentError(absl::StrCat("unknown verdict '", name, "'; known: dropped, audit, forwarded"));
}

absl::StatusOr<uint8_t> ParseProtocol(const std::string& name) {
  std::string lower = absl::AsciiStrToLower(name);
  if (lower == "tcp") return uint8_t{IPPROTO_TCP};
  if (lower == "udp") return uint8_t{IPPROTO_UDP};
  if (lower == "icmp") return uint8_t{IPPROTO_ICMP};
  if (lower == "icmpv6") return uint8_t{IPPROTO_ICMPV6};
  if (lower == "arp") return uint8_t{0};
  // "proto 47" is how ProtocolName (and so ToJson and stockade-tail) writes a protocol without a name.
  absl::string_view number_text = lower;
  absl::ConsumePrefix(&number_text, "proto ");
  uint32_t number = 0;
  if (absl::SimpleAtoi(number_text, &number) && number <= 255) return static_cast<uint8_t>(number);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown protocol '", name, "'; known: tcp, udp, icmp, icmpv6, arp or a number"));
}

absl::StatusOr<uint8_t> ParseDirection(const std::string& name) {
  std::string lower = absl::AsciiStrToLower(name);
  if (lower == "ingress") return uint8_t{DIR_INGRESS};
  if (lower == "egress") return uint8_t{DIR_EGRESS};
  return absl::InvalidArgumentError(absl::StrCat("unknown direction '", name, "'; known: ingress, egress"));
}

}  // namespace stockade
