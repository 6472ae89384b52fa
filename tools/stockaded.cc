// SPDX-License-Identifier: Apache-2.0
//
// stockaded: keeps the datapath's maps and attachments true to Docker, the
// static endpoints file and the policy directory. See docs/architecture.md.
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "stockade/agent/agent.h"
#include "stockade/agent/control_socket.h"
#include "stockade/os/capabilities.h"
#include "stockade/version/version.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

constexpr char kUsage[] = R"(Usage: stockaded [options]
Keeps the datapath's maps and attachments true to Docker, the static endpoints
file and the policy directory.

Options:
  --instance NAME          state under /sys/fs/bpf/stockade/NAME (default: default)
  --policy-dir DIR         policy files (*.yaml), reloaded on change
  --static-endpoints FILE  endpoints that are not Docker containers
  --no-docker              do not watch Docker
  --socket PATH            control socket (default /run/stockade/NAME.sock)
  --events-socket PATH     drop events for stockade-tail (default /run/stockade/NAME.events.sock)
  --metrics-address ADDR   Prometheus metrics at http://ADDR/metrics (default 127.0.0.1:9968; port 0: any free)
  --no-metrics             do not serve metrics
  --state-dir DIR          identity table (default /var/lib/stockade/NAME)
  --resync SECONDS         full resync period (default 30)
  --audit                  report would-be drops, let traffic pass
  --no-flow-records        report drops and audits only, no allowed new flows (on by default)
  --tc-mode auto|tcx|classic
  --xdp                    XDP in place of TC ingress on host-side veths (TC is faster on veth)
  --etcd-endpoints URLS     share endpoints with other hosts through etcd (comma-separated;
                           docs/multihost.md); with:
  --etcd-cacert FILE       CA of etcd's server certificate
  --etcd-cert FILE         client certificate, with --etcd-key FILE (private to its owner)
  --etcd-user NAME         etcd's own auth: this host's user, with
  --etcd-password-file F   its password (a file private to its owner; scripts/etcd-auth-setup.sh)
  --host-id NAME           this host's subtree in etcd (default: the hostname)
  --etcd-lease-ttl SECONDS how long others keep this host's endpoints after it died (default 20)
  --uninstall              detach everything of the instance, remove its pins, socket and lock, exit
  -h, --help               this text
  --version                print the version and the git revision, exit
Docker is reached as the docker CLI does: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH.
Needs CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_SYS_PTRACE (root has them); once
loaded it keeps only these and sets no_new_privs.
)";

}  // namespace

