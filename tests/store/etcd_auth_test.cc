// SPDX-License-Identifier: Apache-2.0
//
// etcd's own auth per host (docs/multihost.md, "etcd's auth, per host"),
// against a real etcd set up by scripts/etcd-auth-setup.sh: each host's user
// writes its own subtree and reads all hosts, and nothing of another host's;
// a token etcd dropped is replaced without the caller seeing it; a password
// file others may read is refused, and no message carries the password.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "stockade/store/endpoint_record.h"
#include "stockade/store/etcd_client.h"
#include "tests/store/etcd_test_env.h"
#include "tests/support/bpf_test_env.h"
#include "tests/support/tls_test_env.h"

namespace stockade {
namespace {

using ::stockade::testing::EtcdServerTls;
using ::stockade::testing::EtcdTestServer;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kCommandTimeout = absl::Seconds(2);
constexpr char kRootPassword[] = "root-secret-7Qx";
constexpr char kHostAPassword[] = "host-a-secret-9Zr";
constexpr char kHostBPassword[] = "host-b-secret-4Kw";

RemoteEndpoint Endpoint(const std::string& host, const std::string& address) {
  absl::StatusOr<IpAddress> ip = ParseIpAddress(address);
  EXPECT_TRUE(ip.ok()) << ip.status();
  return RemoteEndpoint{.address = *ip, .labels = {{"app", "web"}}, .host = host, .container_name = "web"};
}

class EtcdAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/stockade-etcd-auth-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    StartEtcd(nullptr, EtcdFlags());
    if (etcd_ == nullptr) return;  // skipped
    root_password_ = WriteSecret("root.password", kRootPassword);
    a_password_ = WriteSecret("a.password", kHostAPassword);
    b_password_ = WriteSecret("b.password", kHostBPassword);
    RunSetup({});
  }
  void TearDown() override {
    etcd_.reset();
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

  virtual std::vector<std::string> EtcdFlags() const { return {}; }

  void StartEtcd(const EtcdServerTls* tls, const std::vector<std::string>& flags) {
    absl::StatusOr<std::unique_ptr<EtcdTestServer>> server = EtcdTestServer::Start(tls, {.extra_flags = flags});
    if (!server.ok()) {
      if (::stockade::testing::RunningInCi()) FAIL() << "CI=true but etcd cannot start: " << server.status();
      GTEST_SKIP() << "etcd cannot start: " << server.status();
    }
    etcd_ = *std::move(server);
  }

  std::string WriteSecret(const std::string& name, const std::string& secret) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << secret << "\n";
    EXPECT_EQ(chmod(path.c_str(), 0600), 0);
    return path;
  }

  // scripts/etcd-auth-setup.sh for hosts "a" and "b", as an operator runs it.
  void RunSetup(const std::vector<std::string>& tls_flags) {
    std::string command =
        absl::StrCat(STOCKADE_SOURCE_DIR, "/scripts/etcd-auth-setup.sh --endpoint ", etcd_->client_url(),
                     " --root-password-file ", root_password_, " --host a:", a_password_, " --host b:", b_password_);
    for (const std::string& flag : tls_flags) absl::StrAppend(&command, " ", flag);
    const std::string log = absl::StrCat(dir_, "/setup.log");
    const int rc = std::system(absl::StrCat(command, " >", log, " 2>&1").c_str());
    std::stringstream output;
    output << std::ifstream(log).rdbuf();
    ASSERT_EQ(rc, 0) << command << "\n" << output.str();
    EXPECT_THAT(output.str(), Not(HasSubstr(kRootPassword)));
  }

  EtcdClient Client(EtcdClientOptions options) {
    options.endpoints = {etcd_->client_url()};
    options.command_timeout = kCommandTimeout;
    absl::StatusOr<EtcdClient> client = EtcdClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }
  EtcdClient HostA() { return Client({.user = "stockade-a", .password_file = a_password_}); }
  EtcdClient HostB() { return Client({.user = "stockade-b", .password_file = b_password_}); }

  // A host's publication, as the agent will make it: endpoints, node and
  // complete, all under one lease of the host's.
  int64_t Publish(const EtcdClient& etcd, const std::string& host, const std::string& address) {
    absl::StatusOr<EtcdLease> lease = etcd.GrantLease(absl::Seconds(30));
    EXPECT_TRUE(lease.ok()) << lease.status();
    if (!lease.ok()) return 0;
    absl::StatusOr<IpAddress> node = ParseIpAddress("192.168.0.1");
    for (const StoreRecord& record : std::vector<StoreRecord>{
             Endpoint(host, address), NodeRecord{.host = host, .addresses = {*node}}, CompleteMarker{.host = host}}) {
      absl::StatusOr<int64_t> put = etcd.Put(StoreKeyOf(record), EncodeStoreRecord(record), lease->id);
      EXPECT_TRUE(put.ok()) << put.status();
    }
    return lease->id;
  }

