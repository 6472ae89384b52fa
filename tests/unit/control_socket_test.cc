// SPDX-License-Identifier: Apache-2.0
//
// The control socket's framing of answers (a unix socket in the test's temp
// directory; no privileges).
#include "stockade/agent/control_socket.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace stockade {
namespace {

// A policy file with bytes that are not UTF-8 (yaml-cpp passes them through)
// makes an error that quotes them; `stockadectl status` shows it. Dumping it
// with the JSON library's default handler threw on the server's thread and
// ended the agent.
TEST(ControlSocket, AnswerQuotingBytesThatAreNotUtf8IsSent) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/control_socket_test_", getpid(), ".sock");
  auto server = ControlServer::Start(path, [](const nlohmann::json&) {
    return nlohmann::json{{"policy_error", "p.yaml:3: metadata.name: \"db\xff\" is not a name"}};
  });
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<nlohmann::json> answer = ControlRequest(path, {{"command", "status"}}, absl::Seconds(5));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->at("policy_error"), "p.yaml:3: metadata.name: \"db\xef\xbf\xbd\" is not a name");
}

}  // namespace
}  // namespace stockade
