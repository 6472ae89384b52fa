// SPDX-License-Identifier: Apache-2.0
#include "tools/microbench/prog_bench.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_bpf.skel.h"
#include "maps/abi.h"
#include "stockade/net/addresses.h"
#include "stockade/datapath/datapath.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"
#include "stockade/policy/policy_entries.h"
#include "testlib/packet_builder.h"
#include "tools/microbench/common.h"

namespace stockade::microbench {
namespace {

using testing::PacketBuilder;

constexpr uint32_t kLocalIdentity = 256;
constexpr uint32_t kPeerIdentity = 500;
constexpr uint32_t kFillerIdentityBase = 1000;
constexpr uint32_t kFillerRuleIdBase = 1000;
// BPF_PROG_TEST_RUN hands its packets to the loopback interface of the caller's namespace.
constexpr uint32_t kTestRunIfindex = 1;
constexpr char kEndpointIp[] = "10.0.0.1";
constexpr char kEndpointIp6[] = "fd00::1";
// bench_new_flow rewrites the IPv4 source address into 10.128.0.0/9 (and the
// source port) every run. On an IPv6 packet the same fixed offsets (12..15,
// 20..21) lie inside the source address, whose first 48 bits stay
// fd00:0:a80: every run is a new IPv6 flow from inside fd00:0:a80::/48.
constexpr char kPeerIp[] = "10.128.0.1";
constexpr char kPeerPrefix[] = "10.128.0.0/9";
constexpr char kPeerIp6[] = "fd00:0:a80::1";
constexpr char kPeerPrefix6[] = "fd00:0:a80::/48";
// 10.64.0.0 up: filler /32s, clear of the endpoint and its peers.
constexpr uint32_t kFillerIpv4Base = 0x0a400000;
constexpr uint16_t kSourcePort = 40000;
// Runs per path in the check that each path is the one it is named after.
constexpr uint32_t kPathCheckRuns = 1000;

constexpr uint32_t kPolicySizes[] = {10, 1'000, 10'000, 100'000};

struct Kind {
  const char* name;
  bool ipv6;
  uint8_t protocol;
  uint16_t port;
  // IPv4 options: router alert and 36 no-operations, 37 options and the
  // 40 bytes the walk reads at most, none refused. Off the fast path.
  bool ipv4_options = false;
};
constexpr Kind kKinds[] = {{"ipv4-tcp", false, IPPROTO_TCP, 80},
                           {"ipv4-udp", false, IPPROTO_UDP, 53},
                           {"ipv6-tcp", true, IPPROTO_TCP, 80},
                           {"ipv4-opts", false, IPPROTO_TCP, 81, true}};
// ref_min_filter parses IPv4 without options only; IPv6 and IPv4 with
// options are held against the IPv4 TCP floor.
constexpr char kIpv6FloorKind[] = "ipv4-tcp";
bool HasOwnFloor(const Kind& kind) { return !kind.ipv6 && !kind.ipv4_options; }

std::vector<uint8_t> MeasuredIpv4Options() {
  std::vector<uint8_t> options = {0x94, 4, 0, 0};
  options.resize(40, 1);
  return options;
}

constexpr char kEstablished[] = "established";
constexpr char kNewFlow[] = "new flow";
// The same two paths with new-flow records off (maps/config.h), measured in
// the same rounds: what the records cost. The others run with them on.
constexpr char kEstablishedNoRecords[] = "established -r";
constexpr char kNewFlowNoRecords[] = "new flow -r";
constexpr char kDenied[] = "denied";
constexpr char kRefPass[] = "ref_pass";
constexpr char kRefMinFilter[] = "ref_min_filter";
// bench.bpf.c's stage_* programs: an established packet's path cut short.
constexpr char kToEndpoint[] = "to endpoint";
constexpr char kToConntrack[] = "to conntrack";
constexpr char kWholePath[] = "whole path";

// The key of bench.bpf.c's min_filter_allow, a benchmark-only map outside the ABI.
struct MinFilterKey {
  uint32_t saddr;
  uint32_t daddr;
  uint16_t sport;
  uint16_t dport;
  uint8_t protocol;
  uint8_t pad[3];
};
static_assert(sizeof(MinFilterKey) == 16);

// The bench object's ring buffer: 64 MiB, ~760k records, more than the
// 500k runs of a full run's new-flow measure.
constexpr uint32_t kBenchRecordBytes = 64u << 20;

// A port no rule allows, for the denied path.
constexpr uint16_t kDeniedPortOffset = 1000;

// A frame of `kind` between the endpoint and its peer. What the endpoint
// sends is mid-stream (ACK); what it receives opens a flow (SYN). With
// payload: the endpoint's first request, which a TCP flow's TLS check waits for.
std::vector<uint8_t> Frame(const Kind& kind, bool from_endpoint, uint16_t port_offset = 0, bool payload = false) {
  PacketBuilder packet;
  packet.Ethernet();
  if (kind.ipv6) {
    auto local = testing::Ipv6(kEndpointIp6), remote = testing::Ipv6(kPeerIp6);
    packet.Ipv6({.src = from_endpoint ? local : remote, .dst = from_endpoint ? remote : local});
  } else {
    auto local = testing::Ipv4(kEndpointIp), remote = testing::Ipv4(kPeerIp);
    packet.Ipv4({.src = from_endpoint ? local : remote, .dst = from_endpoint ? remote : local,
                 .options = kind.ipv4_options ? MeasuredIpv4Options() : std::vector<uint8_t>{}});
  }
  if (kind.protocol == IPPROTO_TCP) {
    packet.Tcp({.sport = kSourcePort, .dport = static_cast<uint16_t>(kind.port + port_offset),
                .flags = from_endpoint ? testing::kTcpAck : testing::kTcpSyn});
  } else {
    packet.Udp({.sport = kSourcePort, .dport = static_cast<uint16_t>(kind.port + port_offset)});
  }
  if (payload) packet.Payload(std::vector<uint8_t>{'G', 'E', 'T', ' ', '/'});
  return packet.Build();
}

// The maps a policy decision reads; both BPF objects have their own.
struct EnforcementMaps {
  EndpointMap& endpoints;
  IpcacheMap& ipcache;
  PolicyMap& policy_prefixes;
  PolicyMap& policy_exact;
};

// Full-length entries go to the hash map, the rest to the trie (maps/policy.h).
absl::Status WriteRules(EnforcementMaps& maps, const std::vector<DatapathRule>& rules) {
  auto entries = CompilePolicyEntries(rules);
  if (!entries.ok()) return entries.status();
  for (const PolicyEntry& entry : *entries) {
    PolicyMap& map = entry.key.prefixlen == POLICY_PREFIX_FULL ? maps.policy_exact : maps.policy_prefixes;
    if (absl::Status s = map.Update(entry.key, entry.value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status SetIdentity(IpcacheMap& ipcache, const char* cidr, uint32_t identity) {
  auto prefix = ParseIpPrefix(cidr);
  if (!prefix.ok()) return prefix.status();
  return ipcache.Update(prefix->ToIpcacheKey(), ipcache_value{identity, 0});
}

// The endpoint on the test-run interface, on a host-side veth (TC ingress is
// what it sends), its peers' identity and the rules that let the measured flows pass.
absl::Status InstallEndpoint(EnforcementMaps maps, uint64_t netns_cookie) {
  endpoint_key key{.netns_cookie = netns_cookie, .ifindex = kTestRunIfindex};
  endpoint_info info{};
  info.identity = kLocalIdentity;
  info.flags = ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS;
  info.policy_revision = 1;
  info.role = HOOK_ROLE_HOST_VETH;
  info.ipv4 = ParseIpAddress(kEndpointIp)->ipv4_network_order();
  std::memcpy(info.ipv6, ParseIpAddress(kEndpointIp6)->bytes.data(), sizeof(info.ipv6));
  if (absl::Status s = maps.endpoints.Update(key, info); !s.ok()) return s;
  for (const char* prefix : {kPeerPrefix, kPeerPrefix6}) {
    if (absl::Status s = SetIdentity(maps.ipcache, prefix, kPeerIdentity); !s.ok()) return s;
  }
  std::vector<DatapathRule> rules;
  for (uint8_t direction : {DIR_INGRESS, DIR_EGRESS}) {
    for (const Kind& kind : kKinds) {
      if (kind.ipv6) continue;  // same protocol and port as ipv4-tcp
      rules.push_back({.rule_id = static_cast<uint32_t>(rules.size() + 1), .local_identity = kLocalIdentity,
                       .remote_identity = kPeerIdentity, .direction = direction, .protocol = kind.protocol,
                       .ports = {kind.port, kind.port}});
    }
  }
  return WriteRules(maps, rules);
}

// Filler number `from` to `to` - 1: each a /32 of its own identity and one
// rule (one policy entry) for that identity and a port; the measured packets
// match none of them, but every lookup walks tries that hold them.
absl::Status AddFiller(EnforcementMaps maps, uint32_t from, uint32_t to) {
  std::vector<DatapathRule> rules;
  for (uint32_t i = from; i < to; ++i) {
    uint32_t identity = kFillerIdentityBase + i;
    IpPrefix prefix{.address = {.family = STOCKADE_AF_INET}, .length = 32};
    uint32_t address = htonl(kFillerIpv4Base + i);
    std::memcpy(prefix.address.bytes.data(), &address, sizeof(address));
    if (absl::Status s = maps.ipcache.Update(prefix.ToIpcacheKey(), ipcache_value{identity, 0}); !s.ok()) return s;
    uint16_t port = 1024 + i % 60000;
    rules.push_back({.rule_id = kFillerRuleIdBase + i, .local_identity = kLocalIdentity, .remote_identity = identity,
                     .direction = static_cast<uint8_t>(i % 2 ? DIR_INGRESS : DIR_EGRESS),
                     .protocol = IPPROTO_TCP, .ports = {port, port}});
  }
  return WriteRules(maps, rules);
}

struct BenchObjectDeleter {
  void operator()(bench_bpf* skel) const { bench_bpf__destroy(skel); }
};
using BenchObject = std::unique_ptr<bench_bpf, BenchObjectDeleter>;

// bench.bpf.c's own copies of the maps, wrapped.
struct BenchMaps {
  EndpointMap endpoints;
  IpcacheMap ipcache;
  PolicyMap policy;
  PolicyMap policy_exact;
  Conntrack conntrack;
  TypedMap<MinFilterKey, uint32_t> min_filter_allow;

  EnforcementMaps enforcement() { return {endpoints, ipcache, policy, policy_exact}; }
};

template <typename Map>
absl::StatusOr<Map> Wrap(bpf_map* map) {
  return Map::FromFd(bpf_map__fd(map));
}

absl::StatusOr<BenchMaps> WrapBenchMaps(bench_bpf* skel) {
  auto endpoints = Wrap<EndpointMap>(skel->maps.endpoints);
  auto ipcache = Wrap<IpcacheMap>(skel->maps.ipcache);
  auto policy = Wrap<PolicyMap>(skel->maps.policy);
  auto policy_exact = Wrap<PolicyMap>(skel->maps.policy_exact);
  auto conntrack = Wrap<ConntrackMap>(skel->maps.conntrack);
  auto conntrack4 = Wrap<Conntrack4Map>(skel->maps.conntrack4);
  auto flow_cache = FlowCacheMap::FromFd(bpf_map__fd(skel->maps.flow_cache));
  auto min_filter_allow = Wrap<TypedMap<MinFilterKey, uint32_t>>(skel->maps.min_filter_allow);
  for (const absl::Status& s :
       {endpoints.status(), ipcache.status(), policy.status(), policy_exact.status(), conntrack.status(),
        conntrack4.status(), flow_cache.status(), min_filter_allow.status()}) {
    if (!s.ok()) return s;
  }
  return BenchMaps{std::move(*endpoints), std::move(*ipcache), std::move(*policy), std::move(*policy_exact),
                   Conntrack(std::move(*conntrack), std::move(*conntrack4), std::move(*flow_cache)),
                   std::move(*min_filter_allow)};
}

// Lets ref_min_filter take its allow path on the established frame of `kind`.
absl::Status AllowInMinFilter(TypedMap<MinFilterKey, uint32_t>& allow, const Kind& kind) {
  MinFilterKey key{};
  key.saddr = ParseIpAddress(kEndpointIp)->ipv4_network_order();
  key.daddr = ParseIpAddress(kPeerIp)->ipv4_network_order();
  key.sport = htons(kSourcePort);
  key.dport = htons(kind.port);
  key.protocol = kind.protocol;
  return allow.Update(key, 1);
}

struct TestRunResult {
  int retval;
  uint32_t ns_per_run;  // the kernel's average over the repeats
};

absl::StatusOr<TestRunResult> TestRun(int prog_fd, const std::vector<uint8_t>& frame, uint32_t repeat) {
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_size_in = static_cast<uint32_t>(frame.size()),
              .repeat = static_cast<int>(repeat));
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0)
    return ErrnoStatus(errno, absl::StrCat("BPF_PROG_TEST_RUN x", repeat, " on a ", frame.size(), "-byte frame"));
  return TestRunResult{static_cast<int>(opts.retval), opts.duration};
}

struct Measurement {
  std::string kind;
  std::string path;
  int prog_fd;
  std::vector<uint8_t> frame;
  Samples ns;
  int expected_retval = TC_ACT_UNSPEC;
  // Run before every measure, if not empty: the bench object's new flows
  // evict its established ones from its small conntrack.
  std::vector<uint8_t> primer;
  // Also before every measure, outside the timing: new-flow records on
  // (the default) or off in the config of the program's object.
  std::function<absl::Status()> configure;
};

// Every measured packet must get the verdict of its path: another would mean
// a broken setup, and the cost of another path.
absl::StatusOr<uint32_t> TimeRuns(const Measurement& m, uint32_t repeat) {
  if (m.configure) {
    if (absl::Status s = m.configure(); !s.ok()) return s;
  }
  if (!m.primer.empty()) {
    auto primed = TestRun(m.prog_fd, m.primer, 1);
    if (!primed.ok()) return primed.status();
    if (primed->retval != m.expected_retval)
      return absl::InternalError(absl::StrCat(m.path, " ", m.kind, ": its primer returned ", primed->retval));
  }
  auto result = TestRun(m.prog_fd, m.frame, repeat);
  if (!result.ok()) return result.status();
  if (result->retval != m.expected_retval)
    return absl::InternalError(absl::StrCat(m.path, " ", m.kind, " returned ", result->retval, " instead of ",
                                            m.expected_retval, ": the benchmark setup is wrong"));
  return result->ns_per_run;
}

// The bench object's config as Datapath::Load writes the datapath's (the
// default interval), with new-flow records on or off.
absl::Status WriteBenchConfig(bench_bpf* bench, bool flow_records) {
  uint32_t zero = 0;
  stockade_config config{.event_interval_ns = STOCKADE_DEFAULT_EVENT_INTERVAL_NS,
                         .flags = uint64_t{STOCKADE_CONFIG_F_SET} |
                                  (flow_records ? 0 : uint64_t{STOCKADE_CONFIG_F_NO_FLOW_RECORDS})};
  if (bpf_map_update_elem(bpf_map__fd(bench->maps.config), &zero, &config, BPF_ANY) != 0)
    return ErrnoStatus(errno, "write the config of BPF object bench_bpf");
  return absl::OkStatus();
}

std::vector<Measurement> Measurements(Datapath& dp, bench_bpf* bench, ring_buffer* records) {
  std::vector<Measurement> list;
  auto datapath_records = [&dp](bool on) { return [&dp, on] { return dp.SetFlowRecords(on); }; };
  auto bench_records = [bench, records](bool on) {
    return [bench, records, on]() -> absl::Status {
      if (ring_buffer__consume(records) < 0) return absl::InternalError("read the bench object's ring buffer");
      return WriteBenchConfig(bench, on);
    };
  };
  const Kind& ipv4_tcp = kKinds[0];
  list.push_back({ipv4_tcp.name, kRefPass, bpf_program__fd(bench->progs.ref_pass), Frame(ipv4_tcp, true)});
  for (const Kind& kind : kKinds) {
    if (HasOwnFloor(kind))
      list.push_back({kind.name, kRefMinFilter, bpf_program__fd(bench->progs.ref_min_filter), Frame(kind, true)});
    // Primed as a live flow is: past its first request.
    // Established, new flow, new flow without records, established without:
    // in ABBA order each established measure follows a new flow's in one
    // round of two, as its twin does, so neither gets the colder caches.
    auto established = [&](bool on) {
      list.push_back({.kind = kind.name, .path = on ? kEstablished : kEstablishedNoRecords,
                      .prog_fd = dp.tc_ingress_fd(), .frame = Frame(kind, true),
                      .primer = Frame(kind, true, 0, true), .configure = datapath_records(on)});
    };
    established(true);
    for (bool on : {true, false})
      list.push_back({.kind = kind.name, .path = on ? kNewFlow : kNewFlowNoRecords,
                      .prog_fd = bpf_program__fd(bench->progs.bench_new_flow), .frame = Frame(kind, false),
                      .configure = bench_records(on)});
    established(false);
    list.push_back({.kind = kind.name, .path = kDenied, .prog_fd = dp.tc_ingress_fd(),
                    .frame = Frame(kind, true, kDeniedPortOffset), .expected_retval = TC_ACT_SHOT});
    for (auto [path, prog] : {std::pair{kToEndpoint, bench->progs.stage_endpoint},
                              std::pair{kToConntrack, bench->progs.stage_conntrack}})
      list.push_back({kind.name, path, bpf_program__fd(prog), Frame(kind, true)});
    list.push_back({.kind = kind.name, .path = kWholePath, .prog_fd = bpf_program__fd(bench->progs.stage_whole),
                    .frame = Frame(kind, true), .primer = Frame(kind, true, 0, true)});
  }
  return list;
}

absl::StatusOr<uint64_t> ConntrackPackets(const Conntrack& conntrack) {
  uint64_t packets = 0;
  absl::Status s = conntrack.ForEach([&](const ct_key&, const ct_entry& e) { packets += e.packets; });
  if (!s.ok()) return s;
  return packets;
}

// Shows that the established path hits conntrack (its one entry per flow,
// with what the flow's flow_cache slot holds, counts every run), that the
// new-flow path inserts a flow every run, and
// that the denied path drops every run from one remembered deny per flow.
absl::Status CheckPaths(uint32_t policy_size, Datapath& dp, BenchMaps& bench, std::vector<Measurement>& list) {
  auto denied_before = dp.Counter(DROP_POLICY_DENIED, DIR_EGRESS, VERDICT_DROPPED);
  if (!denied_before.ok()) return denied_before.status();
  auto packets_before = ConntrackPackets(dp.conntrack());
  auto flows_before = bench.conntrack.Count();
  if (!packets_before.ok()) return packets_before.status();
  if (!flows_before.ok()) return flows_before.status();
  uint64_t established_runs = 0, new_flow_runs = 0, denied_runs = 0;
  for (const Measurement& m : list) {
    if (m.path != kEstablished && m.path != kNewFlow && m.path != kDenied) continue;
    if (auto t = TimeRuns(m, kPathCheckRuns); !t.ok()) return t.status();
    // An established measure's primer is a packet of its flow too.
    (m.path == kEstablished ? established_runs : m.path == kNewFlow ? new_flow_runs : denied_runs) +=
        kPathCheckRuns + (m.primer.empty() ? 0 : 1);
  }
  auto denied_after = dp.Counter(DROP_POLICY_DENIED, DIR_EGRESS, VERDICT_DROPPED);
  auto denied_flows = dp.denied_flows().Count();
  if (!denied_after.ok()) return denied_after.status();
  if (!denied_flows.ok()) return denied_flows.status();
  uint64_t dropped = denied_after->packets - denied_before->packets;
  auto packets_after = ConntrackPackets(dp.conntrack());
  auto flows_after = bench.conntrack.Count();
  auto established_flows = dp.conntrack().Count();
  if (!packets_after.ok()) return packets_after.status();
  if (!flows_after.ok()) return flows_after.status();
  if (!established_flows.ok()) return established_flows.status();
  uint64_t counted = *packets_after - *packets_before, inserted = *flows_after - *flows_before;
  std::printf("path check at N=%u: established: %zu conntrack entries counted %llu of %llu runs; "
              "new flow: %llu of %llu runs inserted a flow; denied: %zu remembered denies, %llu of %llu runs "
              "dropped\n",
              policy_size, *established_flows, static_cast<unsigned long long>(counted),
              static_cast<unsigned long long>(established_runs), static_cast<unsigned long long>(inserted),
              static_cast<unsigned long long>(new_flow_runs), *denied_flows, static_cast<unsigned long long>(dropped),
              static_cast<unsigned long long>(denied_runs));
  if (*established_flows != std::size(kKinds) || counted != established_runs || inserted != new_flow_runs ||
      *denied_flows != std::size(kKinds) || dropped != denied_runs)
    return absl::InternalError("a measured path is not the one it is named after");
  return absl::OkStatus();
}

struct Row {
  uint32_t policy_size;
  double median;
  double ratio;  // to ref_min_filter
};

void PrintRow(const std::string& n, const Measurement& m, double ratio) {
  std::printf("%7s  %-9s %-15s %22s  %6.2f\n", n.c_str(), m.kind.c_str(), m.path.c_str(), m.ns.Format(1).c_str(),
              ratio);
}

// One PASS or FAIL line per kind: the worst ratio of `path` over every N.
void CheckRatioTarget(const std::map<std::pair<std::string, std::string>, std::vector<Row>>& rows,
                      const std::string& path, double limit) {
  std::printf("  %s <= %.0fx ref_min_filter\n", path.c_str(), limit);
  for (const Kind& kind : kKinds) {
    const std::vector<Row>& series = rows.at({kind.name, path});
    const Row& worst = *std::max_element(series.begin(), series.end(),
                                         [](const Row& a, const Row& b) { return a.ratio < b.ratio; });
    std::printf("    %s  %-9s worst %.2fx (%.1f ns at N=%u)\n", worst.ratio <= limit ? "PASS" : "FAIL", kind.name,
                worst.ratio, worst.median, worst.policy_size);
  }
}

// One PASS or FAIL line per kind: the spread of `path`'s medians over N.
void CheckFlatTarget(const std::map<std::pair<std::string, std::string>, std::vector<Row>>& rows,
                     const std::string& path, double tolerance) {
  for (const Kind& kind : kKinds) {
    const std::vector<Row>& series = rows.at({kind.name, path});
    auto [low, high] = std::minmax_element(series.begin(), series.end(),
                                           [](const Row& a, const Row& b) { return a.median < b.median; });
    double spread = high->median / low->median - 1;
    std::printf("    %s  %-9s %-12s spread %4.1f%% (%.1f ns at N=%u .. %.1f ns at N=%u)\n",
                spread <= tolerance ? "PASS" : "FAIL", kind.name, path.c_str(), spread * 100, low->median,
                low->policy_size, high->median, high->policy_size);
  }
}

// What new-flow records cost: records on over records off, per kind, at
// every N (the same rounds); the worst N is the one judged.
void PrintRecordCost(const std::map<std::pair<std::string, std::string>, std::vector<Row>>& rows) {
  std::printf("  new-flow records on / off (same rounds; worst N): established unchanged (<= 1.05, the noise), "
              "new flow <= 1.10\n");
  for (auto [on, off, limit] : {std::tuple{kEstablished, kEstablishedNoRecords, 1.05},
                                std::tuple{kNewFlow, kNewFlowNoRecords, 1.10}}) {
    for (const Kind& kind : kKinds) {
      const std::vector<Row>& with = rows.at({kind.name, on});
      const std::vector<Row>& without = rows.at({kind.name, off});
      double worst = 0;
      uint32_t worst_n = 0;
      std::string each;
      for (size_t i = 0; i < with.size() && i < without.size(); ++i) {
        double ratio = with[i].median / without[i].median;
        absl::StrAppend(&each, i ? " " : "", absl::StrFormat("%.3f", ratio));
        if (ratio > worst) {
          worst = ratio;
          worst_n = with[i].policy_size;
        }
      }
      std::printf("    %s  %-9s %-12s worst %.3f at N=%u (by N: %s)\n", worst <= limit ? "PASS" : "FAIL", kind.name,
                  on, worst, worst_n, each.c_str());
    }
  }
}

// Where an established packet's time goes, by the stage_* programs (over
// ref_pass, the cost of a run that does nothing), at the largest N.
void PrintStages(const std::map<std::pair<std::string, std::string>, std::vector<Row>>& rows) {
  auto at_largest_n = [&](const std::string& kind, const std::string& path) {
    return rows.at({kind, path}).back().median;
  };
  const double floor = at_largest_n(kKinds[0].name, kRefPass);
  std::printf("where an established packet's time goes (N=%u; ns over ref_pass, %.1f; bench.bpf.c's stage_* "
              "programs on maps of the datapath's sizes):\n",
              kPolicySizes[std::size(kPolicySizes) - 1], floor);
  for (const Kind& kind : kKinds) {
    double endpoint = at_largest_n(kind.name, kToEndpoint), conntrack = at_largest_n(kind.name, kToConntrack),
           whole = at_largest_n(kind.name, kWholePath);
    // An IPv4 flow's repeats pass from their flow_cache slot, without the
    // conntrack lookup that the first packet of each second makes.
    if (HasOwnFloor(kind)) {
      std::printf("  %-9s parse and endpoint record %5.1f | conntrack key and lookup (no slot yet) %5.1f | whole, "
                  "from the flow_cache slot %5.1f\n",
                  kind.name, endpoint - floor, conntrack - endpoint, whole - floor);
      continue;
    }
    std::printf("  %-9s parse and endpoint record %5.1f | conntrack key and lookup %5.1f | checks, accounting and "
                "counters %5.1f | whole %5.1f\n",
                kind.name, endpoint - floor, conntrack - endpoint, whole - conntrack, whole - floor);
  }
}

// Everything measured at one N, with its own datapath and bench object, so
// that every N is measured in the same rounds: the speed of a shared VM
// drifts by tens of percent within a minute, and interleaving makes the
// drift weigh on every N alike.
struct RingBufferDeleter {
  void operator()(ring_buffer* rb) const { ring_buffer__free(rb); }
};

struct Scene {
  uint32_t policy_size = 0;
  std::unique_ptr<Datapath> dp;
  BenchObject bench;
  std::unique_ptr<BenchMaps> bench_maps;
  // The bench object's records, read (and thrown away) before each new-flow
  // measure, as the agent reads them: a full ring buffer would make a
  // reservation a cheap failure, not the cost of a record.
  std::unique_ptr<ring_buffer, RingBufferDeleter> records;
  std::vector<Measurement> list;
};

absl::StatusOr<std::unique_ptr<Scene>> BuildScene(uint32_t policy_size, uint64_t netns_cookie) {
  auto scene = std::make_unique<Scene>();
  scene->policy_size = policy_size;
  // Conntrack of the established flows: three entries; the default would preallocate ~70 MB for nothing.
  auto dp = Datapath::Load({.conntrack_max = 1024, .events_ringbuf_bytes = 1u << 16});
  if (!dp.ok()) return dp.status();
  scene->dp = std::move(*dp);
  // bench_new_flow keeps the production conntrack size, so its inserts evict as a full table would.
  scene->bench.reset(bench_bpf__open());
  if (!scene->bench) return ErrnoStatus(errno, "open BPF object bench_bpf");
  // Room for every record of a new-flow measure (at most one a run) between two reads.
  if (int err = bpf_map__set_max_entries(scene->bench->maps.events, kBenchRecordBytes); err != 0)
    return ErrnoStatus(-err, "size the ring buffer of BPF object bench_bpf");
  if (int err = bench_bpf__load(scene->bench.get()); err != 0)
    return ErrnoStatus(-err, "load BPF object bench_bpf");
  scene->records.reset(ring_buffer__new(bpf_map__fd(scene->bench->maps.events),
                                        [](void*, void*, size_t) { return 0; }, nullptr, nullptr));
  if (!scene->records) return ErrnoStatus(errno, "read the ring buffer of BPF object bench_bpf");
  // Records on, at the default interval: a zeroed config would report every new flow, one record each.
  if (absl::Status s = WriteBenchConfig(scene->bench.get(), true); !s.ok()) return s;
  auto bench_maps = WrapBenchMaps(scene->bench.get());
  if (!bench_maps.ok()) return bench_maps.status();
  scene->bench_maps = std::make_unique<BenchMaps>(std::move(*bench_maps));

  EnforcementMaps datapath_maps{scene->dp->endpoints(), scene->dp->ipcache(), scene->dp->policy_prefixes(),
                                scene->dp->policy_exact()};
  for (EnforcementMaps maps : {datapath_maps, scene->bench_maps->enforcement()}) {
    if (absl::Status s = InstallEndpoint(maps, netns_cookie); !s.ok()) return s;
    if (absl::Status s = AddFiller(maps, 0, policy_size); !s.ok()) return s;
  }
  for (const Kind& kind : kKinds) {
    if (!HasOwnFloor(kind)) continue;
    if (absl::Status s = AllowInMinFilter(scene->bench_maps->min_filter_allow, kind); !s.ok()) return s;
  }
  scene->list = Measurements(*scene->dp, scene->bench.get(), scene->records.get());
  if (absl::Status s = CheckPaths(policy_size, *scene->dp, *scene->bench_maps, scene->list); !s.ok()) return s;
  // Fill bench_new_flow's conntrack maps (IPv4 and IPv6) before measuring:
  // from then on every insert evicts, the steady state.
  for (const Kind& kind : {kKinds[0], kKinds[2]}) {
    uint32_t ct_max = bpf_map__max_entries(kind.ipv6 ? scene->bench->maps.conntrack : scene->bench->maps.conntrack4);
    auto fill = TestRun(bpf_program__fd(scene->bench->progs.bench_new_flow), Frame(kind, false), ct_max);
    if (!fill.ok()) return fill.status();
  }
  return scene;
}

}  // namespace

absl::Status RunProgBench(bool quick) {
  const uint32_t repeat = quick ? 50'000 : 1'000'000;
  // A new flow costs ~40 times a reference run: half the repeats still average
  // 500k distinct flows a sample and keep the full run within 3 minutes.
  const uint32_t new_flow_repeat = repeat / 2;
  const int rounds = quick ? 3 : 5;
  // BPF_PROG_TEST_RUN runs on the calling CPU; one CPU for the whole run keeps caches and clocks alike.
  if (absl::Status s = PinToCpu(static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) - 1); !s.ok()) return s;
  auto cookie = NetnsCookie("/proc/thread-self/ns/net");
  if (!cookie.ok()) return cookie.status();
  std::vector<std::unique_ptr<Scene>> scenes;
  std::vector<Measurement*> all;
  for (uint32_t policy_size : kPolicySizes) {
    auto scene = BuildScene(policy_size, *cookie);
    if (!scene.ok()) return scene.status();
    for (Measurement& m : (*scene)->list) all.push_back(&m);
    scenes.push_back(std::move(*scene));
  }

  std::printf("\nBPF_PROG_TEST_RUN: %u repeats a sample (new flow: %u), %d rounds, every N and path interleaved in "
              "each round (ABBA); ns/packet is the kernel's average over the repeats; median (min-max) of the "
              "rounds.\n"
              "N = filler rules (one policy entry each) and filler /32 ipcache entries, on top of the 4 rules and "
              "2 prefixes the measured flows use. bench_new_flow conntrack (IPv4 and IPv6 maps): %u entries each, full before timing.\n\n",
              repeat, new_flow_repeat, rounds, bpf_map__max_entries(scenes[0]->bench->maps.conntrack4));
  std::fflush(stdout);
  for (int round = 0; round < rounds; ++round) {
    for (size_t index : InterleavedOrder(all.size(), round)) {
      bool new_flow = all[index]->path == kNewFlow || all[index]->path == kNewFlowNoRecords;
      auto ns = TimeRuns(*all[index], new_flow ? new_flow_repeat : repeat);
      if (!ns.ok()) return ns.status();
      all[index]->ns.Add(*ns);
    }
  }

  std::printf("%7s  %-9s %-15s %22s  %6s\n", "N", "kind", "path", "ns/packet med (min-max)", "x min");
  std::map<std::pair<std::string, std::string>, std::vector<Row>> rows;
  for (const auto& scene : scenes) {
    std::map<std::string, double> floor;
    for (const Measurement& m : scene->list) {
      if (m.path == kRefMinFilter) floor[m.kind] = m.ns.Median();
    }
    for (const Kind& kind : kKinds) {
      if (!HasOwnFloor(kind)) floor[kind.name] = floor[kIpv6FloorKind];
    }
    for (const Measurement& m : scene->list) {
      double ratio = m.ns.Median() / floor[m.kind];
      PrintRow(absl::StrCat(scene->policy_size), m, ratio);
      rows[{m.kind, m.path}].push_back({scene->policy_size, m.ns.Median(), ratio});
    }
    std::printf("\n");
  }

  std::printf("targets (ratios to ref_min_filter of the same N and kind; ipv6-tcp and ipv4-opts against %s):\n",
              kIpv6FloorKind);
  CheckRatioTarget(rows, kEstablished, 2);
  CheckRatioTarget(rows, kNewFlow, 8);
  std::printf("  flat from N=%u to N=%u within 10%% (highest median / lowest median - 1)\n", kPolicySizes[0],
              kPolicySizes[std::size(kPolicySizes) - 1]);
  CheckFlatTarget(rows, kEstablished, 0.10);
  CheckFlatTarget(rows, kNewFlow, 0.10);
  CheckFlatTarget(rows, kDenied, 0.10);
  PrintRecordCost(rows);
  std::printf("\n");
  PrintStages(rows);
  return absl::OkStatus();
}

}  // namespace stockade::microbench
