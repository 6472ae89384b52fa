// SPDX-License-Identifier: Apache-2.0
//
// The store's load generator (tools/stockade-store-load.cc) on a small load
// against a real etcd: it runs to the end, every phase prints its line, and
// every start is delivered into the reader's mirror. The big runs are a
// benchmark (docs/benchmarks.md, "store"), not a test.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "stockade/os/process.h"
#include "stockade/os/scoped_fd.h"
#include "stockade/store/endpoint_record.h"
#include "stockade/store/etcd_client.h"
#include "tests/store/etcd_test_env.h"
#include "tests/support/bpf_test_env.h"

namespace stockade {
namespace {

using ::testing::HasSubstr;

TEST(StoreLoadSmokeTest, AFewHostsPublishChurnAndAreWatched) {
  absl::StatusOr<std::unique_ptr<testing::EtcdTestServer>> etcd = testing::EtcdTestServer::Start();
  if (!etcd.ok()) {
    if (testing::RunningInCi()) FAIL() << "CI=true but etcd cannot start: " << etcd.status();
    GTEST_SKIP() << "etcd cannot start: " << etcd.status();
  }
  char output_template[] = "/tmp/stockade-store-load-XXXXXX";
  ScopedFd output(mkstemp(output_template));
  ASSERT_GE(output.get(), 0);
  const std::string output_path = output_template;

  absl::StatusOr<pid_t> pid =
      SpawnProcess({STOCKADE_STORE_LOAD_BINARY, absl::StrCat("--etcd-endpoints=", (*etcd)->client_url()), "--hosts=3",
                    "--endpoints-per-host=5", "--batch=2", "--writers=2", "--churn-rate=20", "--churn-seconds=2",
                    "--lease-ttl=6", "--listing-repeats=2"},
                   {.stdout_fd = output.get(), .stderr_fd = output.get()});
  ASSERT_TRUE(pid.ok()) << pid.status();
  // Bounded: a run of about 2.5 s gets 30.
  int wait_status = 0;
  bool ended = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30); absl::Now() < deadline;) {
    if (waitpid(*pid, &wait_status, WNOHANG) == *pid) {
      ended = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (!ended) {
    kill(*pid, SIGKILL);
    waitpid(*pid, &wait_status, 0);
  }
  std::stringstream text;
  text << std::ifstream(output_path).rdbuf();
  unlink(output_path.c_str());
  ASSERT_TRUE(ended) << "still running after 30 s:\n" << text.str();
  ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) << text.str();

  EXPECT_THAT(text.str(), HasSubstr("command: "));
  EXPECT_THAT(text.str(), HasSubstr("publish: 21 keys (3 hosts x 5 endpoints"));
  EXPECT_THAT(text.str(), HasSubstr("listing: 21 keys, 15 endpoints in the mirror"));
  EXPECT_THAT(text.str(), HasSubstr("per container start: 1.00 etcd requests"));
  // The tool fails unless every start reached the mirror: exit 0 says they did.
  EXPECT_THAT(text.str(), HasSubstr("starts delivered into the reader's StoreMirror: put to applied p50"));

  // The leases were revoked: nothing of the run is left.
  absl::StatusOr<EtcdClient> client = EtcdClient::Create({.endpoints = {(*etcd)->client_url()}});
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<EtcdRangeResult> left = client->RangePrefix(kStoreHostsPrefix);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->kvs.empty());
}

}  // namespace
}  // namespace stockade
