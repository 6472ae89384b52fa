// SPDX-License-Identifier: Apache-2.0
#include "tools/bench/traffic.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <optional>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "stockade/net/addresses.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"
#include "tools/bench/rules.h"

namespace stockade::bench {

std::atomic<bool> g_interrupted{false};

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kPayloadBytes = 18;
constexpr unsigned kBatch = 64;

sockaddr_in ServerAddress(uint16_t port) {
  sockaddr_in address{.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, kServerIp, &address.sin_addr);
  return address;
}

// A socket of the namespace at `netns_path` (it stays there when used from elsewhere).
absl::StatusOr<ScopedFd> SocketIn(const std::string& netns_path, int type) {
  auto guard = NetnsGuard::Enter(netns_path);
  if (!guard.ok()) return guard.status();
  ScopedFd fd(socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("create socket in ", netns_path));
  return fd;
}

void SetTimeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{.tv_sec = timeout.count() / 1000, .tv_usec = (timeout.count() % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

absl::Status ConnectTcp(int fd, uint16_t port) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in server = ServerAddress(port);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof(server)) != 0)
    return ErrnoStatus(errno, absl::StrCat("connect to ", kServerIp, ":", port));
  return absl::OkStatus();
}

absl::Status PingPong(int fd) {
  char byte = 'x';
  if (send(fd, &byte, 1, MSG_NOSIGNAL) != 1) return ErrnoStatus(errno, "send the request byte");
  if (recv(fd, &byte, 1, 0) != 1) return ErrnoStatus(errno == 0 ? ECONNRESET : errno, "receive the echo");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CpuTimes> ParseProcStat(const std::string& text, long ticks_per_second) {
  std::istringstream in(text);
  std::string label;
  uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
  while (in >> label) {
    if (label == "cpu" && in >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) {
      uint64_t ns_per_tick = 1'000'000'000 / ticks_per_second;
      return CpuTimes{.kernel_ns = (system + softirq) * ns_per_tick, .steal_ns = steal * ns_per_tick};
    }
    std::getline(in, label);
  }
  return absl::InternalError("no 'cpu' line in /proc/stat");
}

absl::StatusOr<CpuTimes> ReadCpuTimes() {
  std::ifstream stat("/proc/stat");
  std::stringstream text;
  text << stat.rdbuf();
  return ParseProcStat(text.str(), sysconf(_SC_CLK_TCK));
}

absl::StatusOr<ScopedFd> OpenUdpSnmp(const std::string& netns_path) {
  auto guard = NetnsGuard::Enter(netns_path);
  if (!guard.ok()) return guard.status();
  ScopedFd fd(open("/proc/thread-self/net/snmp", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("open net/snmp of ", netns_path));
  return fd;
}

absl::StatusOr<uint64_t> SnmpSum(int snmp_fd, absl::string_view group, const std::vector<std::string>& fields) {
  std::array<char, 8192> text{};
  ssize_t n = pread(snmp_fd, text.data(), text.size() - 1, 0);
  if (n < 0) return ErrnoStatus(errno, "read net/snmp");
  std::string prefix = absl::StrCat(group, ": ");
  std::vector<std::vector<std::string>> lines;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), n), '\n')) {
    if (absl::StartsWith(line, prefix)) lines.push_back(absl::StrSplit(line, ' ', absl::SkipEmpty()));
  }
  if (lines.size() != 2 || lines[0].size() != lines[1].size())
    return absl::InternalError(absl::StrCat("no ", group, " lines in net/snmp"));
  uint64_t sum = 0;
  for (size_t i = 1; i < lines[0].size(); ++i) {
    uint64_t value = 0;
    if (std::find(fields.begin(), fields.end(), lines[0][i]) != fields.end() && absl::SimpleAtoi(lines[1][i], &value))
      sum += value;
  }
  return sum;
}

absl::StatusOr<uint64_t> UdpDatagramsReached(int snmp_fd) {
  // Counted where IP hands packets to UDP: UdpInDatagrams counts only what a
  // reader takes from the socket, and nobody reads the server's sink.
  return SnmpSum(snmp_fd, "Ip", {"InDelivers"});
}

