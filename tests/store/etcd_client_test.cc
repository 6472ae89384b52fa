// SPDX-License-Identifier: Apache-2.0
//
// The etcd client against a real etcd (Debian's etcd-server), one etcd per
// test on 127.0.0.1: keys by prefix, leases, watch order, compaction, a
// stopped etcd, and TLS with client certificates.
#include "stockade/store/etcd_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tests/store/etcd_test_env.h"
#include "tests/support/bpf_test_env.h"
#include "tests/support/tls_test_env.h"

namespace stockade {
namespace {

using ::stockade::testing::EtcdServerTls;
using ::stockade::testing::EtcdTestServer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Generous for one request to a local etcd; small enough that a hang fails fast.
constexpr absl::Duration kCommandTimeout = absl::Seconds(2);

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override { StartEtcd(nullptr); }

  // With CI=true an etcd that cannot start fails the test; elsewhere it skips.
  void StartEtcd(const EtcdServerTls* tls) {
    absl::StatusOr<std::unique_ptr<EtcdTestServer>> server = EtcdTestServer::Start(tls);
    if (!server.ok()) {
      if (::stockade::testing::RunningInCi()) FAIL() << "CI=true but etcd cannot start: " << server.status();
      GTEST_SKIP() << "etcd cannot start: " << server.status();
    }
    etcd_ = *std::move(server);
  }

  EtcdClient Client(EtcdClientOptions options = {}) {
    if (options.endpoints.empty()) options.endpoints = {etcd_->client_url()};
    options.command_timeout = kCommandTimeout;
    absl::StatusOr<EtcdClient> client = EtcdClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  std::unique_ptr<EtcdTestServer> etcd_;
};

std::vector<std::string> KeysOf(const EtcdRangeResult& range) {
  std::vector<std::string> keys;
  for (const EtcdKeyValue& kv : range.kvs) keys.push_back(kv.key);
  return keys;
}

TEST_F(EtcdClientTest, PutRangeAndDeleteByPrefix) {
  EtcdClient etcd = Client();
  ASSERT_TRUE(etcd.Put("/t/hosts/a/endpoints/10.0.0.2", "two").ok());
  ASSERT_TRUE(etcd.Put("/t/hosts/a/endpoints/10.0.0.1", "one").ok());
  ASSERT_TRUE(etcd.Put("/t/hosts/b/node", "").ok());
  absl::StatusOr<int64_t> last = etcd.Put("/t/hostsX", "outside the prefix");
  ASSERT_TRUE(last.ok()) << last.status();

  absl::StatusOr<EtcdRangeResult> range = etcd.RangePrefix("/t/hosts/");
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_THAT(KeysOf(*range),
              ElementsAre("/t/hosts/a/endpoints/10.0.0.1", "/t/hosts/a/endpoints/10.0.0.2", "/t/hosts/b/node"));
  EXPECT_EQ(range->kvs[0].value, "one");
  EXPECT_EQ(range->kvs[2].value, "");  // the gateway leaves an empty value out
  EXPECT_EQ(range->revision, *last);
  EXPECT_LT(range->kvs[1].create_revision, range->kvs[0].create_revision) << "10.0.0.2 was put first";

  absl::StatusOr<std::optional<EtcdKeyValue>> one = etcd.Get("/t/hosts/a/endpoints/10.0.0.1");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE(one->has_value());
  EXPECT_EQ((*one)->value, "one");
  EXPECT_EQ((*one)->version, 1);

  absl::StatusOr<int64_t> deleted = etcd.Delete("/t/hosts/b/node");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1);
  deleted = etcd.DeletePrefix("/t/hosts/");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  range = etcd.RangePrefix("/t/hosts/");
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_THAT(range->kvs, IsEmpty());
  absl::StatusOr<std::optional<EtcdKeyValue>> outside = etcd.Get("/t/hostsX");
  ASSERT_TRUE(outside.ok()) << outside.status();
  EXPECT_TRUE(outside->has_value()) << "a prefix delete reached beyond its prefix";
}

TEST_F(EtcdClientTest, BinaryKeysAndValuesSurviveBase64) {
  EtcdClient etcd = Client();
  const std::string key("/t/\x00\xff\x01", 6);
  const std::string value("\xff\xfe\x00 bytes", 9);
  ASSERT_TRUE(etcd.Put(key, value).ok());
  absl::StatusOr<std::optional<EtcdKeyValue>> got = etcd.Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->key, key);
  EXPECT_EQ((*got)->value, value);
}

