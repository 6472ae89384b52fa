// SPDX-License-Identifier: Apache-2.0
//
// Drop events and metrics end to end, with real containers: a denied
// connection shows in `stockade-tail -o json` with both containers' names and
// the rule that decided it; the tail lives through an agent restart; a
// Prometheus scrape counts what was dropped.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/process.h"
#include "tests/docker/agent_e2e_env.h"
#include "tests/docker/docker_test_env.h"

namespace stockade::testing {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kSilenceTimeout = absl::Milliseconds(500);
// How long a drop's record may take to reach the tail: waited for, so only a
// failing run pays it; generous because a loaded CI machine took over 5 s.
constexpr absl::Duration kEventWait = absl::Seconds(20);

// stockade-tail as an operator runs it: its stdout read line by line here,
// its stderr kept in a file. Stopped with SIGINT, as Ctrl-C stops it.
class TailProcess {
 public:
  static absl::StatusOr<std::unique_ptr<TailProcess>> Start(std::vector<std::string> args, const std::string& err_path) {
    args.insert(args.begin(), STOCKADE_TAIL_PATH);
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    ScopedFd read_end(out[0]), write_end(out[1]);
    ScopedFd err(open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!err.valid()) return ErrnoStatus(errno, absl::StrCat("open ", err_path));
    absl::StatusOr<pid_t> pid = SpawnProcess(args, {.stdout_fd = write_end.get(), .stderr_fd = err.get()});
    if (!pid.ok()) return pid.status();
    return std::unique_ptr<TailProcess>(new TailProcess(*pid, std::move(read_end), err_path));
  }

  ~TailProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // The next JSON line it printed, or nullopt after `timeout`.
  std::optional<nlohmann::json> Next(absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        nlohmann::json j = nlohmann::json::parse(buffer_.substr(0, nl), nullptr, false);
        buffer_.erase(0, nl + 1);
        return j;
      }
      int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      pollfd p{out_.get(), POLLIN, 0};
      if (wait_ms <= 0 || poll(&p, 1, wait_ms) <= 0) return std::nullopt;
      char buf[65536];
      ssize_t n = read(out_.get(), buf, sizeof(buf));
      if (n <= 0) return std::nullopt;
      buffer_.append(buf, n);
    }
  }

  // The first event for which `wanted` holds, within `timeout`.
  std::optional<nlohmann::json> WaitFor(const std::function<bool(const nlohmann::json&)>& wanted,
                                        absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      auto line = Next(deadline - absl::Now());
      if (line && !line->is_discarded() && (*line)["type"] == "event" && wanted(*line)) return line;
    }
    return std::nullopt;
  }

  // Ctrl-C; returns its exit status.
  int Interrupt() {
    kill(pid_, SIGINT);
    return Wait();
  }

  // Waits for it to exit on its own; returns its exit code.
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::string Stderr() const {
    std::ifstream in(err_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  TailProcess(pid_t pid, ScopedFd out, std::string err_path) : pid_(pid), out_(std::move(out)), err_path_(err_path) {}
  pid_t pid_;
  ScopedFd out_;
  std::string err_path_;
  std::string buffer_;
};

// The value of one sample line ("name{labels} value"), or -1 when absent.
double SampleValue(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

class EventsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STOCKADE_REQUIRE_PRIVILEGES();
    STOCKADE_REQUIRE_DOCKER();
    instance_ = std::make_unique<AgentInstance>(scratch_.Name("agent"));
    absl::StatusOr<std::string> id = scratch_.CreateNetwork("net", {"--driver", "bridge"});
    ASSERT_TRUE(id.ok()) << id.status();
    for (const char* tier : {"client", "db"}) {
      std::string network = scratch_.Name("net");
      absl::StatusOr<std::string> c =
          scratch_.RunContainer(tier, {"--network", network, "--label", absl::StrCat("stockade.tier=", tier)});
      ASSERT_TRUE(c.ok()) << c.status();
      ASSERT_TRUE(StartEchoServers(scratch_.Name(tier), {80, 5432}).ok());
      absl::StatusOr<TestContainer> inspected = InspectContainer(scratch_.Name(tier), network);
      ASSERT_TRUE(inspected.ok()) << inspected.status();
      (std::string(tier) == "db" ? db_ : client_) = *inspected;
    }
    // db takes 5432 from backends only, and refuses clients on it by an explicit rule.
    ASSERT_TRUE(instance_
                    ->WritePolicy("apiVersion: stockade/v1\n"
                                  "kind: Policy\n"
                                  "metadata: {name: db-ingress}\n"
                                  "spec:\n"
                                  "  endpointSelector: {matchLabels: {tier: db}}\n"
                                  "  ingress:\n"
                                  "    - fromEndpoints: [{matchLabels: {tier: backend}}]\n"
                                  "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n"
                                  "  ingressDeny:\n"
                                  "    - fromEndpoints: [{matchLabels: {tier: client}}]\n"
                                  "      toPorts: [{ports: [{port: \"5432\", protocol: TCP}]}]\n")
                    .ok());
  }

  void TearDown() override {
    if (instance_ && HasFailure()) std::cerr << "stockaded output:\n" << instance_->Log();
    tail_.reset();
    if (instance_) std::remove(absl::StrCat("/tmp/", instance_->name(), ".tail.err").c_str());
    instance_.reset();
  }

  absl::StatusOr<pid_t> StartAgentAndWait() {
    absl::StatusOr<pid_t> pid = instance_->StartAgent();
    if (!pid.ok()) return pid.status();
    absl::StatusOr<absl::Duration> ready = WaitUntil(
        [&] {
          auto list = instance_->Ctl({"endpoint", "list"});
          if (!list.ok()) return false;
          for (const nlohmann::json& e : (*list)["endpoints"])
            if (e["name"] == db_.name && e["state"] == "enforcing") return true;
          return false;
        },
        absl::Seconds(30), "db enforced");
    if (!ready.ok()) return ready.status();
    return pid;
  }

  absl::Status StartTail() {
    auto tail = TailProcess::Start({"--instance", instance_->name(), "--follow", "-o", "json", "--to", "tier=db"},
                                   absl::StrCat("/tmp/", instance_->name(), ".tail.err"));
    if (!tail.ok()) return tail.status();
    tail_ = std::move(*tail);
    // Its subscription is in place once the agent counts it.
    return WaitUntil(
               [&] {
                 auto status = instance_->Ctl({"status"});
                 return status.ok() && (*status)["events"]["subscribers"] == 1;
               },
               absl::Seconds(10), "stockade-tail subscribed")
        .status();
  }

  bool IsClientToDb(const nlohmann::json& e, uint16_t port) {
    return e["source"]["container"] == client_.name && e["destination"]["container"] == db_.name &&
           e["destination"]["port"] == port;
  }

  DockerScratch scratch_;
  std::unique_ptr<AgentInstance> instance_;
  std::unique_ptr<TailProcess> tail_;
  TestContainer client_, db_;
};