absl::StatusOr<Flood> UdpFlood(const std::string& client_netns, const std::string& host_netns,
                               const std::string& server_netns, uint16_t port, int flows,
                               std::chrono::milliseconds duration, uint64_t max_packets) {
  auto snmp = OpenUdpSnmp(server_netns);
  if (!snmp.ok()) return snmp.status();
  auto host_snmp = OpenUdpSnmp(host_netns);
  if (!host_snmp.ok()) return host_snmp.status();
  auto sink = SocketIn(server_netns, SOCK_DGRAM);
  if (!sink.ok()) return sink.status();
  sockaddr_in server = ServerAddress(port);
  if (bind(sink->get(), reinterpret_cast<const sockaddr*>(&server), sizeof(server)) != 0)
    return ErrnoStatus(errno, absl::StrCat("bind UDP ", port, " in the server"));
  std::vector<ScopedFd> senders;
  for (int i = 0; i < flows; ++i) {
    auto fd = SocketIn(client_netns, SOCK_DGRAM);
    if (!fd.ok()) return fd.status();
    if (connect(fd->get(), reinterpret_cast<const sockaddr*>(&server), sizeof(server)) != 0)
      return ErrnoStatus(errno, "connect the UDP sender");
    senders.push_back(std::move(*fd));
  }
  std::array<uint8_t, kPayloadBytes> payload{};
  iovec iov{payload.data(), payload.size()};
  std::array<mmsghdr, kBatch> messages{};
  for (mmsghdr& m : messages) {
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
  }
  auto reached_before = UdpDatagramsReached(snmp->get());
  auto cpu_before = ReadCpuTimes();
  if (!reached_before.ok()) return reached_before.status();
  if (!cpu_before.ok()) return cpu_before.status();
  Flood flood;
  auto start = Clock::now(), deadline = start + duration;
  for (size_t next = 0; flood.sent < max_packets && !g_interrupted; next = (next + 1) % senders.size()) {
    if (Clock::now() >= deadline) break;
    unsigned batch = static_cast<unsigned>(std::min<uint64_t>(kBatch, max_packets - flood.sent));
    int n = sendmmsg(senders[next].get(), messages.data(), batch, 0);
    if (n < 0) {
      // A full queue, or ICMP errors of a filter reported on the socket: go on.
      if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED || errno == EHOSTUNREACH ||
          errno == EPERM)
        continue;
      return ErrnoStatus(errno, "sendmmsg");
    }
    flood.sent += n;
  }
  // A slow filter leaves packets in the backlog when the sender stops: the
  // flood ends when the host's IP input count stood still for 50 ms.
  auto host_in = SnmpSum(host_snmp->get(), "Ip", {"InReceives"});
  if (!host_in.ok()) return host_in.status();
  auto last_change = Clock::now();
  for (auto drain_deadline = last_change + std::chrono::seconds(10);
       Clock::now() - last_change < std::chrono::milliseconds(50) && Clock::now() < drain_deadline;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto now = SnmpSum(host_snmp->get(), "Ip", {"InReceives"});
    if (!now.ok()) return now.status();
    if (*now != *host_in) {
      host_in = now;
      last_change = Clock::now();
    }
  }
  auto reached_after = UdpDatagramsReached(snmp->get());
  if (!reached_after.ok()) return reached_after.status();
  flood.seconds = std::chrono::duration<double>(last_change - start).count();
  auto cpu_after = ReadCpuTimes();
  if (!cpu_after.ok()) return cpu_after.status();
  flood.reached = *reached_after - *reached_before;
  flood.kernel_ns = cpu_after->kernel_ns - cpu_before->kernel_ns;
  return flood;
}