int main(int argc, char** argv) {
  // No core dump and no ptrace attach by others: libcurl holds the Docker TLS
  // client key in this process's memory (docs/security.md).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  stockade::AgentOptions options;
  stockade::StoreOptions store;
  bool uninstall = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "stockaded: %s needs a value\n%s", arg.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--instance") {
      options.instance = value();
    } else if (arg == "--policy-dir") {
      options.policy_dir = value();
    } else if (arg == "--static-endpoints") {
      options.static_endpoints = value();
    } else if (arg == "--no-docker") {
      options.docker = false;
    } else if (arg == "--socket") {
      options.socket_path = value();
    } else if (arg == "--events-socket") {
      options.events_socket = value();
    } else if (arg == "--metrics-address") {
      options.metrics_address = value();
    } else if (arg == "--no-metrics") {
      options.metrics_address.clear();
    } else if (arg == "--state-dir") {
      options.state_dir = value();
    } else if (arg == "--resync") {
      int seconds;
      if (!absl::SimpleAtoi(value(), &seconds) || seconds <= 0) {
        std::fprintf(stderr, "stockaded: --resync takes a positive number of seconds\n");
        return 2;
      }
      options.resync_interval = absl::Seconds(seconds);
    } else if (arg == "--audit") {
      options.audit = true;
    } else if (arg == "--no-flow-records") {
      options.flow_records = false;
    } else if (arg == "--tc-mode") {
      std::string mode = value();
      if (mode == "auto") options.tc_mode = stockade::TcAttachMode::kAuto;
      else if (mode == "tcx") options.tc_mode = stockade::TcAttachMode::kTcx;
      else if (mode == "classic") options.tc_mode = stockade::TcAttachMode::kClassic;
      else {
        std::fprintf(stderr, "stockaded: --tc-mode is auto, tcx or classic, not '%s'\n", mode.c_str());
        return 2;
      }
    } else if (arg == "--xdp") {
      options.xdp = true;
    } else if (arg == "--etcd-endpoints") {
      store.etcd.endpoints = absl::StrSplit(value(), ',', absl::SkipEmpty());
    } else if (arg == "--etcd-cacert") {
      store.etcd.cacert = value();
    } else if (arg == "--etcd-cert") {
      store.etcd.cert = value();
    } else if (arg == "--etcd-key") {
      store.etcd.key = value();
    } else if (arg == "--etcd-user") {
      store.etcd.user = value();
    } else if (arg == "--etcd-password-file") {
      store.etcd.password_file = value();
    } else if (arg == "--host-id") {
      store.host_id = value();
    } else if (arg == "--etcd-lease-ttl") {
      int seconds;
      if (!absl::SimpleAtoi(value(), &seconds) || seconds < 2) {
        std::fprintf(stderr, "stockaded: --etcd-lease-ttl takes a number of seconds, at least 2\n");
        return 2;
      }
      store.lease_ttl = absl::Seconds(seconds);
    } else if (arg == "--uninstall") {
      uninstall = true;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--version") {
      return stockade::PrintVersion("stockaded");
    } else {
      std::fprintf(stderr, "stockaded: unknown option '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (options.socket_path.empty()) options.socket_path = stockade::DefaultControlSocketPath(options.instance);
  if (!store.etcd.endpoints.empty()) {
    if (store.host_id.empty()) {
      char name[256] = {};
      gethostname(name, sizeof(name) - 1);
      store.host_id = name;
    }
    options.store = std::move(store);
  } else if (!store.etcd.cacert.empty() || !store.etcd.cert.empty() || !store.etcd.key.empty() ||
             !store.etcd.user.empty() || !store.etcd.password_file.empty() || !store.host_id.empty()) {
    std::fprintf(stderr, "stockaded: --etcd-* and --host-id need --etcd-endpoints\n");
    return 2;
  }
  if (uninstall) {
    absl::Status s = stockade::UninstallAgentInstance(options.instance, options.socket_path);
    if (!s.ok()) {
      std::fprintf(stderr, "stockaded: uninstall %s: %s\n", options.instance.c_str(), std::string(s.message()).c_str());
      return 1;
    }
    std::printf("stockaded: instance %s uninstalled\n", options.instance.c_str());
    return 0;
  }

  // Event queues grow and shrink by megabytes under a burst of drops; glibc
  // would hand the memory back and fault it in again each time (sysmalloc
  // led a profile at 1M events/s). Keep what was once needed.
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_MMAP_THRESHOLD, 64 << 20);

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (absl::Status s = stockade::CheckCapabilities(stockade::kAgentCapabilities); !s.ok()) {
    std::fprintf(stderr, "stockaded: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  // Once loaded, the agent keeps only these (include/stockade/os/capabilities.h).
  options.least_privilege = true;
  auto agent = stockade::Agent::Start(options);
  if (!agent.ok()) {
    std::fprintf(stderr, "stockaded: %s\n", std::string(agent.status().message()).c_str());
    return 1;
  }
  auto server = stockade::ControlServer::Start(
      options.socket_path, [&](const nlohmann::json& request) { return (*agent)->HandleControl(request); });
  if (!server.ok()) {
    std::fprintf(stderr, "stockaded: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "stockaded: instance %s running; control socket %s\n", options.instance.c_str(),
               options.socket_path.c_str());
  absl::Status s = (*agent)->Run(g_stop);
  std::fprintf(stderr, "stockaded: stopping; enforcement stays in place (pinned)\n");
  return s.ok() ? 0 : 1;
}
