// SPDX-License-Identifier: Apache-2.0
#include "stockade/store/endpoint_record.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace stockade {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kEndpointsSegment = "endpoints/";
constexpr absl::string_view kNodeSegment = "node";
constexpr absl::string_view kCompleteSegment = "complete";
constexpr size_t kMaxHostIdLength = 253;

absl::Status BadKey(absl::string_view key, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("store key ", key, ": ", why));
}

// The canonical text only: "10.0.0.05" or "FD00::1" would be a second key
// for an address that already has one.
absl::StatusOr<IpAddress> ParseCanonicalAddress(absl::string_view text) {
  absl::StatusOr<IpAddress> address = ParseIpAddress(text);
  if (!address.ok()) return address.status();
  if (address->ToString() != text)
    return absl::InvalidArgumentError(
        absl::StrCat("address '", text, "' is not in canonical form (", address->ToString(), ")"));
  return address;
}

// The value's members; the decoding throws std::invalid_argument or a json
// error naming the member, which DecodeStoreRecord turns into a status.
const Json& Member(const Json& object, const char* name) {
  auto found = object.find(name);
  if (found == object.end()) throw std::invalid_argument(absl::StrCat("missing member \"", name, "\""));
  return *found;
}

std::string StringMember(const Json& object, const char* name) {
  const Json& member = Member(object, name);
  if (!member.is_string()) throw std::invalid_argument(absl::StrCat("\"", name, "\" must be a string"));
  return member.get<std::string>();
}

IpAddress AddressOf(const std::string& text, absl::string_view where) {
  absl::StatusOr<IpAddress> address = ParseCanonicalAddress(text);
  if (!address.ok()) throw std::invalid_argument(absl::StrCat(where, ": ", address.status().message()));
  return *address;
}

// The value's host must be the key's: a host writes only below its own id.
void CheckHost(const Json& object, const StoreKey& key) {
  const std::string host = StringMember(object, "host");
  if (host != key.host)
    throw std::invalid_argument(absl::StrCat("\"host\" is '", host, "' but the key is of host '", key.host, "'"));
}

RemoteEndpoint DecodeEndpoint(const Json& object, const StoreKey& key) {
  CheckHost(object, key);
  RemoteEndpoint endpoint{.address = AddressOf(StringMember(object, "address"), "\"address\""), .host = key.host};
  if (endpoint.address != key.address)
    throw std::invalid_argument(
        absl::StrCat("\"address\" is ", endpoint.address.ToString(), " but the key is of ", key.address.ToString()));
  if (auto container = object.find("container"); container != object.end()) {
    if (!container->is_string()) throw std::invalid_argument("\"container\" must be a string");
    endpoint.container_name = container->get<std::string>();
  }
  const Json& labels = Member(object, "labels");
  if (!labels.is_object()) throw std::invalid_argument("\"labels\" must be an object");
  for (const auto& [name, value] : labels.items()) {
    if (name.empty()) throw std::invalid_argument("\"labels\" has an empty label name");
    if (!value.is_string()) throw std::invalid_argument(absl::StrCat("label \"", name, "\" must be a string"));
    endpoint.labels.emplace(name, value.get<std::string>());
  }
  return endpoint;
}

NodeRecord DecodeNode(const Json& object, const StoreKey& key) {
  CheckHost(object, key);
  NodeRecord node{.host = key.host};
  const Json& addresses = Member(object, "addresses");
  if (!addresses.is_array()) throw std::invalid_argument("\"addresses\" must be an array");
  for (const Json& address : addresses) {
    if (!address.is_string()) throw std::invalid_argument("\"addresses\" must hold strings");
    node.addresses.push_back(AddressOf(address.get<std::string>(), "\"addresses\""));
  }
  return node;
}

}  // namespace

absl::Status ValidateHostId(absl::string_view host_id) {
  if (host_id.empty() || host_id.size() > kMaxHostIdLength)
    return absl::InvalidArgumentError(
        absl::StrCat("host id '", host_id, "' must be 1 to ", kMaxHostIdLength, " characters"));
  if (host_id == "." || host_id == "..")
    return absl::InvalidArgumentError(absl::StrCat("host id '", host_id, "' is not a usable path segment"));
  for (char c : host_id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return absl::InvalidArgumentError(
          absl::StrCat("host id '", host_id, "' may hold only letters, digits, '.', '_' and '-'"));
  }
  return absl::OkStatus();
}