absl::StatusOr<std::unique_ptr<EchoServer>> EchoServer::Start(const std::string& netns_path,
                                                              const std::vector<uint16_t>& ports) {
  std::unique_ptr<EchoServer> server(new EchoServer());
  for (uint16_t port : ports) {
    auto fd = SocketIn(netns_path, SOCK_STREAM);
    if (!fd.ok()) return fd.status();
    int one = 1;
    setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address = ServerAddress(port);
    if (bind(fd->get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
        listen(fd->get(), 128) != 0)
      return ErrnoStatus(errno, absl::StrCat("listen on TCP ", port, " in ", netns_path));
    server->listeners_.push_back(std::move(*fd));
  }
  for (const ScopedFd& fd : server->listeners_) server->threads_.emplace_back([&s = *server, l = fd.get()] { s.Serve(l); });
  return server;
}

EchoServer::~EchoServer() {
  stop_ = true;
  for (std::thread& t : threads_) t.join();
}

void EchoServer::Serve(int listen_fd) {
  while (!stop_) {
    pollfd p{.fd = listen_fd, .events = POLLIN};
    if (poll(&p, 1, 50) <= 0) continue;
    ScopedFd conn(accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;
    int one = 1;
    setsockopt(conn.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    // Bounded: a silent client is given up after 100 ms, so stop_ is seen.
    SetTimeouts(conn.get(), std::chrono::milliseconds(100));
    std::array<char, 4096> buffer;
    while (!stop_) {
      ssize_t n = recv(conn.get(), buffer.data(), buffer.size(), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
      if (n > 0 && send(conn.get(), buffer.data(), n, MSG_NOSIGNAL) != n) break;
    }
  }
}

absl::StatusOr<std::vector<double>> TcpRr(const std::string& client_netns, uint16_t port, int iterations,
                                          std::chrono::milliseconds limit) {
  auto fd = SocketIn(client_netns, SOCK_STREAM);
  if (!fd.ok()) return fd.status();
  SetTimeouts(fd->get(), std::chrono::milliseconds(2000));
  if (absl::Status s = ConnectTcp(fd->get(), port); !s.ok()) return s;
  std::vector<double> micros;
  micros.reserve(iterations);
  auto deadline = Clock::now() + limit;
  for (int i = 0; i < iterations && !g_interrupted && Clock::now() < deadline; ++i) {
    auto start = Clock::now();
    if (absl::Status s = PingPong(fd->get()); !s.ok()) return s;
    micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  if (micros.empty()) return absl::DeadlineExceededError("TCP_RR: no round trip in time");
  return micros;
}

absl::StatusOr<double> TcpCrr(const std::string& client_netns, uint16_t port, std::chrono::milliseconds duration) {
  uint64_t connections = 0;
  auto start = Clock::now(), deadline = start + duration;
  while (Clock::now() < deadline && !g_interrupted) {
    auto fd = SocketIn(client_netns, SOCK_STREAM);
    if (!fd.ok()) return fd.status();
    SetTimeouts(fd->get(), std::chrono::milliseconds(2000));
    if (absl::Status s = ConnectTcp(fd->get(), port); !s.ok()) return s;
    if (absl::Status s = PingPong(fd->get()); !s.ok()) return s;
    ++connections;
  }
  return connections / std::chrono::duration<double>(Clock::now() - start).count();
}

absl::StatusOr<bool> TcpConnects(const std::string& client_netns, uint16_t port, std::chrono::milliseconds timeout) {
  auto fd = SocketIn(client_netns, SOCK_STREAM | SOCK_NONBLOCK);
  if (!fd.ok()) return fd.status();
  sockaddr_in server = ServerAddress(port);
  if (connect(fd->get(), reinterpret_cast<const sockaddr*>(&server), sizeof(server)) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{.fd = fd->get(), .events = POLLOUT};
  if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  int error = 0;
  socklen_t len = sizeof(error);
  getsockopt(fd->get(), SOL_SOCKET, SO_ERROR, &error, &len);
  return error == 0;
}

namespace {

absl::StatusOr<double> Iperf3Once(const std::string& client_netns, const std::string& server_netns, int seconds,
                                  uint64_t bytes) {
  std::string port = absl::StrCat(kIperfPort);
  absl::Status server_status;
  // One-shot server (-1): it exits after one test, so nothing outlives the run.
  std::thread server([&] {
    auto out = RunCommand({"iperf3", "-s", "-1", "-p", port, "-B", kServerIp}, server_netns,
                          std::chrono::milliseconds(seconds * 1000 + 5'000));
    server_status = out.status();
  });
  absl::StatusOr<std::string> out = absl::UnknownError("iperf3 client did not run");
  std::vector<std::string> argv = {"iperf3", "-c", kServerIp, "-p", port, "-J"};
  if (bytes > 0) {
    argv.insert(argv.end(), {"-n", absl::StrCat(bytes)});
  } else {
    argv.insert(argv.end(), {"-t", absl::StrCat(seconds)});
  }
  // The server needs a moment to listen; a refused client is tried again.
  for (int attempt = 0; attempt < 20 && !g_interrupted; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    out = RunCommand(argv, client_netns, std::chrono::milliseconds(seconds * 1000 + 10'000));
    if (out.ok() || !absl::StrContains(out.status().message(), "refused")) break;
  }
  server.join();
  if (!out.ok()) return out.status();
  auto json = nlohmann::json::parse(*out, nullptr, false);
  const nlohmann::json* rate = nullptr;
  if (!json.is_discarded() && json.is_object() && json.contains("end") && json["end"].contains("sum_received"))
    rate = &json["end"]["sum_received"]["bits_per_second"];
  if (rate == nullptr || !rate->is_number()) {
    std::string error = !json.is_discarded() && json.is_object() && json.contains("error") && json["error"].is_string()
                            ? json["error"].get<std::string>()
                            : out->substr(0, 300);
    return absl::InternalError(absl::StrCat("iperf3 gave no rate: ", error));
  }
  return rate->get<double>() / 1e9;
}

}  // namespace

absl::StatusOr<double> Iperf3(const std::string& client_netns, const std::string& server_netns, int seconds,
                              uint64_t bytes) {
  // iperf3 now and then fails a test on its own ("unable to receive
  // results"); a second try tells that from a filter that breaks the stream.
  auto rate = Iperf3Once(client_netns, server_netns, seconds, bytes);
  if (rate.ok() || g_interrupted) return rate;
  std::fprintf(stderr, "stockade-bench: iperf3 failed once, trying again: %s\n",
               std::string(rate.status().message()).c_str());
  return Iperf3Once(client_netns, server_netns, seconds, bytes);
}

std::string TrafgenConfig(const uint8_t src_mac[6], const uint8_t dst_mac[6], int flows) {
  std::string out;
  // One packet block per flow: trafgen sends them round robin.
  for (int flow = 0; flow < flows; ++flow) {
    absl::StrAppend(&out, "{\n  eth(sa=", FormatMac(src_mac), ", da=", FormatMac(dst_mac), ", type=0x0800),\n",
                    "  ipv4(saddr=", kClientIp, ", daddr=", kServerIp, ", ttl=64),\n", "  udp(sp=", 20000 + flow,
                    ", dp=", kDeniedUdpPort, "),\n", "  fill(0x00, ", kPayloadBytes, ")\n}\n");
  }
  return out;
}

std::optional<double> TrafgenSendSeconds(const std::string& output) {
  // "          0 sec, 156066 usec on CPU0 (100000 packets)"
  size_t at = output.find(" usec on CPU");
  if (at == std::string::npos) return std::nullopt;
  size_t line = output.find_last_of("\r\n", at);
  unsigned long long sec = 0, usec = 0;
  if (std::sscanf(output.c_str() + (line == std::string::npos ? 0 : line + 1), " %llu sec, %llu usec", &sec, &usec) != 2)
    return std::nullopt;
  return sec + usec / 1e6;
}

absl::StatusOr<uint64_t> BacklogDrops() {
  std::ifstream softnet("/proc/net/softnet_stat");
  uint64_t dropped = 0;
  for (std::string line; std::getline(softnet, line);) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t value = 0;
    if (fields.size() < 2 || !absl::SimpleHexAtoi(fields[1], &value))
      return absl::InternalError(absl::StrCat("unexpected /proc/net/softnet_stat line: ", line));
    dropped += value;
  }
  return dropped;
}

absl::StatusOr<Flood> TrafgenFlood(const std::string& client_netns, const std::string& ifname,
                                   const std::string& config_path, uint64_t count) {
  auto cpu_before = ReadCpuTimes();
  if (!cpu_before.ok()) return cpu_before.status();
  auto backlog_before = BacklogDrops();
  if (!backlog_before.ok()) return backlog_before.status();
  auto start = Clock::now();
  // trafgen bypasses the qdisc by default (PF_PACKET with PACKET_QDISC_BYPASS).
  auto send = [&] {
    return RunCommand({"trafgen", "--dev", ifname, "--conf", config_path, "--num", absl::StrCat(count), "--cpus", "1",
                       "--no-sock-mem"},
                      client_netns, std::chrono::milliseconds(60'000));
  };
  auto out = send();
  // A veth whose peer runs XDP pushes back (NETDEV_TX_BUSY) when the peer's
  // ring is full, and trafgen gives up on the EAGAIN; on a loaded machine
  // that happens now and then. The run is measured again from the start.
  for (int retry = 0; retry < 2 && !out.ok() && absl::StrContains(out.status().message(), "temporarily unavailable");
       ++retry) {
    std::fprintf(stderr, "stockade-bench: trafgen hit a full veth ring, flooding again\n");
    cpu_before = ReadCpuTimes();
    if (!cpu_before.ok()) return cpu_before.status();
    backlog_before = BacklogDrops();
    if (!backlog_before.ok()) return backlog_before.status();
    start = Clock::now();
    out = send();
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  auto cpu_after = ReadCpuTimes();
  if (!out.ok()) return out.status();
  // trafgen's own clock of its send loop, without its start (ring set-up),
  // which would weigh on short floods.
  if (auto send_loop = TrafgenSendSeconds(*out); send_loop.has_value() && *send_loop > 0) seconds = *send_loop;
  if (!cpu_after.ok()) return cpu_after.status();
  auto backlog_after = BacklogDrops();
  if (!backlog_after.ok()) return backlog_after.status();
  return Flood{.sent = count, .seconds = seconds, .kernel_ns = cpu_after->kernel_ns - cpu_before->kernel_ns,
               .backlog_drops = *backlog_after - *backlog_before};
}

}  // namespace stockade::bench
