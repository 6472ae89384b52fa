// SPDX-License-Identifier: Apache-2.0
//
// What the kernel tests share: the privilege gate (a skip outside CI, a
// failure under CI=true), BPF_PROG_TEST_RUN, and a fixture with a loaded,
// unpinned datapath whose endpoint is the loopback interface that
// BPF_PROG_TEST_RUN hands its packets to.
#ifndef STOCKADE_TESTS_SUPPORT_BPF_TEST_ENV_H_
#define STOCKADE_TESTS_SUPPORT_BPF_TEST_ENV_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "maps/abi.h"
#include "stockade/datapath/datapath.h"
#include "stockade/policy/policy_entries.h"

namespace stockade::testing {

// Empty when the test may run; otherwise why not.
std::string MissingPrivileges();
bool RunningInCi();

// Skips the test where it cannot run, but fails it under CI=true: CI must run everything.
#define STOCKADE_REQUIRE_PRIVILEGES()                                                   \
  do {                                                                                  \
    std::string missing = ::stockade::testing::MissingPrivileges();                     \
    if (!missing.empty()) {                                                             \
      if (::stockade::testing::RunningInCi()) FAIL() << "CI=true but cannot run: " << missing; \
      GTEST_SKIP() << missing;                                                          \
    }                                                                                   \
  } while (0)

struct RunResult {
  int retval = 0;
  std::vector<uint8_t> data_out;
  uint32_t duration_ns = 0;
};

// Runs a TC or XDP program once (or `repeat` times) on `frame`.
[[nodiscard]] absl::StatusOr<RunResult> RunProgram(int prog_fd, const std::vector<uint8_t>& frame,
                                                   uint32_t repeat = 1);

// The interface BPF_PROG_TEST_RUN attaches its packets to.
inline constexpr uint32_t kTestRunIfindex = 1;

enum class Hook { kTcIngress, kTcEgress, kXdp };

struct EndpointSpec {
  uint32_t identity = 0;
  std::string ipv4;             // empty: none
  std::string ipv6;             // empty: none
  std::string ipv6_link_local;  // empty: none
  std::string mac;              // empty: not checked
  uint32_t flags = 0;
  uint8_t role = HOOK_ROLE_HOST_VETH;
  uint32_t policy_revision = 1;
};

endpoint_info MakeEndpointInfo(const EndpointSpec& spec);

class DatapathTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Loads with these options instead of the defaults; call first in a test.
  void Reload(const DatapathOptions& options);

  void SetEndpoint(const EndpointSpec& spec);
  void SetIdentity(const std::string& cidr, uint32_t identity);
  void SetRules(const std::vector<DatapathRule>& rules);
  // Runs the packet through the hook's program; returns whether it passed.
  bool Passes(Hook hook, const std::vector<uint8_t>& frame);
  int Run(Hook hook, const std::vector<uint8_t>& frame);
  std::vector<drop_event> DrainEvents();
  uint64_t Count(int reason, uint8_t direction, uint8_t verdict);

  // Loading costs ~0.4 s (map allocation and verification), so tests share one
  // datapath and start from emptied maps; Reload() gives a test its own.
  static void TearDownTestSuite();
  void ResetSharedState();

  Datapath* dp_ = nullptr;
  std::unique_ptr<Datapath> own_;
  uint64_t netns_cookie_ = 0;
  static std::unique_ptr<Datapath> shared_;
};

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_SUPPORT_BPF_TEST_ENV_H_
