// SPDX-License-Identifier: Apache-2.0
//
// Exercises stockade/netns.h and testlib/lab/topology.h against the real
// kernel. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns and `ip netns`):
// tests that need it are skipped otherwise, and fail under CI=true.
//
// Traffic only flows between namespaces the tests create, to their own
// addresses, and every ping is bounded (`-c 1 -W 1`).

#include "testlib/lab/topology.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "stockade/netns/netns.h"
#include "tests/support/bpf_test_env.h"

namespace stockade::lab {
namespace {

#define STK_CONCAT_INNER(a, b) a##b
#define STK_CONCAT(a, b) STK_CONCAT_INNER(a, b)

#define STK_ASSERT_OK(expr)                     \
  do {                                          \
    const absl::Status stk_status = (expr);     \
    ASSERT_TRUE(stk_status.ok()) << stk_status; \
  } while (0)

#define STK_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  STK_ASSERT_OK_AND_ASSIGN_IMPL(STK_CONCAT(stk_statusor_, __LINE__), lhs, expr)
#define STK_ASSERT_OK_AND_ASSIGN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  ASSERT_TRUE(statusor.ok()) << statusor.status();         \
  lhs = *std::move(statusor)

// Namespaces are identified by the inode of their nsfs file.
std::optional<ino_t> NetnsInode(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  return info.st_ino;
}

std::optional<ino_t> CurrentNetnsInode() {
  return NetnsInode("/proc/self/ns/net");
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

bool Contains(absl::string_view haystack, std::string_view needle) {
  return absl::StrContains(haystack,
                           absl::string_view(needle.data(), needle.size()));
}

// Finds "7: eth0@if6: <...>" in `ip -o link show dev eth0` output and returns
// {7, 6}; the peer index is 0 when there is no "@if". Other lines are skipped:
// the output includes stderr, where iproute2 may print warnings such as
// "Peer netns reference is invalid" while other namespaces come and go.
std::pair<uint32_t, uint32_t> ParseIpLinkIndices(const std::string& output,
                                                 const std::string& ifname) {
  for (const absl::string_view line : absl::StrSplit(output, '\n')) {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::MaxSplits(':', 2));
    uint32_t index = 0;
    if (parts.size() < 3 || !absl::SimpleAtoi(parts[0], &index)) continue;
    const absl::string_view name_field = absl::StripAsciiWhitespace(parts[1]);
    const std::vector<absl::string_view> name_and_peer =
        absl::StrSplit(name_field, absl::MaxSplits("@if", 1));
    if (name_and_peer[0] != ifname) continue;
    uint32_t peer_index = 0;
    if (name_and_peer.size() == 2 &&
        !absl::SimpleAtoi(name_and_peer[1], &peer_index)) {
      peer_index = 0;
    }
    return {index, peer_index};
  }
  return {0, 0};
}

std::vector<std::string> Ping(std::string_view address, bool ipv6 = false) {
  std::vector<std::string> argv = {"ping"};
  if (ipv6) argv.push_back("-6");
  argv.insert(argv.end(), {"-c", "1", "-W", "1", std::string(address)});
  return argv;
}

// Each ping sends one packet and waits at most a second for it.
constexpr std::chrono::milliseconds kPingTimeout{5'000};

// ---------------------------------------------------------------------------
// RunCommand (no namespaces needed)

TEST(RunCommandTest, CapturesStdoutAndStderr) {
  absl::StatusOr<std::string> output =
      RunCommand({"sh", "-c", "echo out; echo err >&2"});
  ASSERT_TRUE(output.ok()) << output.status();
  EXPECT_EQ(*output, "out\nerr\n");
}

TEST(RunCommandTest, FailureCarriesCommandExitCodeAndOutput) {
  absl::StatusOr<std::string> output =
      RunCommand({"sh", "-c", "echo oops; exit 3"});
  ASSERT_FALSE(output.ok());
  const absl::string_view message = output.status().message();
  EXPECT_TRUE(Contains(message, "`sh -c 'echo oops; exit 3'`")) << message;
  EXPECT_TRUE(Contains(message, "exited with status 3")) << message;
  EXPECT_TRUE(Contains(message, "oops")) << message;
}

TEST(RunCommandTest, ReportsDeathBySignal) {
  absl::StatusOr<std::string> output =
      RunCommand({"sh", "-c", "kill -TERM $$"});
  ASSERT_FALSE(output.ok());
  EXPECT_TRUE(Contains(output.status().message(), "signal 15 (SIGTERM)"))
      << output.status();
}

TEST(RunCommandTest, ReturnsWhenTheCommandExitsDespiteABackgroundChild) {
  // The background sleep inherits the output pipe; RunCommand must not wait
  // for it to close.
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> output =
      RunCommand({"sh", "-c", "sleep 2 & echo started"});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(output.ok()) << output.status();
  EXPECT_EQ(*output, "started\n");
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500));
}

TEST(RunCommandTest, UnknownProgramIsNotFound) {
  absl::StatusOr<std::string> output =
      RunCommand({"stockade-no-such-command-xyz"});
  EXPECT_EQ(output.status().code(), absl::StatusCode::kNotFound)
      << output.status();
}

TEST(RunCommandTest, ReportsFailuresBeforeExec) {
  absl::StatusOr<std::string> no_binary = RunCommand({"/nonexistent/prog"});
  EXPECT_EQ(no_binary.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(no_binary.status().message(),
                       "exec /nonexistent/prog: No such file or directory"))
      << no_binary.status();

  // Opens fine in the parent, but is not a network namespace.
  absl::StatusOr<std::string> wrong_netns =
      RunCommand({"true"}, "/proc/self/ns/uts");
  EXPECT_FALSE(wrong_netns.ok());
  EXPECT_TRUE(Contains(wrong_netns.status().message(),
                       "setns into /proc/self/ns/uts: "))
      << wrong_netns.status();
}

TEST(RunCommandTest, TimeoutKillsTheCommand) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> output =
      RunCommand({"sleep", "10"}, std::nullopt, std::chrono::milliseconds(300));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(output.status().code(), absl::StatusCode::kDeadlineExceeded)
      << output.status();
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST(RunCommandTest, MissingNetnsIsNotFoundAndNamesThePath) {
  absl::StatusOr<std::string> output =
      RunCommand({"true"}, "/run/netns/stk-does-not-exist");
  EXPECT_EQ(output.status().code(), absl::StatusCode::kNotFound)
      << output.status();
  EXPECT_TRUE(
      Contains(output.status().message(), "/run/netns/stk-does-not-exist"))
      << output.status();
}

// ---------------------------------------------------------------------------
// NetnsGuard

TEST(NetnsGuardTest, SwitchesAndRestores) {
  STOCKADE_REQUIRE_PRIVILEGES();
  Topology topology;
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns inner,
                           topology.AddNamespace("inner"));
  const std::optional<ino_t> original = CurrentNetnsInode();
  const std::optional<ino_t> target = NetnsInode(inner.path);
  ASSERT_TRUE(original.has_value() && target.has_value());
  ASSERT_NE(*original, *target);

