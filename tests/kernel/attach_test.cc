// SPDX-License-Identifier: Apache-2.0
//
// Attaching for real: TCX links and the classic clsact fallback, XDP,
// pinning that outlives the process's objects, adoption of pinned maps,
// uninstall, and instances that do not collide.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <linux/if_link.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "stockade/datapath/attach.h"
#include "stockade/datapath/datapath.h"
#include "stockade/netns/netns.h"
#include "testlib/lab/topology.h"
#include "tests/support/bpf_test_env.h"

namespace stockade::testing {
namespace {

// Program ids attached at a TCX hook of an interface in the current namespace.
std::vector<uint32_t> TcxPrograms(uint32_t ifindex, bpf_attach_type type) {
  uint32_t ids[8] = {};
  LIBBPF_OPTS(bpf_prog_query_opts, opts, .prog_ids = ids, .count = 8);
  if (bpf_prog_query_opts(static_cast<int>(ifindex), type, &opts) != 0) return {};
  return std::vector<uint32_t>(ids, ids + opts.count);
}

uint32_t ClassicProgram(uint32_t ifindex, bpf_tc_attach_point point) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 0x5bd, .priority = 0x5bd);
  if (bpf_tc_query(&hook, &opts) != 0) return 0;
  return opts.prog_id;
}

uint32_t XdpProgram(uint32_t ifindex) {
  LIBBPF_OPTS(bpf_xdp_query_opts, opts);
  if (bpf_xdp_query(static_cast<int>(ifindex), 0, &opts) != 0) return 0;
  return opts.prog_id ? opts.prog_id : opts.skb_prog_id;
}

uint32_t ProgId(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  return bpf_prog_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

class AttachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STOCKADE_REQUIRE_PRIVILEGES();
    auto a = topology_.AddNamespace("a");
    auto b = topology_.AddNamespace("b");
    ASSERT_TRUE(a.ok() && b.ok());
    ns_ = *a;
    auto veth = topology_.AddVethPair(*a, "eth0", *b, "eth0");
    ASSERT_TRUE(veth.ok()) << veth.status();
    ASSERT_TRUE(topology_.SetUp(veth->first).ok());
    ASSERT_TRUE(topology_.SetUp(veth->second).ok());
    auto ifindex = topology_.IfIndex(veth->first);
    ASSERT_TRUE(ifindex.ok());
    ifindex_ = *ifindex;
    instance_ = absl::StrCat("test-attach-", getpid(), "-", topology_.prefix());
  }
  void TearDown() override {
    if (!instance_.empty()) (void)UninstallInstance(instance_);
  }

  std::unique_ptr<Datapath> Load(const std::string& instance = "") {
    auto dp = Datapath::Load({.instance = instance, .conntrack_max = 1024});
    EXPECT_TRUE(dp.ok()) << dp.status();
    return dp.ok() ? std::move(*dp) : nullptr;
  }

  lab::Topology topology_;
  lab::TopologyNetns ns_;
  uint32_t ifindex_ = 0;
  std::string instance_;
};

TEST_F(AttachTest, TcxAttachesAndDetachesWhenTheObjectGoes) {
  auto dp = Load();
  ASSERT_NE(dp, nullptr);
  auto guard = NetnsGuard::Enter(ns_.path);
  ASSERT_TRUE(guard.ok());
  {
    auto ingress = Attachment::AttachTc(dp->tc_ingress_fd(), ifindex_, TcHook::kIngress, TcAttachMode::kTcx);
    auto egress = Attachment::AttachTc(dp->tc_egress_fd(), ifindex_, TcHook::kEgress, TcAttachMode::kTcx);
    ASSERT_TRUE(ingress.ok()) << ingress.status();
    ASSERT_TRUE(egress.ok()) << egress.status();
    EXPECT_EQ(ingress->kind(), Attachment::Kind::kTcxLink);
    EXPECT_EQ(TcxPrograms(ifindex_, BPF_TCX_INGRESS), std::vector<uint32_t>{ProgId(dp->tc_ingress_fd())});
    EXPECT_EQ(TcxPrograms(ifindex_, BPF_TCX_EGRESS), std::vector<uint32_t>{ProgId(dp->tc_egress_fd())});
  }
  EXPECT_TRUE(TcxPrograms(ifindex_, BPF_TCX_INGRESS).empty());
  EXPECT_TRUE(TcxPrograms(ifindex_, BPF_TCX_EGRESS).empty());
}

