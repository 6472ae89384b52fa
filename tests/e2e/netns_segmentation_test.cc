// SPDX-License-Identifier: Apache-2.0
//
// End to end: the segmentation lab (testlib/lab/segmentation_lab.h), with
// real TCP, UDP and ICMP between namespaces standing in for containers and
// the datapath attached as the agent would attach it. Each test builds its
// own lab and the lab removes everything when the test ends, passed or not.
//
// A probe expected to be answered gets a generous timeout, which costs
// nothing since the answer comes within a millisecond. A probe expected to be
// dropped waits only kSilenceTimeout: the drop happens at once, so a longer
// wait could not turn silence into an answer.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "maps/abi.h"
#include "stockade/net/addresses.h"
#include "stockade/datapath/event_reader.h"
#include "stockade/netns/netns.h"
#include "testlib/lab/segmentation_lab.h"
#include "tests/support/bpf_test_env.h"

namespace stockade::lab {
namespace {

constexpr std::chrono::milliseconds kAnswerTimeout{2000};
constexpr std::chrono::milliseconds kSilenceTimeout{150};
// Above the 1500-byte MTU of the veths: the sender fragments it.
constexpr size_t kFragmentedDatagramBytes = 3000;

constexpr auto kTcp = ProbeProtocol::kTcp;
constexpr auto kUdp = ProbeProtocol::kUdp;
constexpr auto kPing = ProbeProtocol::kIcmpEcho;

// Where a dropped probe must be reported, and how.
struct ExpectedDrop {
  const Tier* at;     // whose endpoint dropped it
  uint8_t direction;  // from that endpoint's point of view
  uint32_t rule_id;
  int reason = DROP_POLICY_DENIED;
};

class SegmentationTest : public ::testing::Test {
 protected:
  void StartLab(const SegmentationLabOptions& options) {
    STOCKADE_REQUIRE_PRIVILEGES();
    absl::StatusOr<std::unique_ptr<SegmentationLab>> lab =
        SegmentationLab::Create(options);
    ASSERT_TRUE(lab.ok()) << lab.status();
    lab_ = *std::move(lab);
  }

  // Runs a probe that must be answered, and must leave no drop behind: its
  // only records are the new flows it opened (VERDICT_FORWARDED).
  void ExpectAnswered(const Probe& probe, ProbeOptions options = {}) {
    options.timeout = kAnswerTimeout;
    absl::StatusOr<ProbeResult> result = lab_->Run(probe, options);
    ASSERT_TRUE(result.ok()) << Describe(probe) << ": " << result.status();
    const std::vector<drop_event> events = Events();
    EXPECT_TRUE(result->answered())
        << Describe(probe) << ": " << result->detail << "; drops:\n"
        << FormatEvents(events);
    for (const drop_event& event : events) {
      if (!EventIsFor(event, probe)) continue;
      EXPECT_EQ(event.verdict, VERDICT_FORWARDED)
          << Describe(probe)
          << " was answered but also dropped: " << FormatDropEvent(event);
    }
  }

  static std::string FormatEvents(const std::vector<drop_event>& events) {
    std::string text;
    for (const drop_event& event : events) {
      absl::StrAppend(&text, "  ", FormatDropEvent(event), "\n");
    }
    return text;
  }

  // Runs a probe that must go unanswered: nothing comes back, not even a
  // refusal.
  void ExpectSilence(const Probe& probe, ProbeOptions options = {}) {
    options.timeout = kSilenceTimeout;
    absl::StatusOr<ProbeResult> result = lab_->Run(probe, options);
    ASSERT_TRUE(result.ok()) << Describe(probe) << ": " << result.status();
    EXPECT_EQ(result->outcome, ProbeOutcome::kTimedOut)
        << Describe(probe) << ": " << result->detail;
  }

