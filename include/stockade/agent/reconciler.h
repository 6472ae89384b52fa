// SPDX-License-Identifier: Apache-2.0
//
// From what the sources say to what the maps should hold. Sources (Docker,
// the static endpoints file, later other hosts) give workloads; the agent
// hooks their interfaces; the reconciler turns workloads, hooks, policies
// and the host's addresses into the wanted map contents and each
// endpoint's state, which the agent hands to MapSync. Pure logic: no
// syscalls, no locks, no clocks. It owns the identity allocator and the
// policy compiler, the memory it needs from one pass to the next:
//
//   workloads (sorted by id),
//   remote endpoints          -> label identities        (IdentityAllocator)
//   policies                  -> CIDR identities, then a compile that
//                                reads the allocator     (PolicyCompiler)
//   endpoints + identities    -> endpoint records, ipcache, policy entries
//
// The same inputs in any order give the same result
// (tests/unit/reconciler_test.cc).
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_RECONCILER_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_RECONCILER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stockade/net/addresses.h"
#include "stockade/agent/endpoint_state.h"
#include "stockade/agent/hook_resolver.h"
#include "stockade/agent/wanted_maps.h"
#include "stockade/agent/workload.h"
#include "stockade/identity/identity_allocator.h"
#include "stockade/policy/policy.h"
#include "stockade/policy/policy_compiler.h"
#include "stockade/store/endpoint_record.h"

namespace stockade {

// One interface of a workload, as the agent's hooking left it.
struct InterfaceHook {
  ResolvedHook hook;  // ifindex 0: not found (error says why)
  std::string error;  // why it is not hooked, or not attached: not enforced
};

struct LocalWorkload {
  Workload workload;  // its interfaces' MAC and addresses filled in
  std::vector<InterfaceHook> hooks;  // one per workload.interfaces, in order
};

struct ReconcileInputs {
  std::vector<LocalWorkload> workloads;   // every source's, in any order
  // Other hosts' containers (from the store): an identity from their labels
  // and an ipcache entry each, so that policy by labels reaches them.
  std::vector<RemoteEndpoint> remote_endpoints;
  // Other hosts' own addresses (their node records): the remote-host entity,
  // unless this host or one of its endpoints has the address.
  std::vector<IpAddress> remote_node_addresses;
  std::vector<const Policy*> policies;    // the policy directory's last good set
  // Docker's gateways: the host, even where an endpoint claims the address.
  std::vector<IpAddress> gateway_addresses;
  // The host's own addresses: the host, unless an endpoint has the address.
  std::vector<IpAddress> host_addresses;
  bool audit = false;  // every endpoint in audit mode
  // False when MapSync's last apply stopped half way: the maps are not where
  // a policy delta would start, so every policy entry is wanted.
  bool policy_maps_complete = true;
};

struct ReconcileResult {
  WantedMaps maps;
  std::vector<EndpointState> endpoints;  // in workload id order
  bool policy_compiled_from_nothing = false;  // the compiler's first update: all rule origins are new
  // Addresses claimed by two hosts, or by a remote and a local endpoint:
  // resolved to neither (no ipcache entry of their own, so `world`).
  std::vector<IpAddress> address_conflicts;
};

class Reconciler {
 public:
  explicit Reconciler(IdentityAllocator allocator = IdentityAllocator()) : allocator_(std::move(allocator)) {}

  // Fails on inconsistent inputs (see CompilePolicies) or when identities run
  // out; a failure leaves the compiled policy as it was.
  [[nodiscard]] absl::StatusOr<ReconcileResult> Reconcile(const ReconcileInputs& inputs);

  const IdentityAllocator& allocator() const { return allocator_; }
  const PolicyCompiler& compiler() const { return compiler_; }

 private:
  IdentityAllocator allocator_;
  PolicyCompiler compiler_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_RECONCILER_H_
