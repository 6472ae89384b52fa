// SPDX-License-Identifier: Apache-2.0
//
// The Docker client over real TLS to a real server on 127.0.0.1 (openssl
// s_server, tests/support/tls_test_env.h) that demands a client certificate:
// a good chain connects; a daemon certificate signed by another CA, expired,
// or issued for another name fails with a message that says which, names
// the daemon, and carries nothing of the client key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "stockade/docker/docker_client.h"
#include "stockade/docker/docker_endpoint.h"
#include "tests/support/tls_test_env.h"

namespace stockade::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class DockerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = absl::StrCat(::testing::TempDir(), "/docker_tls_", getpid(), "_", counter++);
    cert_path_ = dir_ + "/client";
    std::filesystem::create_directories(cert_path_);
    certs_ = std::make_unique<TestCertificates>(dir_);
    auto ca = certs_->MakeCa("ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *ca;
    auto client = certs_->MakeSigned("client", ca_, "DNS:stockaded");
    ASSERT_TRUE(client.ok()) << client.status();
    // DOCKER_CERT_PATH as the docker CLI lays it out.
    std::filesystem::copy_file(ca_.cert, cert_path_ + "/ca.pem");
    std::filesystem::copy_file(client->cert, cert_path_ + "/cert.pem");
    std::filesystem::copy_file(client->key, cert_path_ + "/key.pem");
    std::filesystem::permissions(cert_path_ + "/key.pem", std::filesystem::perms::owner_read |
                                                               std::filesystem::perms::owner_write);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Ping over TLS to a server presenting `server`, which verifies our client
  // certificate against the CA; the status, checked for key bytes.
  absl::Status PingServer(const TestCertificate& server) {
    auto tls_server = TlsTestServer::Start(server, ca_.cert);
    EXPECT_TRUE(tls_server.ok()) << tls_server.status();
    if (!tls_server.ok()) return tls_server.status();
    host_ = tls_server->docker_host();
    auto endpoint = ResolveDockerEndpoint({.docker_host = host_, .tls_verify = "1", .cert_path = cert_path_});
    EXPECT_TRUE(endpoint.ok()) << endpoint.status();
    if (!endpoint.ok()) return endpoint.status();
    absl::Status ping =
        DockerClient(*endpoint, {.connect_timeout = absl::Seconds(5), .request_timeout = absl::Seconds(5)}).Ping();
    ExpectNoKeyBytes(ping.message());
    return ping;
  }

  void ExpectNoKeyBytes(absl::string_view text) const {
    const std::vector<std::string> pieces = PemBodyPieces(cert_path_ + "/key.pem");
    ASSERT_GT(pieces.size(), 4u) << "the client key is a real key";
    for (const std::string& piece : pieces) EXPECT_THAT(std::string(text), Not(HasSubstr(piece)));
  }

  std::string dir_, cert_path_, host_;
  std::unique_ptr<TestCertificates> certs_;
  TestCertificate ca_;
};

TEST_F(DockerTlsTest, GoodChainConnects) {
  auto server = certs_->MakeSigned("server", ca_, "IP:127.0.0.1");
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(PingServer(*server).ok()) << "the control case: same server, right certificates";
}

TEST_F(DockerTlsTest, DaemonSignedByAnotherCaSaysWrongCa) {
  auto other_ca = certs_->MakeCa("other-ca");
  ASSERT_TRUE(other_ca.ok()) << other_ca.status();
  auto server = certs_->MakeSigned("server", *other_ca, "IP:127.0.0.1");
  ASSERT_TRUE(server.ok()) << server.status();
  absl::Status ping = PingServer(*server);
  EXPECT_TRUE(absl::IsUnavailable(ping)) << ping;
  EXPECT_THAT(std::string(ping.message()), HasSubstr(absl::StrCat("ping: ", host_, ": TLS wrong CA: the daemon's certificate is "
                                                     "not signed by the CA in ", cert_path_, "/ca.pem")));
}

TEST_F(DockerTlsTest, ExpiredDaemonCertificateSaysExpired) {
  auto server = certs_->MakeSigned("server", ca_, "IP:127.0.0.1", /*expired=*/true);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::Status ping = PingServer(*server);
  EXPECT_TRUE(absl::IsUnavailable(ping)) << ping;
  EXPECT_THAT(std::string(ping.message()),
              HasSubstr(absl::StrCat("ping: ", host_, ": TLS expired: the daemon's certificate has expired")));
}

TEST_F(DockerTlsTest, DaemonCertificateForAnotherNameSaysNameMismatch) {
  auto server = certs_->MakeSigned("server", ca_, "DNS:elsewhere.example");
  ASSERT_TRUE(server.ok()) << server.status();
  absl::Status ping = PingServer(*server);
  EXPECT_TRUE(absl::IsUnavailable(ping)) << ping;
  EXPECT_THAT(std::string(ping.message()), HasSubstr(absl::StrCat("TLS name mismatch: the daemon's certificate is not issued "
                                                     "for the host in DOCKER_HOST (", host_, ")")));
}

}  // namespace
}  // namespace stockade::testing
