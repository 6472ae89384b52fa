// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/reconciler.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "stockade/policy/policy_parser.h"

namespace stockade {
namespace {

// A container in another's network namespace: shown with the owner's
// interface once the owner is known, since its traffic is the owner's.
struct SharedNetwork {
  std::string id, name, source, owner;
};

IpPrefix HostPrefix(const IpAddress& address) {
  return {address, static_cast<uint8_t>(address.family == STOCKADE_AF_INET ? 32 : 128)};
}

std::string PolicyEndpointId(const std::string& workload_id, const std::string& network) {
  return absl::StrCat(workload_id, "/", network);
}

endpoint_info RecordOf(const EndpointState& e, bool audit) {
  endpoint_info info{};
  info.identity = e.identity;
  info.flags = e.policy.Flags() | (audit ? ENDPOINT_F_AUDIT : 0);
  // A label policy that does not parse must not open anything: deny both ways.
  if (!e.error.empty()) info.flags |= ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS;
  info.role = e.hook.role;
  std::memcpy(info.mac, e.mac.data(), 6);
  if (e.ipv4) info.ipv4 = e.ipv4->ipv4_network_order();
  if (e.ipv6) std::memcpy(info.ipv6, e.ipv6->bytes.data(), 16);
  std::memcpy(info.ipv6_link_local, e.hook.ipv6_link_local.data(), 16);
  return info;
}

}  // namespace

absl::StatusOr<ReconcileResult> Reconciler::Reconcile(const ReconcileInputs& inputs) {
  // In id order, so that new label sets get the same identities whatever
  // order the sources listed their workloads in.
  std::vector<const LocalWorkload*> workloads;
  for (const LocalWorkload& w : inputs.workloads) workloads.push_back(&w);
  std::stable_sort(workloads.begin(), workloads.end(),
                   [](const LocalWorkload* a, const LocalWorkload* b) { return a->workload.id < b->workload.id; });

  ReconcileResult result;
  std::vector<EndpointState>& endpoints = result.endpoints;
  PolicyInputs policy_inputs;
  policy_inputs.policies_held = inputs.policies;
  std::vector<SharedNetwork> shared;

  // 1. Identities from labels, and each interface's endpoint.
  for (const LocalWorkload* local : workloads) {
    const Workload& w = local->workload;
    StockadeLabels labels = ReadContainerLabels(w.labels, w.image_labels, w.networks);
    uint32_t identity = IDENTITY_HOST;
    if (!w.host_network) {
      auto allocated = allocator_.ForLabels(labels.identity);
      if (!allocated.ok()) return allocated.status();
      identity = *allocated;
    }
    if (w.host_network || w.no_network) {
      EndpointState e{.workload_id = w.id, .workload_name = w.name, .source = w.source};
      e.network = e.driver = w.host_network ? "host" : "none";
      e.identity = identity;
      e.labels = labels.identity;
      e.error = w.host_network ? "host network: shares the host's stack and identity; not enforced per container"
                               : "network none: no interface, nothing to enforce";
      endpoints.push_back(std::move(e));
      continue;
    }
    if (!w.shares_network_of.empty()) {
      shared.push_back({w.id, w.name, w.source, w.shares_network_of});
      continue;
    }
    std::optional<Policy> label_policy;
    std::string label_policy_error;
    if (labels.policy_text) {
      auto parsed = ParseLabelPolicy(*labels.policy_text, w.name);
      if (parsed.ok()) {
        label_policy = std::move(*parsed);
      } else {
        label_policy_error = absl::StrCat(kLabelPolicyRejected, parsed.status().message());
      }
    }
    for (size_t i = 0; i < w.interfaces.size(); ++i) {
      const WorkloadInterface& iface = w.interfaces[i];
      const InterfaceHook hooked = i < local->hooks.size() ? local->hooks[i] : InterfaceHook{.error = "not hooked"};
      EndpointState e{.workload_id = w.id, .workload_name = w.name, .source = w.source};
      e.network = iface.network;
      e.driver = iface.driver;
      e.identity = identity;
      e.labels = labels.identity;
      e.ignored_labels = labels.ignored;
      e.error = label_policy_error;
      if (hooked.hook.ifindex == 0) {
        e.error = hooked.error;
        endpoints.push_back(std::move(e));
        continue;
      }
      e.hook = hooked.hook;
      if (iface.mac) e.mac = *iface.mac;
      e.ipv4 = iface.ipv4;
      e.ipv6 = iface.ipv6;
      if (!hooked.error.empty()) e.error = hooked.error;
      PolicyEndpoint pe{.id = PolicyEndpointId(w.id, iface.network), .identity = identity, .labels = labels.identity};
      if (label_policy) pe.label_policy = *label_policy;
      if (identity != IDENTITY_UNMANAGED || label_policy) policy_inputs.endpoints.push_back(std::move(pe));
      endpoints.push_back(std::move(e));
    }
  }

  // Other hosts' containers, in address order for the same reason.
  std::vector<const RemoteEndpoint*> remotes;
  for (const RemoteEndpoint& r : inputs.remote_endpoints) remotes.push_back(&r);
  std::stable_sort(remotes.begin(), remotes.end(), [](const RemoteEndpoint* a, const RemoteEndpoint* b) {
    return std::tie(a->address.family, a->address.bytes, a->host) < std::tie(b->address.family, b->address.bytes, b->host);
  });
  std::map<IpPrefix, uint32_t, IpPrefixLess> remote_addresses;
  std::set<IpPrefix, IpPrefixLess> conflicts;
  std::set<uint32_t> remote_identities;
  for (const RemoteEndpoint* r : remotes) {
    auto identity = allocator_.ForLabels(r->labels);
    if (!identity.ok()) return identity.status();
    if (*identity != IDENTITY_UNMANAGED && remote_identities.insert(*identity).second)
      policy_inputs.identities.push_back({.identity = *identity, .labels = r->labels});
    auto [it, inserted] = remote_addresses.try_emplace(HostPrefix(r->address), *identity);
    if (!inserted) conflicts.insert(it->first);  // two hosts claim it
  }

  // 2. CIDR identities, then the compile, which only reads the allocator.
  auto delta = AllocateThenUpdate(compiler_, policy_inputs, allocator_);
  if (!delta.ok()) return delta.status();
  const CompiledPolicy& compiled = compiler_.compiled();
  result.policy_compiled_from_nothing = delta->full;
  if (delta->full || inputs.policy_maps_complete) {
    result.maps.policy = std::move(delta->entries);
    if (!delta->full) result.maps.policy_scope = std::move(delta->scope);
  } else {
    auto entries = CompilePolicyEntries(compiled.rules);
    if (!entries.ok()) return entries.status();
    result.maps.policy = std::move(*entries);
  }

  // 3. Each hooked endpoint's policy and record; the addresses it owns.
  std::map<std::string, const EndpointPolicy*> by_id;
  for (const EndpointPolicy& p : compiled.endpoints) by_id[p.id] = &p;
  std::map<IpPrefix, uint32_t, IpPrefixLess> addresses;  // the endpoints' and the host's: few
  for (EndpointState& e : endpoints) {
    if (e.hook.ifindex == 0) continue;
    if (auto policy = by_id.find(PolicyEndpointId(e.workload_id, e.network)); policy != by_id.end())
      e.policy = *policy->second;
    if (e.ipv4) addresses[HostPrefix(*e.ipv4)] = e.identity;
    if (e.ipv6) addresses[HostPrefix(*e.ipv6)] = e.identity;
    if (e.HasRecord()) result.maps.endpoints.push_back({e.hook.key, RecordOf(e, inputs.audit)});
  }

  // A remote endpoint's address, unless a local endpoint or another host claims it too.
  for (const auto& [prefix, identity] : remote_addresses) {
    if (addresses.contains(prefix)) conflicts.insert(prefix);
    if (conflicts.contains(prefix)) continue;
    addresses.emplace(prefix, identity);
  }
  for (const IpPrefix& prefix : conflicts) {
    addresses.erase(prefix);
    result.address_conflicts.push_back(prefix.address);
  }

  // 4. Containers sharing another's namespace, shown as their owner.
  for (const SharedNetwork& s : shared) {
    bool found = false;
    for (size_t i = 0, n = endpoints.size(); i < n; ++i) {
      if (endpoints[i].workload_id != s.owner || !endpoints[i].shares_network_of.empty()) continue;
      EndpointState e = endpoints[i];
      e.shares_network_of = endpoints[i].workload_name;
      e.workload_id = s.id;
      e.workload_name = s.name;
      e.source = s.source;
      e.ignored_labels.clear();
      endpoints.push_back(std::move(e));
      found = true;
    }
    if (found) continue;
    EndpointState shown{.workload_id = s.id, .workload_name = s.name, .source = s.source, .shares_network_of = s.owner};
    shown.error = absl::StrCat("shares the network namespace of container ", s.owner.substr(0, 12),
                               ", which stockade does not see");
    endpoints.push_back(std::move(shown));
  }

  // 5. The ipcache. Docker's gateways are the host; so are the host's own
  // addresses (the host reaching a published port at its own address comes
  // to the container from that address, since Docker's DNAT keeps the
  // source), but an endpoint keeps its own address.
  for (const IpAddress& gateway : inputs.gateway_addresses) addresses[HostPrefix(gateway)] = IDENTITY_HOST;
  for (const IpAddress& own : inputs.host_addresses)
    if (!conflicts.contains(HostPrefix(own))) addresses.try_emplace(HostPrefix(own), IDENTITY_HOST);
  for (const IpAddress& node : inputs.remote_node_addresses)
    if (!conflicts.contains(HostPrefix(node))) addresses.try_emplace(HostPrefix(node), IDENTITY_REMOTE_HOST);
  // The CIDR identities come sorted: merged in, not inserted one by one into
  // a tree (at 100k, most of a reconcile). A policy's prefix equal to an
  // address takes it, as the policy names it.
  std::vector<std::pair<IpPrefix, uint32_t>>& ipcache = result.maps.ipcache;
  ipcache.reserve(addresses.size() + compiled.cidr_identities.size());
  auto address = addresses.begin();
  for (const CidrIdentity& c : compiled.cidr_identities) {
    for (; address != addresses.end() && IpPrefixLess()(address->first, c.prefix); ++address)
      ipcache.push_back(*address);
    if (address != addresses.end() && address->first == c.prefix) ++address;
    ipcache.push_back({c.prefix, c.identity});
  }
  ipcache.insert(ipcache.end(), address, addresses.end());
  return result;
}

}  // namespace stockade
