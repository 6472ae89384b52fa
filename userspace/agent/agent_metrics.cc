// SPDX-License-Identifier: Apache-2.0
//
// The agent's Prometheus text, for the metrics server's GET /metrics
// (docs/events.md lists the families), and the event statistics that
// `stockadectl status` shows too.
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

// Ring buffer reservations that failed: the records lost, and the drops and
// the allowed new flows they stood for.
struct RingbufLoss {
  uint64_t records = 0, drops = 0, new_flows = 0;
};

RingbufLoss RingbufLost(const Datapath& datapath) {
  RingbufLoss lost;
  for (uint32_t dir = 0; dir < DIR_MAX; ++dir)
    for (uint32_t verdict = 0; verdict < VERDICT_MAX; ++verdict) {
      auto c = datapath.Counter(EVENT_LOST, dir, verdict);
      if (!c.ok()) continue;
      lost.records += c->packets;
      // emit_event() counts what a lost record stood for as its "bytes".
      (verdict == VERDICT_FORWARDED ? lost.new_flows : lost.drops) += c->bytes;
    }
  return lost;
}

}  // namespace

nlohmann::json Agent::EventStats() {
  EventHubStats hub = events_->Stats();
  RingbufLoss ringbuf = RingbufLost(*datapath_);
  uint64_t new_flows = 0;
  for (uint32_t dir = 0; dir < DIR_MAX; ++dir) new_flows += hub.flows[VERDICT_FORWARDED][dir];
  return {{"received", hub.received},
          {"drops_received", hub.drops_received},
          {"new_flows_received", new_flows},
          {"subscribers", hub.subscribers},
          {"lost", {{"ringbuf", ringbuf.records}, {"ringbuf_drops", ringbuf.drops}, {"ringbuf_new_flows", ringbuf.new_flows},
                    {"agent", hub.malformed},
                    {"subscriber", hub.subscriber_lost}}}};
}

