// SPDX-License-Identifier: Apache-2.0
//
// The compile cache (PolicyCompiler) against a compile from nothing
// (CompilePolicies): for random sequences of policy edits, policies coming
// and going, containers starting, stopping and relabelled, label policies and
// known identities, every update must give the same rules, rule origins, CIDR
// identities, endpoint flags and identity table, and its entry delta applied
// to the maps as MapSync applies it must leave exactly the entries of the
// full compile. Then what the cache is for: an edit of one small policy beside
// a large one recompiles the small one and names a handful of keys.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "stockade/policy/policy_compiler.h"
#include "stockade/policy/policy_parser.h"

namespace stockade {
namespace {

class Random {
 public:
  explicit Random(uint32_t seed) : rng_(seed) {}
  size_t Below(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool OneIn(size_t n) { return Below(n) == 0; }
  template <typename T>
  const T& Pick(const std::vector<T>& from) {
    return from[Below(from.size())];
  }

 private:
  std::mt19937 rng_;
};

const std::vector<std::string> kTiers = {"web", "db", "api"};
// Nested on purpose: a CIDR peer stands for every CIDR identity inside it.
const std::vector<std::string> kPrefixes = {"10.0.0.0/8",     "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32",
                                            "192.168.1.0/24", "0.0.0.0/0",   "fd00::/8",    "fd00:1::/32"};
const std::vector<std::pair<std::string, std::string>> kExcepts = {
    {"10.0.0.0/8", "10.1.0.0/16"}, {"10.1.0.0/16", "10.1.2.0/24"}, {"fd00::/8", "fd00:1::/32"}};

LabelSet RandomLabels(Random& r) {
  return {{"tier", r.Pick(kTiers)}, {"env", r.OneIn(2) ? "prod" : "dev"}};
}

std::string RandomPorts(Random& r, bool deny) {
  switch (r.Below(5)) {
    case 0:
      return "";
    case 1:
      return absl::StrCat(", toPorts: [{ports: [{port: \"", 80 + r.Below(3), "\", protocol: TCP}]",
                          !deny && r.OneIn(3) ? ", requireTLS: true" : "", "}]");
    case 2:
      return ", toPorts: [{ports: [{port: \"8000-8999\"}, {port: \"53\", protocol: UDP}]}]";
    case 3:
      return ", toPorts: [{ports: [{port: \"8080\", endPort: 8090, protocol: TCP}]}]";
    default:
      return ", toPorts: [{ports: [{protocol: UDP}]}]";
  }
}

std::string RandomRule(Random& r, const std::string& from, bool deny) {
  std::string peer;
  switch (r.Below(6)) {
    case 0:
      break;  // any peer
    case 1:
      peer = absl::StrCat(from, "Endpoints: [{matchLabels: {tier: ", r.Pick(kTiers), "}}]");
      break;
    case 2:
      peer = absl::StrCat(from, "Entities: [", r.Pick(std::vector<std::string>{"world", "host", "all", "unmanaged"}),
                          "]");
      break;
    case 3:
      peer = absl::StrCat(from, "CIDR: [", r.Pick(kPrefixes), "]");
      break;
    case 4: {
      const auto& [cidr, except] = r.Pick(kExcepts);
      peer = absl::StrCat(from, "CIDRSet: [{cidr: ", cidr, ", except: [", except, "]}]");
      break;
    }
    default:
      peer = absl::StrCat(from, "Endpoints: [{matchExpressions: [{key: env, operator: In, values: [prod]}]}]");
      break;
  }
  std::string ports = RandomPorts(r, deny);
  if (peer.empty() && ports.empty()) return "{}";
  if (peer.empty()) return absl::StrCat("{", ports.substr(2), "}");
  return absl::StrCat("{", peer, ports, "}");
}

// A policy's spec; `label` makes it one for a container's stockade.policy label.
std::string RandomSpec(Random& r, bool label) {
  std::string out;
  if (!label)
    absl::StrAppend(&out, "  endpointSelector: ",
                    r.OneIn(4) ? "{}" : absl::StrCat("{matchLabels: {tier: ", r.Pick(kTiers), "}}"), "\n");
  if (r.OneIn(8)) {
    absl::StrAppend(&out, "  enforcementMode: ", r.OneIn(2) ? "always" : "never", "\n");
  } else if (r.OneIn(6)) {
    absl::StrAppend(&out, "  audit: true\n");
  }
  for (const char* section : {"ingress", "ingressDeny", "egress", "egressDeny"}) {
    if (r.OneIn(2)) continue;
    const bool ingress = section[0] == 'i';
    const bool deny = absl::EndsWith(section, "Deny");
    std::vector<std::string> rules;
    for (size_t i = r.Below(4); i > 0; --i) rules.push_back(RandomRule(r, ingress ? "from" : "to", deny));
    absl::StrAppend(&out, "  ", section, ": [", absl::StrJoin(rules, ", "), "]\n");
  }
  return out.empty() ? "  ingress: []\n" : out;
}

std::string PolicyText(const std::string& name, const std::string& spec) {
  return absl::StrCat("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: ", name, "}\nspec:\n", spec);
}

struct Container {
  LabelSet labels;  // empty: unmanaged
  std::optional<std::string> label_policy;
};

// The world a sequence changes step by step, as the agent sees it.
class World {
 public:
  explicit World(Random& r) : r_(r) {}