TEST_F(AttachTest, AutoPicksTcxOnThisKernel) {
  auto dp = Load();
  ASSERT_NE(dp, nullptr);
  auto guard = NetnsGuard::Enter(ns_.path);
  ASSERT_TRUE(guard.ok());
  auto attachment = Attachment::AttachTc(dp->tc_ingress_fd(), ifindex_, TcHook::kIngress, TcAttachMode::kAuto);
  ASSERT_TRUE(attachment.ok()) << attachment.status();
  EXPECT_EQ(attachment->kind(), Attachment::Kind::kTcxLink);
}

TEST_F(AttachTest, ClassicFallbackAttachesAndDetaches) {
  auto dp = Load();
  ASSERT_NE(dp, nullptr);
  auto guard = NetnsGuard::Enter(ns_.path);
  ASSERT_TRUE(guard.ok());
  {
    auto ingress = Attachment::AttachTc(dp->tc_ingress_fd(), ifindex_, TcHook::kIngress, TcAttachMode::kClassic);
    auto egress = Attachment::AttachTc(dp->tc_egress_fd(), ifindex_, TcHook::kEgress, TcAttachMode::kClassic);
    ASSERT_TRUE(ingress.ok()) << ingress.status();
    ASSERT_TRUE(egress.ok()) << egress.status();
    EXPECT_EQ(ingress->kind(), Attachment::Kind::kClassicTc);
    EXPECT_EQ(ClassicProgram(ifindex_, BPF_TC_INGRESS), ProgId(dp->tc_ingress_fd()));
    EXPECT_EQ(ClassicProgram(ifindex_, BPF_TC_EGRESS), ProgId(dp->tc_egress_fd()));
    EXPECT_FALSE(ingress->Pin("/sys/fs/bpf/never").ok()) << "a classic filter has no link to pin";
  }
  EXPECT_EQ(ClassicProgram(ifindex_, BPF_TC_INGRESS), 0u);
  EXPECT_EQ(ClassicProgram(ifindex_, BPF_TC_EGRESS), 0u);
}

TEST_F(AttachTest, ClassicDetachFindsItsNamespaceFromAnotherThreadState) {
  auto dp = Load();
  ASSERT_NE(dp, nullptr);
  std::optional<absl::StatusOr<Attachment>> attachment;
  {
    auto guard = NetnsGuard::Enter(ns_.path);
    ASSERT_TRUE(guard.ok());
    attachment.emplace(Attachment::AttachTc(dp->tc_ingress_fd(), ifindex_, TcHook::kIngress, TcAttachMode::kClassic));
    ASSERT_TRUE(attachment->ok());
  }
  // Back in the original namespace: detaching must still act where the filter lives.
  ASSERT_TRUE((*attachment)->Detach().ok());
  auto guard = NetnsGuard::Enter(ns_.path);
  ASSERT_TRUE(guard.ok());
  EXPECT_EQ(ClassicProgram(ifindex_, BPF_TC_INGRESS), 0u);
}

TEST_F(AttachTest, XdpAttachesAndDetaches) {
  auto dp = Load();
  ASSERT_NE(dp, nullptr);
  auto guard = NetnsGuard::Enter(ns_.path);
  ASSERT_TRUE(guard.ok());
  {
    auto xdp = Attachment::AttachXdp(dp->xdp_fd(), ifindex_, XdpAttachMode::kAuto);
    ASSERT_TRUE(xdp.ok()) << xdp.status();
    EXPECT_EQ(xdp->kind(), Attachment::Kind::kXdpLink);
    EXPECT_EQ(XdpProgram(ifindex_), ProgId(dp->xdp_fd()));
  }
  EXPECT_EQ(XdpProgram(ifindex_), 0u);
}

