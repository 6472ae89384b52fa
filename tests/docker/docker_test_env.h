// SPDX-License-Identifier: Apache-2.0
//
// What tests against a real dockerd share: the gate (a skip where no daemon
// answers, a failure under CI=true), and DockerScratch, which makes
// containers, networks and images for one test and removes them all, even
// when the test fails. scripts/ensure-dockerd.sh starts the daemon and
// imports the test image.
#ifndef STOCKADE_TESTS_DOCKER_DOCKER_TEST_ENV_H_
#define STOCKADE_TESTS_DOCKER_DOCKER_TEST_ENV_H_

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tests/support/bpf_test_env.h"

namespace stockade::testing {

// busybox-static imported by scripts/ensure-dockerd.sh: sh, sleep, ip, nc, ...
inline constexpr char kTestImage[] = "stockade-test:busybox";
// Every object a test makes carries it, with the run's id as value.
inline constexpr char kTestLabel[] = "stockade.test";

// Empty when dockerd answers and the test image exists; otherwise why not.
std::string MissingDocker();

#define STOCKADE_REQUIRE_DOCKER()                                                              \
  do {                                                                                         \
    std::string missing = ::stockade::testing::MissingDocker();                                \
    if (!missing.empty()) {                                                                    \
      if (::stockade::testing::RunningInCi()) FAIL() << "CI=true but cannot run: " << missing; \
      GTEST_SKIP() << missing << " (run scripts/ensure-dockerd.sh)";                           \
    }                                                                                          \
  } while (0)

// Runs `docker args...` (the CLI, as a person would); returns its output
// (stdout and stderr), trimmed.
[[nodiscard]] absl::StatusOr<std::string> Docker(std::vector<std::string> args);

class DockerScratch {
 public:
  DockerScratch();
  DockerScratch(const DockerScratch&) = delete;
  DockerScratch& operator=(const DockerScratch&) = delete;
  // Removes every container, network and image labelled with this run's id.
  ~DockerScratch();

  const std::string& run_id() const { return run_id_; }
  // A unique name for the object `what`: "stk-<run id>-<what>".
  std::string Name(absl::string_view what) const;

  // docker run -d --name Name(what) --label stockade.test=<run> `options`
  // `image` `command`; returns the container id.
  [[nodiscard]] absl::StatusOr<std::string> RunContainer(absl::string_view what, std::vector<std::string> options,
                                                         const std::string& image = kTestImage,
                                                         const std::vector<std::string>& command = {"sleep", "300"});
  // docker network create --label ... `options` Name(what); returns the id.
  [[nodiscard]] absl::StatusOr<std::string> CreateNetwork(absl::string_view what, std::vector<std::string> options);
  // The test image re-imported as Name(what):latest with `labels` ("k=v")
  // set in its configuration, like a LABEL line of a Dockerfile.
  [[nodiscard]] absl::StatusOr<std::string> ImportLabelledImage(absl::string_view what,
                                                                const std::vector<std::string>& labels);

 private:
  std::string run_id_;
};

}  // namespace stockade::testing

#endif  // STOCKADE_TESTS_DOCKER_DOCKER_TEST_ENV_H_
