// SPDX-License-Identifier: Apache-2.0
//
// The Docker TLS client key: a key.pem that group or others may read is
// refused before anything connects, with a message that names the file, its
// mode and the fix, and no message ever carries the key's bytes.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "stockade/docker/docker_client.h"
#include "stockade/docker/docker_endpoint.h"
#include "stockade/os/scoped_fd.h"
#include "tests/support/tls_test_env.h"

namespace stockade {
namespace {

using ::stockade::testing::PemBodyPieces;
using ::testing::HasSubstr;
using ::testing::Not;

// Stands in for key material: if any of it reached a message, the test would see it.
constexpr char kKeyBody[] = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCstockadeSECRET";

class DockerCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = absl::StrCat(::testing::TempDir(), "/docker_credentials_", getpid(), "_", counter++);
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ + "/ca.pem") << "ca";
    std::ofstream(dir_ + "/cert.pem") << "cert";
    std::ofstream(key_path()) << "-----BEGIN PRIVATE KEY-----\n" << kKeyBody << "\n-----END PRIVATE KEY-----\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string key_path() const { return dir_ + "/key.pem"; }

  absl::StatusOr<DockerEndpoint> ResolveWithKeyMode(mode_t mode) {
    EXPECT_EQ(chmod(key_path().c_str(), mode), 0);
    return ResolveDockerEndpoint({.docker_host = "tcp://192.0.2.10:2376", .tls_verify = "1", .cert_path = dir_});
  }

  std::string dir_;
};

TEST_F(DockerCredentialsTest, KeyPrivateToItsOwnerIsUsed) {
  for (mode_t mode : {0600, 0400, 0700}) {
    absl::StatusOr<DockerEndpoint> endpoint = ResolveWithKeyMode(mode);
    ASSERT_TRUE(endpoint.ok()) << absl::StrFormat("%04o: ", mode) << endpoint.status();
    ASSERT_TRUE(endpoint->tls.has_value());
    EXPECT_EQ(endpoint->tls->key_file, key_path());
  }
}

TEST_F(DockerCredentialsTest, KeyOthersMayReadIsRefusedWithPathModeAndFix) {
  for (mode_t mode : {0644, 0640, 0604, 0660, 0620, 0602, 0610, 0601, 0777}) {
    const std::string mode_text = absl::StrFormat("%04o", mode);
    absl::StatusOr<DockerEndpoint> endpoint = ResolveWithKeyMode(mode);
    ASSERT_FALSE(endpoint.ok()) << mode_text << " must be refused";
    EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kPermissionDenied) << mode_text;
    const std::string message(endpoint.status().message());
    EXPECT_THAT(message, HasSubstr(key_path())) << mode_text;
    EXPECT_THAT(message, HasSubstr(absl::StrCat("mode ", mode_text))) << message;
    EXPECT_THAT(message, HasSubstr(absl::StrCat("chmod 600 ", key_path()))) << message;
    EXPECT_THAT(message, Not(HasSubstr("stockadeSECRET"))) << message;
    EXPECT_THAT(message, Not(HasSubstr("PRIVATE KEY"))) << message;
  }
}

TEST_F(DockerCredentialsTest, KeyThatIsNotARegularFileIsRefused) {
  std::filesystem::remove(key_path());
  std::filesystem::create_directory(key_path());
  chmod(key_path().c_str(), 0700);
  absl::StatusOr<DockerEndpoint> endpoint =
      ResolveDockerEndpoint({.docker_host = "tcp://192.0.2.10:2376", .tls_verify = "1", .cert_path = dir_});
  ASSERT_FALSE(endpoint.ok());
  EXPECT_THAT(endpoint.status().message(), HasSubstr(absl::StrCat(key_path(), " is not a regular file")));
}

TEST_F(DockerCredentialsTest, KeyLinkedFromElsewhereIsJudgedByTheFileItNames) {
  // A Docker secret or a config tool may link key.pem to the real file.
  const std::string real = dir_ + "/real-key.pem";
  std::filesystem::rename(key_path(), real);
  std::filesystem::create_symlink(real, key_path());
  chmod(real.c_str(), 0644);
  absl::StatusOr<DockerEndpoint> endpoint =
      ResolveDockerEndpoint({.docker_host = "tcp://192.0.2.10:2376", .tls_verify = "1", .cert_path = dir_});
  ASSERT_FALSE(endpoint.ok()) << "the link's own mode (0777) must not hide the target's";
  EXPECT_THAT(endpoint.status().message(), HasSubstr("mode 0644"));
  chmod(real.c_str(), 0600);
  EXPECT_TRUE(
      ResolveDockerEndpoint({.docker_host = "tcp://192.0.2.10:2376", .tls_verify = "1", .cert_path = dir_}).ok());
}

TEST_F(DockerCredentialsTest, NoTlsMeansTheKeyIsNotLookedAt) {
  ASSERT_EQ(chmod(key_path().c_str(), 0644), 0);
  EXPECT_TRUE(ResolveDockerEndpoint({.docker_host = "tcp://192.0.2.10:2375", .cert_path = dir_}).ok());
}

// The real client with a real key that libcurl reads and refuses (it does not
// match the certificate): the error names the connection, never the key.
TEST_F(DockerCredentialsTest, ClientErrorAfterReadingTheKeyCarriesNoKeyBytes) {
  const std::string other_key = dir_ + "/other-key.pem";
  const std::string command =
      absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=docker -days 1 -keyout ", dir_,
                   "/cert-key.pem -out ", dir_, "/cert.pem >/dev/null 2>&1 && openssl genpkey -algorithm RSA -out ",
                   other_key, " >/dev/null 2>&1");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  std::filesystem::copy_file(other_key, key_path(), std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(chmod(key_path().c_str(), 0600), 0);
  std::filesystem::copy_file(dir_ + "/cert.pem", dir_ + "/ca.pem", std::filesystem::copy_options::overwrite_existing);

  // A listener in the test's directory: the connect completes in its backlog,
  // then libcurl loads the client certificate and key before any byte is sent.
  const std::string socket_path = dir_ + "/docker.sock";
  ScopedFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_un addr{.sun_family = AF_UNIX};
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
  ASSERT_EQ(listen(listener.get(), 4), 0);

  absl::StatusOr<DockerEndpoint> endpoint =
      ResolveDockerEndpoint({.docker_host = "unix://" + socket_path, .tls_verify = "1", .cert_path = dir_});
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  absl::Status ping =
      DockerClient(*endpoint, {.connect_timeout = absl::Seconds(2), .request_timeout = absl::Seconds(3)}).Ping();
  ASSERT_FALSE(ping.ok()) << "a key that does not match its certificate cannot make a TLS connection";
  const std::string message(ping.message());
  EXPECT_THAT(message, HasSubstr(absl::StrCat("unix://", socket_path))) << message;

  const std::vector<std::string> pieces = PemBodyPieces(key_path());
  EXPECT_GT(pieces.size(), 10u) << "the key file holds a real key";
  for (const std::string& piece : pieces) EXPECT_THAT(message, Not(HasSubstr(piece)));
  EXPECT_THAT(message, HasSubstr("private key")) << "libcurl got as far as the key: " << message;
}

}  // namespace
}  // namespace stockade
