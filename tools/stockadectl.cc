// SPDX-License-Identifier: Apache-2.0
//
// stockadectl: what stockaded does, for an operator. Talks to the agent's
// root-only control socket; `policy validate` and `policy suggest` work
// without an agent.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "stockade/agent/control_socket.h"
#include "stockade/policy/policy_parser.h"
#include "stockade/policy/policy_suggest.h"
#include "stockade/version/version.h"

namespace {

constexpr char kUsage[] = R"(Usage: stockadectl [--instance NAME] [--socket PATH] [-o json] COMMAND
What stockaded enforces, from its control socket; policy validate and suggest need no agent.

Commands:
  status                          agent, Docker link, policies, drop counters
  endpoint list [--remote]        containers, networks, interfaces, identities, labels used and ignored;
                                  --remote: other hosts' too (through etcd), with their host
  identity list                   identities and their labels
  policy get                      the compiled rules and where each comes from
  policy validate FILE...         check policy files without applying them
  policy suggest --from-file FILE [--out DIR] [--cidr-prefix N]
                                  least-privilege policies from observed flows (JSON,
                                  include/stockade/policy/policy_suggest.h): one file per
                                  endpoint group into DIR, or all on stdout; world peers as
                                  CIDRs if asked: IPv4 aggregated to /N, IPv6 to /64
  explain FROM TO PORT[/tcp|udp]  would FROM reach TO on PORT, and which rule says so
  tls                             live TCP flows per endpoint pair and port: begun in TLS, in plaintext, no payload yet

Options:
  --instance NAME                 the agent's instance (default: default)
  --socket PATH                   its control socket (default /run/stockade/NAME.sock)
  -o json                         the answer as JSON
  -h, --help                      this text
  --version                       print the version and the git revision, exit
)";

std::string Str(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) out += absl::StrFormat("%-*s  ", width[c], cells[c]);
    std::printf("%s\n", std::string(absl::StripTrailingAsciiWhitespace(out)).c_str());
  };
  line(header);
  for (const auto& row : rows) line(row);
}

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "stockadectl: %s\n", message.c_str());
  return code;
}

int ValidatePolicies(const std::vector<std::string>& files, bool json) {
  int bad = 0;
  nlohmann::json results = nlohmann::json::array();
  for (const std::string& file : files) {
    auto policies = stockade::ValidatePolicyFile(file);
    if (!policies.ok()) {
      ++bad;
      if (!json) std::fprintf(stderr, "%s\n", std::string(policies.status().message()).c_str());
      results.push_back({{"file", file}, {"valid", false}, {"error", std::string(policies.status().message())}});
      continue;
    }
    std::vector<std::string> names;
    for (const auto& p : *policies) names.push_back(p.name);
    if (!json) std::printf("%s: valid (%s)\n", file.c_str(), absl::StrJoin(names, ", ").c_str());
    results.push_back({{"file", file}, {"valid", true}, {"policies", names}});
  }
  if (json) std::printf("%s\n", results.dump(2).c_str());
  return bad ? 1 : 0;
}

// The whole of a text file, or why not.
bool ReadTextFile(const std::string& path, std::string& text, std::string& error) {
  std::ifstream in(path);
  std::stringstream buffer;
  if (in) buffer << in.rdbuf();
  if (!in || in.bad()) {
    error = absl::StrCat("read ", path, ": ", std::strerror(errno));
    return false;
  }
  text = buffer.str();
  return true;
}

bool WriteTextFile(const std::string& path, const std::string& text, std::string& error) {
  std::ofstream out(path, std::ios::trunc);
  if (out) out << text;
  if (out) out.close();
  if (!out) {
    error = absl::StrCat("write ", path, ": ", std::strerror(errno));
    return false;
  }
  return true;
}