  std::string dir_;
  std::string root_password_, a_password_, b_password_;
  std::unique_ptr<EtcdTestServer> etcd_;
};

TEST_F(EtcdAuthTest, AHostWritesItsOwnSubtreeAndReadsEveryHost) {
  EtcdClient a = HostA();
  EtcdClient b = HostB();
  Publish(a, "a", "10.0.1.5");
  Publish(b, "b", "10.0.2.5");

  for (const EtcdClient* reader : {&a, &b}) {
    absl::StatusOr<EtcdRangeResult> all = reader->RangePrefix(kStoreHostsPrefix);
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(all->kvs.size(), 6u);  // two hosts: endpoint, node, complete
  }
  EXPECT_EQ(a.authentications(), 1u);  // one token served every call

  // The watch of every host, as a reader follows the others.
  EtcdWatchCancel cancel;
  absl::Notification seen;
  std::string seen_key;
  std::thread watcher([&] {
    absl::Status ended = a.Watch(
        {.key = std::string(kStoreHostsPrefix)},
        [&](const EtcdWatchEvent& event) {
          seen_key = event.kv.key;
          seen.Notify();
          return absl::OkStatus();
        },
        &cancel);
    EXPECT_EQ(ended.code(), absl::StatusCode::kCancelled) << ended;
  });
  // The watch may start after this put: put until it is seen, boundedly.
  const RemoteEndpoint later = Endpoint("b", "10.0.2.6");
  for (int i = 0; i < 50 && !seen.HasBeenNotified(); ++i) {
    ASSERT_TRUE(b.Put(StoreKeyOf(later), EncodeStoreRecord(later)).ok());
    seen.WaitForNotificationWithTimeout(absl::Milliseconds(100));
  }
  cancel.Cancel();
  watcher.join();
  ASSERT_TRUE(seen.HasBeenNotified());
  EXPECT_EQ(seen_key, StoreKeyOf(later));
}

TEST_F(EtcdAuthTest, AnotherHostsKeysCannotBeWrittenOrDeleted) {
  EtcdClient a = HostA();
  EtcdClient b = HostB();
  const int64_t b_lease = Publish(b, "b", "10.0.2.5");
  const RemoteEndpoint forged = Endpoint("b", "10.0.2.9");

  auto expect_refused = [](const absl::Status& status, const std::string& call) {
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
    EXPECT_THAT(status.message(), HasSubstr(call));
    EXPECT_THAT(status.message(), HasSubstr("etcdserver: permission denied (as etcd user stockade-a)"));
    EXPECT_THAT(status.message(), Not(HasSubstr(kHostAPassword)));
  };
  expect_refused(a.Put(StoreKeyOf(forged), EncodeStoreRecord(forged)).status(),
                 absl::StrCat("etcd put ", StoreKeyOf(forged)));
  expect_refused(a.Delete(NodeKey("b")).status(), absl::StrCat("etcd delete ", NodeKey("b")));
  expect_refused(a.DeletePrefix(HostKeyPrefix("b")).status(), "etcd delete prefix /stockade/v1/hosts/b/");
  expect_refused(a.DeletePrefix(kStoreHostsPrefix).status(), "etcd delete prefix /stockade/v1/hosts/");
  // Revoking a lease deletes its keys: refused for keys of another host.
  expect_refused(a.RevokeLease(b_lease), absl::StrCat("etcd lease revoke ", b_lease));
  expect_refused(a.Txn({.success = {EtcdDelete{.key = CompleteKey("b")}}}).status(), "etcd txn");
  // "a" is no prefix of "ab": the role's range ends at "/stockade/v1/hosts/a0".
  expect_refused(a.Put(NodeKey("ab"), "{}").status(), "etcd put /stockade/v1/hosts/ab/node");
  expect_refused(a.Put("/elsewhere", "x").status(), "etcd put /elsewhere");

  absl::StatusOr<EtcdRangeResult> b_keys = b.RangePrefix(HostKeyPrefix("b"));
  ASSERT_TRUE(b_keys.ok()) << b_keys.status();
  EXPECT_EQ(b_keys->kvs.size(), 3u);  // all of b's keys are still there
}

