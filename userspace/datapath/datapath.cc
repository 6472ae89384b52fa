// SPDX-License-Identifier: Apache-2.0
#include "stockade/datapath/datapath.h"

#include <bpf/bpf.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "stockade/datapath/attach.h"
#include "stockade/os/scoped_fd.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"
#include "stockade_bpf.skel.h"

namespace stockade {
namespace {

absl::Status LibbpfStatus(int err, std::string_view what) { return ErrnoStatus(err < 0 ? -err : err, what); }

// Sets the pin path of every map, so load() adopts what is pinned and pins what is new.
absl::Status PinMaps(bpf_object* obj, const std::string& dir) {
  bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    std::string name = bpf_map__name(map);
    if (name.starts_with(".") || name.find(".rodata") != std::string::npos || name.find(".bss") != std::string::npos)
      continue;  // internal maps of globals are per load
    std::string path = absl::StrCat(dir, "/", name);
    int err = bpf_map__set_pin_path(map, path.c_str());
    if (err) return LibbpfStatus(err, absl::StrCat("set pin path ", path));
  }
  return absl::OkStatus();
}

absl::Status UnpinIfSizeDiffers(bpf_map* map, const std::string& dir) {
  std::string path = absl::StrCat(dir, "/", bpf_map__name(map));
  ScopedFd pinned(bpf_obj_get(path.c_str()));
  if (!pinned.valid()) return absl::OkStatus();  // not pinned yet
  bpf_map_info info{};
  uint32_t info_len = sizeof(info);
  if (bpf_map_get_info_by_fd(pinned.get(), &info, &info_len) != 0)
    return ErrnoStatus(errno, absl::StrCat("read the pinned map ", path));
  if (info.max_entries == bpf_map__max_entries(map)) return absl::OkStatus();
  if (unlink(path.c_str()) != 0)
    return ErrnoStatus(errno, absl::StrCat("replace the pinned map ", path, " of ", info.max_entries, " entries"));
  return absl::OkStatus();
}

template <typename Map>
absl::StatusOr<Map> Wrap(bpf_map* map) {
  return Map::FromFd(bpf_map__fd(map));
}

}  // namespace

std::string InstancePinDir(const std::string& instance) { return absl::StrCat(STOCKADE_PIN_DIR, "/", instance); }