// policy suggest: observed flows (a file) to policy files, offline.
int SuggestPolicyFiles(const std::vector<std::string>& args) {
  std::string from_file, out_dir;
  stockade::SuggestOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (i + 1 == args.size()) return Fail(absl::StrCat("policy suggest: ", arg, " needs a value"), 2);
    const std::string& value = args[++i];
    int length = 0;
    if (arg == "--from-file") {
      from_file = value;
    } else if (arg == "--out") {
      out_dir = value;
    } else if (arg == "--cidr-prefix") {
      if (!absl::SimpleAtoi(value, &length) || length < 0 || length > 32)
        return Fail(absl::StrCat("policy suggest: --cidr-prefix ", value, ": not a length from 0 to 32"), 2);
      options.world_ipv4_prefix = static_cast<uint8_t>(length);
    } else {
      return Fail(absl::StrCat("policy suggest: unknown option ", arg), 2);
    }
  }
  if (from_file.empty()) return Fail("policy suggest needs --from-file FILE", 2);

  std::string text, error;
  if (!ReadTextFile(from_file, text, error)) return Fail(error);
  auto observations = stockade::ParseFlowObservations(text, from_file);
  if (!observations.ok()) return Fail(std::string(observations.status().message()));
  auto suggestion = stockade::SuggestPolicies(*observations, options);
  if (!suggestion.ok()) return Fail(absl::StrCat(from_file, ": ", suggestion.status().message()));
  for (const std::string& note : suggestion->notes) std::fprintf(stderr, "note: %s\n", note.c_str());
  if (suggestion->files.empty()) return Fail(absl::StrCat(from_file, ": no allowed or audited flow to learn from"));

  if (out_dir.empty()) {  // one stream of documents, itself a valid policy file
    for (const stockade::SuggestedPolicyFile& file : suggestion->files)
      std::printf("# %s\n%s---\n", file.file_name.c_str(), file.text.c_str());
    return 0;
  }
  std::error_code made;
  std::filesystem::create_directories(out_dir, made);
  if (made) return Fail(absl::StrCat("create ", out_dir, ": ", made.message()));
  for (const stockade::SuggestedPolicyFile& file : suggestion->files) {
    const std::string path = (std::filesystem::path(out_dir) / file.file_name).string();
    if (!WriteTextFile(path, file.text, error)) return Fail(error);
    std::printf("wrote %s\n", path.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string instance = "default", socket;
  bool json = false;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--instance" || arg == "--socket") && i + 1 < argc) {
      (arg == "--instance" ? instance : socket) = argv[++i];
    } else if (arg == "-o" && i + 1 < argc) {
      json = std::string(argv[++i]) == "json";
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--version") {
      return stockade::PrintVersion("stockadectl");
    } else {
      words.push_back(arg);
    }
  }
  if (socket.empty()) socket = stockade::DefaultControlSocketPath(instance);
  std::string command = words.empty() ? "" : words[0];
  if (words.size() >= 2 && (command == "endpoint" || command == "identity" || command == "policy"))
    command += " " + words[1];
  if (command == "policy validate") {
    if (words.size() < 3) return Fail("policy validate needs a FILE", 2);
    return ValidatePolicies({words.begin() + 2, words.end()}, json);
  }
  if (command == "policy suggest") return SuggestPolicyFiles({words.begin() + 2, words.end()});

  nlohmann::json request = {{"command", command}};
  if (command == "endpoint list") {
    if (words.size() > 3 || (words.size() == 3 && words[2] != "--remote"))
      return Fail("endpoint list takes only --remote", 2);
    request["remote"] = words.size() == 3;
  } else if (command == "explain") {
    if (words.size() != 4) return Fail("explain takes FROM TO PORT[/tcp|udp]", 2);
    std::string port_text = words[3], proto = "tcp";
    if (auto slash = port_text.find('/'); slash != std::string::npos) {
      proto = port_text.substr(slash + 1);
      port_text = port_text.substr(0, slash);
    }
    int port;
    if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) return Fail("PORT must be 0-65535", 2);
    if (proto != "tcp" && proto != "udp") return Fail("protocol must be tcp or udp", 2);
    request["from"] = words[1];
    request["to"] = words[2];
    request["port"] = port;
    request["protocol"] = proto == "tcp" ? 6 : 17;
  } else if (command != "status" && command != "endpoint list" && command != "identity list" &&
             command != "policy get" && command != "tls") {
    std::fputs(kUsage, stderr);
    return 2;
  }

  auto answer = stockade::ControlRequest(socket, request);
  if (!answer.ok()) {
    int code = absl::IsUnavailable(answer.status()) ? 3 : absl::IsPermissionDenied(answer.status()) ? 4 : 1;
    return Fail(std::string(answer.status().message()), code);
  }
  const nlohmann::json& a = *answer;
  if (json) {
    std::printf("%s\n", a.dump(2).c_str());
    return 0;
  }
  if (command == "status") {
    for (const auto& [key, value] : a.items()) {
      std::string text = Str(value);
      if (value.is_array() && std::all_of(value.begin(), value.end(), [](const auto& v) { return v.is_string(); }))
        text = absl::StrJoin(value, " ", [](std::string* out, const nlohmann::json& v) { out->append(Str(v)); });
      std::printf("%-20s %s\n", key.c_str(), text.c_str());
    }
  } else if (command == "endpoint list") {
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : a["endpoints"]) {
      std::vector<std::string> ignored;
      for (const auto& l : e["ignored_labels"]) ignored.push_back(Str(l["label"]));
      std::vector<std::string> labels;
      for (const auto& [k, v] : e["labels"].items()) labels.push_back(absl::StrCat(k, "=", Str(v)));
      std::string name = Str(e["name"]);
      if (e.contains("host")) name = absl::StrCat(name, "@", Str(e["host"]));
      rows.push_back({name, Str(e["mode"]), Str(e["network"]), Str(e["interface"]),
                      absl::StrJoin({Str(e["ipv4"]), Str(e["ipv6"])}, " "), Str(e["identity_name"]),
                      absl::StrJoin(labels, ","), ignored.empty() ? "-" : absl::StrJoin(ignored, ","),
                      Str(e["state"]) + (Str(e["error"]).empty() ? "" : ": " + Str(e["error"]))});
    }
    PrintTable({"CONTAINER", "MODE", "NETWORK", "INTERFACE", "IPS", "IDENTITY", "LABELS", "IGNORED", "STATE"}, rows);
  } else if (command == "identity list") {
    std::vector<std::vector<std::string>> rows;
    for (const auto& i : a["identities"]) rows.push_back({Str(i["identity"]), Str(i["name"])});
    PrintTable({"IDENTITY", "LABELS"}, rows);
  } else if (command == "policy get") {
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : a["rules"])
      rows.push_back({Str(r["rule"]), Str(r["action"]) + (r.value("require_tls", false) ? " requireTLS" : ""),
                      Str(r["direction"]), Str(r["local"]), Str(r["remote"]), Str(r["protocol"]), Str(r["ports"]),
                      Str(r["origin"])});
    PrintTable({"RULE", "ACTION", "DIRECTION", "LOCAL", "REMOTE", "PROTO", "PORTS", "FROM"}, rows);
    if (!Str(a["policy_error"]).empty()) std::printf("\nrejected (last good policy in force): %s\n", Str(a["policy_error"]).c_str());
  } else if (command == "tls") {
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : a["flows"]) {
      const bool ingress = Str(f["direction"]) == "ingress";
      rows.push_back({Str(f["local"]), ingress ? "<-" : "->", Str(f["remote"]), Str(f["port"]),
                      f["require_tls"].get<bool>() ? "yes" : "no", Str(f["tls"]), Str(f["plaintext"]),
                      Str(f["no_payload"])});
    }
    PrintTable({"LOCAL", "", "REMOTE", "PORT", "REQUIRE_TLS", "TLS", "PLAINTEXT", "NO_PAYLOAD"}, rows);
  } else if (command == "explain") {
    std::printf("%s -> %s port %s: %s\n", Str(a["from"]).c_str(), Str(a["to"]).c_str(), Str(a["port"]).c_str(),
                Str(a["verdict"]).c_str());
    for (const char* side : {"egress_at_source", "ingress_at_destination"}) {
      const auto& s = a[side];
      std::printf("  %-24s %s%s%s\n", side, Str(s["verdict"]).c_str(), s.contains("rule") ? (" by rule " + Str(s["rule"])).c_str() : "",
                  Str(s["why"]).empty() ? "" : (" — " + Str(s["why"])).c_str());
    }
  }
  return 0;
}