TEST_F(EtcdAuthTest, WithoutAUserOrWithAWrongPasswordCallsAreRefused) {
  EtcdClient anonymous = Client({});
  absl::StatusOr<EtcdRangeResult> listing = anonymous.RangePrefix(kStoreHostsPrefix);
  EXPECT_EQ(listing.status().code(), absl::StatusCode::kUnauthenticated) << listing.status();
  EXPECT_THAT(listing.status().message(), HasSubstr("--user and --password-file"));

  const std::string wrong = WriteSecret("wrong.password", "not-the-password");
  EtcdClient impostor = Client({.user = "stockade-a", .password_file = wrong});
  absl::StatusOr<int64_t> put = impostor.Put(NodeKey("a"), "{}");
  EXPECT_FALSE(put.ok());
  EXPECT_THAT(put.status().message(), HasSubstr("etcd authenticate as user stockade-a: at "));
  EXPECT_THAT(put.status().message(), HasSubstr("invalid user ID or password"));
  EXPECT_THAT(put.status().message(), Not(HasSubstr("not-the-password")));
}

TEST_F(EtcdAuthTest, PasswordFilesOthersCanReadAreRefused) {
  ASSERT_EQ(chmod(a_password_.c_str(), 0644), 0);
  absl::StatusOr<EtcdClient> client =
      EtcdClient::Create({.endpoints = {etcd_->client_url()}, .user = "stockade-a", .password_file = a_password_});
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(client.status().message(), HasSubstr(absl::StrCat("etcd password file ", a_password_, " has mode 0644")));
  EXPECT_THAT(client.status().message(), Not(HasSubstr(kHostAPassword)));

  ASSERT_EQ(chmod(a_password_.c_str(), 0600), 0);
  EXPECT_EQ(EtcdClient::Create({.endpoints = {etcd_->client_url()}, .user = "stockade-a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EtcdClient::Create({.endpoints = {etcd_->client_url()}, .password_file = a_password_}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // etcdctl's "name:password" would put the password on a command line.
  absl::StatusOr<EtcdClient> inline_password =
      EtcdClient::Create({.endpoints = {etcd_->client_url()}, .user = "stockade-a:pw", .password_file = a_password_});
  EXPECT_EQ(inline_password.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(inline_password.status().message(), HasSubstr("--password-file"));
}

TEST_F(EtcdAuthTest, TheSetupRunsAgainAndARotatedPasswordIsReadAgain) {
  EtcdClient a = HostA();
  ASSERT_TRUE(a.Put(NodeKey("a"), "{}").ok());
  ASSERT_EQ(a.authentications(), 1u);
  // The operator rotates a's password in its file and runs the setup again,
  // which now works as root. etcd drops a's token with the change; the
  // client reads the file again for its next token, without a restart.
  WriteSecret("a.password", "host-a-new-secret-2Pm");
  RunSetup({});
  absl::StatusOr<int64_t> put = a.Put(NodeKey("a"), "{}");
  EXPECT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(a.authentications(), 2u);
  EXPECT_EQ(a.Put(NodeKey("b"), "{}").status().code(), absl::StatusCode::kPermissionDenied);
}

// Simple tokens that etcd drops after a second unused: every call after a
// pause meets an invalid token.
class EtcdShortTokenTest : public EtcdAuthTest {
 protected:
  std::vector<std::string> EtcdFlags() const override { return {"--auth-token=simple", "--auth-token-ttl=1"}; }
};

TEST_F(EtcdShortTokenTest, AnExpiredTokenIsReplacedTransparently) {
  EtcdClient a = HostA();
  ASSERT_TRUE(a.Put(NodeKey("a"), "{}").ok());
  ASSERT_EQ(a.authentications(), 1u);

  // etcd checks its simple tokens' TTL once a second.
  absl::SleepFor(absl::Milliseconds(2500));
  absl::StatusOr<int64_t> put = a.Put(NodeKey("a"), "{}");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(a.authentications(), 2u);

  // A watch created with a dropped token is cancelled by etcd at once; the
  // client authenticates and watches again, missing nothing.
  absl::SleepFor(absl::Milliseconds(2500));
  EtcdWatchCancel cancel;
  absl::Notification seen;
  std::thread watcher([&] {
    absl::Status ended = a.Watch(
        {.key = HostKeyPrefix("a"), .start_revision = *put},
        [&](const EtcdWatchEvent&) {
          seen.Notify();
          return absl::OkStatus();
        },
        &cancel);
    EXPECT_EQ(ended.code(), absl::StatusCode::kCancelled) << ended;
  });
  const bool delivered = seen.WaitForNotificationWithTimeout(absl::Seconds(5));
  cancel.Cancel();
  watcher.join();
  EXPECT_TRUE(delivered);
  EXPECT_EQ(a.authentications(), 3u);
}

TEST_F(EtcdShortTokenTest, CallsThatMeetTheSameExpiredTokenAuthenticateOnce) {
  EtcdClient a = HostA();
  ASSERT_TRUE(a.Put(NodeKey("a"), "{}").ok());
  absl::SleepFor(absl::Milliseconds(2500));
  // Every call finds the token dropped; one of them gets the next, the
  // others wait for it and use it.
  std::vector<std::thread> callers;
  std::atomic<int> failed{0};
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&, i] {
      const RemoteEndpoint endpoint = Endpoint("a", absl::StrCat("10.0.1.", 10 + i));
      if (!a.Put(StoreKeyOf(endpoint), EncodeStoreRecord(endpoint)).ok()) failed.fetch_add(1);
    });
  }
  for (std::thread& caller : callers) caller.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(a.authentications(), 2u);
}

// With --client-cert-auth, etcd's gRPC API takes a client certificate's CN
// as the user. Its JSON gateway cannot pass the CN on, and etcd 3.4 refuses
// (HTTP 400) any gateway request with a CN certificate while auth is on:
// stockade's hosts show a certificate without CN, and a user and password.
class EtcdAuthTlsTest : public EtcdAuthTest {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/stockade-etcd-auth-tls-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    absl::StatusOr<EtcdServerTls> tls = ::stockade::testing::MakeEtcdServerTls(dir_, "/O=stockade");
    ASSERT_TRUE(tls.ok()) << tls.status();
    tls_ = *std::move(tls);
    // The CN is the host's etcd user name, as gRPC clients would use it.
    absl::StatusOr<::stockade::testing::TestCertificate> with_cn =
        ::stockade::testing::TestCertificates(dir_).MakeSigned("stockade-a", {.cert = tls_.ca, .key = tls_.ca_key},
                                                               "DNS:host-a");
    ASSERT_TRUE(with_cn.ok()) << with_cn.status();
    with_cn_ = *with_cn;
    StartEtcd(&tls_, {});
    if (etcd_ == nullptr) return;
    root_password_ = WriteSecret("root.password", kRootPassword);
    a_password_ = WriteSecret("a.password", kHostAPassword);
    b_password_ = WriteSecret("b.password", kHostBPassword);
    RunSetup({"--cacert", tls_.ca, "--cert", tls_.client.cert, "--key", tls_.client.key});
  }

  EtcdServerTls tls_;
  ::stockade::testing::TestCertificate with_cn_;
};