std::string Agent::RenderMetrics() {
  PrometheusText out;
  // Datapath counters need no lock: they are read from the maps.
  struct Series {
    const char* name;
    const char* help;
  };
  const Series kDropCount{"stockade_drop_count_total", "Packets dropped, by reason and direction."};
  const Series kDropBytes{"stockade_drop_bytes_total", "Bytes dropped, by reason and direction."};
  const Series kAuditCount{"stockade_audit_count_total",
                           "Packets that would have been dropped and passed in audit mode, by reason and direction."};
  std::vector<std::tuple<int, uint32_t, metrics_value>> drops, audits;
  metrics_value forwarded[DIR_MAX] = {};
  for (int slot = 0; slot < STOCKADE_REASON_SLOTS; ++slot) {
    int reason = slot == 0 ? REASON_NONE : -(STOCKADE_REASON_BASE + slot - 1);
    if (reason == EVENT_LOST) continue;  // not a packet; see stockade_events_lost_total
    for (uint32_t dir = 0; dir < DIR_MAX; ++dir) {
      for (uint32_t verdict = 0; verdict < VERDICT_MAX; ++verdict) {
        auto c = datapath_->Counter(reason, dir, verdict);
        if (!c.ok()) continue;
        if (reason == REASON_NONE) {
          if (verdict == VERDICT_FORWARDED) forwarded[dir] = *c;
        } else if (verdict == VERDICT_DROPPED) {
          drops.emplace_back(reason, dir, *c);
        } else if (verdict == VERDICT_AUDIT) {
          audits.emplace_back(reason, dir, *c);
        }
      }
    }
  }
  auto labels = [](int reason, uint32_t dir) {
    return MetricLabels{{"reason", std::string(DropReasonName(reason))}, {"direction", std::string(DirectionName(dir))}};
  };
  out.Family(kDropCount.name, "counter", kDropCount.help);
  for (const auto& [reason, dir, c] : drops) out.Sample(kDropCount.name, labels(reason, dir), c.packets);
  out.Family(kDropBytes.name, "counter", kDropBytes.help);
  for (const auto& [reason, dir, c] : drops) out.Sample(kDropBytes.name, labels(reason, dir), c.bytes);
  out.Family(kAuditCount.name, "counter", kAuditCount.help);
  for (const auto& [reason, dir, c] : audits) out.Sample(kAuditCount.name, labels(reason, dir), c.packets);
  out.Family("stockade_forward_count_total", "counter", "Packets forwarded by the programs, by direction.");
  for (uint32_t dir = 0; dir < DIR_MAX; ++dir)
    out.Sample("stockade_forward_count_total", {{"direction", std::string(DirectionName(dir))}}, forwarded[dir].packets);
  out.Family("stockade_forward_bytes_total", "counter", "Bytes forwarded by the programs, by direction.");
  for (uint32_t dir = 0; dir < DIR_MAX; ++dir)
    out.Sample("stockade_forward_bytes_total", {{"direction", std::string(DirectionName(dir))}}, forwarded[dir].bytes);

  EventHubStats hub = events_->Stats();
  RingbufLoss ringbuf = RingbufLost(*datapath_);
  out.Family("stockade_events_total", "counter",
             "Event records (drops, audits, allowed new flows) the agent read from the ring buffer.");
  out.Sample("stockade_events_total", hub.received);
  out.Family("stockade_flows_total", "counter",
             "What the event records stood for, by verdict and direction: FORWARDED counts allowed new flows "
             "(conntrack entries created), DROPPED and AUDIT the packets their records stood for.");
  for (uint32_t verdict = 0; verdict < VERDICT_MAX; ++verdict)
    for (uint32_t dir = 0; dir < DIR_MAX; ++dir)
      out.Sample("stockade_flows_total",
                 {{"verdict", std::string(VerdictName(verdict))}, {"direction", std::string(DirectionName(dir))}},
                 hub.flows[verdict][dir]);
  out.Family("stockade_events_lost_total", "counter",
             "Event records lost, by stage: ringbuf (the kernel could not reserve), agent (unreadable), "
             "subscriber (dropped from a slow subscriber's queue).");
  out.Sample("stockade_events_lost_total", {{"stage", "ringbuf"}}, ringbuf.records);
  out.Sample("stockade_events_lost_total", {{"stage", "agent"}}, hub.malformed);
  out.Sample("stockade_events_lost_total", {{"stage", "subscriber"}}, hub.subscriber_lost);
  out.Family("stockade_event_subscribers", "gauge", "stockade-tail and other subscribers connected now.");
  out.Sample("stockade_event_subscribers", hub.subscribers);

  // Map fill: read without the lock too (counting a big conntrack takes a while).
  auto capacity = [](int fd) {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    return bpf_map_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0u;
  };
  std::vector<std::tuple<std::string, std::optional<size_t>, uint32_t>> maps;
  auto fill = [&](const char* name, const auto& map) {
    auto n = map.Count();
    maps.emplace_back(name, n.ok() ? std::optional<size_t>(*n) : std::nullopt, capacity(map.fd()));
  };
  fill("endpoints", datapath_->endpoints());
  fill("ipcache", datapath_->ipcache());
  fill("policy", datapath_->policy_prefixes());
  fill("policy_exact", datapath_->policy_exact());
  fill("conntrack", datapath_->conntrack().wide_map());
  fill("conntrack4", datapath_->conntrack().ipv4_map());
  fill("fragments", datapath_->fragments());
  fill("denied_flows", datapath_->denied_flows());
  out.Family("stockade_map_entries", "gauge", "Entries in each datapath map.");
  for (const auto& [name, entries, cap] : maps)
    if (entries) out.Sample("stockade_map_entries", {{"map", name}}, *entries);
  out.Family("stockade_map_capacity", "gauge", "Capacity of each datapath map.");
  for (const auto& [name, entries, cap] : maps) out.Sample("stockade_map_capacity", {{"map", name}}, cap);

  std::lock_guard<std::mutex> hold(mu_);
  PrometheusText agent;
  std::map<std::string, int> by_state = {{"enforcing", 0}, {"allow-all", 0}, {"error", 0}, {"host", 0}};
  for (const EndpointState& e : endpoints_) by_state[e.StateName()]++;
  agent.Family("stockade_endpoints", "gauge", "Endpoints the agent knows, by state.");
  for (const auto& [state, n] : by_state) agent.Sample("stockade_endpoints", {{"state", state}}, n);
  agent.Family("stockade_identities", "gauge", "Identities allocated from label sets and CIDRs.");
  agent.Sample("stockade_identities", reconciler_->allocator().table().labels.size() + reconciler_->allocator().table().cidrs.size());
  agent.Family("stockade_policies", "gauge", "Policies in force (the last good set).");
  agent.Sample("stockade_policies", policy_files_.policies().size());
  agent.Family("stockade_policy_reloads_total", "counter", "Policy directory reloads, by result.");
  agent.Sample("stockade_policy_reloads_total", {{"result", "applied"}}, policy_reloads_);
  agent.Sample("stockade_policy_reloads_total", {{"result", "rejected"}}, policy_rejects_);
  agent.Family("stockade_map_sync_errors_total", "counter",
               "Map writes that failed (a full map, for one); the previous state stayed in force.");
  agent.Sample("stockade_map_sync_errors_total", map_sync_errors_);
  agent.Family("stockade_reconciles_total", "counter", "Times the maps were brought to what the sources say.");
  agent.Sample("stockade_reconciles_total", reconciles_);
  agent.Family("stockade_docker_connected", "gauge", "1 when the agent follows Docker's event stream.");
  agent.Sample("stockade_docker_connected", docker_ && docker_->subscribed() ? 1 : 0);
  agent.Family("stockade_docker_resyncs_total", "counter", "Full resyncs with Docker (on reconnect and periodic).");
  agent.Sample("stockade_docker_resyncs_total", resyncs_);
  agent.Family("stockade_docker_sync_lag_seconds", "gauge",
               "From the time Docker gives its latest event to the agent's map write for it.");
  agent.Sample("stockade_docker_sync_lag_seconds", absl::ToDoubleSeconds(docker_sync_lag_));
  agent.Family("stockade_address_conflicts", "gauge",
               "Addresses claimed by two hosts, or by a remote and a local endpoint: resolved to neither.");
  agent.Sample("stockade_address_conflicts", address_conflicts_.size());
  if (store_) {
    StoreStats store = store_->Stats();
    agent.Family("stockade_store_connected", "gauge", "1 when the agent's listing and watch of etcd are current.");
    agent.Sample("stockade_store_connected", store.connected ? 1 : 0);
    agent.Family("stockade_store_remote_hosts", "gauge", "Other hosts the store names.");
    agent.Sample("stockade_store_remote_hosts", store.remote_hosts);
    agent.Family("stockade_store_remote_endpoints", "gauge", "Other hosts' endpoint addresses in force here.");
    agent.Sample("stockade_store_remote_endpoints", store.remote_endpoints);
    agent.Family("stockade_store_published_keys", "gauge", "This host's keys in the store, as last written.");
    agent.Sample("stockade_store_published_keys", store.published_keys);
    agent.Family("stockade_store_bad_records_total", "counter", "Store records that did not decode: skipped.");
    agent.Sample("stockade_store_bad_records_total", store.bad_records);
    agent.Family("stockade_store_relists_total", "counter",
                 "Full listings after the first: a broken watch or a compacted revision.");
    agent.Sample("stockade_store_relists_total", store.relists);
    agent.Family("stockade_store_publish_errors_total", "counter", "Failed writes and lease keepalives.");
    agent.Sample("stockade_store_publish_errors_total", store.publish_errors);
    agent.Family("stockade_store_sync_lag_seconds", "gauge", "From the store's latest change to the agent's map write for it.");
    agent.Sample("stockade_store_sync_lag_seconds", absl::ToDoubleSeconds(store_sync_lag_));
  }
  return out.text() + agent.text();
}

}  // namespace stockade