absl::Status EnsureBpffs() {
  struct statfs fs {};
  if (statfs(STOCKADE_BPFFS_ROOT, &fs) == 0 && fs.f_type == BPF_FS_MAGIC) return absl::OkStatus();
  if (mount("bpf", STOCKADE_BPFFS_ROOT, "bpf", 0, nullptr) != 0)
    return ErrnoStatus(errno, "bpffs is not mounted at " STOCKADE_BPFFS_ROOT " and mounting it failed");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Datapath>> Datapath::Load(const DatapathOptions& options) {
  stockade_bpf* skel = stockade_bpf__open();
  if (!skel) return ErrnoStatus(errno, "open BPF object stockade_bpf");
  auto destroy = [&] { stockade_bpf__destroy(skel); };

  auto resize = [&](bpf_map* map, std::optional<uint32_t> size) -> absl::Status {
    if (!size) return absl::OkStatus();
    int err = bpf_map__set_max_entries(map, *size);
    if (err) return LibbpfStatus(err, absl::StrCat("resize map ", bpf_map__name(map)));
    return absl::OkStatus();
  };
  for (auto [map, size] : {std::pair{skel->maps.conntrack, options.conntrack_max},
                           std::pair{skel->maps.conntrack4, options.conntrack_max},
                           std::pair{skel->maps.fragments, options.fragments_max},
                           std::pair{skel->maps.events, options.events_ringbuf_bytes},
                           std::pair{skel->maps.policy, options.policy_max},
                           std::pair{skel->maps.policy_exact, options.policy_max},
                           std::pair{skel->maps.denied_flows, options.denied_flows_max}}) {
    if (absl::Status s = resize(map, size); !s.ok()) {
      destroy();
      return s;
    }
  }

  std::string pin_dir;
  bool adopting_conntrack_without_ipv4_map = false;
  if (!options.instance.empty()) {
    if (options.instance.find('/') != std::string::npos || options.instance.starts_with(".")) {
      destroy();
      return absl::InvalidArgumentError(absl::StrCat("instance name '", options.instance, "' must be a plain name"));
    }
    if (absl::Status s = EnsureBpffs(); !s.ok()) {
      destroy();
      return s;
    }
    pin_dir = InstancePinDir(options.instance);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(pin_dir) / STOCKADE_PIN_LINKS_SUBDIR, ec);
    if (ec) {
      destroy();
      return absl::InternalError(absl::StrCat("create pin directory ", pin_dir, ": ", ec.message()));
    }
    adopting_conntrack_without_ipv4_map =
        std::filesystem::exists(absl::StrCat(pin_dir, "/", STOCKADE_MAP_CONNTRACK)) &&
        !std::filesystem::exists(absl::StrCat(pin_dir, "/", STOCKADE_MAP_CONNTRACK4));
    if (absl::Status s = PinMaps(skel->obj, pin_dir); !s.ok()) {
      destroy();
      return s;
    }
    // A map an older version pinned and this one no longer has (the XDP
    // prefilter's, never attached): nothing reads it any more.
    std::filesystem::remove(absl::StrCat(pin_dir, "/prefilter"), ec);
    // The metrics array grows with every new drop reason. Its counters are
    // the only state in it, so a pin of another size is replaced (Prometheus
    // sees a counter reset) instead of failing the load of a new version.
    if (absl::Status s = UnpinIfSizeDiffers(skel->maps.metrics, pin_dir); !s.ok()) {
      destroy();
      return s;
    }
  }

  if (int err = stockade_bpf__load(skel); err) {
    destroy();
    return LibbpfStatus(err, pin_dir.empty() ? "load BPF object stockade_bpf"
                                             : absl::StrCat("load BPF object stockade_bpf (pins in ", pin_dir, ")"));
  }

  auto endpoints = Wrap<EndpointMap>(skel->maps.endpoints);
  auto ipcache = Wrap<IpcacheMap>(skel->maps.ipcache);
  auto policy = Wrap<PolicyMap>(skel->maps.policy);
  auto policy_exact = Wrap<PolicyMap>(skel->maps.policy_exact);
  auto conntrack = Wrap<ConntrackMap>(skel->maps.conntrack);
  auto conntrack4 = Wrap<Conntrack4Map>(skel->maps.conntrack4);
  auto flow_cache = FlowCacheMap::FromFd(bpf_map__fd(skel->maps.flow_cache));
  auto fragments = Wrap<FragmentMap>(skel->maps.fragments);
  auto denied_flows = Wrap<DeniedFlowMap>(skel->maps.denied_flows);
  auto event_agg = Wrap<EventAggMap>(skel->maps.event_agg);
  auto flow_seen = FlowSeenMap::FromFd(bpf_map__fd(skel->maps.flow_seen));
  auto config = Wrap<ConfigMap>(skel->maps.config);
  auto metrics = MetricsMap::FromFd(bpf_map__fd(skel->maps.metrics));
  for (const absl::Status& s : {endpoints.status(), ipcache.status(), policy.status(),
                                policy_exact.status(),
                                conntrack.status(), conntrack4.status(), flow_cache.status(), fragments.status(), denied_flows.status(), event_agg.status(), flow_seen.status(), config.status(),
                                metrics.status()}) {
    if (!s.ok()) {
      destroy();
      return s;
    }
  }
  std::unique_ptr<Datapath> dp(new Datapath(skel, pin_dir, std::move(*endpoints), std::move(*ipcache),
                                            std::move(*policy), std::move(*policy_exact),
                                            Conntrack(std::move(*conntrack), std::move(*conntrack4), std::move(*flow_cache)),
                                            std::move(*fragments), std::move(*denied_flows), std::move(*event_agg), std::move(*flow_seen), std::move(*config),
                                            std::move(*metrics)));

  // A fresh config gets the defaults; an adopted one keeps what was set.
  auto cfg = dp->ReadConfig();
  if (!cfg.ok()) return cfg.status();
  if (!(cfg->flags & STOCKADE_CONFIG_F_SET)) {
    cfg->event_interval_ns = STOCKADE_DEFAULT_EVENT_INTERVAL_NS;
    cfg->flags |= STOCKADE_CONFIG_F_SET;
  }
  if (absl::Status s = dp->WriteConfig(*cfg); !s.ok()) return s;
  // After an upgrade from a version without conntrack4: the bulk of the move,
  // while the old programs still run (Agent::Start moves the rest).
  dp->adopted_conntrack_without_ipv4_map_ = adopting_conntrack_without_ipv4_map;
  if (adopting_conntrack_without_ipv4_map) {
    if (auto moved = dp->conntrack().MoveIpv4FlowsFromWideMap(); !moved.ok()) return moved.status();
  }
  return dp;
}

Datapath::Datapath(stockade_bpf* skel, std::string pin_dir, EndpointMap endpoints, IpcacheMap ipcache,
                   PolicyMap policy, PolicyMap policy_exact, Conntrack conntrack,
                   FragmentMap fragments, DeniedFlowMap denied_flows,
                   EventAggMap event_agg, FlowSeenMap flow_seen, ConfigMap config, MetricsMap metrics)
    : skel_(skel),
      pin_dir_(std::move(pin_dir)),
      endpoints_(std::move(endpoints)),
      ipcache_(std::move(ipcache)),
      policy_(std::move(policy)),
      policy_exact_(std::move(policy_exact)),
      conntrack_(std::move(conntrack)),
      fragments_(std::move(fragments)),
      denied_flows_(std::move(denied_flows)),
      event_agg_(std::move(event_agg)),
      flow_seen_(std::move(flow_seen)),
      config_(std::move(config)),
      metrics_(std::move(metrics)) {}