TEST_F(EventsE2eTest, ADeniedConnectionShowsBothContainersAndTheRuleAndIsCounted) {
  absl::StatusOr<pid_t> agent = StartAgentAndWait();
  ASSERT_TRUE(agent.ok()) << agent.status();
  ASSERT_TRUE(StartTail().ok());

  EXPECT_TRUE(absl::IsDeadlineExceeded(Probe(client_, db_, 5432, kSilenceTimeout)));
  auto explicit_deny = tail_->WaitFor([&](const nlohmann::json& e) { return IsClientToDb(e, 5432); }, kEventWait);
  ASSERT_TRUE(explicit_deny.has_value()) << "no event for the denied connection; tail stderr: " << tail_->Stderr();
  const nlohmann::json& e = *explicit_deny;
  EXPECT_EQ(e["verdict"], "DROPPED");
  EXPECT_EQ(e["reason"], "POLICY_DENIED");
  EXPECT_EQ(e["direction"], "ingress");
  EXPECT_EQ(e["protocol"], "tcp");
  EXPECT_THAT(e["rule"].get<std::string>(), HasSubstr("db-ingress ingressDeny[0]"));
  EXPECT_THAT(e["rule"].get<std::string>(), HasSubstr("policy.yaml:"));
  EXPECT_EQ(e["source"]["ip"], client_.ip);
  EXPECT_EQ(e["destination"]["ip"], db_.ip);
  EXPECT_EQ(e["source"]["labels"]["tier"], "client");
  EXPECT_EQ(e["destination"]["labels"]["tier"], "db");

  EXPECT_TRUE(absl::IsDeadlineExceeded(Probe(client_, db_, 80, kSilenceTimeout)));
  auto default_deny = tail_->WaitFor([&](const nlohmann::json& e) { return IsClientToDb(e, 80); }, kEventWait);
  ASSERT_TRUE(default_deny.has_value());
  EXPECT_EQ((*default_deny)["rule"], "default deny");

  // Ctrl-C: a summary of what it showed, by reason.
  EXPECT_EQ(tail_->Interrupt(), 0);
  EXPECT_THAT(tail_->Stderr(), HasSubstr("POLICY_DENIED"));

  absl::StatusOr<nlohmann::json> status = instance_->Ctl({"status"});
  ASSERT_TRUE(status.ok()) << status.status();
  std::string content_type;
  absl::StatusOr<std::string> metrics = ScrapeMetrics((*status)["metrics"], &content_type);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(content_type, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT((*status)["metrics"].get<std::string>(), ::testing::StartsWith("127.0.0.1:")) << "loopback by default";
  EXPECT_GE(SampleValue(*metrics, R"(stockade_drop_count_total{reason="POLICY_DENIED",direction="ingress"})"), 2);
  EXPECT_GT(SampleValue(*metrics, R"(stockade_drop_bytes_total{reason="POLICY_DENIED",direction="ingress"})"), 0);
  EXPECT_GT(SampleValue(*metrics, R"(stockade_forward_count_total{direction="egress"})"), 0);
  EXPECT_EQ(SampleValue(*metrics, R"(stockade_events_lost_total{stage="ringbuf"})"), 0);
  EXPECT_EQ(SampleValue(*metrics, R"(stockade_events_lost_total{stage="subscriber"})"), 0);
  EXPECT_GE(SampleValue(*metrics, "stockade_events_total"), 2);
  // Other containers on this host count too: at least ours.
  EXPECT_GE(SampleValue(*metrics, R"(stockade_endpoints{state="enforcing"})"), 1);
  EXPECT_GE(SampleValue(*metrics, R"(stockade_endpoints{state="allow-all"})"), 1);
  EXPECT_GE(SampleValue(*metrics, R"(stockade_map_entries{map="ipcache"})"), 2);
  EXPECT_GT(SampleValue(*metrics, R"(stockade_map_capacity{map="conntrack"})"), 0);
  EXPECT_EQ(SampleValue(*metrics, "stockade_docker_connected"), 1);
  EXPECT_GE(SampleValue(*metrics, "stockade_docker_resyncs_total"), 1);
  EXPECT_GE(SampleValue(*metrics, "stockade_identities"), 2);
  EXPECT_THAT(*metrics, HasSubstr("# TYPE stockade_drop_count_total counter\n"));
}

TEST_F(EventsE2eTest, TheTailReconnectsWhenTheAgentRestarts) {
  absl::StatusOr<pid_t> agent = StartAgentAndWait();
  ASSERT_TRUE(agent.ok()) << agent.status();
  ASSERT_TRUE(StartTail().ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(Probe(client_, db_, 5432, kSilenceTimeout)));
  ASSERT_TRUE(tail_->WaitFor([&](const nlohmann::json& e) { return IsClientToDb(e, 5432); }, kEventWait));

  instance_->Kill(*agent, SIGKILL);
  ASSERT_TRUE(instance_->WaitExit(*agent, absl::Seconds(10)).ok());
  // Dropped while no agent runs: the record waits in the pinned ring buffer.
  EXPECT_TRUE(absl::IsDeadlineExceeded(Probe(client_, db_, 80, kSilenceTimeout)));
  absl::StatusOr<pid_t> restarted = StartAgentAndWait();
  ASSERT_TRUE(restarted.ok()) << restarted.status();

  auto during = tail_->WaitFor([&](const nlohmann::json& e) { return IsClientToDb(e, 80); }, absl::Seconds(10));
  EXPECT_TRUE(during.has_value()) << "the drop made while the agent was down; tail stderr: " << tail_->Stderr();
  // Aggregation keeps one flow to one record a second: a new port is a new flow.
  EXPECT_TRUE(absl::IsDeadlineExceeded(Probe(client_, db_, 5433, kSilenceTimeout)));
  auto after = tail_->WaitFor([&](const nlohmann::json& e) { return IsClientToDb(e, 5433); }, absl::Seconds(10));
  EXPECT_TRUE(after.has_value()) << "tail stderr: " << tail_->Stderr();
  EXPECT_THAT(tail_->Stderr(), HasSubstr("reconnected"));
}

TEST(TailWithoutAgent, SaysWhatToDoAndExitsThree) {
  const std::string instance = absl::StrCat("stk-no-agent-", getpid());
  const std::string err = absl::StrCat("/tmp/", instance, ".tail.err");
  auto tail = TailProcess::Start({"--instance", instance, "--no-follow"}, err);
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ((*tail)->Wait(), 3);
  EXPECT_THAT((*tail)->Stderr(), HasSubstr("stockaded is not running"));
  std::remove(err.c_str());
}

}  // namespace
}  // namespace stockade::testing