  void Step() {
    switch (r_.Below(9)) {
      case 0:
      case 1:  // an edit, the most common change
        if (!files_.empty()) Parse(PickKey(files_), RandomSpec(r_, false));
        break;
      case 2:
        Parse(absl::StrCat("p", next_name_++), RandomSpec(r_, false));
        break;
      case 3:
        if (!files_.empty()) files_.erase(PickKey(files_));
        break;
      case 4:
        containers_[absl::StrCat("c", next_container_++)] = {r_.OneIn(6) ? LabelSet{} : RandomLabels(r_), {}};
        break;
      case 5:
        if (!containers_.empty()) containers_.erase(PickKey(containers_));
        break;
      case 6:
        if (!containers_.empty()) containers_[PickKey(containers_)].labels = RandomLabels(r_);
        break;
      case 7:
        if (!containers_.empty()) {
          const std::string id = PickKey(containers_);
          std::string spec = RandomSpec(r_, true);
          if (r_.OneIn(3)) {
            containers_[id].label_policy.reset();
          } else if (ParseLabelPolicy(spec, id).ok()) {
            containers_[id].label_policy = spec;
          }
        }
        break;
      default:
        if (known_.empty() || r_.OneIn(2)) {
          known_.push_back(RandomLabels(r_));
        } else {
          known_.erase(known_.begin() + r_.Below(known_.size()));
        }
        break;
    }
  }

  // Label identities come from the shared allocator, as in the agent.
  PolicyInputs Inputs(IdentityAllocator& allocator) const {
    PolicyInputs inputs;
    for (const auto& [name, policies] : files_)
      for (const Policy& p : policies) inputs.policies_held.push_back(&p);
    for (const auto& [id, c] : containers_) {
      PolicyEndpoint ep{.id = id, .identity = allocator.ForLabels(c.labels).value(), .labels = c.labels};
      if (c.label_policy) ep.label_policy = ParseLabelPolicy(*c.label_policy, id).value();
      inputs.endpoints.push_back(std::move(ep));
    }
    for (const LabelSet& labels : known_) inputs.identities.push_back({allocator.ForLabels(labels).value(), labels});
    return inputs;
  }

 private:
  template <typename M>
  std::string PickKey(const M& map) {
    auto it = map.begin();
    std::advance(it, r_.Below(map.size()));
    return it->first;
  }
  void Parse(const std::string& name, const std::string& spec) {
    auto parsed = ParsePolicyText(PolicyText(name, spec), absl::StrCat("policies/", name, ".yaml"));
    // audit with enforcementMode never is refused, as it should be: keep the old text.
    if (parsed.ok()) files_[name] = std::move(*parsed);
  }

