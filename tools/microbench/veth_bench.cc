// SPDX-License-Identifier: Apache-2.0
#include "tools/microbench/veth_bench.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "maps/abi.h"
#include "stockade/net/addresses.h"
#include "stockade/datapath/attach.h"
#include "stockade/datapath/datapath.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"
#include "stockade/policy/policy_entries.h"
#include "stockade/os/scoped_fd.h"
#include "testlib/lab/topology.h"
#include "tools/microbench/common.h"

namespace stockade::microbench {
namespace {

// Both ends live in namespaces of this run's own topology: nothing leaves them.
constexpr char kSenderCidr[] = "10.213.0.1/24";
constexpr char kSenderIp[] = "10.213.0.1";
constexpr char kReceiverCidr[] = "10.213.0.2/24";
constexpr char kReceiverIp[] = "10.213.0.2";
constexpr uint16_t kAllowedPort = 5001;
constexpr uint16_t kDeniedPort = 5002;
constexpr uint32_t kReceiverIdentity = 256;
constexpr uint32_t kSenderIdentity = 300;
// 18 bytes of UDP payload make a 60-byte frame, the Ethernet minimum: the
// per-packet cost is the whole cost.
constexpr size_t kPayloadBytes = 18;
constexpr unsigned kBatch = 64;
// The sender's CPU; on a veth the receive path runs in softirq on the sending CPU too.
constexpr int kSenderCpu = 0;

// Set by SIGINT or SIGTERM: the flood stops and the run unwinds, so the
// topology's destructor still removes the namespaces.
std::atomic<bool> interrupted{false};

void Interrupt(int) { interrupted = true; }

enum class Hook { kNone, kTc, kXdp };
constexpr Hook kHooks[] = {Hook::kNone, Hook::kTc, Hook::kXdp};
const char* HookName(Hook hook) { return hook == Hook::kNone ? "none" : hook == Hook::kTc ? "tc" : "xdp"; }

struct Flow {
  const char* name;
  uint16_t port;
};
constexpr Flow kFlows[] = {{"allowed", kAllowedPort}, {"denied", kDeniedPort}};

// A UDP socket of the namespace at `netns_path`: bound to `port` of the
// receiver, or connected to it.
absl::StatusOr<ScopedFd> UdpSocket(const std::string& netns_path, uint16_t port, bool connect_to_it) {
  auto guard = NetnsGuard::Enter(netns_path);
  if (!guard.ok()) return guard.status();
  ScopedFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus(errno, "create UDP socket");
  sockaddr_in address{.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, kReceiverIp, &address.sin_addr);
  auto* sockaddr = reinterpret_cast<const struct sockaddr*>(&address);
  int rc = connect_to_it ? connect(fd.get(), sockaddr, sizeof(address)) : bind(fd.get(), sockaddr, sizeof(address));
  if (rc != 0) return ErrnoStatus(errno, absl::StrCat(connect_to_it ? "connect" : "bind", " UDP to port ", port));
  return fd;
}

// Opens the UDP statistics of the namespace at `netns_path`; the file stays
// bound to that namespace, so it can be read again from anywhere.
absl::StatusOr<ScopedFd> OpenSnmp(const std::string& netns_path) {
  auto guard = NetnsGuard::Enter(netns_path);
  if (!guard.ok()) return guard.status();
  ScopedFd fd(open("/proc/thread-self/net/snmp", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "open /proc/thread-self/net/snmp");
  return fd;
}

// Datagrams that reached the receiver's UDP layer: delivered to a socket or
// refused there (full buffer, no port). Nobody reads the sockets: what is
// measured is the path up to them.
absl::StatusOr<uint64_t> UdpDatagramsReached(int snmp_fd) {
  std::array<char, 8192> text{};
  ssize_t n = pread(snmp_fd, text.data(), text.size() - 1, 0);
  if (n < 0) return ErrnoStatus(errno, "read net/snmp");
  std::vector<std::vector<std::string>> udp;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), n), '\n')) {
    if (absl::StartsWith(line, "Udp: ")) udp.push_back(absl::StrSplit(line, ' ', absl::SkipEmpty()));
  }
  if (udp.size() != 2 || udp[0].size() != udp[1].size()) return absl::InternalError("no Udp lines in net/snmp");
  uint64_t reached = 0;
  for (size_t i = 1; i < udp[0].size(); ++i) {
    uint64_t value = 0;
    if ((udp[0][i] == "InDatagrams" || udp[0][i] == "NoPorts" || udp[0][i] == "InErrors") &&
        absl::SimpleAtoi(udp[1][i], &value))
      reached += value;
  }
  return reached;
}

