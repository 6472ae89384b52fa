// SPDX-License-Identifier: Apache-2.0
#include "stockade/docker/docker_parse.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace stockade {
namespace {

using Json = nlohmann::json;

// Docker writes null for empty maps and lists; a missing member is as empty.
bool IsAbsent(const Json& object, const char* key) {
  auto found = object.find(key);
  return found == object.end() || found->is_null();
}

std::string StringOr(const Json& object, const char* key) {
  return IsAbsent(object, key) ? "" : object.at(key).get<std::string>();
}

DockerLabels StringMap(const Json& object, const char* key) {
  return IsAbsent(object, key) ? DockerLabels() : object.at(key).get<DockerLabels>();
}

// An integer member within T's range; absent or null: `fallback`. Json's own
// value<T>() would convert a float out of T's range (undefined behaviour) and
// wrap an integer that does not fit (an IPPrefixLen of 300 read as 44).
template <typename T>
T IntegerOr(const Json& object, const char* key, T fallback) {
  if (IsAbsent(object, key)) return fallback;
  const Json& member = object.at(key);
  const bool fits = member.is_number_unsigned()
                        ? member.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                        : member.is_number_integer() && member.get<int64_t>() >= std::numeric_limits<T>::min() &&
                              member.get<int64_t>() <= std::numeric_limits<T>::max();
  if (!fits)
    throw std::invalid_argument(absl::StrCat(key, ": expected an integer from ", std::numeric_limits<T>::min(), " to ",
                                             std::numeric_limits<T>::max(), ", got ", member.dump()));
  return member.get<T>();
}

// An address member that may be "" (not assigned).
std::optional<IpAddress> OptionalAddress(const Json& object, const char* key) {
  const std::string text = StringOr(object, key);
  if (text.empty()) return std::nullopt;
  absl::StatusOr<IpAddress> address = ParseIpAddress(text);
  if (!address.ok()) throw std::invalid_argument(absl::StrCat(key, ": ", address.status().message()));
  return *address;
}

std::string WithoutSlash(std::string name) { return std::string(absl::StripPrefix(name, "/")); }

// Runs `parse` on the parsed `body`; JSON, type and value errors become
// InvalidArgument "parse <what>: ...". Throwing inside the parsers keeps
// them free of a check after every member access.
template <typename T, typename Parse>
absl::StatusOr<T> ParseBody(absl::string_view body, absl::string_view what, Parse parse) {
  try {
    return parse(Json::parse(body.begin(), body.end()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("parse ", what, ": ", e.what()));
  }
}

NetworkAttachment ParseAttachment(const std::string& name, const Json& settings) {
  NetworkAttachment attachment{.network_name = name,
                               .network_id = StringOr(settings, "NetworkID"),
                               .endpoint_id = StringOr(settings, "EndpointID"),
                               .ipv4 = OptionalAddress(settings, "IPAddress"),
                               .ipv4_prefix_length = IntegerOr<uint8_t>(settings, "IPPrefixLen", 0),
                               .ipv6 = OptionalAddress(settings, "GlobalIPv6Address"),
                               .ipv6_prefix_length = IntegerOr<uint8_t>(settings, "GlobalIPv6PrefixLen", 0)};
  if (const std::string mac = StringOr(settings, "MacAddress"); !mac.empty()) {
    absl::StatusOr<std::array<uint8_t, 6>> parsed = ParseMac(mac);
    if (!parsed.ok()) throw std::invalid_argument(absl::StrCat("MacAddress: ", parsed.status().message()));
    attachment.mac = *parsed;
  }
  return attachment;
}

// An address member written with its prefix length ("172.18.0.3/16"), or "".
std::optional<IpAddress> OptionalAddressWithLength(const Json& object, const char* key, uint8_t& length) {
  const std::string text = StringOr(object, key);
  if (text.empty()) return std::nullopt;
  const size_t slash = text.find('/');
  absl::StatusOr<IpAddress> address = ParseIpAddress(text.substr(0, slash));
  if (!address.ok()) throw std::invalid_argument(absl::StrCat(key, ": ", address.status().message()));
  const int max_length = address->family == STOCKADE_AF_INET ? 32 : 128;
  if (slash != text.npos) {
    int parsed = -1;
    if (!absl::SimpleAtoi(text.substr(slash + 1), &parsed) || parsed < 0 || parsed > max_length)
      throw std::invalid_argument(absl::StrCat(key, ": bad prefix length in ", text));
    length = static_cast<uint8_t>(parsed);
  }
  return *address;
}

// One entry of a network inspect's Containers.
NetworkAttachment ParseNetworkEndpoint(const NetworkInfo& network, const Json& entry) {
  NetworkAttachment attachment{.network_name = network.name,
                               .network_id = network.id,
                               .endpoint_id = StringOr(entry, "EndpointID")};
  attachment.ipv4 = OptionalAddressWithLength(entry, "IPv4Address", attachment.ipv4_prefix_length);
  attachment.ipv6 = OptionalAddressWithLength(entry, "IPv6Address", attachment.ipv6_prefix_length);
  if (const std::string mac = StringOr(entry, "MacAddress"); !mac.empty()) {
    absl::StatusOr<std::array<uint8_t, 6>> parsed = ParseMac(mac);
    if (!parsed.ok()) throw std::invalid_argument(absl::StrCat("MacAddress: ", parsed.status().message()));
    attachment.mac = *parsed;
  }
  return attachment;
}

// One network, as GET /networks/ID and each entry of GET /networks show it.
NetworkInfo NetworkFromJson(const Json& doc) {
  NetworkInfo info{.id = doc.at("Id").get<std::string>(),
                   .name = StringOr(doc, "Name"),
                   .driver = StringOr(doc, "Driver"),
                   .scope = StringOr(doc, "Scope"),
                   .internal = doc.value("Internal", false),
                   .enable_ipv6 = doc.value("EnableIPv6", false),
                   .options = StringMap(doc, "Options"),
                   .labels = StringMap(doc, "Labels")};
  if (!IsAbsent(doc, "IPAM") && !IsAbsent(doc.at("IPAM"), "Config")) {
    for (const Json& pool : doc.at("IPAM").at("Config")) {
      absl::StatusOr<IpPrefix> subnet = ParseIpPrefix(pool.at("Subnet").get<std::string>());
      if (!subnet.ok()) throw std::invalid_argument(absl::StrCat("IPAM Subnet: ", subnet.status().message()));
      info.ipam_pools.push_back({.subnet = *subnet, .gateway = OptionalAddress(pool, "Gateway")});
    }
  }
  if (!IsAbsent(doc, "Containers"))
    for (const auto& [id, entry] : doc.at("Containers").items())
      info.containers.emplace(id, ParseNetworkEndpoint(info, entry));
  return info;
}

// The subscribed set, in one place for parsing, naming and the server-side filter.
struct SubscribedAction {
  DockerEventType type;
  const char* name;
  DockerEventAction action;
};
constexpr SubscribedAction kSubscribedActions[] = {
    {DockerEventType::kContainer, "start", DockerEventAction::kStart},
    {DockerEventType::kContainer, "die", DockerEventAction::kDie},
    {DockerEventType::kContainer, "destroy", DockerEventAction::kDestroy},
    {DockerEventType::kContainer, "restart", DockerEventAction::kRestart},
    {DockerEventType::kContainer, "rename", DockerEventAction::kRename},
    {DockerEventType::kNetwork, "connect", DockerEventAction::kConnect},
    {DockerEventType::kNetwork, "disconnect", DockerEventAction::kDisconnect},
};

const char* TypeName(DockerEventType type) { return type == DockerEventType::kContainer ? "container" : "network"; }

}  // namespace

absl::StatusOr<std::vector<ContainerSummary>> ParseContainerList(absl::string_view body) {
  return ParseBody<std::vector<ContainerSummary>>(body, "container list", [](const Json& list) {
    std::vector<ContainerSummary> containers;
    for (const Json& entry : list) {
      ContainerSummary summary{.id = entry.at("Id").get<std::string>(),
                               .state = StringOr(entry, "State"),
                               .image_id = StringOr(entry, "ImageID"),
                               .labels = StringMap(entry, "Labels")};
      // Links add names like "/web/db"; the container's own has one slash.
      for (const Json& name : entry.value("Names", Json::array())) {
        std::string own = WithoutSlash(name.get<std::string>());
        if (!absl::StrContains(own, '/')) summary.name = std::move(own);
      }
      containers.push_back(std::move(summary));
    }
    return containers;
  });
}

absl::StatusOr<ContainerInfo> ParseContainerInspect(absl::string_view body) {
  return ParseBody<ContainerInfo>(body, "container inspect", [](const Json& doc) {
    const Json& state = doc.at("State");
    ContainerInfo info{.id = doc.at("Id").get<std::string>(),
                       .name = WithoutSlash(StringOr(doc, "Name")),
                       .status = StringOr(state, "Status"),
                       .running = state.value("Running", false),
                       .pid = IntegerOr<int>(state, "Pid", 0),
                       .image_id = StringOr(doc, "Image")};
    if (!IsAbsent(doc, "Config")) info.labels = StringMap(doc.at("Config"), "Labels");
    if (!IsAbsent(doc, "HostConfig")) info.network_mode = StringOr(doc.at("HostConfig"), "NetworkMode");
    if (!IsAbsent(doc, "NetworkSettings") && !IsAbsent(doc.at("NetworkSettings"), "Networks")) {
      // A JSON object iterates in key order: the networks come sorted by name.
      for (const auto& [name, settings] : doc.at("NetworkSettings").at("Networks").items())
        info.networks.push_back(ParseAttachment(name, settings));
    }
    return info;
  });
}

absl::StatusOr<ImageInfo> ParseImageInspect(absl::string_view body) {
  return ParseBody<ImageInfo>(body, "image inspect", [](const Json& doc) {
    ImageInfo info{.id = doc.at("Id").get<std::string>()};
    if (!IsAbsent(doc, "RepoTags")) info.repo_tags = doc.at("RepoTags").get<std::vector<std::string>>();
    if (!IsAbsent(doc, "Config")) info.labels = StringMap(doc.at("Config"), "Labels");
    return info;
  });
}

absl::StatusOr<NetworkInfo> ParseNetworkInspect(absl::string_view body) {
  return ParseBody<NetworkInfo>(body, "network inspect", NetworkFromJson);
}

absl::StatusOr<std::vector<NetworkInfo>> ParseNetworkList(absl::string_view body) {
  return ParseBody<std::vector<NetworkInfo>>(body, "network list", [](const Json& list) {
    std::vector<NetworkInfo> networks;
    for (const Json& entry : list) networks.push_back(NetworkFromJson(entry));
    return networks;
  });
}

absl::StatusOr<std::optional<DockerEvent>> ParseDockerEvent(absl::string_view line) {
  return ParseBody<std::optional<DockerEvent>>(line, "docker event", [](const Json& doc) {
    const std::string type = StringOr(doc, "Type");
    const std::string action = StringOr(doc, "Action");
    auto subscribed =
        std::find_if(std::begin(kSubscribedActions), std::end(kSubscribedActions),
                     [&](const SubscribedAction& a) { return type == TypeName(a.type) && action == a.name; });
    if (subscribed == std::end(kSubscribedActions)) return std::optional<DockerEvent>();
    const Json& actor = doc.at("Actor");
    DockerEvent event{.type = subscribed->type,
                      .action = subscribed->action,
                      .time = absl::FromUnixNanos(IntegerOr<int64_t>(doc, "timeNano", 0))};
    if (event.type == DockerEventType::kContainer) {
      event.container_id = actor.at("ID").get<std::string>();
    } else {
      event.network_id = actor.at("ID").get<std::string>();
      event.container_id = actor.at("Attributes").at("container").get<std::string>();
    }
    return std::optional<DockerEvent>(std::move(event));
  });
}

std::string SubscribedEventFilters() {
  // Docker ANDs the keys and ORs each key's values: the type filter drops the
  // other object types' events of the same names, except a network "destroy".
  Json filters = {{"type", {"container", "network"}}, {"event", Json::array()}};
  for (const SubscribedAction& a : kSubscribedActions) filters["event"].push_back(a.name);
  return filters.dump();
}

std::string ParseErrorMessage(absl::string_view body) {
  const Json doc = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_object() && doc.contains("message") && doc.at("message").is_string())
    return doc.at("message").get<std::string>();
  return std::string(absl::StripAsciiWhitespace(body));
}

std::string DescribeDockerEvent(const DockerEvent& event) {
  for (const SubscribedAction& a : kSubscribedActions)
    if (a.action == event.action && a.type == event.type) return absl::StrCat(TypeName(a.type), " ", a.name);
  return absl::StrCat(TypeName(event.type), " ?");
}

}  // namespace stockade