  Random& r_;
  std::map<std::string, std::vector<Policy>> files_;
  std::map<std::string, Container> containers_;
  std::vector<LabelSet> known_;
  int next_name_ = 0, next_container_ = 0;
};

PolicyEntryMap AsMap(const std::vector<PolicyEntry>& entries) {
  PolicyEntryMap out;
  for (const PolicyEntry& e : entries) out[e.key] = e.value;
  return out;
}

// The maps' content, sorted and readable, for comparing and for a failure's message.
std::vector<std::string> Lines(const PolicyEntryMap& maps) {
  std::vector<std::string> out;
  for (const auto& [k, v] : maps)
    out.push_back(absl::StrCat(k.local_identity, (k.direction == DIR_INGRESS ? " <- " : " -> "), k.remote_identity,
                               " proto ", k.protocol, " port ", ntohs(k.dport), " /", k.prefixlen, ": rule ",
                               v.rule_id, " action ", v.action, " flags ", v.flags));
  std::sort(out.begin(), out.end());
  return out;
}

std::map<uint32_t, std::string> Origins(const CompiledPolicy& compiled) {
  std::map<uint32_t, std::string> out;
  for (const auto& [id, origin] : compiled.rule_origins) out[id] = origin.ToString();
  return out;
}

// The maps after a delta, applied the way MapSync applies it.
void Apply(const PolicyEntryDelta& delta, PolicyEntryMap& maps) {
  if (delta.full) {
    maps = AsMap(delta.entries);
    return;
  }
  PolicyEntryDiff diff = DiffPolicyEntries(maps, delta.entries, &delta.scope);
  for (const auto* written : {&diff.denies, &diff.allows})
    for (const PolicyEntry& e : *written) maps[e.key] = e.value;
  for (const policy_key& key : diff.stale) maps.erase(key);
}

TEST(PolicyCompileCacheTest, EveryUpdateEqualsACompileFromNothing) {
  const char* seed_env = std::getenv("STOCKADE_CACHE_SEED");
  const uint32_t first_seed = seed_env ? std::strtoul(seed_env, nullptr, 10) : 1;
  size_t recompiled = 0, policies = 0;
  for (uint32_t seed = first_seed; seed < first_seed + 60; ++seed) {
    SCOPED_TRACE(absl::StrCat("STOCKADE_CACHE_SEED=", seed));
    Random r(seed);
    World world(r);
    IdentityAllocator allocator;
    PolicyCompiler cache;
    PolicyEntryMap maps;
    bool updated = false;
    for (int step = 0; step < 40; ++step) {
      SCOPED_TRACE(absl::StrCat("step ", step));
      world.Step();
      PolicyInputs inputs = world.Inputs(allocator);
      IdentityAllocator from_nothing_allocator = allocator;
      auto delta = AllocateThenUpdate(cache, inputs, allocator);
      auto from_nothing = CompilePolicies(inputs, from_nothing_allocator);
      ASSERT_EQ(delta.ok(), from_nothing.ok()) << delta.status() << " / " << from_nothing.status();
      if (!delta.ok()) continue;
      ASSERT_EQ(allocator.table(), from_nothing_allocator.table());
      const CompiledPolicy& compiled = cache.compiled();
      ASSERT_EQ(compiled.Describe(), from_nothing->Describe());
      ASSERT_EQ(Origins(compiled), Origins(*from_nothing));
      ASSERT_EQ(delta->full, !updated) << "only the first update gives every entry";
      updated = true;
      for (const PolicyEntry& e : delta->entries) {
        if (delta->full) break;
        ASSERT_TRUE(std::binary_search(delta->scope.begin(), delta->scope.end(), e.key,
                                         [](const policy_key& a, const policy_key& b) {
                                           return std::memcmp(&a, &b, sizeof(a)) < 0;
                                         }))
              << "a wanted entry outside the delta's scope";
      }
      Apply(*delta, maps);
      auto entries = CompilePolicyEntries(from_nothing->rules);
      ASSERT_TRUE(entries.ok()) << entries.status();
      ASSERT_EQ(Lines(maps), Lines(AsMap(*entries)));
      recompiled += cache.recompiled();
      policies += inputs.policies_held.size();
      for (const PolicyEndpoint& ep : inputs.endpoints) policies += ep.label_policy ? 1 : 0;
    }
  }
  // The sequences must exercise the cache, not compile everything each time.
  std::printf("%zu of %zu policies compiled again\n", recompiled, policies);
  EXPECT_LT(recompiled * 2, policies);
}

// A policy with `n` CIDR rules for one identity, as stockade-bench writes it.
std::string BulkSpec(int n) {
  std::string out = "  endpointSelector: {matchLabels: {role: server}}\n  ingress:\n";
  for (int i = 0; i < n; ++i)
    absl::StrAppend(&out, "    - fromCIDR: [10.128.", i / 250, ".", i % 250 + 1, "/32]\n",
                    "      toPorts: [{ports: [{port: \"", 5000 + i % 7, "\", protocol: TCP}]}]\n");
  return out;
}

TEST(PolicyCompileCacheTest, AnEditBesideALargePolicyRecompilesOnlyTheEditedOne) {
  auto bulk = ParsePolicyText(PolicyText("bulk", BulkSpec(2000)), "policies/bulk.yaml").value();
  IdentityAllocator allocator;
  const LabelSet server = {{"role", "server"}};
  PolicyCompiler cache;
  auto inputs_with = [&](const std::vector<Policy>& change) {
    PolicyInputs inputs;
    for (const Policy& p : bulk) inputs.policies_held.push_back(&p);
    for (const Policy& p : change) inputs.policies_held.push_back(&p);
    inputs.endpoints.push_back({.id = "server", .identity = allocator.ForLabels(server).value(), .labels = server});
    return inputs;
  };
  auto change = [](int port) {
    return ParsePolicyText(PolicyText("change", absl::StrCat("  endpointSelector: {matchLabels: {role: server}}\n"
                                                             "  ingress: [{fromCIDR: [10.128.0.1/32], toPorts: "
                                                             "[{ports: [{port: \"",
                                                             port, "\", protocol: TCP}]}]}]\n")),
                           "policies/change.yaml")
        .value();
  };
  auto first = AllocateThenUpdate(cache, inputs_with(change(6000)), allocator);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->full);
  EXPECT_EQ(first->entries.size(), 2001u);
  EXPECT_EQ(cache.recompiled(), 2u);

