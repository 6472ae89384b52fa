// SPDX-License-Identifier: Apache-2.0
//
// Observed flows to policy text, in four steps: (1) each flow becomes a
// client, a server and a server port, merged where both ends reported it;
// (2) the endpoint groups (identities) that get a file; (3) per group, its
// ingress (as server) and, where needed, egress (as client) flows become
// rules, one per set of ports with the same peers; (4) the rules become
// text. Every container is ordered, so the text depends only on what was
// observed, not on the order it came in.
#include "stockade/policy/policy_suggest.h"

#include <netinet/in.h>

#include <algorithm>
#include <map>
#include <set>
#include <array>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "stockade/policy/policy_parser.h"

namespace stockade {
namespace {

// One end of a flow: an endpoint identity, or an entity. World is one party
// or, with CIDRs asked for, one per aggregated prefix.
struct Party {
  std::optional<Entity> entity;  // unset: the endpoint identity `labels`
  LabelSet labels;
  std::optional<IpPrefix> world_prefix;

  // Parties are map keys, compared often: labels are compared in place.
  auto PrefixKey() const {
    return world_prefix ? std::make_tuple(true, world_prefix->address.family, world_prefix->address.bytes,
                                          world_prefix->length)
                        : std::make_tuple(false, uint8_t{0}, std::array<uint8_t, 16>{}, uint8_t{0});
  }
  bool operator<(const Party& other) const {
    if (entity != other.entity) return entity < other.entity;
    if (labels != other.labels) return labels < other.labels;
    return PrefixKey() < other.PrefixKey();
  }
  bool operator==(const Party& other) const {
    return entity == other.entity && labels == other.labels && PrefixKey() == other.PrefixKey();
  }
  bool IsEndpoint() const { return !entity.has_value(); }
};

struct PortKey {
  uint8_t protocol = 0;
  uint16_t port = 0;
  auto operator<=>(const PortKey&) const = default;
};

struct FlowKey {
  Party client;
  Party server;
  PortKey port;
  bool operator<(const FlowKey& other) const {
    return std::tie(client, server, port) < std::tie(other.client, other.server, other.port);
  }
};

// What the flows of one key add up to.
struct FlowTally {
  uint64_t count = 0;
  absl::Time first_seen = absl::InfiniteFuture();
  absl::Time last_seen = absl::InfinitePast();
  std::set<std::string> client_names, server_names;  // containers, for comments
  std::set<std::string> world_addresses;             // the world end's addresses seen