TEST_F(EtcdClientTest, TxnCreatesOnlyWhenAbsent) {
  EtcdClient etcd = Client();
  const EtcdTxn create_if_absent{.compare = {{.key = "/t/owner", .target = EtcdCompare::Target::kVersion, .number = 0}},
                                 .success = {EtcdPut{.key = "/t/owner", .value = "first"}},
                                 .failure = {EtcdPut{.key = "/t/lost", .value = "second"}}};
  absl::StatusOr<EtcdTxnResult> first = etcd.Txn(create_if_absent);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->succeeded);
  absl::StatusOr<EtcdTxnResult> second = etcd.Txn(create_if_absent);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->succeeded);
  EXPECT_GT(second->revision, first->revision);
  absl::StatusOr<std::optional<EtcdKeyValue>> owner = etcd.Get("/t/owner");
  ASSERT_TRUE(owner.ok() && owner->has_value());
  EXPECT_EQ((*owner)->value, "first");
  absl::StatusOr<std::optional<EtcdKeyValue>> lost = etcd.Get("/t/lost");
  ASSERT_TRUE(lost.ok() && lost->has_value());
  EXPECT_EQ((*lost)->value, "second");
}

TEST_F(EtcdClientTest, RevokingALeaseDeletesItsKeys) {
  EtcdClient etcd = Client();
  absl::StatusOr<EtcdLease> lease = etcd.GrantLease(absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_NE(lease->id, 0);
  EXPECT_EQ(lease->ttl, absl::Seconds(30));
  ASSERT_TRUE(etcd.Put("/t/a/endpoints/10.0.0.1", "x", lease->id).ok());
  ASSERT_TRUE(etcd.Put("/t/a/complete", "y", lease->id).ok());
  ASSERT_TRUE(etcd.Put("/t/unleased", "z").ok());
  absl::StatusOr<std::optional<EtcdKeyValue>> leased = etcd.Get("/t/a/complete");
  ASSERT_TRUE(leased.ok() && leased->has_value());
  EXPECT_EQ((*leased)->lease, lease->id);

  ASSERT_TRUE(etcd.RevokeLease(lease->id).ok());
  absl::StatusOr<EtcdRangeResult> range = etcd.RangePrefix("/t/");
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_THAT(KeysOf(*range), ElementsAre("/t/unleased"));

  absl::StatusOr<absl::Duration> renewed = etcd.KeepAliveOnce(lease->id);
  EXPECT_EQ(renewed.status().code(), absl::StatusCode::kNotFound) << renewed.status();
  absl::Status again = etcd.RevokeLease(lease->id);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound) << again;
  EXPECT_THAT(again.message(), HasSubstr(absl::StrCat("etcd lease revoke ", lease->id, ": at ", etcd_->client_url())));
  EXPECT_THAT(again.message(), HasSubstr("lease not found"));
}