TEST_F(EtcdAuthTlsTest, ACertificatesCommonNameIsRefusedThroughTheGateway) {
  for (const std::string& user : {std::string(), std::string("stockade-a")}) {
    EtcdClient by_cn = Client({.cacert = tls_.ca,
                               .cert = with_cn_.cert,
                               .key = with_cn_.key,
                               .user = user,
                               .password_file = user.empty() ? "" : a_password_});
    absl::StatusOr<int64_t> put = by_cn.Put(NodeKey("a"), "{}");
    EXPECT_EQ(put.status().code(), absl::StatusCode::kFailedPrecondition) << put.status();
    EXPECT_THAT(put.status().message(), HasSubstr("use a certificate without CN and --user"));
  }

  // Without a CN the certificate only secures the connection: the user is
  // still needed, and is held to its own subtree.
  EtcdClient no_user = Client({.cacert = tls_.ca, .cert = tls_.client.cert, .key = tls_.client.key});
  EXPECT_EQ(no_user.Put(NodeKey("a"), "{}").status().code(), absl::StatusCode::kUnauthenticated);
  EtcdClient with_user = Client({.cacert = tls_.ca,
                                 .cert = tls_.client.cert,
                                 .key = tls_.client.key,
                                 .user = "stockade-a",
                                 .password_file = a_password_});
  EXPECT_TRUE(with_user.Put(NodeKey("a"), "{}").ok());
  EXPECT_EQ(with_user.Put(NodeKey("b"), "{}").status().code(), absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace stockade