  void AddTimes(absl::Time first, absl::Time last) {
    first_seen = std::min(first_seen, first);
    last_seen = std::max(last_seen, last);
  }
  void AddNames(const FlowTally& other) {
    client_names.insert(other.client_names.begin(), other.client_names.end());
    server_names.insert(other.server_names.begin(), other.server_names.end());
    world_addresses.insert(other.world_addresses.begin(), other.world_addresses.end());
  }
};

IpPrefix Aggregate(const IpAddress& address, uint8_t length) {
  IpPrefix prefix{.address = address, .length = length};
  for (int bit = length; bit < (address.family == STOCKADE_AF_INET ? 32 : 128); ++bit)
    prefix.address.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  return prefix;
}

bool IsLoopback(const IpAddress& address) {
  if (address.family == STOCKADE_AF_INET) return address.bytes[0] == 127;
  static const std::array<uint8_t, 16> kIpv6Loopback = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return address.bytes == kIpv6Loopback;
}

Party LocalParty(const ObservedEndpoint& local) {
  if (local.labels.empty()) return {.entity = Entity::kUnmanaged};
  return {.labels = local.labels};
}

Party PeerParty(const ObservedPeer& peer, const SuggestOptions& options) {
  if (!peer.entity) return LocalParty(peer.endpoint);
  Party party{.entity = *peer.entity};
  if (*peer.entity == Entity::kWorld && options.world_ipv4_prefix && peer.address)
    party.world_prefix = Aggregate(*peer.address, peer.address->family == STOCKADE_AF_INET
                                                      ? std::min<uint8_t>(*options.world_ipv4_prefix, 32)
                                                      : std::min<uint8_t>(options.world_ipv6_prefix, 128));
  return party;
}

// ---- Selectors: the fewest labels that select exactly the wanted identities.

bool Selects(const LabelSet& selector, const LabelSet& labels) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

// Past this many shared labels, trying every subset costs too much (2^n):
// all of them are used, which selects no more than any subset would.
constexpr size_t kMaxLabelsToCombine = 16;

// Among labels that select equally well, the one that better says what a
// container is: a project and a network group many services.
int LabelRank(const std::string& key) {
  if (absl::StartsWith(key, kNetworkKeyPrefix)) return 2;
  return key == kComposeProjectKey ? 1 : 0;
}

// The smallest non-empty subset of the labels all `targets` share that
// selects none of the other `known` identities, by LabelRank then key among
// subsets of one size. Unset if none does.
std::optional<LabelSet> FewestLabelsSelecting(const std::set<LabelSet>& targets, const std::set<LabelSet>& known) {
  std::vector<std::pair<std::string, std::string>> shared;
  for (const auto& pair : *targets.begin())
    if (std::all_of(targets.begin(), targets.end(), [&](const LabelSet& t) { return Selects({pair}, t); }))
      shared.push_back(pair);
  std::stable_sort(shared.begin(), shared.end(),
                   [](const auto& a, const auto& b) { return LabelRank(a.first) < LabelRank(b.first); });
  auto exact = [&](const LabelSet& selector) {
    for (const LabelSet& other : known)
      if (!targets.contains(other) && Selects(selector, other)) return false;
    return true;
  };
  if (shared.size() > kMaxLabelsToCombine) {
    LabelSet all(shared.begin(), shared.end());
    return exact(all) ? std::optional(all) : std::nullopt;
  }
  for (size_t size = 1; size <= shared.size(); ++size) {
    // Subsets of `size` in lexicographic order of their indices.
    std::vector<size_t> pick(size);
    for (size_t i = 0; i < size; ++i) pick[i] = i;
    while (true) {
      LabelSet selector;
      for (size_t i : pick) selector.insert(shared[i]);
      if (exact(selector)) return selector;
      size_t i = size;
      while (i > 0 && pick[i - 1] == shared.size() - size + i - 1) --i;
      if (i == 0) break;
      ++pick[i - 1];
      for (size_t j = i; j < size; ++j) pick[j] = pick[j - 1] + 1;
    }
  }
  return std::nullopt;
}

// Selectors that together select exactly `targets`: one if one fits, else
// one per target; a target whose every label another identity also has
// (theirs a superset) gets all its labels and DoesNotExist for a key of each.
std::vector<LabelSelector> SelectExactly(const std::set<LabelSet>& targets, const std::set<LabelSet>& known) {
  if (std::optional<LabelSet> one = FewestLabelsSelecting(targets, known)) return {{.match_labels = *one}};
  std::vector<LabelSelector> out;
  for (const LabelSet& target : targets) {
    if (std::optional<LabelSet> own = FewestLabelsSelecting({target}, known)) {
      out.push_back({.match_labels = *own});
      continue;
    }
    std::set<std::string> absent;
    for (const LabelSet& other : known) {
      if (other == target || !Selects(target, other)) continue;
      for (const auto& [key, unused] : other)
        if (!target.contains(key)) {
          absent.insert(key);
          break;
        }
    }
    LabelSelector selector{.match_labels = target};
    for (const std::string& key : absent)
      selector.match_expressions.push_back({.key = key, .op = SelectorOperator::kDoesNotExist});
    out.push_back(std::move(selector));
  }
  return out;
}

// ---- Text.

// A YAML scalar: plain where that cannot be read as something else, else
// JSON-quoted (YAML reads JSON strings).
std::string Scalar(const std::string& text) {
  static const std::set<std::string> kReserved = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"};
  bool plain = !text.empty() && (absl::ascii_isalpha(text[0]) || text[0] == '_') &&
               !kReserved.contains(absl::AsciiStrToLower(text)) &&
               std::all_of(text.begin(), text.end(), [](char c) {
                 return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-' || c == '/';
               });
  return plain ? text : nlohmann::json(text).dump();
}

// A comment line holds no line break or other control character.
std::string CommentText(const std::string& text) {
  std::string out = text;
  for (char& c : out)
    if (absl::ascii_iscntrl(c)) c = '?';
  return out;
}

std::string Listed(const std::set<std::string>& items, size_t most) {
  std::vector<std::string> shown;
  for (const std::string& item : items) {
    if (shown.size() == most) break;
    shown.push_back(item);
  }
  std::string out = absl::StrJoin(shown, ", ");
  if (items.size() > most) absl::StrAppend(&out, " and ", items.size() - most, " more");
  return out;
}

std::string Flows(uint64_t count) { return absl::StrCat(count, count == 1 ? " flow" : " flows"); }

std::string Time(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); }

std::string SelectorText(const LabelSelector& selector) {
  std::vector<std::string> labels, expressions;
  for (const auto& [key, value] : selector.match_labels) labels.push_back(Scalar(key) + ": " + Scalar(value));
  for (const SelectorRequirement& req : selector.match_expressions)
    expressions.push_back(absl::StrCat("{key: ", Scalar(req.key), ", operator: DoesNotExist}"));
  std::string out = absl::StrCat("{matchLabels: {", absl::StrJoin(labels, ", "), "}");
  if (!expressions.empty()) absl::StrAppend(&out, ", matchExpressions: [", absl::StrJoin(expressions, ", "), "]");
  return out + "}";
}

// One rule: some peers, on some ports, with what its flows add up to.
struct SuggestedRule {
  std::set<Party> peers;
  std::vector<PortKey> ports;  // sorted
  FlowTally tally;
};

// The rules of one direction of one group: each (peer, port) the group
// served (or opened), grouped into one rule per set of ports with the same
// peers, so a rule allows its peers on its ports and nothing more.
std::vector<SuggestedRule> GroupRules(const std::map<std::pair<Party, PortKey>, FlowTally>& flows) {
  std::map<PortKey, std::set<Party>> peers_by_port;
  for (const auto& [key, tally] : flows) peers_by_port[key.second].insert(key.first);
  std::map<std::set<Party>, std::vector<PortKey>> ports_by_peers;
  for (const auto& [port, peers] : peers_by_port) ports_by_peers[peers].push_back(port);
  std::vector<SuggestedRule> rules;
  for (auto& [peers, ports] : ports_by_peers) {
    SuggestedRule rule{.peers = peers, .ports = ports};
    for (const Party& peer : peers)
      for (const PortKey& port : ports) {
        const FlowTally& tally = flows.at({peer, port});
        rule.tally.count += tally.count;
        rule.tally.AddTimes(tally.first_seen, tally.last_seen);
        rule.tally.AddNames(tally);
      }
    rules.push_back(std::move(rule));
  }
  // In port order: the rules read like a list of the group's services.
  std::sort(rules.begin(), rules.end(),
            [](const SuggestedRule& a, const SuggestedRule& b) { return a.ports.front() < b.ports.front(); });
  return rules;
}

std::string RuleText(const SuggestedRule& rule, bool ingress, const std::set<LabelSet>& known,
                     const std::map<LabelSet, std::set<std::string>>& names) {
  std::set<LabelSet> endpoints;
  std::set<Entity> entities;
  std::vector<std::string> cidrs;
  std::set<std::string> peer_names;
  for (const Party& peer : rule.peers) {
    if (peer.IsEndpoint()) {
      endpoints.insert(peer.labels);
      // The containers seen at the peer's end, else its labels.
      const std::set<std::string>& seen = ingress ? rule.tally.client_names : rule.tally.server_names;
      size_t named = 0;
      if (auto it = names.find(peer.labels); it != names.end())
        for (const std::string& name : it->second)
          if (seen.contains(name)) named += peer_names.insert(name).second ? 1 : 0;
      if (named == 0) peer_names.insert(FormatLabels(peer.labels));
    } else if (peer.world_prefix) {
      cidrs.push_back(peer.world_prefix->ToString());
    } else {
      entities.insert(*peer.entity);
      if (*peer.entity != Entity::kWorld) peer_names.insert(EntityKeyword(*peer.entity));
    }
  }
  if (!rule.tally.world_addresses.empty())
    peer_names.insert(absl::StrCat("world (", Listed(rule.tally.world_addresses, 16), ")"));

  std::string out = CommentText(absl::StrCat("    # ", Flows(rule.tally.count), " ",
                                             ingress ? "from " : "to ", Listed(peer_names, 10), "; first seen ",
                                             Time(rule.tally.first_seen), ", last seen ", Time(rule.tally.last_seen)));
  out += "\n";
  const char* dir = ingress ? "from" : "to";
  std::vector<std::string> keys;
  if (!endpoints.empty()) {
    std::vector<std::string> selectors;
    for (const LabelSelector& s : SelectExactly(endpoints, known)) selectors.push_back(SelectorText(s));
    keys.push_back(absl::StrCat(dir, "Endpoints: [", absl::StrJoin(selectors, ", "), "]"));
  }
  if (!entities.empty()) {
    std::vector<std::string> list;
    for (Entity e : entities) list.push_back(EntityKeyword(e));
    keys.push_back(absl::StrCat(dir, "Entities: [", absl::StrJoin(list, ", "), "]"));
  }
  if (!cidrs.empty()) keys.push_back(absl::StrCat(dir, "CIDR: [", absl::StrJoin(cidrs, ", "), "]"));
  std::vector<std::string> ports;
  for (const PortKey& port : rule.ports)
    ports.push_back(absl::StrCat("{port: \"", port.port, "\", protocol: ", ProtocolKeyword(port.protocol), "}"));
  keys.push_back(absl::StrCat("toPorts: [{ports: [", absl::StrJoin(ports, ", "), "]}]"));
  for (size_t i = 0; i < keys.size(); ++i) absl::StrAppend(&out, i == 0 ? "    - " : "      ", keys[i], "\n");
  return out;
}

// A file name and policy name from a selector's values: "web", "shop-db".
std::string NameStem(const LabelSelector& selector) {
  std::vector<std::string> values;
  for (const auto& [key, value] : selector.match_labels) values.push_back(value);
  std::string stem = absl::AsciiStrToLower(absl::StrJoin(values, "-"));
  for (char& c : stem)
    if (!absl::ascii_isalnum(c) && c != '-' && c != '.') c = '-';
  auto alnum = [](char c) { return absl::ascii_isalnum(c); };
  stem.erase(stem.begin(), std::find_if(stem.begin(), stem.end(), alnum));
  stem.erase(std::find_if(stem.rbegin(), stem.rend(), alnum).base(), stem.end());
  if (stem.size() > 200) stem.resize(200);
  return stem.empty() ? "endpoint" : stem;
}

constexpr char kDnsComment[] =
    "# DNS through Docker's embedded resolver (127.0.0.11) needs no rule: it\n"
    "# listens on the container's own loopback and dockerd forwards lookups\n"
    "# upstream from the host side, so they never cross the container's veth.\n";

}  // namespace