  {
    STK_ASSERT_OK_AND_ASSIGN(NetnsGuard guard, NetnsGuard::Enter(inner.path));
    EXPECT_EQ(CurrentNetnsInode(), target);
  }
  EXPECT_EQ(CurrentNetnsInode(), original);

  // By fd; the fd may be closed while the guard is alive.
  const int fd = ::open(inner.path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  {
    STK_ASSERT_OK_AND_ASSIGN(NetnsGuard guard, NetnsGuard::Enter(fd));
    std::move(close_fd).Invoke();
    EXPECT_EQ(CurrentNetnsInode(), target);
  }
  EXPECT_EQ(CurrentNetnsInode(), original);
}

TEST(NetnsGuardTest, NestsMovesAndRestoresExplicitly) {
  STOCKADE_REQUIRE_PRIVILEGES();
  Topology topology;
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns first,
                           topology.AddNamespace("first"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns second,
                           topology.AddNamespace("second"));
  const std::optional<ino_t> original = CurrentNetnsInode();

  {
    STK_ASSERT_OK_AND_ASSIGN(NetnsGuard outer, NetnsGuard::Enter(first.path));
    {
      absl::StatusOr<NetnsGuard> inner = NetnsGuard::Enter(second.path);
      ASSERT_TRUE(inner.ok()) << inner.status();
      EXPECT_EQ(CurrentNetnsInode(), NetnsInode(second.path));
      // Moving hands over the duty to restore; the moved-from guard does not
      // restore when it dies.
      NetnsGuard moved = *std::move(inner);
      inner = absl::CancelledError("drop the moved-from guard now");
      EXPECT_EQ(CurrentNetnsInode(), NetnsInode(second.path));
      STK_ASSERT_OK(moved.Restore());
      EXPECT_EQ(CurrentNetnsInode(), NetnsInode(first.path));
      STK_ASSERT_OK(moved.Restore());  // idempotent
    }
    EXPECT_EQ(CurrentNetnsInode(), NetnsInode(first.path));
  }
  EXPECT_EQ(CurrentNetnsInode(), original);
}

TEST(NetnsGuardTest, ErrorsNameTheTarget) {
  STOCKADE_REQUIRE_PRIVILEGES();
  const std::optional<ino_t> original = CurrentNetnsInode();

  absl::StatusOr<NetnsGuard> missing =
      NetnsGuard::Enter("/run/netns/stk-does-not-exist");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(
      Contains(missing.status().message(), "/run/netns/stk-does-not-exist"))
      << missing.status();

  // A namespace file of another type: setns(CLONE_NEWNET) rejects it.
  absl::StatusOr<NetnsGuard> wrong_type =
      NetnsGuard::Enter("/proc/self/ns/uts");
  EXPECT_EQ(wrong_type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(wrong_type.status().message(),
                       "setns into /proc/self/ns/uts: Invalid argument"))
      << wrong_type.status();

  EXPECT_EQ(CurrentNetnsInode(), original);
}

// ---------------------------------------------------------------------------
// Topologies

TEST(TopologyTest, VethPairPingsOverIpv4AndIpv6) {
  STOCKADE_REQUIRE_PRIVILEGES();
  Topology topology;
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns left,
                           topology.AddNamespace("left"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns right,
                           topology.AddNamespace("right"));
  STK_ASSERT_OK_AND_ASSIGN(auto veth,
                           topology.AddVethPair(left, "eth0", right, "eth0"));
  STK_ASSERT_OK(topology.AddAddress(veth.first, "10.200.0.1/24"));
  STK_ASSERT_OK(topology.AddAddress(veth.second, "10.200.0.2/24"));
  STK_ASSERT_OK(topology.AddAddress(veth.first, "fd00:200::1/64"));
  STK_ASSERT_OK(topology.AddAddress(veth.second, "fd00:200::2/64"));
  STK_ASSERT_OK(topology.SetUp(veth.first));
  STK_ASSERT_OK(topology.SetUp(veth.second));

  absl::StatusOr<std::string> ping4 =
      topology.Run(left, Ping("10.200.0.2"), kPingTimeout);
  EXPECT_TRUE(ping4.ok()) << ping4.status();
  absl::StatusOr<std::string> ping6 =
      topology.Run(right, Ping("fd00:200::1", /*ipv6=*/true), kPingTimeout);
  EXPECT_TRUE(ping6.ok()) << ping6.status();

  // Nobody has .3, so this ping must fail: the checks above are not vacuous.
  absl::StatusOr<std::string> ping_nobody =
      topology.Run(left, Ping("10.200.0.3"), kPingTimeout);
  EXPECT_EQ(ping_nobody.status().code(), absl::StatusCode::kUnknown)
      << ping_nobody.status();

  // The commands really ran inside the namespace.
  STK_ASSERT_OK_AND_ASSIGN(
      const std::string netns_link,
      topology.Run(left, {"readlink", "/proc/self/ns/net"}));
  EXPECT_EQ(netns_link, absl::StrCat("net:[", *NetnsInode(left.path), "]\n"));
}

TEST(TopologyTest, IfIndexAndCookieAreResolvedPerNamespace) {
  STOCKADE_REQUIRE_PRIVILEGES();
  Topology topology;
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns a, topology.AddNamespace("a"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns b, topology.AddNamespace("b"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns c, topology.AddNamespace("c"));
  // b gets one interface more before its eth0, so the two eth0s cannot share
  // an ifindex by accident of allocation order.
  STK_ASSERT_OK_AND_ASSIGN(auto b_to_c,
                           topology.AddVethPair(b, "toc", c, "tob"));
  STK_ASSERT_OK_AND_ASSIGN(auto a_to_b,
                           topology.AddVethPair(a, "eth0", b, "eth0"));

  STK_ASSERT_OK_AND_ASSIGN(const uint32_t a_eth0,
                           IfIndexInNetns(a.path, "eth0"));
  STK_ASSERT_OK_AND_ASSIGN(const uint32_t b_eth0,
                           IfIndexInNetns(b.path, "eth0"));
  EXPECT_NE(a_eth0, b_eth0);
  STK_ASSERT_OK_AND_ASSIGN(const uint32_t via_topology,
                           topology.IfIndex(a_to_b.first));
  EXPECT_EQ(via_topology, a_eth0);

  // Cross-check with iproute2: index and peer index of each end.
  STK_ASSERT_OK_AND_ASSIGN(
      const std::string a_line,
      topology.Run(a, {"ip", "-o", "link", "show", "dev", "eth0"}));
  STK_ASSERT_OK_AND_ASSIGN(
      const std::string b_line,
      topology.Run(b, {"ip", "-o", "link", "show", "dev", "eth0"}));
  EXPECT_EQ(ParseIpLinkIndices(a_line, "eth0"), std::make_pair(a_eth0, b_eth0))
      << a_line;
  EXPECT_EQ(ParseIpLinkIndices(b_line, "eth0"), std::make_pair(b_eth0, a_eth0))
      << b_line;

  // "toc" exists only in b.
  absl::StatusOr<uint32_t> toc_in_a = IfIndexInNetns(a.path, "toc");
  EXPECT_EQ(toc_in_a.status().code(), absl::StatusCode::kNotFound)
      << toc_in_a.status();
  EXPECT_TRUE(Contains(toc_in_a.status().message(), "toc"));
  EXPECT_TRUE(IfIndexInNetns(b.path, "toc").ok());
  EXPECT_EQ(IfIndexInNetns(a.path, "name-too-long-for-linux").status().code(),
            absl::StatusCode::kInvalidArgument);

  STK_ASSERT_OK_AND_ASSIGN(const uint64_t cookie_a, NetnsCookie(a.path));
  STK_ASSERT_OK_AND_ASSIGN(const uint64_t cookie_b, NetnsCookie(b.path));
  STK_ASSERT_OK_AND_ASSIGN(const uint64_t cookie_host,
                           NetnsCookie(topology.host().path));
  EXPECT_NE(cookie_a, cookie_b);
  EXPECT_NE(cookie_a, cookie_host);
  EXPECT_NE(cookie_b, cookie_host);
  STK_ASSERT_OK_AND_ASSIGN(const uint64_t cookie_a_again, NetnsCookie(a.path));
  EXPECT_EQ(cookie_a, cookie_a_again);

  const int fd = ::open(a.path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  STK_ASSERT_OK_AND_ASSIGN(const uint64_t cookie_a_by_fd, NetnsCookie(fd));
  EXPECT_EQ(cookie_a_by_fd, cookie_a);
}

TEST(TopologyTest, MacvlanOnVethReachesPeerAndSibling) {
  STOCKADE_REQUIRE_PRIVILEGES();
  Topology topology;
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns lower,
                           topology.AddNamespace("lower"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns peer,
                           topology.AddNamespace("peer"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns mv1,
                           topology.AddNamespace("mv1"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns mv2,
                           topology.AddNamespace("mv2"));
  STK_ASSERT_OK_AND_ASSIGN(auto wire,
                           topology.AddVethPair(lower, "eth0", peer, "eth0"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyLink child1,
                           topology.AddMacvlan(wire.first, mv1, "eth0"));
  STK_ASSERT_OK_AND_ASSIGN(
      const TopologyLink child2,
      topology.AddMacvlan(wire.first, mv2, "eth0", MacvlanMode::kBridge));
  EXPECT_EQ(child1.netns, mv1);
  EXPECT_EQ(child1.ifname, "eth0");

  const MacAddress child1_mac = {0x02, 0x00, 0x00, 0xc9, 0x00, 0x0b};
  STK_ASSERT_OK(topology.SetMac(child1, child1_mac));
  STK_ASSERT_OK_AND_ASSIGN(const MacAddress read_back, topology.Mac(child1));
  EXPECT_EQ(read_back, child1_mac);
  STK_ASSERT_OK_AND_ASSIGN(const MacAddress parent_mac,
                           topology.Mac(wire.first));
  STK_ASSERT_OK_AND_ASSIGN(const MacAddress child2_mac, topology.Mac(child2));
  EXPECT_NE(child2_mac, parent_mac);
  EXPECT_NE(child2_mac, child1_mac);
  STK_ASSERT_OK_AND_ASSIGN(const uint32_t child1_ifindex,
                           topology.IfIndex(child1));
  EXPECT_GT(child1_ifindex, 1u);

  STK_ASSERT_OK(topology.AddAddress(wire.second, "10.201.0.1/24"));
  STK_ASSERT_OK(topology.AddAddress(child1, "10.201.0.11/24"));
  STK_ASSERT_OK(topology.AddAddress(child2, "10.201.0.12/24"));
  STK_ASSERT_OK(topology.AddAddress(child1, "fd00:201::11/64"));
  STK_ASSERT_OK(topology.AddAddress(child2, "fd00:201::12/64"));
  for (const TopologyLink* link : std::initializer_list<const TopologyLink*>{
           &wire.first, &wire.second, &child1, &child2}) {
    STK_ASSERT_OK(topology.SetUp(*link));
  }

  absl::StatusOr<std::string> to_peer =
      topology.Run(mv1, Ping("10.201.0.1"), kPingTimeout);
  EXPECT_TRUE(to_peer.ok()) << to_peer.status();
  absl::StatusOr<std::string> to_sibling =
      topology.Run(mv1, Ping("10.201.0.12"), kPingTimeout);
  EXPECT_TRUE(to_sibling.ok()) << to_sibling.status();
  absl::StatusOr<std::string> to_sibling6 =
      topology.Run(mv2, Ping("fd00:201::11", /*ipv6=*/true), kPingTimeout);
  EXPECT_TRUE(to_sibling6.ok()) << to_sibling6.status();
}

TEST(TopologyTest, BridgeJoinsTwoNamespaces) {
  STOCKADE_REQUIRE_PRIVILEGES();
  Topology topology;
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns sw, topology.AddNamespace("sw"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns c1, topology.AddNamespace("c1"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns c2, topology.AddNamespace("c2"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyLink bridge,
                           topology.AddBridge(sw, "br0"));
  STK_ASSERT_OK_AND_ASSIGN(auto leg1,
                           topology.AddVethPair(c1, "eth0", sw, "p1"));
  STK_ASSERT_OK_AND_ASSIGN(auto leg2,
                           topology.AddVethPair(c2, "eth0", sw, "p2"));
  STK_ASSERT_OK(topology.Enslave(leg1.second, bridge));
  STK_ASSERT_OK(topology.Enslave(leg2.second, bridge));
  STK_ASSERT_OK(topology.AddAddress(leg1.first, "10.202.0.1/24"));
  STK_ASSERT_OK(topology.AddAddress(leg2.first, "10.202.0.2/24"));
  for (const TopologyLink* link : std::initializer_list<const TopologyLink*>{
           &bridge, &leg1.first, &leg1.second, &leg2.first, &leg2.second}) {
    STK_ASSERT_OK(topology.SetUp(*link));
  }
  absl::StatusOr<std::string> ping =
      topology.Run(c1, Ping("10.202.0.2"), kPingTimeout);
  EXPECT_TRUE(ping.ok()) << ping.status();

  // Ports of different namespaces cannot be joined.
  EXPECT_EQ(topology.Enslave(leg1.first, bridge).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TopologyTest, RefusesToTouchWhatItDidNotCreate) {
  STOCKADE_REQUIRE_PRIVILEGES();
  Topology topology;
  Topology other;
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns mine,
                           topology.AddNamespace("mine"));
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns theirs,
                           other.AddNamespace("theirs"));
  EXPECT_NE(topology.prefix(), other.prefix());

  EXPECT_EQ(topology.SetUp({topology.host(), "lo"}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(topology.AddNamespace("mine").status().code(),
            absl::StatusCode::kUnknown);  // `ip netns add` fails: exists
  EXPECT_TRUE(topology.Run(mine, {"true"}).ok());  // still there
  EXPECT_EQ(topology.AddVethPair(mine, "x0", theirs, "x1").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(topology.Run(theirs, {"true"}).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Host-side names carry the prefix, which leaves 7 characters.
  EXPECT_EQ(topology.AddBridge(topology.host(), "12345678").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(topology.AddNamespace("bad/name").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TopologyTest, DestructionRemovesEverythingItCreated) {
  STOCKADE_REQUIRE_PRIVILEGES();
  std::string prefix;
  std::vector<std::string> namespace_paths;
  std::vector<std::string> host_ifnames;
  {
    Topology topology;
    prefix = topology.prefix();
    STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns a, topology.AddNamespace("a"));
    STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns b, topology.AddNamespace("b"));
    STK_ASSERT_OK_AND_ASSIGN(
        auto host_veth, topology.AddVethPair(topology.host(), "h0", a, "eth0"));
    STK_ASSERT_OK_AND_ASSIGN(auto a_to_b,
                             topology.AddVethPair(a, "tob", b, "toa"));
    STK_ASSERT_OK_AND_ASSIGN(const TopologyLink host_bridge,
                             topology.AddBridge(topology.host(), "br"));
    STK_ASSERT_OK_AND_ASSIGN(
        auto host_pair,
        topology.AddVethPair(topology.host(), "x0", topology.host(), "x1"));
    STK_ASSERT_OK(topology.Enslave(host_pair.first, host_bridge));
    // A host-side macvlan whose parent lives in a namespace.
    STK_ASSERT_OK_AND_ASSIGN(
        const TopologyLink host_macvlan,
        topology.AddMacvlan(a_to_b.first, topology.host(), "mv"));

    EXPECT_EQ(host_veth.first.ifname, prefix + "h0");
    for (const TopologyLink* link : std::initializer_list<const TopologyLink*>{
             &host_veth.first, &host_bridge, &host_pair.first,
             &host_pair.second, &host_macvlan}) {
      EXPECT_TRUE(absl::StartsWith(link->ifname, prefix)) << link->ifname;
      EXPECT_TRUE(IfIndexInNetns(topology.host().path, link->ifname).ok());
      host_ifnames.push_back(link->ifname);
    }
    namespace_paths = {a.path, b.path};
    STK_ASSERT_OK_AND_ASSIGN(const std::string netns_list,
                             RunCommand({"ip", "netns", "list"}));
    EXPECT_TRUE(Contains(netns_list, a.name)) << netns_list;
    EXPECT_TRUE(Contains(netns_list, b.name)) << netns_list;
  }

  STK_ASSERT_OK_AND_ASSIGN(const std::string netns_list,
                           RunCommand({"ip", "netns", "list"}));
  EXPECT_FALSE(Contains(netns_list, prefix)) << netns_list;
  for (const std::string& path : namespace_paths) {
    EXPECT_FALSE(NetnsInode(path).has_value()) << path << " still exists";
  }
  STK_ASSERT_OK_AND_ASSIGN(const std::string links,
                           RunCommand({"ip", "-o", "link", "show"}));
  EXPECT_FALSE(Contains(links, prefix)) << links;
  for (const std::string& ifname : host_ifnames) {
    EXPECT_EQ(IfIndexInNetns("/proc/self/ns/net", ifname).status().code(),
              absl::StatusCode::kNotFound)
        << ifname;
  }
}

TEST(TopologyTest, DoesNotLeakFileDescriptors) {
  STOCKADE_REQUIRE_PRIVILEGES();
  // Counted in-process: an external `ls` would race with RunCommand's own
  // fds (the pidfd is opened while the child runs).
  auto count_fds = [] {
    std::error_code error;
    std::filesystem::directory_iterator entries("/proc/self/fd", error);
    if (error) return std::ptrdiff_t{-1};
    return std::distance(entries, std::filesystem::directory_iterator());
  };
  const auto before = count_fds();
  ASSERT_GT(before, 0);
  {
    Topology topology;
    STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns a, topology.AddNamespace("a"));
    STK_ASSERT_OK_AND_ASSIGN(
        auto veth, topology.AddVethPair(topology.host(), "h0", a, "eth0"));
    EXPECT_TRUE(topology.IfIndex(veth.first).ok());
    EXPECT_TRUE(topology.Mac(veth.second).ok());
    EXPECT_TRUE(NetnsCookie(a.path).ok());
    EXPECT_FALSE(RunCommand({"false"}, a.path).ok());
    EXPECT_FALSE(
        RunCommand({"sleep", "5"}, a.path, std::chrono::milliseconds(50)).ok());
    EXPECT_FALSE(NetnsGuard::Enter("/proc/self/ns/uts").ok());
  }
  EXPECT_EQ(count_fds(), before);
}

TEST(TopologyTest, ExplicitTeardownLeavesTheTopologyReusable) {
  STOCKADE_REQUIRE_PRIVILEGES();
  Topology topology;
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns once,
                           topology.AddNamespace("again"));
  STK_ASSERT_OK(topology.Teardown());
  EXPECT_FALSE(NetnsInode(once.path).has_value());
  STK_ASSERT_OK_AND_ASSIGN(const TopologyNetns twice,
                           topology.AddNamespace("again"));
  EXPECT_EQ(twice, once);
  EXPECT_TRUE(topology.Run(twice, {"true"}).ok());
}

}  // namespace
}  // namespace stockade::lab