std::string HostKeyPrefix(absl::string_view host_id) { return absl::StrCat(kStoreHostsPrefix, host_id, "/"); }

std::string EndpointKey(absl::string_view host_id, const IpAddress& address) {
  return absl::StrCat(HostKeyPrefix(host_id), kEndpointsSegment, address.ToString());
}

std::string NodeKey(absl::string_view host_id) { return absl::StrCat(HostKeyPrefix(host_id), kNodeSegment); }

std::string CompleteKey(absl::string_view host_id) { return absl::StrCat(HostKeyPrefix(host_id), kCompleteSegment); }

std::string StoreKeyOf(const StoreRecord& record) {
  if (const auto* endpoint = std::get_if<RemoteEndpoint>(&record))
    return EndpointKey(endpoint->host, endpoint->address);
  if (const auto* node = std::get_if<NodeRecord>(&record)) return NodeKey(node->host);
  return CompleteKey(std::get<CompleteMarker>(record).host);
}

std::string EncodeStoreRecord(const StoreRecord& record) {
  Json value = Json::object();
  if (const auto* endpoint = std::get_if<RemoteEndpoint>(&record)) {
    value["host"] = endpoint->host;
    value["address"] = endpoint->address.ToString();
    value["labels"] = Json::object();
    for (const auto& [name, label] : endpoint->labels) value["labels"][name] = label;
    if (!endpoint->container_name.empty()) value["container"] = endpoint->container_name;
  } else if (const auto* node = std::get_if<NodeRecord>(&record)) {
    value["host"] = node->host;
    value["addresses"] = Json::array();
    for (const IpAddress& address : node->addresses) value["addresses"].push_back(address.ToString());
  } else {
    value["host"] = std::get<CompleteMarker>(record).host;
  }
  return value.dump();
}

absl::StatusOr<StoreKey> ParseStoreKey(absl::string_view key) {
  absl::string_view rest = key;
  if (!absl::ConsumePrefix(&rest, kStoreHostsPrefix)) return BadKey(key, absl::StrCat("not under ", kStoreHostsPrefix));
  const size_t slash = rest.find('/');
  if (slash == absl::string_view::npos) return BadKey(key, "no record after the host id");
  StoreKey parsed{.host = std::string(rest.substr(0, slash))};
  if (absl::Status host = ValidateHostId(parsed.host); !host.ok()) return BadKey(key, host.message());
  rest.remove_prefix(slash + 1);
  if (rest == kNodeSegment) {
    parsed.kind = StoreKey::Kind::kNode;
  } else if (rest == kCompleteSegment) {
    parsed.kind = StoreKey::Kind::kComplete;
  } else if (absl::ConsumePrefix(&rest, kEndpointsSegment)) {
    absl::StatusOr<IpAddress> address = ParseCanonicalAddress(rest);
    if (!address.ok()) return BadKey(key, address.status().message());
    parsed.address = *address;
  } else {
    return BadKey(key, absl::StrCat("unknown record '", rest, "' (expected endpoints/<address>, ", kNodeSegment, " or ",
                                    kCompleteSegment, ")"));
  }
  return parsed;
}

absl::StatusOr<StoreRecord> DecodeStoreRecord(absl::string_view key, absl::string_view value) {
  absl::StatusOr<StoreKey> parsed = ParseStoreKey(key);
  if (!parsed.ok()) return parsed.status();
  const Json object = Json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return BadKey(key, "value is not JSON");
  if (!object.is_object()) return BadKey(key, "value is not a JSON object");
  try {
    switch (parsed->kind) {
      case StoreKey::Kind::kEndpoint:
        return DecodeEndpoint(object, *parsed);
      case StoreKey::Kind::kNode:
        return DecodeNode(object, *parsed);
      case StoreKey::Kind::kComplete:
        CheckHost(object, *parsed);
        return CompleteMarker{.host = parsed->host};
    }
  } catch (const std::exception& e) {
    return BadKey(key, e.what());
  }
  return BadKey(key, "unknown record kind");
}

}  // namespace stockade
