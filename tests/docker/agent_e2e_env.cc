// SPDX-License-Identifier: Apache-2.0
#include "tests/docker/agent_e2e_env.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "stockade/os/errno_status.h"
#include "stockade/netns/netns.h"
#include "stockade/os/process.h"
#include "tests/docker/docker_test_env.h"

namespace stockade::testing {
namespace {

// Milliseconds left until `deadline`, at least 0, for poll().
int MillisecondsLeft(absl::Time deadline) {
  return static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
}

}  // namespace

absl::StatusOr<TestContainer> InspectContainer(const std::string& name, const std::string& network) {
  absl::StatusOr<std::string> out = Docker(
      {"inspect", "--format", absl::StrCat("{{.State.Pid}} {{(index .NetworkSettings.Networks \"", network,
                                           "\").IPAddress}}"),
       name});
  if (!out.ok()) return out.status();
  std::vector<std::string> fields = absl::StrSplit(*out, ' ', absl::SkipWhitespace());
  int pid = 0;
  if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &pid) || pid <= 0)
    return absl::FailedPreconditionError(absl::StrCat(name, " is not running on ", network, ": '", *out, "'"));
  return TestContainer{name, absl::StrCat("/proc/", pid, "/ns/net"), fields[1]};
}

absl::Status StartEchoServers(const std::string& container, const std::vector<uint16_t>& ports) {
  std::string script =
      absl::StrCat("for port in ", absl::StrJoin(ports, " "), "; do nc -ll -p $port -e cat & done; wait");
  return Docker({"exec", "-d", container, "sh", "-c", script}).status();
}

absl::StatusOr<EchoSession> EchoSession::Open(const TestContainer& from, const TestContainer& to, uint16_t port,
                                              absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string peer = absl::StrCat(to.name, " ", to.ip, ":", port);
  sockaddr_storage address{};
  socklen_t address_length = 0;
  if (auto* v4 = reinterpret_cast<sockaddr_in*>(&address); inet_pton(AF_INET, to.ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    address_length = sizeof(*v4);
  } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
             inet_pton(AF_INET6, to.ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    address_length = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", peer));
  }
  ScopedFd fd;
  {
    // The socket belongs to the namespace it is made in, for its whole life.
    absl::StatusOr<NetnsGuard> inside = NetnsGuard::Enter(from.netns);
    if (!inside.ok()) return inside.status();
    fd.Reset(socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("socket in ", from.name));
  }
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), address_length) != 0 && errno != EINPROGRESS)
    return ErrnoStatus(errno, absl::StrCat("connect from ", from.name, " to ", peer));
  pollfd p{fd.get(), POLLOUT, 0};
  if (poll(&p, 1, MillisecondsLeft(deadline)) == 0)
    return absl::DeadlineExceededError(absl::StrCat("no SYN-ACK from ", peer, " to ", from.name, " within ",
                                                    absl::FormatDuration(timeout)));
  int error = 0;
  socklen_t length = sizeof(error);
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) return ErrnoStatus(error, absl::StrCat("connect from ", from.name, " to ", peer));
  return EchoSession(std::move(fd), std::move(peer));
}