TEST_F(EtcdClientTest, KeepaliveKeepsKeysPastTheirTtlAndTheyGoWithoutIt) {
  EtcdClient etcd = Client();
  absl::StatusOr<EtcdLease> lease = etcd.GrantLease(absl::Seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status();
  const absl::Time granted = absl::Now();
  ASSERT_TRUE(etcd.Put("/t/kept", "x", lease->id).ok());
  for (int i = 0; i < 3; ++i) {
    absl::SleepFor(absl::Milliseconds(1000));
    absl::StatusOr<absl::Duration> ttl = etcd.KeepAliveOnce(lease->id);
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    EXPECT_EQ(*ttl, lease->ttl);
  }
  // 3 s after a grant of 2 s: only the keepalives kept the key.
  ASSERT_GT(absl::Now() - granted, absl::Seconds(3));
  absl::StatusOr<std::optional<EtcdKeyValue>> kept = etcd.Get("/t/kept");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_TRUE(kept->has_value());

  // Without keepalives it goes within the TTL (etcd checks expiry twice a second).
  const absl::Time last_keepalive = absl::Now();
  while (absl::Now() - last_keepalive < absl::Seconds(5)) {
    kept = etcd.Get("/t/kept");
    ASSERT_TRUE(kept.ok()) << kept.status();
    if (!kept->has_value()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_FALSE(kept->has_value()) << "the key outlived its lease";
  EXPECT_GT(absl::Now() - last_keepalive, absl::Seconds(1)) << "the key went before its TTL";
}

struct SeenEvent {
  EtcdWatchEvent::Type type;
  std::string key;
  std::string value;
  int64_t revision;
  bool operator==(const SeenEvent&) const = default;
};

TEST_F(EtcdClientTest, WatchFromARevisionSeesPutsAndDeletesInOrder) {
  EtcdClient etcd = Client();
  ASSERT_TRUE(etcd.Put("/w/before", "not seen").ok());
  absl::StatusOr<int64_t> r1 = etcd.Put("/w/a", "1");
  absl::StatusOr<int64_t> r2 = etcd.Put("/w/b", "2");
  ASSERT_TRUE(etcd.Delete("/w/a").ok());
  // A delete answers with its count; the revision it made is the store's now.
  absl::StatusOr<EtcdRangeResult> after_delete = etcd.RangePrefix("/w/");
  ASSERT_TRUE(after_delete.ok()) << after_delete.status();
  const int64_t r3 = after_delete->revision;
  ASSERT_TRUE(etcd.Put("/elsewhere", "not watched").ok());
  absl::StatusOr<int64_t> r4 = etcd.Put("/w/b", "2b");
  ASSERT_TRUE(r1.ok() && r2.ok() && r4.ok());

  std::vector<SeenEvent> seen;
  absl::Status ended = etcd.Watch({.key = "/w/", .start_revision = *r1}, [&](const EtcdWatchEvent& event) {
    seen.push_back({event.type, event.kv.key, event.kv.value, event.kv.mod_revision});
    return seen.size() == 4 ? absl::CancelledError("four seen") : absl::OkStatus();
  });
  EXPECT_EQ(ended, absl::CancelledError("four seen"));
  using Type = EtcdWatchEvent::Type;
  EXPECT_THAT(seen, ElementsAre(SeenEvent{Type::kPut, "/w/a", "1", *r1}, SeenEvent{Type::kPut, "/w/b", "2", *r2},
                                SeenEvent{Type::kDelete, "/w/a", "", r3}, SeenEvent{Type::kPut, "/w/b", "2b", *r4}));
}

TEST_F(EtcdClientTest, WatchDeliversLiveChangesUntilCancelled) {
  EtcdClient etcd = Client();
  absl::StatusOr<EtcdRangeResult> listing = etcd.RangePrefix("/live/");
  ASSERT_TRUE(listing.ok()) << listing.status();

  std::mutex mutex;
  std::vector<std::string> keys;
  absl::Notification two_seen;
  EtcdWatchCancel cancel;
  absl::Status ended;
  std::thread watcher([&] {
    ended = etcd.Watch(
        {.key = "/live/", .start_revision = listing->revision + 1},
        [&](const EtcdWatchEvent& event) {
          std::lock_guard<std::mutex> lock(mutex);
          keys.push_back(event.kv.key);
          if (keys.size() == 2) two_seen.Notify();
          return absl::OkStatus();
        },
        &cancel);
  });
  ASSERT_TRUE(etcd.Put("/live/1", "").ok());
  ASSERT_TRUE(etcd.Put("/live/2", "").ok());
  const bool seen = two_seen.WaitForNotificationWithTimeout(absl::Seconds(5));
  const absl::Time cancelled_at = absl::Now();
  cancel.Cancel();
  watcher.join();
  EXPECT_TRUE(seen) << "the watch did not deliver two puts within 5 s";
  EXPECT_LT(absl::Now() - cancelled_at, absl::Milliseconds(500)) << "Cancel() did not interrupt the wait";
  EXPECT_EQ(ended.code(), absl::StatusCode::kCancelled) << ended;
  EXPECT_THAT(keys, ElementsAre("/live/1", "/live/2"));
}

TEST_F(EtcdClientTest, WatchFromACompactedRevisionSaysCompacted) {
  EtcdClient etcd = Client();
  absl::StatusOr<int64_t> old_revision = etcd.Put("/c/k", "1");
  ASSERT_TRUE(old_revision.ok());
  absl::StatusOr<int64_t> newer = etcd.Put("/c/k", "2");
  ASSERT_TRUE(newer.ok());
  ASSERT_TRUE(etcd.Put("/c/k", "3").ok());
  ASSERT_TRUE(etcd.Compact(*newer).ok());

  int events = 0;
  absl::Status ended = etcd.Watch({.key = "/c/", .start_revision = *old_revision}, [&](const EtcdWatchEvent&) {
    ++events;
    return absl::OkStatus();
  });
  EXPECT_TRUE(IsEtcdCompacted(ended)) << ended;
  EXPECT_EQ(EtcdCompactRevision(ended), *newer) << ended;
  EXPECT_THAT(ended.message(), HasSubstr("list again"));
  EXPECT_EQ(events, 0);

  // From the compaction point on, the history is still there.
  ended = etcd.Watch({.key = "/c/", .start_revision = *newer + 1}, [&](const EtcdWatchEvent& event) {
    EXPECT_EQ(event.kv.value, "3");
    return absl::CancelledError("seen");
  });
  EXPECT_EQ(ended, absl::CancelledError("seen"));
  EXPECT_FALSE(IsEtcdCompacted(absl::OutOfRangeError("another out of range")));
}

TEST_F(EtcdClientTest, StoppedEtcdIsAClearErrorNotAHang) {
  EtcdClient etcd = Client();
  ASSERT_TRUE(etcd.Put("/s/k", "v").ok());

  absl::Status watch_ended;
  std::thread watcher(
      [&] { watch_ended = etcd.Watch({.key = "/s/"}, [&](const EtcdWatchEvent&) { return absl::OkStatus(); }); });
  absl::SleepFor(absl::Milliseconds(300));  // the watch is connected by then
  const absl::Time stopped_at = absl::Now();
  etcd_->Stop();
  watcher.join();
  EXPECT_LT(absl::Now() - stopped_at, absl::Seconds(5)) << "the watch hung after etcd stopped";
  EXPECT_EQ(watch_ended.code(), absl::StatusCode::kUnavailable) << watch_ended;
  EXPECT_THAT(watch_ended.message(), HasSubstr("etcd watch /s/"));

  const absl::Time before = absl::Now();
  absl::StatusOr<int64_t> put = etcd.Put("/s/k", "w");
  EXPECT_LT(absl::Now() - before, kCommandTimeout);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable) << put.status();
  EXPECT_THAT(put.status().message(), HasSubstr(absl::StrCat("etcd put /s/k: connect to ", etcd_->client_url())));
  EXPECT_THAT(put.status().message(), HasSubstr("Connection refused"));
}

TEST_F(EtcdClientTest, HungEtcdTimesOutWithinTheCommandTimeout) {
  EtcdClient etcd = Client();
  ASSERT_TRUE(etcd.Put("/h/k", "v").ok());
  etcd_->Freeze();
  const absl::Time before = absl::Now();
  absl::StatusOr<std::optional<EtcdKeyValue>> got = etcd.Get("/h/k");
  const absl::Duration took = absl::Now() - before;
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded) << got.status();
  EXPECT_THAT(got.status().message(),
              HasSubstr(absl::StrCat("etcd get /h/k: ", etcd_->client_url(), " did not answer in time")));
  EXPECT_GE(took, kCommandTimeout - absl::Milliseconds(100));
  EXPECT_LT(took, kCommandTimeout + absl::Seconds(1));
}

TEST_F(EtcdClientTest, SecondEndpointIsUsedWhenTheFirstIsDown) {
  absl::StatusOr<uint16_t> closed_port = ::stockade::testing::FreeLoopbackPort();
  ASSERT_TRUE(closed_port.ok());
  EtcdClient etcd = Client({.endpoints = {absl::StrCat("127.0.0.1:", *closed_port), etcd_->client_url()}});
  absl::StatusOr<int64_t> put = etcd.Put("/e/k", "v");
  EXPECT_TRUE(put.ok()) << put.status();
}

TEST(EtcdClientOptionsTest, BadOptionsAreRefusedAtCreate) {
  EXPECT_EQ(EtcdClient::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(EtcdClient::Create({.endpoints = {"unix:///x"}}).status().message(), HasSubstr("scheme 'unix'"));
  EXPECT_THAT(EtcdClient::Create({.endpoints = {"10.0.0.1"}}).status().message(), HasSubstr("expected host:port"));
  EXPECT_THAT(EtcdClient::Create({.endpoints = {"10.0.0.1:2379"}, .cert = "c.pem"}).status().message(),
              HasSubstr("--cert and --key go together"));
}

// TLS as etcd deployments run it: etcd with --client-cert-auth, certificates
// from one test CA (openssl, in the test's own directory).
class EtcdTlsTest : public EtcdClientTest {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/stockade-etcd-tls-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    absl::StatusOr<EtcdServerTls> tls = ::stockade::testing::MakeEtcdServerTls(dir_);
    ASSERT_TRUE(tls.ok()) << tls.status();
    tls_ = *std::move(tls);
    StartEtcd(&tls_);
  }
  void TearDown() override {
    etcd_.reset();
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

  std::string dir_;
  EtcdServerTls tls_;
};

TEST_F(EtcdTlsTest, ClientCertificatesWork) {
  EtcdClient etcd = Client({.cacert = tls_.ca, .cert = tls_.client.cert, .key = tls_.client.key});
  ASSERT_TRUE(absl::StartsWith(etcd_->client_url(), "https://"));
  ASSERT_TRUE(etcd.Put("/tls/k", "v").ok());
  absl::StatusOr<std::optional<EtcdKeyValue>> got = etcd.Get("/tls/k");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "v");
  // "127.0.0.1:port" with TLS files means https, as in etcdctl.
  EtcdClient bare = Client({.endpoints = {std::string(absl::StripPrefix(etcd_->client_url(), "https://"))},
                            .cacert = tls_.ca,
                            .cert = tls_.client.cert,
                            .key = tls_.client.key});
  EXPECT_TRUE(bare.Get("/tls/k").ok());
}

TEST_F(EtcdTlsTest, WithoutAClientCertificateEtcdRefuses) {
  EtcdClient etcd = Client({.cacert = tls_.ca});
  absl::StatusOr<int64_t> put = etcd.Put("/tls/k", "v");
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable) << put.status();
  EXPECT_THAT(put.status().message(), HasSubstr(absl::StrCat("etcd put /tls/k: ", etcd_->client_url())));
}

TEST_F(EtcdTlsTest, AKeyFileOthersCanReadIsRefused) {
  ASSERT_EQ(chmod(tls_.client.key.c_str(), 0644), 0);
  absl::StatusOr<EtcdClient> etcd = EtcdClient::Create(
      {.endpoints = {etcd_->client_url()}, .cacert = tls_.ca, .cert = tls_.client.cert, .key = tls_.client.key});
  ASSERT_FALSE(etcd.ok());
  EXPECT_EQ(etcd.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(etcd.status().message(), HasSubstr(absl::StrCat("TLS client key ", tls_.client.key, " has mode 0644")));
  for (const std::string& piece : ::stockade::testing::PemBodyPieces(tls_.client.key))
    EXPECT_THAT(etcd.status().message(), ::testing::Not(HasSubstr(piece))) << "key material in the message";
}

}  // namespace
}  // namespace stockade