// CPU time a flood cost, measured two ways. On a veth the receive path runs
// in softirq on the sending CPU, inline in the sender or in that CPU's
// ksoftirqd, so the sending CPU holds all of it.
struct CpuTime {
  // System + softirq time of the sending CPU in /proc/stat: tick-sampled, and
  // it counts whatever else the kernel did there for other processes.
  uint64_t proc_stat_ns = 0;
  // Run time of the sending thread plus the CPU's ksoftirqd, from the
  // scheduler: exact, and nobody else's.
  uint64_t runtime_ns = 0;
};

class CpuClock {
 public:
  [[nodiscard]] static absl::StatusOr<CpuClock> ForCpu(int cpu) {
    std::string ksoftirqd = absl::StrCat("ksoftirqd/", cpu);
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      std::ifstream comm(entry.path() / "comm");
      std::string name;
      if (std::getline(comm, name) && name == ksoftirqd) return CpuClock(cpu, entry.path() / "schedstat");
    }
    return absl::NotFoundError(absl::StrCat("no ", ksoftirqd, " thread"));
  }

  [[nodiscard]] absl::StatusOr<CpuTime> Read() const {
    CpuTime time;
    std::ifstream stat("/proc/stat");
    std::string cpu_label = absl::StrCat("cpu", cpu_);
    for (std::string label; stat >> label;) {
      uint64_t user, nice, system, idle, iowait, irq, softirq;
      if (label == cpu_label && stat >> user >> nice >> system >> idle >> iowait >> irq >> softirq) {
        time.proc_stat_ns = (system + softirq) * (1'000'000'000 / sysconf(_SC_CLK_TCK));
        break;
      }
      stat.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    if (time.proc_stat_ns == 0) return absl::InternalError(absl::StrCat("no ", cpu_label, " line in /proc/stat"));
    std::ifstream schedstat(ksoftirqd_schedstat_);
    uint64_t ksoftirqd_ns = 0;
    if (!(schedstat >> ksoftirqd_ns)) return absl::InternalError(absl::StrCat("unreadable ", ksoftirqd_schedstat_));
    timespec own{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &own);
    time.runtime_ns = ksoftirqd_ns + own.tv_sec * 1'000'000'000ull + own.tv_nsec;
    return time;
  }

 private:
  CpuClock(int cpu, std::string ksoftirqd_schedstat) : cpu_(cpu), ksoftirqd_schedstat_(std::move(ksoftirqd_schedstat)) {}
  int cpu_;
  std::string ksoftirqd_schedstat_;
};

struct FloodResult {
  uint64_t sent = 0;
  double seconds = 0;
};

// Sends up to `max_packets` datagrams on the connected socket `fd`, for at
// most `limit`. A full queue (ENOBUFS) is retried until the time is up.
absl::StatusOr<FloodResult> Flood(int fd, uint64_t max_packets, std::chrono::milliseconds limit) {
  std::array<uint8_t, kPayloadBytes> payload{};
  iovec iov{payload.data(), payload.size()};
  std::array<mmsghdr, kBatch> messages{};
  for (mmsghdr& m : messages) {
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
  }
  FloodResult result;
  auto start = std::chrono::steady_clock::now(), deadline = start + limit;
  while (result.sent < max_packets && std::chrono::steady_clock::now() < deadline && !interrupted) {
    unsigned batch = static_cast<unsigned>(std::min<uint64_t>(kBatch, max_packets - result.sent));
    int n = sendmmsg(fd, messages.data(), batch, 0);
    if (n < 0) {
      if (errno == ENOBUFS || errno == EAGAIN) continue;
      return ErrnoStatus(errno, "sendmmsg");
    }
    result.sent += n;
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

// The receiver's veth end is the endpoint: its own interface
// (HOOK_ROLE_IN_CONTAINER), so what it receives is its ingress, and only UDP
// to kAllowedPort from the sender is allowed.
absl::Status InstallReceiverEndpoint(Datapath& dp, uint64_t receiver_cookie, uint32_t receiver_ifindex) {
  endpoint_info info{};
  info.identity = kReceiverIdentity;
  info.flags = ENDPOINT_F_ENFORCE_INGRESS;
  info.policy_revision = 1;
  info.role = HOOK_ROLE_IN_CONTAINER;
  info.ipv4 = ParseIpAddress(kReceiverIp)->ipv4_network_order();
  if (absl::Status s = dp.endpoints().Update({.netns_cookie = receiver_cookie, .ifindex = receiver_ifindex}, info);
      !s.ok())
    return s;
  auto sender = ParseIpPrefix(kSenderIp);
  if (!sender.ok()) return sender.status();
  if (absl::Status s = dp.ipcache().Update(sender->ToIpcacheKey(), {kSenderIdentity, 0}); !s.ok()) return s;
  auto entries = CompilePolicyEntries({{.rule_id = 1, .local_identity = kReceiverIdentity,
                                        .remote_identity = kSenderIdentity, .direction = DIR_INGRESS,
                                        .protocol = IPPROTO_UDP, .ports = {kAllowedPort, kAllowedPort}}});
  if (!entries.ok()) return entries.status();
  for (const PolicyEntry& e : *entries) {
    if (absl::Status s = dp.WritePolicy(e.key, e.value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<Attachment> Attach(Hook hook, Datapath& dp, const std::string& receiver_netns, uint32_t ifindex) {
  auto guard = NetnsGuard::Enter(receiver_netns);
  if (!guard.ok()) return guard.status();
  if (hook == Hook::kTc) return Attachment::AttachTc(dp.tc_ingress_fd(), ifindex, TcHook::kIngress, TcAttachMode::kAuto);
  return Attachment::AttachXdp(dp.xdp_fd(), ifindex, XdpAttachMode::kAuto);
}

// What stockade decided about `flow`'s packets so far: forwarded for the allowed flow, dropped for the denied one.
absl::StatusOr<uint64_t> Verdicts(const Datapath& dp, const Flow& flow) {
  bool allowed = flow.port == kAllowedPort;
  auto counter = dp.Counter(allowed ? REASON_NONE : DROP_POLICY_DENIED, DIR_INGRESS,
                            allowed ? VERDICT_FORWARDED : VERDICT_DROPPED);
  if (!counter.ok()) return counter.status();
  return counter->packets;
}

struct Result {
  Samples sent_kpps;
  Samples reached_udp_kpps;
  Samples stockade_kpps;
  Samples proc_stat_ns;  // CPU time a packet, see CpuTime
  Samples runtime_ns;
};

struct Testbed {
  Datapath& dp;
  std::map<uint16_t, ScopedFd> senders;  // by destination port
  ScopedFd receiver_snmp;
  CpuClock cpu_clock;
};

// One flood of `flow` with `hook` in place, added to `result`.
absl::Status Measure(Testbed& bed, Hook hook, const Flow& flow, uint64_t max_packets, std::chrono::milliseconds limit,
                     Result& result) {
  auto reached_before = UdpDatagramsReached(bed.receiver_snmp.get());
  auto verdicts_before = Verdicts(bed.dp, flow);
  auto cpu_before = bed.cpu_clock.Read();
  for (const absl::Status& s : {reached_before.status(), verdicts_before.status(), cpu_before.status()}) {
    if (!s.ok()) return s;
  }
  auto flood = Flood(bed.senders.at(flow.port).get(), max_packets, limit);
  if (!flood.ok()) return flood.status();
  if (interrupted) return absl::CancelledError("interrupted");
  auto cpu_after = bed.cpu_clock.Read();
  auto reached_after = UdpDatagramsReached(bed.receiver_snmp.get());
  auto verdicts_after = Verdicts(bed.dp, flow);
  for (const absl::Status& s : {reached_after.status(), verdicts_after.status(), cpu_after.status()}) {
    if (!s.ok()) return s;
  }
  uint64_t verdicts = *verdicts_after - *verdicts_before;
  if (hook != Hook::kNone && verdicts == 0)
    return absl::InternalError(absl::StrCat(HookName(hook), " was attached but decided none of the ", flood->sent,
                                            " packets of the ", flow.name, " flow"));
  double kilo_per_second = 1e-3 / flood->seconds;
  result.sent_kpps.Add(flood->sent * kilo_per_second);
  result.reached_udp_kpps.Add((*reached_after - *reached_before) * kilo_per_second);
  result.stockade_kpps.Add(verdicts * kilo_per_second);
  double packets = static_cast<double>(std::max<uint64_t>(flood->sent, 1));
  result.proc_stat_ns.Add((cpu_after->proc_stat_ns - cpu_before->proc_stat_ns) / packets);
  result.runtime_ns.Add((cpu_after->runtime_ns - cpu_before->runtime_ns) / packets);
  return absl::OkStatus();
}

// Which hook costs a packet of `flow` less CPU time, and moves more of them a
// second. The run time decides: it is exact and nobody else's, while the rate
// also depends on how much of the CPU other processes took meanwhile.
void PrintVerdict(const std::map<std::pair<std::string, Hook>, Result>& results, const Flow& flow,
                  const std::string& tc_mode, const std::string& xdp_mode) {
  const Result& tc = results.at({flow.name, Hook::kTc});
  const Result& xdp = results.at({flow.name, Hook::kXdp});
  double cpu = tc.runtime_ns.Median() / xdp.runtime_ns.Median();
  double rate = tc.sent_kpps.Median() / xdp.sent_kpps.Median();
  bool tc_faster = cpu < 1;
  std::printf("  %s flood: TC (%s) costs %.2fx the CPU time a packet of XDP (%s) and moves %.2fx its packets/s: "
              "%s is faster on veth%s\n",
              flow.name, tc_mode.c_str(), cpu, xdp_mode.c_str(), rate, tc_faster ? "TC" : "XDP",
              tc_faster == (rate > 1) ? "" : " (the packet rates, noisier, disagree)");
}

}  // namespace

absl::Status RunVethBench(bool quick) {
  const int rounds = quick ? 2 : 6;
  const uint64_t max_packets = quick ? 1'000'000 : 5'000'000;
  const std::chrono::milliseconds limit(quick ? 300 : 1000);
  if (absl::Status s = PinToCpu(kSenderCpu); !s.ok()) return s;
  std::signal(SIGINT, Interrupt);
  std::signal(SIGTERM, Interrupt);

  lab::Topology topology;
  auto sender = topology.AddNamespace("tx");
  if (!sender.ok()) return sender.status();
  auto receiver = topology.AddNamespace("rx");
  if (!receiver.ok()) return receiver.status();
  auto veth = topology.AddVethPair(*sender, "eth0", *receiver, "eth0");
  if (!veth.ok()) return veth.status();
  for (auto [link, cidr] : {std::pair{veth->first, kSenderCidr}, std::pair{veth->second, kReceiverCidr}}) {
    if (absl::Status s = topology.AddAddress(link, cidr); !s.ok()) return s;
    if (absl::Status s = topology.SetUp(link); !s.ok()) return s;
  }
  // A permanent neighbour entry: no ARP exchange inside a measurement.
  auto receiver_mac = topology.Mac(veth->second);
  if (!receiver_mac.ok()) return receiver_mac.status();
  if (auto added = topology.Run(*sender, {"ip", "neigh", "replace", kReceiverIp, "lladdr",
                                          FormatMac(receiver_mac->data()), "dev", "eth0", "nud", "permanent"});
      !added.ok())
    return added.status();
  auto receiver_ifindex = topology.IfIndex(veth->second);
  auto receiver_cookie = NetnsCookie(receiver->path);
  if (!receiver_ifindex.ok()) return receiver_ifindex.status();
  if (!receiver_cookie.ok()) return receiver_cookie.status();

  auto dp = Datapath::Load({.conntrack_max = 4096, .events_ringbuf_bytes = 1u << 16});
  if (!dp.ok()) return dp.status();
  if (absl::Status s = InstallReceiverEndpoint(**dp, *receiver_cookie, *receiver_ifindex); !s.ok()) return s;

  auto snmp = OpenSnmp(receiver->path);
  if (!snmp.ok()) return snmp.status();
  auto cpu_clock = CpuClock::ForCpu(kSenderCpu);
  if (!cpu_clock.ok()) return cpu_clock.status();
  Testbed bed{**dp, {}, std::move(*snmp), std::move(*cpu_clock)};
  std::vector<ScopedFd> listeners;
  for (const Flow& flow : kFlows) {
    auto listener = UdpSocket(receiver->path, flow.port, false);
    auto sender_socket = UdpSocket(sender->path, flow.port, true);
    if (!listener.ok()) return listener.status();
    if (!sender_socket.ok()) return sender_socket.status();
    listeners.push_back(std::move(*listener));
    bed.senders.emplace(flow.port, std::move(*sender_socket));
  }

  // The attach modes, as the kernel granted them (XDP falls back to generic where native fails).
  std::string tc_mode, xdp_mode;
  for (Hook hook : {Hook::kTc, Hook::kXdp}) {
    auto attachment = Attach(hook, **dp, receiver->path, *receiver_ifindex);
    if (!attachment.ok()) return attachment.status();
    std::string mode = attachment->Describe();
    (hook == Hook::kTc ? tc_mode : xdp_mode) = mode.substr(0, mode.find(" on "));
  }

  std::printf("veth testbed %s: %s (%s) -> veth -> %s (%s), stockade on the receiver's end as its endpoint "
              "(HOOK_ROLE_IN_CONTAINER); TC ran as %s, XDP as %s.\n"
              "UDP floods of %zu-byte payloads (60-byte frames), sendmmsg x%u from CPU %d, at most %llu packets or "
              "%lld ms each; %d rounds, hooks ABBA-interleaved.\n"
              "allowed: udp/%u from the sender's identity; denied: udp/%u (no rule: default deny). Nobody reads the "
              "receiver's sockets: 'reached UDP' is what got through to them.\n"
              "CPU ns/pkt over packets sent, on CPU %d where the whole receive path runs: 'stat' = system + softirq "
              "in /proc/stat (tick-sampled, includes other processes' kernel time there), 'run' = scheduler run "
              "time of the sender thread + ksoftirqd/%d (exact). Last three columns: ratio to no program.\n\n",
              topology.prefix().c_str(), sender->name.c_str(), kSenderIp, receiver->name.c_str(), kReceiverIp,
              tc_mode.c_str(), xdp_mode.c_str(), kPayloadBytes, kBatch, kSenderCpu,
              static_cast<unsigned long long>(max_packets), static_cast<long long>(limit.count()), rounds,
              kAllowedPort, kDeniedPort, kSenderCpu, kSenderCpu);
  std::fflush(stdout);

  std::map<std::pair<std::string, Hook>, Result> results;
  for (int round = 0; round < rounds; ++round) {
    for (size_t hook_index : InterleavedOrder(std::size(kHooks), round)) {
      Hook hook = kHooks[hook_index];
      std::optional<Attachment> attachment;
      if (hook != Hook::kNone) {
        auto attached = Attach(hook, **dp, receiver->path, *receiver_ifindex);
        if (!attached.ok()) return attached.status();
        attachment.emplace(std::move(*attached));
      }
      for (size_t flow_index : InterleavedOrder(std::size(kFlows), round)) {
        const Flow& flow = kFlows[flow_index];
        if (absl::Status s = Measure(bed, hook, flow, max_packets, limit, results[{flow.name, hook}]); !s.ok())
          return s;
      }
      if (attachment) {
        if (absl::Status s = attachment->Detach(); !s.ok()) return s;
      }
    }
  }

  std::printf("%-8s %-5s %18s %18s %18s %18s %18s %6s %6s %6s\n", "flow", "hook", "sent kpps", "reached UDP kpps",
              "verdicts kpps", "CPU ns/pkt stat", "CPU ns/pkt run", "sent", "stat", "run");
  for (const Flow& flow : kFlows) {
    const Result& none = results.at({flow.name, Hook::kNone});
    for (Hook hook : kHooks) {
      const Result& r = results.at({flow.name, hook});
      std::printf("%-8s %-5s %18s %18s %18s %18s %18s %6.2f %6.2f %6.2f\n", flow.name, HookName(hook),
                  r.sent_kpps.Format(0).c_str(), r.reached_udp_kpps.Format(0).c_str(),
                  hook == Hook::kNone ? "-" : r.stockade_kpps.Format(0).c_str(), r.proc_stat_ns.Format(0).c_str(),
                  r.runtime_ns.Format(0).c_str(), r.sent_kpps.Median() / none.sent_kpps.Median(),
                  r.proc_stat_ns.Median() / none.proc_stat_ns.Median(),
                  r.runtime_ns.Median() / none.runtime_ns.Median());
    }
  }
  std::printf("\nTC against XDP on veth (medians):\n");
  for (const Flow& flow : kFlows) PrintVerdict(results, flow, tc_mode, xdp_mode);
  return absl::OkStatus();
}

}  // namespace stockade::microbench