TEST_F(AttachTest, PinnedLinkOutlivesTheAgentAndUninstallRemovesIt) {
  {
    auto dp = Load(instance_);
    ASSERT_NE(dp, nullptr);
    EXPECT_TRUE(std::filesystem::exists(dp->pin_dir() + "/" STOCKADE_MAP_ENDPOINTS));
    auto guard = NetnsGuard::Enter(ns_.path);
    ASSERT_TRUE(guard.ok());
    auto link = Attachment::AttachTc(dp->tc_ingress_fd(), ifindex_, TcHook::kIngress, TcAttachMode::kTcx);
    ASSERT_TRUE(link.ok());
    ASSERT_TRUE(link->Pin(absl::StrCat(dp->pin_dir(), "/links/tcx-ingress-", ifindex_)).ok());
  }
  // Every object of ours is gone; the program still sits on the interface.
  {
    auto guard = NetnsGuard::Enter(ns_.path);
    ASSERT_TRUE(guard.ok());
    EXPECT_EQ(TcxPrograms(ifindex_, BPF_TCX_INGRESS).size(), 1u);
  }
  ASSERT_TRUE(UninstallInstance(instance_).ok());
  EXPECT_FALSE(std::filesystem::exists(InstancePinDir(instance_)));
  auto guard = NetnsGuard::Enter(ns_.path);
  ASSERT_TRUE(guard.ok());
  EXPECT_TRUE(TcxPrograms(ifindex_, BPF_TCX_INGRESS).empty());
}

TEST_F(AttachTest, PinnedMapsAreAdoptedByTheNextLoad) {
  endpoint_key key{.netns_cookie = 42, .ifindex = 7};
  endpoint_info info{};
  info.identity = 1234;
  {
    auto first = Load(instance_);
    ASSERT_NE(first, nullptr);
    ASSERT_TRUE(first->endpoints().Update(key, info).ok());
    stockade_config config = first->ReadConfig().value();
    config.event_interval_ns = 777;
    ASSERT_TRUE(first->WriteConfig(config).ok());
  }
  auto second = Load(instance_);
  ASSERT_NE(second, nullptr);
  auto found = second->endpoints().Lookup(key);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->identity, 1234u);
  EXPECT_EQ(second->ReadConfig().value().event_interval_ns, 777u) << "an adopted config keeps its settings";
}

TEST_F(AttachTest, InstancesDoNotShareState) {
  std::string other = instance_ + "-b";
  auto a = Load(instance_);
  auto b = Load(other);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  endpoint_key key{.netns_cookie = 1, .ifindex = 1};
  ASSERT_TRUE(a->endpoints().Update(key, endpoint_info{}).ok());
  EXPECT_FALSE(b->endpoints().Lookup(key).value().has_value());
  EXPECT_NE(a->pin_dir(), b->pin_dir());
  ASSERT_TRUE(UninstallInstance(other).ok());
}

// The pins of a version before conntrack4: a conntrack pin that holds IPv4
// flows, and no conntrack4. Load moves them; pins of this version move nothing.
TEST_F(AttachTest, LoadMovesTheIpv4FlowsOfAnOlderVersionsPinsIntoConntrack4) {
  ct_key flow{};
  flow.family = STOCKADE_AF_INET;
  flow.protocol = IPPROTO_TCP;
  flow.addr_a[0] = 10, flow.addr_a[3] = 2;
  flow.addr_b[0] = 10, flow.addr_b[3] = 3;
  flow.port_a = htons(40000), flow.port_b = htons(5432);
  flow.ifindex = ifindex_;
  const ct_entry entry{.expires_ns = ~0ull, .packets = 7, .rule_id = 2, .policy_revision = 1};
  {
    auto dp = Load(instance_);
    ASSERT_NE(dp, nullptr);
    EXPECT_FALSE(dp->adopted_conntrack_without_ipv4_map()) << "a first load adopts nothing";
    ASSERT_EQ(bpf_map_update_elem(dp->conntrack().wide_map().fd(), &flow, &entry, BPF_ANY), 0);
  }
  ASSERT_TRUE(std::filesystem::remove(InstancePinDir(instance_) + "/" STOCKADE_MAP_CONNTRACK4));
  {
    auto dp = Load(instance_);
    ASSERT_NE(dp, nullptr);
    EXPECT_TRUE(dp->adopted_conntrack_without_ipv4_map());
    EXPECT_EQ(dp->conntrack().wide_map().Count().value(), 0u);
    auto moved = dp->conntrack().ipv4_map().Lookup(NarrowConntrackKey(flow));
    ASSERT_TRUE(moved.ok() && moved->has_value()) << "the flow is in conntrack4";
    EXPECT_EQ((*moved)->packets, 7u);
    EXPECT_EQ((*moved)->rule_id, 2u);
  }
  auto dp = Load(instance_);
  ASSERT_NE(dp, nullptr);
  EXPECT_FALSE(dp->adopted_conntrack_without_ipv4_map()) << "this version's own pins";
  EXPECT_EQ(dp->conntrack().Count().value(), 1u);
}