  auto edited = AllocateThenUpdate(cache, inputs_with(change(6001)), allocator);
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_FALSE(edited->full);
  EXPECT_EQ(cache.recompiled(), 1u) << "only the edited policy";
  // One group (server <- 10.128.0.1/32): the bulk rule's entry, the old port and the new one.
  EXPECT_EQ(edited->scope.size(), 3u);
  EXPECT_EQ(edited->entries.size(), 2u);
  EXPECT_EQ(cache.compiled().rules.size(), 2001u);

  // A new CIDR peer inside nothing else changes no other policy's rules.
  auto unrelated = ParsePolicyText(PolicyText("other", "  endpointSelector: {matchLabels: {role: server}}\n"
                                                        "  egress: [{toCIDR: [192.0.2.0/24]}]\n"),
                                   "policies/other.yaml")
                       .value();
  std::vector<Policy> two = change(6001);
  two.push_back(unrelated[0]);
  auto added = AllocateThenUpdate(cache, inputs_with(two), allocator);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(cache.recompiled(), 1u);
}

TEST(PolicyCompileCacheTest, ABadSetChangesNothing) {
  IdentityAllocator allocator;
  PolicyCompiler cache;
  auto good = ParsePolicyText(PolicyText("db", "  endpointSelector: {matchLabels: {tier: db}}\n"
                                               "  ingress: [{fromEndpoints: [{matchLabels: {tier: web}}]}]\n"),
                              "policies/db.yaml")
                  .value();
  PolicyInputs inputs;
  inputs.policies = good;
  inputs.endpoints.push_back(
      {.id = "db", .identity = allocator.ForLabels({{"tier", "db"}}).value(), .labels = {{"tier", "db"}}});
  inputs.endpoints.push_back(
      {.id = "web", .identity = allocator.ForLabels({{"tier", "web"}}).value(), .labels = {{"tier", "web"}}});
  ASSERT_TRUE(AllocateThenUpdate(cache, inputs, allocator).ok());
  const std::string before = cache.compiled().Describe();

  PolicyInputs twice = inputs;
  twice.policies.push_back(good[0]);
  auto refused = AllocateThenUpdate(cache, twice, allocator);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(cache.compiled().Describe(), before);

  auto again = AllocateThenUpdate(cache, inputs, allocator);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->full);
  EXPECT_TRUE(again->scope.empty()) << "nothing changed since the last good update";
  EXPECT_EQ(cache.recompiled(), 0u);
}

TEST(PolicyCompileCacheTest, TheCompilerReadsTheAllocatorAndNeverWritesIt) {
  auto policies = ParsePolicyText(PolicyText("db", "  endpointSelector: {matchLabels: {tier: db}}\n"
                                                   "  ingress: [{fromCIDR: [198.51.100.0/24, 10.0.0.0/8]}]\n"),
                                  "policies/db.yaml")
                      .value();
  IdentityAllocator allocator;
  PolicyInputs inputs;
  inputs.policies = policies;
  inputs.endpoints.push_back(
      {.id = "db", .identity = allocator.ForLabels({{"tier", "db"}}).value(), .labels = {{"tier", "db"}}});
  PolicyCompiler compiler;
  auto prepared = compiler.Prepare(inputs);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  ASSERT_EQ(prepared->unnamed_prefixes().size(), 2u);
  EXPECT_EQ(prepared->unnamed_prefixes()[0].ToString(), "10.0.0.0/8");  // in prefix order
  // Without their identities, Apply refuses and changes nothing.
  const IdentityTable before = allocator.table();
  auto refused = compiler.Apply(std::move(*prepared), allocator);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(allocator.table(), before);
  EXPECT_TRUE(compiler.compiled().rules.empty());

  auto again = compiler.Prepare(inputs);
  ASSERT_TRUE(again.ok());
  for (const IpPrefix& prefix : again->unnamed_prefixes()) ASSERT_TRUE(allocator.ForCidr(prefix).ok());
  const IdentityTable allocated = allocator.table();
  const IdentityAllocator& read_only = allocator;
  auto applied = compiler.Apply(std::move(*again), read_only);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(allocator.table(), allocated);
  ASSERT_EQ(compiler.compiled().cidr_identities.size(), 2u);
  EXPECT_EQ(compiler.compiled().cidr_identities[0].identity, allocated.cidrs.begin()->second);
  // Known now: a second Prepare names nothing.
  auto known = compiler.Prepare(inputs);
  ASSERT_TRUE(known.ok());
  EXPECT_TRUE(known->unnamed_prefixes().empty());
}

}  // namespace
}  // namespace stockade
