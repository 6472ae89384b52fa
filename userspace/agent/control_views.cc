// SPDX-License-Identifier: Apache-2.0
//
// The control socket's answers (`stockadectl status`, `endpoint list`,
// `identity list`, `policy get`, `tls`, `explain`, `resync`): views of the
// agent's state, taken under its lock (TlsReport: only to copy).
#include <arpa/inet.h>
#include <netinet/in.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "stockade/agent/agent.h"
#include "stockade/agent/agent_log.h"
#include "stockade/agent/docker_source.h"
#include "stockade/os/capabilities.h"
#include "stockade/conntrack/tls_report.h"
#include "stockade/metrics/prometheus_text.h"
#include "stockade/policy/policy_entries.h"

namespace stockade {
namespace {

nlohmann::json LabelsJson(const LabelSet& labels) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j;
}

}  // namespace

nlohmann::json Agent::HandleControl(const nlohmann::json& request) {
  std::string command = request.value("command", "");
  if (command == "tls") return TlsReport();  // takes the lock only while it copies the endpoints
  std::lock_guard<std::mutex> hold(mu_);
  if (command == "status") return Status();
  if (command == "endpoint list") return EndpointList(request.value("remote", false));
  if (command == "identity list") return IdentityList();
  if (command == "policy get") return PolicyGet();
  if (command == "explain") return Explain(request);
  if (command == "resync") {
    absl::Status s = ResyncAll();
    if (!s.ok()) return {{"error", std::string(s.message())}};
    return {{"ok", true}};
  }
  return {{"error", absl::StrCat("unknown command '", command, "'")}};
}

nlohmann::json Agent::Status() {
  nlohmann::json drops = nlohmann::json::object();
  for (int slot = 1; slot < STOCKADE_REASON_SLOTS; ++slot) {
    int reason = -(STOCKADE_REASON_BASE + slot - 1);
    uint64_t total = 0;
    for (uint32_t dir = 0; dir < DIR_MAX; ++dir) {
      auto c = datapath_->Counter(reason, dir, VERDICT_DROPPED);
      if (c.ok()) total += c->packets;
    }
    if (total) drops[std::string(DropReasonName(reason))] = total;
  }
  std::vector<std::string> names;
  for (const Policy* p : policy_files_.policies()) names.push_back(p->name);
  int enforced = 0, failed = 0;
  for (const EndpointState& e : endpoints_) (e.error.empty() && e.hook.ifindex ? enforced : failed)++;
  nlohmann::json conflicts = nlohmann::json::array();
  for (const IpAddress& a : address_conflicts_) conflicts.push_back(a.ToString());
  return {{"instance", options_.instance},
          {"pin_dir", datapath_->pin_dir()},
          {"docker", docker_ ? (docker_->subscribed() ? "connected" : "disconnected") : "disabled"},
          {"docker_error", docker_error_},
          {"capabilities", EffectiveCapabilities()},
          {"endpoints", endpoints_.size()},
          {"endpoints_enforced", enforced},
          {"endpoints_failed", failed},
          {"identities", reconciler_->allocator().table().labels.size()},
          {"policies", names},
          {"policy_error", policy_error_},
          {"attachments", hooker_->attachments()},
          {"reconciles", reconciles_},
          {"resyncs", resyncs_},
          {"last_error", last_error_},
          {"map_sync_errors", map_sync_errors_},
          {"metrics", metrics_ ? metrics_->address() : ""},
          {"metrics_error", metrics_error_},
          {"events_socket", options_.events_socket},
          {"events", EventStats()},
          {"drops", drops},
          {"store", store_ ? StoreStatus() : nlohmann::json("disabled")},
          {"remote_enforced", remote_enforced_at_.size()},  // other hosts' endpoints in the maps
          {"address_conflicts", conflicts}};
}

nlohmann::json Agent::StoreStatus() {
  nlohmann::json status = store_->Status();
  const absl::Time last_change = store_->Stats().last_change;
  status["last_change"] = last_change == absl::InfinitePast() ? "" : absl::FormatTime(absl::RFC3339_full, last_change, absl::UTCTimeZone());
  status["sync_lag_ms"] = absl::ToDoubleMilliseconds(store_sync_lag_);
  return status;
}