absl::Status EchoSession::Echo(absl::string_view line, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  const std::string request = absl::StrCat(line, "\n");
  if (send(fd_.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return ErrnoStatus(errno, absl::StrCat("send to ", peer_));
  std::string answer;
  while (answer.size() < request.size()) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (poll(&p, 1, MillisecondsLeft(deadline)) == 0)
      return absl::DeadlineExceededError(absl::StrCat("no echo of '", line, "' from ", peer_, " within ",
                                                      absl::FormatDuration(timeout), " (got '", answer, "')"));
    char buffer[256];
    ssize_t n = recv(fd_.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("recv from ", peer_));
    if (n == 0) return absl::AbortedError(absl::StrCat(peer_, " closed the connection"));
    answer.append(buffer, n);
  }
  if (answer != request) return absl::DataLossError(absl::StrCat(peer_, " echoed '", answer, "'"));
  return absl::OkStatus();
}

absl::Status Probe(const TestContainer& from, const TestContainer& to, uint16_t port, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<EchoSession> session = EchoSession::Open(from, to, port, timeout);
  if (!session.ok()) return session.status();
  return session->Echo(absl::StrCat("probe from ", from.name), deadline - absl::Now());
}

AgentInstance::AgentInstance(absl::string_view name)
    : name_(name),
      // Normal form: the agent names policy files by this path in its errors.
      dir_((std::filesystem::path(::testing::TempDir()) / std::string(name)).lexically_normal()),
      policy_dir_(dir_ + "/policy"),
      log_path_(dir_ + "/stockaded.log") {
  std::filesystem::create_directories(policy_dir_);
}

AgentInstance::~AgentInstance() {
  for (pid_t pid : std::set<pid_t>(running_)) {
    Kill(pid, SIGTERM);
    if (!WaitExit(pid, absl::Seconds(10)).ok()) {
      Kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  absl::StatusOr<std::string> uninstalled =
      RunCommand({STOCKADED_PATH, "--uninstall", "--instance", name_},
                 netns_path_.empty() ? std::nullopt : std::optional<std::string_view>(netns_path_));
  if (!uninstalled.ok()) ADD_FAILURE() << "uninstall " << name_ << ": " << uninstalled.status();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::Status AgentInstance::WritePolicy(absl::string_view yaml, absl::string_view file) const {
  // Written beside the policy directory, not in it: the agent watches it.
  const std::string draft = absl::StrCat(dir_, "/", file, ".draft");
  const std::string path = absl::StrCat(policy_dir_, "/", file);
  {
    std::ofstream out(draft, std::ios::trunc);
    out << yaml;
    if (!out) return absl::InternalError(absl::StrCat("write ", draft));
  }
  if (rename(draft.c_str(), path.c_str()) != 0)
    return ErrnoStatus(errno, absl::StrCat("rename ", draft, " to ", path));
  return absl::OkStatus();
}

absl::StatusOr<pid_t> AgentInstance::StartAgent(const std::vector<std::string>& extra_args) {
  // Metrics on a port of its own: the default one may be a real agent's.
  std::vector<std::string> args = {STOCKADED_PATH, "--instance",  name_,          "--policy-dir",      policy_dir_,
                                   "--state-dir",  dir_ + "/state", "--metrics-address", "127.0.0.1:0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  ScopedFd log(open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return ErrnoStatus(errno, absl::StrCat("open ", log_path_));
  absl::StatusOr<pid_t> pid = SpawnProcess(args, {.stdout_fd = log.get(), .stderr_fd = log.get(), .netns_path = netns_path_});
  if (!pid.ok()) return pid.status();
  running_.insert(*pid);
  return *pid;
}

absl::StatusOr<int> AgentInstance::WaitExit(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    pid_t reaped = waitpid(pid, &status, WNOHANG);
    if (reaped < 0) return ErrnoStatus(errno, absl::StrCat("waitpid ", pid));
    if (reaped == pid) {
      running_.erase(pid);
      return status;
    }
    if (absl::Now() >= deadline)
      return absl::DeadlineExceededError(
          absl::StrCat("stockaded pid ", pid, " still runs after ", absl::FormatDuration(timeout)));
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void AgentInstance::Kill(pid_t pid, int signal) const {
  // Only our own children, and only while they are unreaped (a reaped pid may be reused).
  if (running_.contains(pid)) kill(pid, signal);
}

absl::StatusOr<nlohmann::json> AgentInstance::Ctl(std::vector<std::string> args) const {
  args.insert(args.begin(), {STOCKADECTL_PATH, "--instance", name_, "-o", "json"});
  absl::StatusOr<std::string> out = RunCommand(args, std::nullopt, std::chrono::seconds(20));
  if (!out.ok()) return out.status();
  nlohmann::json parsed = nlohmann::json::parse(*out, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    return absl::DataLossError(absl::StrCat("stockadectl ", absl::StrJoin(args, " "), " printed no JSON: ", *out));
  return parsed;
}

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string AgentInstance::Log() const { return ReadAll(log_path_); }

absl::StatusOr<StaticLab> MakeStaticLab(lab::Topology& topology,
                                        const std::map<std::string, std::string>& address) {
  auto sw = topology.AddNamespace("switch");
  if (!sw.ok()) return sw.status();
  auto bridge = topology.AddBridge(*sw, "br0");
  if (!bridge.ok()) return bridge.status();
  if (absl::Status s = topology.SetUp(*bridge); !s.ok()) return s;
  StaticLab lab{.endpoints_yaml = "endpoints:\n", .address = address};
  for (const auto& [name, ip] : address) {
    auto ns = topology.AddNamespace(name);
    if (!ns.ok()) return ns.status();
    lab.netns[name] = *ns;
    auto veth = topology.AddVethPair(*ns, "eth0", *sw, absl::StrCat("p-", name));
    if (!veth.ok()) return veth.status();
    for (absl::Status s : {topology.AddAddress(veth->first, absl::StrCat(ip, "/24")),
                           topology.Enslave(veth->second, *bridge), topology.SetUp(veth->first),
                           topology.SetUp(veth->second)})
      if (!s.ok()) return s;
    lab.endpoint_entries[name] =
        absl::StrCat("  - name: ", name, "\n    netns: ", ns->path, "\n    interface: eth0\n    hook: in-container\n    ipv4: ",
                     ip, "\n    labels: {tier: ", name, "}\n");
    lab.endpoints_yaml += lab.endpoint_entries[name];
  }
  return lab;
}

absl::StatusOr<std::string> TailHistory(const AgentInstance& instance, std::vector<std::string> args) {
  const std::string out_path = instance.dir() + "/tail.json";
  ScopedFd out(open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out.valid()) return absl::InternalError(absl::StrCat("open ", out_path));
  args.insert(args.begin(), {STOCKADE_TAIL_PATH, "--instance", instance.name(), "--no-follow", "-o", "json"});
  absl::StatusOr<pid_t> pid = SpawnProcess(args, {.stdout_fd = out.get()});
  if (!pid.ok()) return pid.status();
  int status = 0;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);;) {
    if (waitpid(*pid, &status, WNOHANG) == *pid) break;
    if (absl::Now() >= deadline) {
      kill(*pid, SIGKILL);
      waitpid(*pid, &status, 0);
      return absl::DeadlineExceededError("stockade-tail --no-follow did not end within 10 s");
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return ReadAll(out_path);
}

absl::Status StaticLab::Listen(const std::string& name, const std::vector<uint16_t>& ports) {
  for (uint16_t port : ports) {
    auto listener = lab::Listener::Open(netns.at(name).path, lab::Transport::kTcp, address.at(name), port);
    if (!listener.ok()) return listener.status();
    listeners.insert_or_assign({name, port}, std::move(*listener));
  }
  return absl::OkStatus();
}

lab::ProbeOutcome StaticLab::Probe(const std::string& from, const std::string& to, uint16_t port,
                                   std::chrono::milliseconds timeout) {
  auto result = lab::ProbeListener(netns.at(from).path, listeners.at({to, port}), {.timeout = timeout});
  EXPECT_TRUE(result.ok()) << from << " -> " << to << ":" << port << ": " << result.status();
  return result.ok() ? result->outcome : lab::ProbeOutcome::kTimedOut;
}

std::string StaticLab::EndpointsYaml(const std::vector<std::string>& names) const {
  std::string yaml = "endpoints:\n";
  for (const std::string& name : names) yaml += endpoint_entries.at(name);
  return yaml;
}

absl::StatusOr<absl::Duration> WaitUntil(const std::function<bool()>& done, absl::Duration timeout,
                                         absl::string_view what) {
  const absl::Time start = absl::Now();
  for (;;) {
    if (done()) return absl::Now() - start;
    if (absl::Now() - start >= timeout)
      return absl::DeadlineExceededError(absl::StrCat(what, ": not within ", absl::FormatDuration(timeout)));
    absl::SleepFor(absl::Milliseconds(50));
  }
}

namespace {

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

}  // namespace

absl::StatusOr<std::string> ScrapeMetrics(const std::string& address, std::string* content_type) {
  CURL* curl = curl_easy_init();
  std::string body;
  std::string url = absl::StrCat("http://", address, "/metrics");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  char* type = nullptr;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
  if (type && content_type) *content_type = type;
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) return absl::UnavailableError(absl::StrCat("GET ", url, ": ", curl_easy_strerror(rc)));
  if (code != 200) return absl::InternalError(absl::StrCat("GET ", url, ": HTTP ", code));
  return body;
}

absl::StatusOr<nlohmann::json> WaitForDockerError(const AgentInstance& instance, absl::string_view text,
                                                  absl::Duration timeout) {
  absl::StatusOr<nlohmann::json> status;
  absl::StatusOr<absl::Duration> waited = WaitUntil(
      [&] {
        status = instance.Ctl({"status"});
        return status.ok() && absl::StrContains(status->value("docker_error", ""), text);
      },
      timeout, absl::StrCat("docker_error containing '", text, "'"));
  if (!waited.ok())
    return absl::DeadlineExceededError(absl::StrCat(waited.status().message(), "; last status: ",
                                                    status.ok() ? status->dump() : status.status().ToString()));
  return status;
}

}  // namespace stockade::testing