  // Runs a probe that must be dropped as `drop` says, and checks the event.
  void ExpectDropped(const Probe& probe, const ExpectedDrop& drop,
                     ProbeOptions options = {}) {
    ExpectSilence(probe, options);
    std::optional<drop_event> event = EventFor(probe);
    ASSERT_TRUE(event.has_value()) << Describe(probe) << ": no drop event";
    const Tier* remote = drop.at == probe.from ? probe.to : probe.from;
    EXPECT_EQ(event->reason, drop.reason) << FormatDropEvent(*event);
    EXPECT_EQ(event->verdict, VERDICT_DROPPED) << FormatDropEvent(*event);
    EXPECT_EQ(event->direction, drop.direction) << FormatDropEvent(*event);
    EXPECT_EQ(event->rule_id, drop.rule_id) << FormatDropEvent(*event);
    EXPECT_EQ(event->ifindex, drop.at->endpoint.ifindex)
        << FormatDropEvent(*event);
    EXPECT_EQ(event->local_identity, drop.at->identity)
        << FormatDropEvent(*event);
    EXPECT_EQ(event->remote_identity, remote->identity)
        << FormatDropEvent(*event);
  }

  // Drop events since the last call.
  std::vector<drop_event> Events() {
    absl::StatusOr<std::vector<drop_event>> events = lab_->DrainEvents();
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? *events : std::vector<drop_event>{};
  }

  // The probe's drop (or audit) record; the hops that let it through
  // reported it as a new flow, which is not what is asked.
  std::optional<drop_event> EventFor(const Probe& probe) {
    for (const drop_event& event : Events()) {
      if (EventIsFor(event, probe) && event.verdict != VERDICT_FORWARDED) return event;
    }
    return std::nullopt;
  }

  uint64_t Count(int reason, uint8_t direction) {
    absl::StatusOr<metrics_value> value =
        lab_->datapath().Counter(reason, direction, VERDICT_DROPPED);
    EXPECT_TRUE(value.ok()) << value.status();
    return value.ok() ? value->packets : 0;
  }

  // Entries the datapath made for fragmented datagrams from `from` to `to`.
  size_t FragmentEntries(const Tier& from, const Tier& to, IpFamily family) {
    const IpAddress source = ParseIpAddress(from.address(family)).value();
    const IpAddress destination = ParseIpAddress(to.address(family)).value();
    size_t entries = 0;
    absl::Status s = lab_->datapath().fragments().ForEach(
        [&](const frag_key& key, const frag_value&) {
          if (key.protocol == IPPROTO_UDP &&
              std::memcmp(key.saddr, source.bytes.data(), 16) == 0 &&
              std::memcmp(key.daddr, destination.bytes.data(), 16) == 0) {
            ++entries;
          }
        });
    EXPECT_TRUE(s.ok()) << s;
    return entries;
  }

  std::unique_ptr<SegmentationLab> lab_;
};

// ---------------------------------------------------------------------------
// The chain, under each way of attaching.

struct AttachVariant {
  const char* name;
  TcAttachMode tc_mode;
  bool xdp_on_host_veths;
  // What `bpftool net show` lists on a hooked interface.
  const char* ingress_hook;
  const char* egress_hook;