nlohmann::json Agent::EndpointList(bool remote) {
  nlohmann::json list = nlohmann::json::array();
  for (const EndpointState& e : endpoints_) {
    nlohmann::json ignored = nlohmann::json::array();
    for (const IgnoredLabel& l : e.ignored_labels)
      ignored.push_back({{"label", absl::StrCat(l.key, "=", l.value)}, {"reason", l.reason}});
    list.push_back({{"id", e.workload_id.substr(0, 12)},
                    {"name", e.workload_name},
                    {"source", e.source},
                    {"network", e.network},
                    {"mode", e.driver},
                    {"interface", e.hook.ifname},
                    {"ipv4", e.ipv4 ? e.ipv4->ToString() : ""},
                    {"ipv6", e.ipv6 ? e.ipv6->ToString() : ""},
                    {"identity", e.identity},
                    {"identity_name", FormatIdentity(e.identity)},
                    {"labels", LabelsJson(e.labels)},
                    {"ignored_labels", ignored},
                    {"enforce_ingress", e.policy.enforce_ingress},
                    {"enforce_egress", e.policy.enforce_egress},
                    {"audit", e.policy.audit || options_.audit},
                    {"policies", e.policy.policies},
                    {"state", e.StateName()},
                    {"enforced_at_ns", e.enforced_at == absl::InfinitePast() ? 0 : absl::ToUnixNanos(e.enforced_at)},
                    {"shares_network_of", e.shares_network_of},
                    {"error", e.error}});
  }
  if (remote && store_) {
    // Other hosts' containers, one row per address, as the store has them.
    const IdentityTable& table = reconciler_->allocator().table();
    for (const RemoteEndpoint& r : store_->RemoteEndpoints()) {
      auto id = table.labels.find(r.labels);
      uint32_t identity = r.labels.empty() ? uint32_t{IDENTITY_UNMANAGED} : id != table.labels.end() ? id->second : 0;
      bool conflict = std::find(address_conflicts_.begin(), address_conflicts_.end(), r.address) != address_conflicts_.end();
      list.push_back({{"name", r.container_name},
                      {"source", "store"},
                      {"host", r.host},
                      {"mode", "remote"},
                      {"network", ""},
                      {"interface", ""},
                      {"ipv4", r.address.family == STOCKADE_AF_INET ? r.address.ToString() : ""},
                      {"ipv6", r.address.family == STOCKADE_AF_INET6 ? r.address.ToString() : ""},
                      {"identity", identity},
                      {"identity_name", FormatIdentity(identity)},
                      {"labels", LabelsJson(r.labels)},
                      {"ignored_labels", nlohmann::json::array()},
                      {"state", conflict ? "conflict" : "remote"},
                      {"enforced_at_ns", [&]() -> int64_t {
                         auto at = remote_enforced_at_.find(RemoteEnforcedKey(r));
                         return at == remote_enforced_at_.end() ? 0 : absl::ToUnixNanos(at->second);
                       }()},
                      {"error", conflict ? "address claimed twice: resolved to neither (world)" : ""}});
    }
  }
  return {{"endpoints", list}};
}

nlohmann::json Agent::IdentityList() {
  nlohmann::json list = nlohmann::json::array();
  for (uint32_t reserved : kReservedIdentities)
    list.push_back({{"identity", reserved}, {"name", FormatIdentity(reserved)}, {"labels", nlohmann::json::object()}});
  for (const auto& [labels, id] : reconciler_->allocator().table().labels)
    list.push_back({{"identity", id}, {"name", FormatLabels(labels)}, {"labels", LabelsJson(labels)}});
  for (const auto& [prefix, id] : reconciler_->allocator().table().cidrs)
    list.push_back({{"identity", id}, {"name", absl::StrCat("cidr:", prefix.ToString())}});
  return {{"identities", list}};
}

nlohmann::json Agent::PolicyGet() {
  const CompiledPolicy& compiled = reconciler_->compiler().compiled();
  nlohmann::json rules = nlohmann::json::array();
  for (const DatapathRule& r : compiled.rules) {
    auto origin = compiled.rule_origins.find(r.rule_id);
    rules.push_back({{"rule", r.rule_id},
                     {"origin", origin != compiled.rule_origins.end() ? origin->second.ToString() : ""},
                     {"local", FormatIdentity(r.local_identity)},
                     {"remote", FormatIdentity(r.remote_identity)},
                     {"direction", r.direction == DIR_INGRESS ? "ingress" : "egress"},
                     {"protocol", r.protocol},
                     {"ports", absl::StrCat(r.ports.first, "-", r.ports.last)},
                     {"action", r.action == POLICY_ACTION_DENY ? (r.audit ? "audit-deny" : "deny") : "allow"},
                     {"require_tls", r.require_tls}});
  }
  return {{"compiled", compiled.Describe()}, {"rules", rules}, {"policy_error", policy_error_}};
}