TEST_F(AttachTest, UninstallRemovesClassicFiltersOfItsEndpoints) {
  auto dp = Load(instance_);
  ASSERT_NE(dp, nullptr);
  auto guard = NetnsGuard::Enter(ns_.path);
  ASSERT_TRUE(guard.ok());
  auto filter = Attachment::AttachTc(dp->tc_ingress_fd(), ifindex_, TcHook::kIngress, TcAttachMode::kClassic);
  ASSERT_TRUE(filter.ok());
  filter->Release();  // left behind on purpose, as a crashed agent would
  auto cookie = NetnsCookie(ns_.path);
  ASSERT_TRUE(cookie.ok());
  ASSERT_TRUE(dp->endpoints().Update({.netns_cookie = *cookie, .ifindex = ifindex_}, endpoint_info{}).ok());
  dp.reset();
  ASSERT_NE(ClassicProgram(ifindex_, BPF_TC_INGRESS), 0u);
  ASSERT_TRUE(UninstallInstance(instance_).ok());
  EXPECT_EQ(ClassicProgram(ifindex_, BPF_TC_INGRESS), 0u);
}

// An older version pinned an XDP prefilter map this one no longer has: the
// next load adopts the rest and removes that pin.
TEST_F(AttachTest, LoadRemovesThePinOfTheRetiredPrefilterMap) {
  auto first = Load(instance_);
  ASSERT_NE(first, nullptr);
  first.reset();
  const std::string retired = absl::StrCat(STOCKADE_PIN_DIR, "/", instance_, "/prefilter");
  int map = bpf_map_create(BPF_MAP_TYPE_ARRAY, "prefilter", 4, 8, 1, nullptr);
  ASSERT_GE(map, 0);
  ASSERT_EQ(bpf_obj_pin(map, retired.c_str()), 0) << retired;
  close(map);
  auto dp = Load(instance_);
  ASSERT_NE(dp, nullptr);
  EXPECT_FALSE(std::filesystem::exists(retired));
  EXPECT_TRUE(std::filesystem::exists(absl::StrCat(STOCKADE_PIN_DIR, "/", instance_, "/", STOCKADE_MAP_IPCACHE)));
}

// An older version's metrics array had fewer drop reasons: a new version
// replaces it rather than failing to load over it.
TEST_F(AttachTest, LoadReplacesAMetricsPinOfAnotherSize) {
  auto first = Load(instance_);
  ASSERT_NE(first, nullptr);
  first.reset();
  const std::string pin = absl::StrCat(STOCKADE_PIN_DIR, "/", instance_, "/", STOCKADE_MAP_METRICS);
  ASSERT_EQ(unlink(pin.c_str()), 0) << pin;
  LIBBPF_OPTS(bpf_map_create_opts, opts);
  int older = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, STOCKADE_MAP_METRICS, 4, sizeof(metrics_value),
                             STOCKADE_METRICS_MAX - 5 * DIR_MAX * VERDICT_MAX, &opts);
  ASSERT_GE(older, 0);
  ASSERT_EQ(bpf_obj_pin(older, pin.c_str()), 0) << pin;
  close(older);
  auto dp = Load(instance_);
  ASSERT_NE(dp, nullptr);
  int now = bpf_obj_get(pin.c_str());
  ASSERT_GE(now, 0);
  bpf_map_info info{};
  uint32_t info_len = sizeof(info);
  ASSERT_EQ(bpf_map_get_info_by_fd(now, &info, &info_len), 0);
  close(now);
  EXPECT_EQ(info.max_entries, uint32_t{STOCKADE_METRICS_MAX});
}

TEST_F(AttachTest, BadInstanceNameIsRefused) {
  auto dp = Datapath::Load({.instance = "../escape"});
  ASSERT_FALSE(dp.ok());
  EXPECT_NE(dp.status().message().find("../escape"), std::string::npos);
}

}  // namespace
}  // namespace stockade::testing
