// SPDX-License-Identifier: Apache-2.0
//
// The JSON form of observed flows (policy_suggest.h) to FlowObservations.
// Strict, as the policy parser is: an unknown key or a value of the wrong
// kind is an error naming the field, since a misread observation would
// become a wrong policy.
#include <netinet/in.h>

#include <initializer_list>
#include <stdexcept>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "stockade/policy/policy_suggest.h"

namespace stockade {
namespace {

using Json = nlohmann::json;

// A field error: its path ("flows[3].peer.entity") and what is wrong.
struct FieldError : std::runtime_error {
  FieldError(std::string path, const std::string& what) : std::runtime_error(what), path(std::move(path)) {}
  std::string path;
};

template <typename T>
struct Named {
  const char* name;
  T value;
};
constexpr Named<Entity> kPeerEntities[] = {{"host", Entity::kHost},
                                           {"remote-host", Entity::kRemoteHost},
                                           {"world", Entity::kWorld},
                                           {"unmanaged", Entity::kUnmanaged}};
constexpr Named<uint8_t> kProtocols[] = {{"tcp", IPPROTO_TCP},
                                         {"udp", IPPROTO_UDP},
                                         {"sctp", IPPROTO_SCTP},
                                         {"icmp", IPPROTO_ICMP},
                                         {"icmpv6", IPPROTO_ICMPV6}};
constexpr Named<uint8_t> kDirections[] = {{"ingress", DIR_INGRESS}, {"egress", DIR_EGRESS}};
constexpr Named<FlowSide> kSides[] = {{"client", FlowSide::kClient}, {"server", FlowSide::kServer}};
constexpr Named<FlowVerdict> kVerdicts[] = {
    {"allowed", FlowVerdict::kAllowed}, {"audited", FlowVerdict::kAudited}, {"denied", FlowVerdict::kDenied}};

// A JSON value and where it is, so each error can say which field.
class Field {
 public:
  Field(const Json& value, std::string path) : value_(value), path_(std::move(path)) {}

  [[noreturn]] void Fail(const std::string& what) const { throw FieldError(path_, what); }

  // An object with only `allowed` keys.
  const Field& Object(std::initializer_list<const char*> allowed) const {
    if (!value_.is_object()) Fail("expected an object");
    for (const auto& [key, unused] : value_.items()) {
      bool known = false;
      for (const char* name : allowed) known = known || key == name;
      if (!known) Fail(absl::StrCat("unknown key '", key, "' (expected one of: ", absl::StrJoin(allowed, ", "), ")"));
    }
    return *this;
  }
  bool Has(const char* key) const { return value_.contains(key); }
  Field Get(const char* key) const {
    if (!value_.contains(key)) Fail(absl::StrCat("missing key '", key, "'"));
    return Field(value_.at(key), absl::StrCat(path_, path_.empty() ? "" : ".", key));
  }
  std::vector<Field> List() const {
    if (!value_.is_array()) Fail("expected a list");
    std::vector<Field> out;
    for (size_t i = 0; i < value_.size(); ++i) out.emplace_back(value_[i], absl::StrCat(path_, "[", i, "]"));
    return out;
  }
  std::string String() const {
    if (!value_.is_string()) Fail("expected a string");
    return value_.get<std::string>();
  }
  uint64_t Unsigned(uint64_t min, uint64_t max) const {
    if (!value_.is_number_unsigned() || value_.get<uint64_t>() < min || value_.get<uint64_t>() > max)
      Fail(absl::StrCat(value_.dump(), " is not an integer from ", min, " to ", max));
    return value_.get<uint64_t>();
  }
  template <typename T, size_t N>
  T Keyword(const Named<T> (&table)[N]) const {
    const std::string text = String();
    std::vector<const char*> names;
    for (const auto& entry : table) {
      if (text == entry.name) return entry.value;
      names.push_back(entry.name);
    }
    Fail(absl::StrCat("\"", text, "\" is not one of ", absl::StrJoin(names, ", ")));
  }
  LabelSet Labels() const {
    if (!value_.is_object()) Fail("expected an object of label keys and values");
    LabelSet labels;
    for (const auto& [key, value] : value_.items()) {
      if (absl::StartsWith(key, kStockadeLabelPrefix))
        Fail(absl::StrCat("identity labels are named without 'stockade.': '", key, "'"));
      labels[key] = Field(value, absl::StrCat(path_, ".", key)).String();
    }
    return labels;
  }
  absl::Time Time() const {
    absl::Time t;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, String(), &t, &error))
      Fail(absl::StrCat("\"", String(), "\" is not an RFC 3339 time: ", error));
    return t;
  }