Datapath::~Datapath() { stockade_bpf__destroy(skel_); }

int Datapath::tc_ingress_fd() const { return bpf_program__fd(skel_->progs.stockade_tc_ingress); }
int Datapath::tc_egress_fd() const { return bpf_program__fd(skel_->progs.stockade_tc_egress); }
int Datapath::xdp_fd() const { return bpf_program__fd(skel_->progs.stockade_xdp); }
int Datapath::events_fd() const { return bpf_map__fd(skel_->maps.events); }

absl::StatusOr<stockade_config> Datapath::ReadConfig() const {
  auto cfg = config_.Lookup(0);
  if (!cfg.ok()) return cfg.status();
  if (!cfg->has_value()) return absl::InternalError("config map has no entry 0");
  return **cfg;
}

absl::Status Datapath::WriteConfig(const stockade_config& config) { return config_.Update(0, config); }

absl::Status Datapath::SetFlowRecords(bool on) {
  auto cfg = ReadConfig();
  if (!cfg.ok()) return cfg.status();
  cfg->flags = on ? cfg->flags & ~uint64_t{STOCKADE_CONFIG_F_NO_FLOW_RECORDS}
                  : cfg->flags | STOCKADE_CONFIG_F_NO_FLOW_RECORDS;
  return WriteConfig(*cfg);
}

absl::StatusOr<metrics_value> Datapath::Counter(int reason, uint32_t direction, uint32_t verdict) const {
  auto per_cpu = metrics_.LookupAllCpus(stockade_metrics_index(reason, direction, verdict));
  if (!per_cpu.ok()) return per_cpu.status();
  metrics_value sum{};
  for (const metrics_value& v : *per_cpu) {
    sum.packets += v.packets;
    sum.bytes += v.bytes;
  }
  return sum;
}

absl::Status Datapath::WritePolicy(const policy_key& key, const policy_value& value) {
  return (key.prefixlen == POLICY_PREFIX_FULL ? policy_exact_ : policy_).Update(key, value);
}

absl::Status Datapath::DeletePolicy(const policy_key& key) {
  auto deleted = (key.prefixlen == POLICY_PREFIX_FULL ? policy_exact_ : policy_).Delete(key);
  return deleted.status();
}

absl::Status Datapath::ClearPolicy() {
  if (absl::Status s = policy_exact_.Clear(); !s.ok()) return s;
  return policy_.Clear();
}

absl::StatusOr<std::optional<policy_value>> Datapath::LookupPolicy(const policy_key& key) const {
  auto exact = policy_exact_.Lookup(key);
  if (!exact.ok() || exact->has_value()) return exact;
  return policy_.Lookup(key);
}

absl::Status Datapath::ZeroCounters() {
  for (uint32_t index = 0; index < STOCKADE_METRICS_MAX; ++index) {
    if (absl::Status s = metrics_.Zero(index); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status UninstallInstance(const std::string& instance) {
  std::string dir = InstancePinDir(instance);
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return absl::OkStatus();
  // Classic tc filters are not links: find them through the endpoints the instance knew.
  auto endpoints = EndpointMap::FromPin(absl::StrCat(dir, "/", STOCKADE_MAP_ENDPOINTS));
  auto cookie = NetnsCookie("/proc/thread-self/ns/net");
  if (endpoints.ok() && cookie.ok()) {
    absl::Status s = endpoints->ForEach([&](const endpoint_key& key, const endpoint_info&) {
      if (key.netns_cookie == *cookie) RemoveClassicTcFilters(key.ifindex);
    });
    if (!s.ok()) return s;
  }
  // Unpinning a link would detach it too, but in a kernel work item a moment
  // later: detached here, the programs are off every interface on return.
  for (const auto& entry : std::filesystem::directory_iterator(absl::StrCat(dir, "/", STOCKADE_PIN_LINKS_SUBDIR), ec)) {
    ScopedFd link(bpf_obj_get(entry.path().c_str()));
    if (link.valid()) (void)bpf_link_detach(link.get());  // a link already detached has nothing to do
  }
  std::filesystem::remove_all(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", dir, ": ", ec.message()));
  std::filesystem::remove(STOCKADE_PIN_DIR, ec);  // only if no other instance is left; else a no-op
  return absl::OkStatus();
}

}  // namespace stockade
