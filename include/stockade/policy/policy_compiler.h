// SPDX-License-Identifier: Apache-2.0
//
// From policies and endpoints to what the datapath holds: each endpoint's
// enforcement flags, the rules for the policy map (CompilePolicyEntries), and
// the CIDR identities for the ipcache. Everything is decided per identity,
// since the policy map is keyed by identity: endpoints with the same identity
// labels get the same flags and rules. Pure logic; docs/policy.md has the
// semantics.
#ifndef STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_COMPILER_H_
#define STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_COMPILER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stockade/identity/identity_allocator.h"
#include "stockade/identity/labels.h"
#include "stockade/policy/policy.h"
#include "stockade/policy/policy_entries.h"

namespace stockade {

struct PolicyEndpoint {
  std::string id;  // the agent's name for it, e.g. the container id
  uint32_t identity = IDENTITY_UNMANAGED;
  LabelSet labels;                     // its identity labels; empty for IDENTITY_UNMANAGED
  std::optional<Policy> label_policy;  // from its stockade.policy label (ParseLabelPolicy)
};

// An identity that can be a peer without being an endpoint here.
struct KnownIdentity {
  uint32_t identity = 0;
  LabelSet labels;
};

struct PolicyInputs {
  std::vector<Policy> policies;  // file policies, names unique
  // More file policies, held by the caller (the agent's PolicyDirectory):
  // a reconcile at 100k rules must not copy them.
  std::vector<const Policy*> policies_held;
  std::vector<PolicyEndpoint> endpoints;
  std::vector<KnownIdentity> identities;  // besides the endpoints' own
};

struct EndpointPolicy {
  std::string id;
  uint32_t identity = 0;
  bool enforce_ingress = false;
  bool enforce_egress = false;
  bool audit = false;
  std::vector<std::string> policies;  // names of the policies whose rules apply, sorted
  std::vector<std::string> notes;     // why something does not apply, for the endpoint's status
  uint32_t Flags() const;             // ENDPOINT_F_ENFORCE_INGRESS/EGRESS, ENDPOINT_F_AUDIT
};

// Where a rule id comes from: drop events carry the id.
struct RuleOrigin {
  std::string policy;
  RuleSection section = RuleSection::kIngress;
  size_t index = 0;              // in the section's list
  std::string location;          // "policies/db.yaml:9"
  std::string ToString() const;  // "db-ingress ingress[0] (policies/db.yaml:9)"
};

struct CidrIdentity {
  IpPrefix prefix;
  uint32_t identity = 0;
};

struct CompiledPolicy {
  std::vector<EndpointPolicy> endpoints;  // in input order
  std::vector<DatapathRule> rules;        // sorted; input to CompilePolicyEntries
  std::map<uint32_t, RuleOrigin> rule_origins;
  std::vector<CidrIdentity> cidr_identities;  // ipcache entries, sorted by prefix

  // A stable, readable rendering of all of the above (tests, debug dumps).
  std::string Describe() const;
};

// What an update changed in the policy maps' entries.
struct PolicyEntryDelta {
  // `entries` is every entry (the compiler's first update): a key of the maps
  // that is not among them is stale.
  bool full = true;
  std::vector<PolicyEntry> entries;  // not full: the wanted entries among `scope`'s keys
  std::vector<policy_key> scope;     // not full: the only keys that may have changed
};

// Compiles `inputs`: CIDR identities for the prefixes its policies name
// are taken from `allocator` first (new prefixes get new ids), then
// compiled. Fails on inconsistent inputs: duplicate policy names, an
// endpoint with a reserved identity, one identity with two label sets.
[[nodiscard]] absl::StatusOr<CompiledPolicy> CompilePolicies(const PolicyInputs& inputs, IdentityAllocator& allocator);

// The same compile, kept between updates so that a change costs what it
// changes: at 100k rules, an edit of one small policy must not compile the
// other 100k again. A policy's rules are kept while its fingerprint and
// everything they were made of stay the same: the identities its peer
// selectors match, the CIDR identities inside its CIDR peers (all of them
// for `world`), its rules' ids. Rules and entries are made again only for
// the (local, remote, direction) groups that changed, since entries never
// depend on rules of another group. The result always equals
// CompilePolicies on the same inputs (tests/unit/policy_compile_cache_test.cc).
class PolicyCompiler {
 public:
  PolicyCompiler();
  ~PolicyCompiler();
  PolicyCompiler(const PolicyCompiler&) = delete;
  PolicyCompiler& operator=(const PolicyCompiler&) = delete;

  // An update in two steps, so that the compiler reads the allocator and
  // never writes it: Prepare checks the inputs (everything that can fail
  // fails here, changing nothing) and names the prefixes that need a CIDR
  // identity; the caller has the allocator give each one; Apply compiles
  // into compiled(). `inputs` must outlive Apply, and no other Prepare may
  // come between. AllocateThenUpdate does all three.
  class PreparedUpdate {
   public:
    PreparedUpdate(PreparedUpdate&&) noexcept;
    PreparedUpdate& operator=(PreparedUpdate&&) noexcept;
    ~PreparedUpdate();
    // Prefixes the inputs name that the compiler has no identity for, in prefix order.
    const std::vector<IpPrefix>& unnamed_prefixes() const;

   private:
    friend class PolicyCompiler;
    struct Work;  // policy_compiler.cc
    explicit PreparedUpdate(std::unique_ptr<Work> work);
    std::unique_ptr<Work> work_;
  };
  [[nodiscard]] absl::StatusOr<PreparedUpdate> Prepare(const PolicyInputs& inputs);
  // Fails only if the allocator lacks an identity for an unnamed prefix.
  [[nodiscard]] absl::StatusOr<PolicyEntryDelta> Apply(PreparedUpdate update, const IdentityAllocator& allocator);

  const CompiledPolicy& compiled() const { return compiled_; }
  // Policies whose rules the last update made again (new, changed, or inputs changed).
  size_t recompiled() const { return recompiled_; }
  // Rule ids whose origin the last update added, changed or removed (all of
  // them after the first): what a copy of rule_origins must follow.
  const std::vector<uint32_t>& origins_changed() const { return origins_changed_; }

  struct State;  // what is kept between updates (policy_compiler.cc)

 private:
  std::unique_ptr<State> state_;
  CompiledPolicy compiled_;
  size_t recompiled_ = 0;
  std::vector<uint32_t> origins_changed_;
};

// Prepare, an identity from `allocator` for each unnamed prefix (the
// allocator keeps them should Apply fail), then Apply.
[[nodiscard]] absl::StatusOr<PolicyEntryDelta> AllocateThenUpdate(PolicyCompiler& compiler, const PolicyInputs& inputs,
                                                                  IdentityAllocator& allocator);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_COMPILER_H_