 private:
  const Json& value_;
  std::string path_;
};

ObservedEndpoint ReadEndpoint(const Field& field) {
  field.Object({"name", "labels"});
  // The name is for comments only: labels are what a policy selects by.
  return {.name = field.Has("name") ? field.Get("name").String() : "", .labels = field.Get("labels").Labels()};
}

ObservedPeer ReadPeer(const Field& field) {
  field.Object({"name", "labels", "entity", "address"});
  ObservedPeer peer;
  if (!field.Has("entity")) {
    if (field.Has("address")) field.Get("address").Fail("an endpoint peer is named by its labels, not its address");
    peer.endpoint = ReadEndpoint(field);
    return peer;
  }
  peer.entity = field.Get("entity").Keyword(kPeerEntities);
  if (field.Has("labels")) field.Get("labels").Fail("an entity has no labels");
  if (field.Has("name")) peer.endpoint.name = field.Get("name").String();
  if (field.Has("address")) {
    const Field address = field.Get("address");
    absl::StatusOr<IpAddress> parsed = ParseIpAddress(address.String());
    if (!parsed.ok()) address.Fail(std::string(parsed.status().message()));
    peer.address = *parsed;
  } else if (*peer.entity == Entity::kWorld) {
    field.Fail("missing key 'address': a world peer needs the address it was seen with");
  }
  return peer;
}

ObservedFlow ReadFlow(const Field& field) {
  field.Object({"local", "peer", "direction", "protocol", "server_port", "local_side", "verdict", "count",
                "first_seen", "last_seen"});
  ObservedFlow flow{.local = ReadEndpoint(field.Get("local")), .peer = ReadPeer(field.Get("peer"))};
  flow.direction = field.Get("direction").Keyword(kDirections);
  flow.protocol = field.Get("protocol").Keyword(kProtocols);
  const bool icmp = flow.protocol == IPPROTO_ICMP || flow.protocol == IPPROTO_ICMPV6;
  flow.server_port = static_cast<uint16_t>(field.Get("server_port").Unsigned(icmp ? 0 : 1, icmp ? 255 : 65535));
  flow.local_side = field.Get("local_side").Keyword(kSides);
  flow.verdict = field.Get("verdict").Keyword(kVerdicts);
  flow.count = field.Get("count").Unsigned(1, UINT64_MAX);
  flow.first_seen = field.Get("first_seen").Time();
  const Field last = field.Get("last_seen");
  flow.last_seen = last.Time();
  if (flow.last_seen < flow.first_seen) last.Fail("earlier than first_seen");
  return flow;
}

}  // namespace

absl::StatusOr<FlowObservations> ParseFlowObservations(absl::string_view json_text, absl::string_view source) {
  Json json;
  try {
    json = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not JSON: ", e.what()));
  }
  try {
    FlowObservations out;
    const Field root(json, "");
    root.Object({"endpoints", "flows"});
    if (root.Has("endpoints"))
      for (const Field& endpoint : root.Get("endpoints").List()) out.endpoints.push_back(ReadEndpoint(endpoint));
    for (const Field& flow : root.Get("flows").List()) out.flows.push_back(ReadFlow(flow));
    return out;
  } catch (const FieldError& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.path, e.path.empty() ? "" : ": ", e.what()));
  }
}

}  // namespace stockade