absl::StatusOr<PolicySuggestion> SuggestPolicies(const FlowObservations& observations, const SuggestOptions& options) {
  PolicySuggestion suggestion;
  std::set<LabelSet> known;
  std::map<LabelSet, std::set<std::string>> names;  // identity -> container names
  auto know = [&](const ObservedEndpoint& endpoint) {
    if (endpoint.labels.empty()) return;
    known.insert(endpoint.labels);
    if (!endpoint.name.empty()) names[endpoint.labels].insert(endpoint.name);
  };
  for (const ObservedEndpoint& endpoint : observations.endpoints) know(endpoint);

  // (1) Client, server and port of each flow. A flow between two endpoints
  // is reported at both ends: per end, its reports add up; the two ends
  // count the same flows, so the larger count is taken, not the sum.
  std::map<std::pair<FlowKey, FlowSide>, FlowTally> by_reporter;
  uint64_t denied = 0, loopback = 0;
  std::set<LabelSet> reporters;
  for (const ObservedFlow& flow : observations.flows) {
    if (flow.peer.entity == Entity::kWorld && !flow.peer.address)
      return absl::InvalidArgumentError("a world peer without an address");
    know(flow.local);
    if (!flow.peer.entity) know(flow.peer.endpoint);
    if (flow.verdict == FlowVerdict::kDenied) {
      denied += flow.count;
      continue;
    }
    if (flow.peer.address && IsLoopback(*flow.peer.address)) {
      loopback += flow.count;
      continue;
    }
    const Party local = LocalParty(flow.local), peer = PeerParty(flow.peer, options);
    const bool local_serves = flow.local_side == FlowSide::kServer;
    FlowKey key{.client = local_serves ? peer : local,
                .server = local_serves ? local : peer,
                .port = {flow.protocol, flow.server_port}};
    if (local.IsEndpoint()) reporters.insert(local.labels);
    FlowTally& tally = by_reporter[{key, flow.local_side}];
    tally.count += flow.count;
    tally.AddTimes(flow.first_seen, flow.last_seen);
    const std::string peer_name = flow.peer.entity ? "" : flow.peer.endpoint.name;
    for (const auto& [names_of, party, name] :
         {std::tuple(&tally.client_names, key.client, local_serves ? peer_name : flow.local.name),
          std::tuple(&tally.server_names, key.server, local_serves ? flow.local.name : peer_name)})
      if (party.IsEndpoint() && !name.empty()) names_of->insert(name);
    if (flow.peer.entity == Entity::kWorld) tally.world_addresses.insert(flow.peer.address->ToString());
  }
  std::map<FlowKey, FlowTally> flows;
  for (const auto& [key_side, reported] : by_reporter) {
    FlowTally& tally = flows[key_side.first];
    tally.count = std::max(tally.count, reported.count);
    tally.AddTimes(reported.first_seen, reported.last_seen);
    tally.AddNames(reported);
  }
  if (denied > 0)
    suggestion.notes.push_back(absl::StrCat(Flows(denied), " were denied: no suggestion allows them"));
  if (loopback > 0)
    suggestion.notes.push_back(
        absl::StrCat(Flows(loopback), " with a loopback peer were skipped: they never cross a container's veth"));

  // (2) A file for each identity seen as the local end or as a server:
  // a client seen only from its server's side keeps its own policy.
  std::set<LabelSet> groups = reporters;
  for (const auto& [key, tally] : flows)
    if (key.server.IsEndpoint()) groups.insert(key.server.labels);
  uint64_t unmanaged_served = 0;
  for (const auto& [key, tally] : flows)
    if (key.server.entity == Entity::kUnmanaged) unmanaged_served += tally.count;
  if (unmanaged_served > 0)
    suggestion.notes.push_back(absl::StrCat(Flows(unmanaged_served),
                                            " to unmanaged containers: no policy selects them (give them "
                                            "identity labels first)"));
  // Known but silent: left unenforced, which the user should know.
  std::set<LabelSet> clients;
  for (const auto& [key, tally] : flows)
    if (key.client.IsEndpoint()) clients.insert(key.client.labels);
  for (const LabelSet& identity : known) {
    if (groups.contains(identity) || clients.contains(identity)) continue;
    auto it = names.find(identity);
    suggestion.notes.push_back(absl::StrCat("no flow of ", it == names.end() ? "" : Listed(it->second, 10) + " ",
                                            FormatLabels(identity), " was observed: no policy suggested for it"));
  }

  std::set<std::string> stems_taken;
  for (const LabelSet& group : groups) {
    // (3) Its flows as server (ingress) and as client (egress).
    std::map<std::pair<Party, PortKey>, FlowTally> served, opened;
    bool opened_to_unenforced = false;  // a peer whose ingress stockade does not decide
    FlowTally all;
    for (const auto& [key, tally] : flows) {
      // Both, for replicas that talk to each other: an egress section must list them too.
      const bool serves = key.server.IsEndpoint() && key.server.labels == group;
      const bool opens = key.client.IsEndpoint() && key.client.labels == group;
      if (serves) served[{key.client, key.port}] = tally;
      if (opens) opened[{key.server, key.port}] = tally;
      if (opens && !key.server.IsEndpoint()) opened_to_unenforced = true;
      if (!serves && !opens) continue;
      all.count += tally.count;
      all.AddTimes(tally.first_seen, tally.last_seen);
    }

    const std::vector<LabelSelector> selected = SelectExactly({group}, known);
    const LabelSelector& selector = selected.front();
    std::string stem = NameStem(selector);
    for (int n = 2; stems_taken.contains(stem); ++n) stem = absl::StrCat(NameStem(selector), "-", n);
    stems_taken.insert(stem);

    // (4) The text.
    std::string text = "# Suggested by stockadectl policy suggest: it allows what was observed, nothing else.\n";
    auto group_names = names.find(group);
    absl::StrAppend(&text, CommentText(absl::StrCat("# Endpoints: ",
                                                    group_names == names.end() ? "" : Listed(group_names->second, 10),
                                                    group_names == names.end() ? "" : " ", FormatLabels(group))),
                    "\n");
    absl::StrAppend(&text, "# ", Flows(all.count), " observed from ",
                    Time(all.first_seen), " to ", Time(all.last_seen), ".\n", kDnsComment);
    if (!opened_to_unenforced)
      absl::StrAppend(&text,
                      "# No egress section: every flow it opened went to another endpoint, whose\n"
                      "# ingress rules allow it; egress stays open.\n");
    absl::StrAppend(&text, "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: suggested-", stem,
                    "}\nspec:\n  endpointSelector: ", SelectorText(selector), "\n");
    if (served.empty()) {
      absl::StrAppend(&text, "  # No flow to it was observed: all ingress is denied.\n  ingress: []\n");
    } else {
      absl::StrAppend(&text, "  ingress:\n");
      for (const SuggestedRule& rule : GroupRules(served)) absl::StrAppend(&text, RuleText(rule, true, known, names));
    }
    if (opened_to_unenforced) {
      absl::StrAppend(&text, "  # Egress, since it opened flows outside the endpoints; this section closes\n",
                      "  # egress, so its flows to other endpoints are listed too.\n  egress:\n");
      for (const SuggestedRule& rule : GroupRules(opened)) absl::StrAppend(&text, RuleText(rule, false, known, names));
    }
    // What it writes must read back: a label the parser refuses (say a
    // `network.*` value other than attached) fails here, not at enforce time.
    const std::string file_name = stem + ".yaml";
    if (absl::StatusOr<std::vector<Policy>> parsed = ParsePolicyText(text, file_name); !parsed.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("the policy suggested for ", FormatLabels(group), " does not parse: ", parsed.status().message()));
    suggestion.files.push_back({.file_name = file_name, .text = std::move(text)});
  }
  std::sort(suggestion.files.begin(), suggestion.files.end(),
            [](const SuggestedPolicyFile& a, const SuggestedPolicyFile& b) { return a.file_name < b.file_name; });
  return suggestion;
}

}  // namespace stockade
