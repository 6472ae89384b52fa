// SPDX-License-Identifier: Apache-2.0
#include "tests/support/bpf_test_env.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "stockade/net/addresses.h"
#include "stockade/os/errno_status.h"
#include "stockade/datapath/event_reader.h"
#include "stockade/netns/netns.h"

namespace stockade::testing {

bool RunningInCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

std::string MissingPrivileges() {
  if (geteuid() != 0) return "needs root (CAP_BPF and CAP_NET_ADMIN)";
  if (access("/sys/fs/bpf", F_OK) != 0) return "no /sys/fs/bpf";
  return "";
}

absl::StatusOr<RunResult> RunProgram(int prog_fd, const std::vector<uint8_t>& frame, uint32_t repeat) {
  RunResult result;
  result.data_out.resize(frame.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = result.data_out.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()),
              .data_size_out = static_cast<uint32_t>(result.data_out.size()), .repeat = static_cast<int>(repeat));
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0)
    return ErrnoStatus(errno, absl::StrCat("BPF_PROG_TEST_RUN on a ", frame.size(), "-byte frame"));
  result.retval = static_cast<int>(opts.retval);
  result.data_out.resize(opts.data_size_out);
  result.duration_ns = opts.duration;
  return result;
}

endpoint_info MakeEndpointInfo(const EndpointSpec& spec) {
  endpoint_info info{};
  info.identity = spec.identity;
  info.flags = spec.flags;
  info.role = spec.role;
  info.policy_revision = spec.policy_revision;
  if (!spec.ipv4.empty()) info.ipv4 = ParseIpAddress(spec.ipv4).value().ipv4_network_order();
  if (!spec.ipv6.empty()) std::memcpy(info.ipv6, ParseIpAddress(spec.ipv6).value().bytes.data(), 16);
  if (!spec.ipv6_link_local.empty())
    std::memcpy(info.ipv6_link_local, ParseIpAddress(spec.ipv6_link_local).value().bytes.data(), 16);
  if (!spec.mac.empty()) {
    auto mac = ParseMac(spec.mac).value();
    std::memcpy(info.mac, mac.data(), 6);
  }
  return info;
}

std::unique_ptr<Datapath> DatapathTest::shared_;

void DatapathTest::SetUp() {
  STOCKADE_REQUIRE_PRIVILEGES();
  auto cookie = NetnsCookie("/proc/self/ns/net");
  ASSERT_TRUE(cookie.ok()) << cookie.status();
  netns_cookie_ = *cookie;
  if (!shared_) {
    // Production capacities preallocate ~100 MB of conntrack; tests need far less.
    auto dp = Datapath::Load({.conntrack_max = 16384, .events_ringbuf_bytes = 1u << 18});
    ASSERT_TRUE(dp.ok()) << dp.status();
    shared_ = std::move(*dp);
  }
  dp_ = shared_.get();
  ResetSharedState();
}

void DatapathTest::TearDown() { own_.reset(); }

void DatapathTest::TearDownTestSuite() { shared_.reset(); }

void DatapathTest::ResetSharedState() {
  ASSERT_TRUE(dp_->endpoints().Clear().ok());
  ASSERT_TRUE(dp_->ipcache().Clear().ok());
  ASSERT_TRUE(dp_->ClearPolicy().ok());
  ASSERT_TRUE(dp_->conntrack().Clear().ok());
  ASSERT_TRUE(dp_->fragments().Clear().ok());
  ASSERT_TRUE(dp_->denied_flows().Clear().ok());
  ASSERT_TRUE(dp_->event_agg().Clear().ok());
  ASSERT_TRUE(dp_->flow_seen().Zero(0).ok());
  stockade_config config{};
  config.event_interval_ns = STOCKADE_DEFAULT_EVENT_INTERVAL_NS;
  config.flags = STOCKADE_CONFIG_F_SET;
  ASSERT_TRUE(dp_->WriteConfig(config).ok());
  ASSERT_TRUE(dp_->ZeroCounters().ok());
  DrainEvents();
}

void DatapathTest::Reload(const DatapathOptions& options) {
  auto dp = Datapath::Load(options);
  ASSERT_TRUE(dp.ok()) << dp.status();
  own_ = std::move(*dp);
  dp_ = own_.get();
}

void DatapathTest::SetEndpoint(const EndpointSpec& spec) {
  endpoint_key key{};
  key.netns_cookie = netns_cookie_;
  key.ifindex = kTestRunIfindex;
  ASSERT_TRUE(dp_->endpoints().Update(key, MakeEndpointInfo(spec)).ok());
}

void DatapathTest::SetIdentity(const std::string& cidr, uint32_t identity) {
  auto prefix = ParseIpPrefix(cidr);
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  ipcache_value value{identity, 0};
  ASSERT_TRUE(dp_->ipcache().Update(prefix->ToIpcacheKey(), value).ok());
}

void DatapathTest::SetRules(const std::vector<DatapathRule>& rules) {
  auto entries = CompilePolicyEntries(rules);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_TRUE(dp_->ClearPolicy().ok());
  for (const PolicyEntry& e : *entries) ASSERT_TRUE(dp_->WritePolicy(e.key, e.value).ok());
}

int DatapathTest::Run(Hook hook, const std::vector<uint8_t>& frame) {
  int fd = hook == Hook::kTcIngress ? dp_->tc_ingress_fd() : hook == Hook::kTcEgress ? dp_->tc_egress_fd() : dp_->xdp_fd();
  auto result = RunProgram(fd, frame);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->retval : -1000;
}

bool DatapathTest::Passes(Hook hook, const std::vector<uint8_t>& frame) {
  int retval = Run(hook, frame);
  if (hook == Hook::kXdp) return retval == XDP_PASS;
  return retval == TC_ACT_UNSPEC;
}

std::vector<drop_event> DatapathTest::DrainEvents() {
  std::vector<drop_event> events;
  auto reader = EventReader::Open(dp_->events_fd(), [&](const drop_event& e) { events.push_back(e); });
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (reader.ok()) {
    EXPECT_TRUE((*reader)->Drain().ok());
  }
  return events;
}

uint64_t DatapathTest::Count(int reason, uint8_t direction, uint8_t verdict) {
  auto v = dp_->Counter(reason, direction, verdict);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? v->packets : 0;
}

}  // namespace stockade::testing
