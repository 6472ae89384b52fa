// SPDX-License-Identifier: Apache-2.0
//
// The traffic of stockade-bench, always between the namespaces of its own
// testbed and bounded in packets and time: a multi-flow UDP flood from
// sendmmsg, TCP request/response (TCP_RR) and connect/request/close
// (TCP_CRR) against an echo server of its own, iperf3 streams, and trafgen
// floods that bypass the socket stack and the qdisc. CpuMeter reads what the
// kernel spent (system + softirq in /proc/stat, all CPUs), since on a small VM
// the generator is often the bottleneck and the rate alone hides a filter's cost.
#ifndef STOCKADE_TOOLS_BENCH_TRAFFIC_H_
#define STOCKADE_TOOLS_BENCH_TRAFFIC_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "stockade/os/scoped_fd.h"

namespace stockade::bench {

// Set by the SIGINT/SIGTERM handler: every loop here stops at once.
extern std::atomic<bool> g_interrupted;

struct CpuTimes {
  uint64_t kernel_ns = 0;  // system + softirq, all CPUs
  uint64_t steal_ns = 0;
};
[[nodiscard]] absl::StatusOr<CpuTimes> ReadCpuTimes();
// Parses the "cpu " line of /proc/stat text (for tests).
[[nodiscard]] absl::StatusOr<CpuTimes> ParseProcStat(const std::string& text, long clock_ticks_per_second);

struct Flood {
  uint64_t sent = 0;
  uint64_t reached = 0;  // datagrams IP delivered to the server's UDP layer
  double seconds = 0;
  uint64_t kernel_ns = 0;  // CPU time the kernel spent meanwhile
  // Frames the receive backlog had no room for (all CPUs): a filter slower
  // than the generator loses frames there, which are no drops of its own.
  uint64_t backlog_drops = 0;
};
// The send loop's duration trafgen reports at its end, if it does.
std::optional<double> TrafgenSendSeconds(const std::string& trafgen_output);
// The "dropped" column of /proc/net/softnet_stat, summed over CPUs.
[[nodiscard]] absl::StatusOr<uint64_t> BacklogDrops();

// UDP statistics of the server namespace, readable from anywhere.
[[nodiscard]] absl::StatusOr<ScopedFd> OpenUdpSnmp(const std::string& netns_path);
[[nodiscard]] absl::StatusOr<uint64_t> UdpDatagramsReached(int snmp_fd);
// The sum of `fields` of the `group` ("Ip", "Udp") lines of net/snmp.
[[nodiscard]] absl::StatusOr<uint64_t> SnmpSum(int snmp_fd, absl::string_view group,
                                               const std::vector<std::string>& fields);

// 18-byte payloads (60-byte frames) from `flows` sockets with distinct source
// ports, round robin in sendmmsg batches, to server:`port`, for `duration`
// or `max_packets`. It ends when the host namespace has received the last
// of them (a slow filter leaves a backlog behind the sender).
[[nodiscard]] absl::StatusOr<Flood> UdpFlood(const std::string& client_netns, const std::string& host_netns,
                                             const std::string& server_netns, uint16_t port, int flows,
                                             std::chrono::milliseconds duration, uint64_t max_packets);

// Echoes bytes on TCP `ports` of the server namespace, one connection at a
// time per port, in threads of its own; stops and joins in the destructor.
class EchoServer {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EchoServer>> Start(const std::string& netns_path,
                                                                          const std::vector<uint16_t>& ports);
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

 private:
  EchoServer() = default;
  void Serve(int listen_fd);
  std::atomic<bool> stop_{false};
  std::vector<ScopedFd> listeners_;
  std::vector<std::thread> threads_;
};

// One connection, then 1-byte ping-pongs: round-trip times in microseconds.
[[nodiscard]] absl::StatusOr<std::vector<double>> TcpRr(const std::string& client_netns, uint16_t port,
                                                        int iterations, std::chrono::milliseconds limit);
// connect, 1 byte each way, close, repeated: connections per second.
[[nodiscard]] absl::StatusOr<double> TcpCrr(const std::string& client_netns, uint16_t port,
                                            std::chrono::milliseconds duration);
// One TCP connect attempt that gives up after `timeout`: true if it connected.
[[nodiscard]] absl::StatusOr<bool> TcpConnects(const std::string& client_netns, uint16_t port,
                                               std::chrono::milliseconds timeout);

// iperf3 from client to server: a one-shot server, one stream for `seconds`
// (or `bytes` when > 0, for short runs); receiver's Gbit/s.
[[nodiscard]] absl::StatusOr<double> Iperf3(const std::string& client_netns, const std::string& server_netns,
                                            int seconds, uint64_t bytes);

// The trafgen configuration of a flood of denied UDP (to kDeniedUdpPort) from
// the client, `flows` source ports.
std::string TrafgenConfig(const uint8_t src_mac[6], const uint8_t dst_mac[6], int flows);
// Sends `count` frames of `config` from `ifname` in the client namespace
// through AF_PACKET, bypassing the qdisc, on one CPU.
[[nodiscard]] absl::StatusOr<Flood> TrafgenFlood(const std::string& client_netns, const std::string& ifname,
                                                 const std::string& config_path, uint64_t count);

}  // namespace stockade::bench

#endif  // STOCKADE_TOOLS_BENCH_TRAFFIC_H_