nlohmann::json Agent::TlsReport() {
  std::vector<TlsReportEndpoint> endpoints;
  {
    std::lock_guard<std::mutex> hold(mu_);
    for (const EndpointState& e : endpoints_)
      if (e.shares_network_of.empty())  // its flows are the owner's
        endpoints.push_back({.key = e.hook.key, .name = e.workload_name, .ipv4 = e.ipv4, .ipv6 = e.ipv6});
  }
  // The conntrack dump runs without the lock: a full table takes a while.
  std::vector<ConntrackFlow> flows;
  absl::Status s = datapath_->conntrack().ForEach(
      [&](const ct_key& k, const ct_entry& e) { flows.push_back({.key = k, .entry = e}); });
  if (!s.ok()) return {{"error", absl::StrCat("reading conntrack: ", s.message())}};
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);  // the clock of bpf_ktime_get_coarse_ns
  return TlsReportJson(
      AggregateTlsFlows(flows, endpoints, uint64_t(now.tv_sec) * 1'000'000'000ull + uint64_t(now.tv_nsec)));
}

nlohmann::json Agent::Explain(const nlohmann::json& request) {
  std::string from = request.value("from", ""), to = request.value("to", "");
  uint16_t port = request.value("port", 0);
  uint8_t protocol = request.value("protocol", IPPROTO_TCP);
  const EndpointState *a = nullptr, *b = nullptr;
  for (const EndpointState& e : endpoints_) {
    if ((e.workload_name == from || e.workload_id.starts_with(from)) && !a) a = &e;
    if ((e.workload_name == to || e.workload_id.starts_with(to)) && !b) b = &e;
  }
  if (!a || !b) return {{"error", absl::StrCat("no endpoint named '", a ? to : from, "'")}};
  auto check = [&](const EndpointState& local, uint32_t remote, uint8_t dir) -> nlohmann::json {
    bool enforced = dir == DIR_INGRESS ? local.policy.enforce_ingress : local.policy.enforce_egress;
    if (!enforced) return {{"verdict", "allowed"}, {"why", "not enforced in this direction"}};
    const policy_value* deny = nullptr;
    std::optional<policy_value> found[2];
    for (int i = 0; i < 2; ++i) {
      policy_key key{};
      key.prefixlen = POLICY_PREFIX_FULL;
      key.local_identity = local.identity;
      key.remote_identity = i == 0 ? remote : uint32_t{IDENTITY_ANY};
      key.direction = dir;
      key.protocol = protocol;
      key.dport = htons(port);
      auto v = datapath_->LookupPolicy(key);
      if (v.ok() && v->has_value()) found[i] = **v;
      if (found[i] && found[i]->action == POLICY_ACTION_DENY && !deny) deny = &*found[i];
    }
    const policy_value* decided = deny ? deny : found[0] ? &*found[0] : found[1] ? &*found[1] : nullptr;
    if (!decided) return {{"verdict", "denied"}, {"why", "no rule matched (default deny)"}};
    const std::map<uint32_t, RuleOrigin>& origins = reconciler_->compiler().compiled().rule_origins;
    auto origin = origins.find(decided->rule_id);
    return {{"verdict", decided->action == POLICY_ACTION_DENY ? "denied" : "allowed"},
            {"rule", decided->rule_id},
            {"why", origin != origins.end() ? origin->second.ToString() : ""}};
  };
  nlohmann::json egress = check(*a, b->identity, DIR_EGRESS);
  nlohmann::json ingress = check(*b, a->identity, DIR_INGRESS);
  bool allowed = egress["verdict"] == "allowed" && ingress["verdict"] == "allowed";
  return {{"from", a->workload_name}, {"to", b->workload_name}, {"port", port}, {"protocol", protocol},
          {"egress_at_source", egress}, {"ingress_at_destination", ingress}, {"verdict", allowed ? "allowed" : "denied"}};
}

}  // namespace stockade
