// SPDX-License-Identifier: Apache-2.0
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "stockade/agent/static_endpoints.h"

namespace stockade {
namespace {

absl::Status At(const std::string& file, const YAML::Node& node, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ":", node.Mark().line + 1, ": ", what));
}

// Labels become identities, saved as JSON and sent to stockade-tail: they
// must be text. YAML hands over bytes as they are.
bool IsUtf8(const std::string& text) {
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = text[i];
    size_t extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : 4;
    if (extra == 4 || (extra == 1 && c < 0xc2) || i + extra >= text.size() + (extra ? 0 : 1)) return false;
    uint32_t code = extra == 0 ? c : c & (0x3f >> extra);
    for (size_t k = 1; k <= extra; ++k) {
      unsigned char next = text[i + k];
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and beyond U+10FFFF are not UTF-8.
    if ((extra == 2 && code < 0x800) || (extra == 3 && (code < 0x10000 || code > 0x10ffff)) ||
        (code >= 0xd800 && code <= 0xdfff))
      return false;
    i += extra + 1;
  }
  return true;
}

absl::StatusOr<Workload> ParseEndpoint(const std::string& file, const YAML::Node& node, size_t index) {
  std::string where = absl::StrCat("endpoints[", index, "]");
  if (!node.IsMap()) return At(file, node, absl::StrCat(where, ": must be a mapping"));
  static const absl::flat_hash_set<std::string> kKnown = {"name", "netns", "interface", "hook",
                                                          "ipv4", "ipv6",  "labels"};
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    if (!kKnown.contains(key)) return At(file, kv.first, absl::StrCat(where, ": unknown field '", key, "'"));
  }
  for (const char* required : {"name", "netns", "interface"}) {
    if (!node[required] || !node[required].IsScalar())
      return At(file, node, absl::StrCat(where, ": '", required, "' is required"));
  }
  Workload w;
  w.name = node["name"].as<std::string>();
  w.id = absl::StrCat("static/", w.name);
  w.source = "static";
  WorkloadInterface iface;
  iface.network = "static";
  iface.driver = "static";
  iface.netns_path = node["netns"].as<std::string>();
  iface.ifname = node["interface"].as<std::string>();
  if (node["hook"]) {
    std::string hook = node["hook"].as<std::string>();
    if (hook == "host-peer") {
      iface.placement = HookPlacement::kHostPeer;
    } else if (hook == "in-container") {
      iface.placement = HookPlacement::kInContainer;
    } else {
      return At(file, node["hook"], absl::StrCat(where, ".hook: '", hook, "' is not host-peer or in-container"));
    }
  }
  for (const char* family : {"ipv4", "ipv6"}) {
    if (!node[family]) continue;
    auto addr = ParseIpAddress(node[family].as<std::string>());
    if (!addr.ok()) return At(file, node[family], absl::StrCat(where, ".", family, ": ", addr.status().message()));
    bool want_v4 = std::string(family) == "ipv4";
    if ((addr->family == STOCKADE_AF_INET) != want_v4)
      return At(file, node[family], absl::StrCat(where, ".", family, ": wrong address family"));
    (want_v4 ? iface.ipv4 : iface.ipv6) = *addr;
  }
  if (node["labels"]) {
    if (!node["labels"].IsMap()) return At(file, node["labels"], absl::StrCat(where, ".labels: must be a mapping"));
    for (const auto& kv : node["labels"]) {
      std::string key = kv.first.as<std::string>(), value = kv.second.as<std::string>();
      if (!IsUtf8(key) || !IsUtf8(value))
        return At(file, kv.first, absl::StrCat(where, ".labels: label '", absl::CHexEscape(key), "' is not UTF-8 text"));
      w.labels[absl::StrCat("stockade.", key)] = value;
    }
  }
  w.interfaces.push_back(std::move(iface));
  return w;
}

}  // namespace

absl::StatusOr<std::vector<Workload>> ParseStaticEndpoints(const std::string& yaml_text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ":", e.mark.line + 1, ": ", e.msg));
  }
  std::vector<Workload> out;
  if (!root || root.IsNull()) return out;
  if (!root.IsMap() || !root["endpoints"] || !root["endpoints"].IsSequence())
    return At(file, root, "expected a mapping with an 'endpoints' list");
  for (const auto& kv : root) {
    if (kv.first.as<std::string>() != "endpoints")
      return At(file, kv.first, absl::StrCat("unknown field '", kv.first.as<std::string>(), "'"));
  }
  absl::flat_hash_set<std::string> names;
  size_t index = 0;
  try {
    for (const YAML::Node& node : root["endpoints"]) {
      auto w = ParseEndpoint(file, node, index++);
      if (!w.ok()) return w.status();
      if (!names.insert(w->name).second)
        return At(file, node, absl::StrCat("endpoint name '", w->name, "' appears twice"));
      out.push_back(std::move(*w));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ":", e.mark.line + 1, ": ", e.msg));
  }
  return out;
}

absl::StatusOr<std::vector<Workload>> LoadStaticEndpoints(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("read static endpoints ", path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseStaticEndpoints(text.str(), path);
}

absl::Status StaticEndpointsSource::Resync() {
  auto workloads = LoadStaticEndpoints(path_);
  if (!workloads.ok()) return workloads.status();
  workloads_ = std::move(*workloads);
  listed_ = true;
  return absl::OkStatus();
}

}  // namespace stockade