  std::set<std::string> hooks() const { return {ingress_hook, egress_hook}; }
};

void PrintTo(const AttachVariant& variant, std::ostream* os) {
  *os << variant.name;
}

constexpr AttachVariant kTcx = {"Tcx", TcAttachMode::kTcx, false, "tcx/ingress",
                                "tcx/egress"};
constexpr AttachVariant kClassicTc = {"ClassicTc", TcAttachMode::kClassic,
                                      false, "clsact/ingress", "clsact/egress"};
constexpr AttachVariant kXdpIngress = {"XdpInPlaceOfTcIngress",
                                       TcAttachMode::kTcx, true, "xdp/generic",
                                       "tcx/egress"};

// The hooks with a program on `link`, as bpftool lists them: "tcx/ingress",
// "clsact/egress", "xdp/generic".
std::set<std::string> AttachedHooks(const TopologyLink& link) {
  absl::StatusOr<std::string> out = RunCommand(
      {"bpftool", "-j", "net", "show", "dev", link.ifname}, link.netns.path);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return {};
  std::set<std::string> hooks;
  for (const nlohmann::json& netns : nlohmann::json::parse(*out)) {
    for (const nlohmann::json& xdp : netns.value("xdp", nlohmann::json())) {
      hooks.insert("xdp/" + xdp.value("mode", std::string()));
    }
    for (const nlohmann::json& tc : netns.value("tc", nlohmann::json())) {
      hooks.insert(tc.value("kind", std::string()));
    }
  }
  return hooks;
}

struct ChainParam {
  AttachVariant variant;
  IpFamily family;
};

std::string ChainParamName(const ChainParam& param) {
  return absl::StrCat(param.variant.name, "_",
                      param.family == IpFamily::kIpv4 ? "Ipv4" : "Ipv6");
}

void PrintTo(const ChainParam& param, std::ostream* os) {
  *os << ChainParamName(param);
}

class ChainTest : public SegmentationTest,
                  public ::testing::WithParamInterface<ChainParam> {
 protected:
  void SetUp() override {
    StartLab({.tc_mode = GetParam().variant.tc_mode,
              .xdp_on_host_veths = GetParam().variant.xdp_on_host_veths});
  }
};

TEST_P(ChainTest, EachHopIsAllowedAndEverythingElseIsDropped) {
  const IpFamily f = GetParam().family;
  const Tier *frontend = &lab_->frontend(), *web = &lab_->web(),
             *backend = &lab_->backend(), *db = &lab_->db();
  // The programs sit where the variant says, so each variant tests its path.
  for (const Tier* tier : lab_->chain()) {
    EXPECT_EQ(AttachedHooks(*tier->hook), GetParam().variant.hooks())
        << tier->hook->ifname;
  }

  // Each hop on its port, and DNS and ping along it. Every one of these is a
  // connection or exchange whose reverse direction has no rule: the answers
  // pass by conntrack.
  for (const Probe& probe : std::vector<Probe>{
           {frontend, web, kTcp, 80, f},
           {web, backend, kTcp, 8080, f},
           {backend, db, kTcp, 5432, f},
           {frontend, web, kUdp, kDnsPort, f},
           {web, backend, kUdp, kDnsPort, f},
           {backend, db, kUdp, kDnsPort, f},
           {frontend, web, kPing, 0, f},
           {web, backend, kPing, 0, f},
           {backend, db, kPing, 0, f},
       }) {
    ExpectAnswered(probe);
  }

  const uint8_t out = DIR_EGRESS;
  struct Denied {
    Probe probe;
    ExpectedDrop drop;
  };
  for (const Denied& row : std::vector<Denied>{
           // Skipping a tier: the explicit denies, whatever the protocol.
           {{frontend, backend, kTcp, 8080, f}, {frontend, out, 91}},
           {{frontend, db, kTcp, 5432, f}, {frontend, out, 92}},
           {{web, db, kTcp, 5432, f}, {web, out, 93}},
           {{frontend, backend, kUdp, kDnsPort, f}, {frontend, out, 91}},
           {{frontend, db, kPing, 0, f}, {frontend, out, 92}},
           {{web, db, kPing, 0, f}, {web, out, 93}},
           // Backwards along a hop: default deny.
           {{web, frontend, kTcp, 80, f}, {web, out, 0}},
           {{backend, web, kTcp, 8080, f}, {backend, out, 0}},
           {{db, backend, kTcp, 5432, f}, {db, out, 0}},
           {{db, backend, kUdp, kDnsPort, f}, {db, out, 0}},
           {{web, frontend, kPing, 0, f}, {web, out, 0}},
           // The right peer, the wrong port or protocol.
           {{frontend, web, kTcp, 8080, f}, {frontend, out, 0}},
           {{web, backend, kUdp, 8080, f}, {web, out, 0}},
           {{backend, db, kTcp, 80, f}, {backend, out, 0}},
       }) {
    ExpectDropped(row.probe, row.drop);
  }
}

std::vector<ChainParam> ChainParams() {
  std::vector<ChainParam> params;
  for (const AttachVariant& variant : {kTcx, kClassicTc, kXdpIngress}) {
    for (IpFamily family : {IpFamily::kIpv4, IpFamily::kIpv6}) {
      params.push_back({variant, family});
    }
  }
  return params;
}

INSTANTIATE_TEST_SUITE_P(AttachModes, ChainTest,
                         ::testing::ValuesIn(ChainParams()),
                         [](const ::testing::TestParamInfo<ChainParam>& info) {
                           return ChainParamName(info.param);
                         });

// ---------------------------------------------------------------------------
// Single behaviours, on the default attachment.

class DefaultLabTest : public SegmentationTest {
 protected:
  void SetUp() override { StartLab({}); }
};

TEST_F(DefaultLabTest, SpoofedSourceAddressIsDropped) {
  const Tier& web = lab_->web();
  const Tier& backend = lab_->backend();
  // The extra IPv6 address is deprecated (preferred_lft 0): a socket can
  // still bind to it, but the kernel never picks it as a source on its own,
  // which it would otherwise do for the newest address of the prefix. An
  // extra IPv4 address is a secondary one, never picked either.
  const struct {
    IpFamily family;
    const char* spoofed;
    std::vector<std::string> add_address;
  } cases[] = {
      {IpFamily::kIpv4,
       "10.77.0.99",
       {"ip", "addr", "add", "10.77.0.99/24", "dev", "eth0"}},
      {IpFamily::kIpv6,
       "fd00:77::99",
       {"ip", "addr", "add", "fd00:77::99/64", "dev", "eth0", "nodad",
        "preferred_lft", "0"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.spoofed);
    const Probe probe = {&web, &backend, kTcp, 8080, c.family};
    // Resolve the neighbour with web's own address first; otherwise the
    // ARP/ND for the spoofed connection, which carries the spoofed address
    // too, would be what gets dropped.
    ExpectAnswered(probe);
    absl::StatusOr<std::string> added =
        lab_->topology().Run(web.netns, c.add_address);
    ASSERT_TRUE(added.ok()) << added.status();
    const uint64_t before = Count(DROP_SPOOFED_SOURCE, DIR_EGRESS);

    ExpectSilence(probe, {.source_address = c.spoofed});

    EXPECT_GT(Count(DROP_SPOOFED_SOURCE, DIR_EGRESS), before);
    const IpAddress spoofed = ParseIpAddress(c.spoofed).value();
    bool reported = false;
    for (const drop_event& event : Events()) {
      if (event.reason != DROP_SPOOFED_SOURCE) continue;
      reported = true;
      EXPECT_EQ(event.protocol, IPPROTO_TCP) << FormatDropEvent(event);
      EXPECT_EQ(std::memcmp(event.saddr, spoofed.bytes.data(), 16), 0)
          << FormatDropEvent(event);
      EXPECT_EQ(event.ifindex, web.endpoint.ifindex) << FormatDropEvent(event);
      EXPECT_EQ(event.local_identity, web.identity) << FormatDropEvent(event);
      EXPECT_EQ(event.direction, DIR_EGRESS) << FormatDropEvent(event);
    }
    EXPECT_TRUE(reported) << "no SPOOFED_SOURCE event";
    // Web's own address still works.
    ExpectAnswered(probe);
  }
}

TEST_F(DefaultLabTest, FragmentedDatagramsArriveWholeOrNotAtAll) {
  const Tier& frontend = lab_->frontend();
  const Tier& web = lab_->web();
  const Tier& backend = lab_->backend();
  for (IpFamily family : {IpFamily::kIpv4, IpFamily::kIpv6}) {
    SCOPED_TRACE(family == IpFamily::kIpv4 ? "IPv4" : "IPv6");
    // The probe checks that the request and the echoed answer arrive byte
    // for byte; the fragments map shows the datapath saw them as fragments.
    ExpectAnswered({&web, &backend, kUdp, kDnsPort, family},
                   {.payload_bytes = kFragmentedDatagramBytes});
    EXPECT_GE(FragmentEntries(web, backend, family), 1u) << "request";
    EXPECT_GE(FragmentEntries(backend, web, family), 1u) << "answer";

    const Probe skip = {&frontend, &backend, kUdp, kDnsPort, family};
    ExpectDropped(skip, {&frontend, DIR_EGRESS, 91},
                  {.payload_bytes = kFragmentedDatagramBytes});
    EXPECT_GE(FragmentEntries(frontend, backend, family), 1u);
  }
}

TEST_F(DefaultLabTest, ReceiverEnforcesIngressWhenTheSenderIsNotEnforced) {
  // Frontend's own egress is no longer enforced (a workload stockade does
  // not manage, say): its shortcut to backend leaves, and backend, which
  // accepts tcp/8080 only from web, drops it on arrival.
  ASSERT_TRUE(
      lab_->SetEndpointFlags(lab_->frontend(), ENDPOINT_F_ENFORCE_INGRESS)
          .ok());
  const IpFamily f = IpFamily::kIpv4;
  ExpectDropped({&lab_->frontend(), &lab_->backend(), kTcp, 8080, f},
                {&lab_->backend(), DIR_INGRESS, 0});
  ExpectAnswered({&lab_->frontend(), &lab_->web(), kTcp, 80, f});
}

TEST_F(DefaultLabTest, ConntrackRemembersTheAnsweredConnection) {
  const Probe probe = {&lab_->frontend(), &lab_->web(), kTcp, 80,
                       IpFamily::kIpv4};
  ExpectAnswered(probe);
  // One entry at each end's hook, made by the first packet under the hop's
  // rules (11 out of frontend, 12 into web), with the answer seen.
  for (const auto& [tier, rule_id] :
       {std::pair{&lab_->frontend(), 11u}, std::pair{&lab_->web(), 12u}}) {
    int entries = 0;
    absl::Status s = lab_->datapath().conntrack().ForEach(
        [&](const ct_key& key, const ct_entry& entry) {
          if (key.ifindex != tier->endpoint.ifindex ||
              key.protocol != IPPROTO_TCP) {
            return;
          }
          ++entries;
          EXPECT_EQ(entry.rule_id, rule_id);
          EXPECT_TRUE(entry.flags & CT_F_SEEN_REPLY);
        });
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(entries, 1) << tier->name;
  }
}

// ---------------------------------------------------------------------------
// Macvlan siblings, enforced from inside one of them.

// The lab puts XDP only on host-side veths: inside the container both
// directions are TC, attached either way.
class MacvlanTest : public SegmentationTest,
                    public ::testing::WithParamInterface<AttachVariant> {
 protected:
  void SetUp() override {
    StartLab({.tc_mode = GetParam().tc_mode, .macvlan_siblings = true});
  }
};

TEST_P(MacvlanTest, SiblingsAreSegmentedInsideTheContainer) {
  const Tier& web = *lab_->web_macvlan();
  const Tier& backend = *lab_->backend_macvlan();
  // The endpoint is the macvlan in web's own namespace.
  ASSERT_TRUE(web.hook.has_value());
  EXPECT_EQ(web.hook->netns, web.netns);
  absl::StatusOr<uint64_t> cookie = NetnsCookie(web.netns.path);
  absl::StatusOr<uint32_t> ifindex = IfIndexInNetns(web.netns.path, "eth0");
  ASSERT_TRUE(cookie.ok() && ifindex.ok());
  EXPECT_EQ(web.endpoint.netns_cookie, *cookie);
  EXPECT_EQ(web.endpoint.ifindex, *ifindex);
  EXPECT_FALSE(backend.hook.has_value());
  EXPECT_EQ(AttachedHooks(*web.hook), GetParam().hooks());

  for (IpFamily f : {IpFamily::kIpv4, IpFamily::kIpv6}) {
    SCOPED_TRACE(f == IpFamily::kIpv4 ? "IPv4" : "IPv6");
    ExpectAnswered({&web, &backend, kTcp, 8080, f});
    ExpectAnswered({&web, &backend, kPing, 0, f});
    ExpectDropped({&web, &backend, kTcp, 5432, f}, {&web, DIR_EGRESS, 0});
    // Web takes tcp/80 and ping only from frontend.
    ExpectDropped({&backend, &web, kTcp, 80, f}, {&web, DIR_INGRESS, 0});
    ExpectDropped({&backend, &web, kPing, 0, f}, {&web, DIR_INGRESS, 0});
  }
}

INSTANTIATE_TEST_SUITE_P(
    AttachModes, MacvlanTest, ::testing::Values(kTcx, kClassicTc),
    [](const ::testing::TestParamInfo<AttachVariant>& info) {
      return std::string(info.param.name);
    });

// ---------------------------------------------------------------------------
// Pins and cleanup.

TEST(SegmentationLabLifecycleTest, PinnedLabEnforcesAndLeavesNothingBehind) {
  STOCKADE_REQUIRE_PRIVILEGES();
  std::string prefix, pin_dir;
  std::vector<std::string> namespace_paths;
  {
    absl::StatusOr<std::unique_ptr<SegmentationLab>> lab =
        SegmentationLab::Create({.pin_maps = true});
    ASSERT_TRUE(lab.ok()) << lab.status();
    prefix = (*lab)->topology().prefix();
    pin_dir = InstancePinDir((*lab)->instance());
    EXPECT_TRUE(std::filesystem::exists(pin_dir + "/" STOCKADE_MAP_ENDPOINTS));
    absl::StatusOr<EndpointMap> pinned =
        EndpointMap::FromPin(pin_dir + "/" STOCKADE_MAP_ENDPOINTS);
    ASSERT_TRUE(pinned.ok()) << pinned.status();
    EXPECT_EQ(pinned->Count().value_or(0), 4u);

    absl::StatusOr<ProbeResult> allowed = (*lab)->Run(
        {&(*lab)->frontend(), &(*lab)->web(), kTcp, 80, IpFamily::kIpv4},
        {.timeout = kAnswerTimeout});
    ASSERT_TRUE(allowed.ok()) << allowed.status();
    EXPECT_TRUE(allowed->answered()) << allowed->detail;
    absl::StatusOr<ProbeResult> denied = (*lab)->Run(
        {&(*lab)->frontend(), &(*lab)->db(), kTcp, 5432, IpFamily::kIpv4},
        {.timeout = kSilenceTimeout});
    ASSERT_TRUE(denied.ok()) << denied.status();
    EXPECT_FALSE(denied->answered()) << denied->detail;

    namespace_paths.push_back((*lab)->switch_netns().path);
    for (const Tier* tier : (*lab)->chain()) {
      namespace_paths.push_back(tier->netns.path);
    }
  }
  EXPECT_FALSE(std::filesystem::exists(pin_dir)) << pin_dir;
  for (const std::string& path : namespace_paths) {
    EXPECT_FALSE(std::filesystem::exists(path)) << path;
  }
  absl::StatusOr<std::string> netns_list = RunCommand({"ip", "netns", "list"});
  ASSERT_TRUE(netns_list.ok()) << netns_list.status();
  EXPECT_EQ(netns_list->find(prefix), std::string::npos) << *netns_list;
}

}  // namespace
}  // namespace stockade::lab
