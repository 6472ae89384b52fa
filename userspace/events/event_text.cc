// SPDX-License-Identifier: Apache-2.0
#include "stockade/events/event_text.h"

#include "absl/strings/str_cat.h"

namespace stockade {
namespace {

std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// "web 10.0.0.2:40000", "[fd00::2]:80", "world 198.51.100.7".
std::string Peer(const nlohmann::json& peer) {
  std::string ip = Str(peer, "ip");
  std::string out;
  std::string container = Str(peer, "container");
  if (!container.empty()) {
    std::string host = Str(peer, "host");
    out = host.empty() ? container + " " : absl::StrCat(container, "@", host, " ");
  } else if (peer.contains("labels") && peer["labels"].contains("reserved")) {
    out = Str(peer["labels"], "reserved") + " ";
  }
  bool v6 = ip.find(':') != std::string::npos;
  if (peer.contains("port") && peer["port"].is_number()) {
    absl::StrAppend(&out, v6 ? "[" : "", ip, v6 ? "]" : "", ":", peer["port"].get<int>());
  } else {
    out += ip.empty() ? "-" : ip;
  }
  return out;
}

}  // namespace

std::string FormatEventText(const nlohmann::json& e, bool colour) {
  std::string time = Str(e, "time");
  // "2026-11-26T10:51:17.123456789Z" -> "2026-11-26 10:51:17.123": a terminal needs milliseconds.
  if (time.size() >= 23) time = time.substr(0, 10) + " " + time.substr(11, 12);
  std::string verdict = Str(e, "verdict");
  const char* on = "";
  const char* off = "";
  if (colour) {
    on = verdict == "AUDIT" ? "\033[33m" : verdict == "FORWARDED" ? "\033[32m" : "\033[31m";
    off = "\033[0m";
  }
  // A forwarded record is a new flow: its reason would only repeat the verdict.
  std::string reason = verdict == "FORWARDED" ? "" : " " + Str(e, "reason");
  std::string line = absl::StrCat(time, " ", on, verdict, reason, off, " ",
                                  Peer(e.value("source", nlohmann::json::object())), " -> ",
                                  Peer(e.value("destination", nlohmann::json::object())), " ", Str(e, "protocol"));
  if (e.contains("icmp_type"))
    absl::StrAppend(&line, " type ", e["icmp_type"].get<int>(), " code ", e.value("icmp_code", 0));
  uint64_t count = e.value("count", uint64_t{1});
  if (count > 1) absl::StrAppend(&line, " x", count);
  absl::StrAppend(&line, " ", Str(e, "direction"), " ", Str(e, "interface"));
  std::string rule = Str(e, "rule");
  if (!rule.empty()) absl::StrAppend(&line, " rule: ", rule);
  return line;
}

}  // namespace stockade
