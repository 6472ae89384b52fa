// SPDX-License-Identifier: Apache-2.0
//
// stockade-netns-demo: builds the four-tier segmentation lab (namespaces
// standing in for containers, see testlib/lab/segmentation_lab.h), tries
// every hop and every shortcut with real traffic, and shows what the
// datapath decided and why. Removes everything it made before it exits.
//
//   sudo stockade-netns-demo          run the probes, print, tear down
//   sudo stockade-netns-demo --keep   ... then leave the lab up until Enter
//   sudo stockade-netns-demo --pin    pin the maps (bpftool can read them)
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "maps/abi.h"
#include "stockade/datapath/event_reader.h"
#include "stockade/version/version.h"
#include "testlib/lab/segmentation_lab.h"

namespace stockade::lab {
namespace {

// Allowed probes answer within a millisecond; the timeout is what a denied
// one costs, so it stays short.
constexpr std::chrono::milliseconds kAllowTimeout{1000};
constexpr std::chrono::milliseconds kDenyTimeout{300};

volatile std::sig_atomic_t g_stop = 0;
void OnStopSignal(int) { g_stop = 1; }

struct Options {
  bool keep = false;
  bool pin = false;
};

struct ProbeRow {
  Probe probe;
  bool allowed;
};

void Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--keep] [--pin] | --version\n"
               "  --keep  leave the lab running until Enter or Ctrl-C\n"
               "  --pin   pin the maps under /sys/fs/bpf/stockade/lab-*\n",
               argv0);
}

std::vector<ProbeRow> Rows(const SegmentationLab& lab) {
  const Tier *frontend = &lab.frontend(), *web = &lab.web(),
             *backend = &lab.backend(), *db = &lab.db();
  constexpr auto kTcp = ProbeProtocol::kTcp;
  constexpr auto kUdp = ProbeProtocol::kUdp;
  constexpr auto kPing = ProbeProtocol::kIcmpEcho;
  constexpr auto kV6 = IpFamily::kIpv6;
  return {
      // Each hop, on its port.
      {{frontend, web, kTcp, 80}, true},
      {{web, backend, kTcp, 8080}, true},
      {{backend, db, kTcp, 5432}, true},
      {{backend, db, kTcp, 5432, kV6}, true},
      {{web, backend, kUdp, kDnsPort}, true},
      {{frontend, web, kPing, 0}, true},
      {{backend, db, kPing, 0, kV6}, true},
      // Skipping a tier: explicit denies.
      {{frontend, backend, kTcp, 8080}, false},
      {{frontend, db, kTcp, 5432}, false},
      {{web, db, kTcp, 5432}, false},
      {{web, db, kTcp, 5432, kV6}, false},
      {{frontend, db, kPing, 0}, false},
      // Backwards, and the right peer on the wrong port: default deny.
      {{web, frontend, kTcp, 80}, false},
      {{db, backend, kTcp, 5432}, false},
      {{frontend, web, kTcp, 8080}, false},
      {{web, backend, kUdp, 8080}, false},
  };
}

const Tier* TierOfEndpoint(const SegmentationLab& lab, uint32_t ifindex) {
  for (const Tier* tier : lab.chain()) {
    if (tier->endpoint.ifindex == ifindex) return tier;
  }
  return nullptr;
}

// "POLICY_DENIED at frontend egress, rule 91".
std::string Reason(const SegmentationLab& lab, const drop_event& event) {
  const Tier* tier = TierOfEndpoint(lab, event.ifindex);
  return absl::StrFormat(
      "%s at %s %s, rule %u", std::string(DropReasonName(event.reason)),
      tier ? tier->name : absl::StrCat("ifindex ", event.ifindex),
      event.direction == DIR_EGRESS ? "egress" : "ingress", event.rule_id);
}

void PrintIntroduction(const SegmentationLab& lab) {
  std::printf(
      "stockade netns demo: four network namespaces stand in for "
      "containers\n\n"
      "  frontend --tcp/80--> web --tcp/8080--> backend --tcp/5432--> db\n\n"
      "Each tier's eth0 is a veth whose other end is a port of a bridge in "
      "the\nnamespace %s. stockade's programs run on those host-side "
      "veths\nand decide each new flow from its maps: tier address -> "
      "identity (ipcache),\nand rules between identities (policy). Each hop "
      "is allowed on its port\n(plus udp/53 and ping), skipping a tier is "
      "denied by rules 91-93, and\neverything else meets the default deny "
      "(rule 0). Replies pass by conntrack.\n\n",
      lab.switch_netns().name.c_str());
  std::printf("  %-9s %-22s %-11s %-12s %-9s %s\n", "tier", "namespace", "IPv4",
              "IPv6", "identity", "enforced on");
  for (const Tier* tier : lab.chain()) {
    std::printf("  %-9s %-22s %-11s %-12s %-9u %s (ifindex %u)\n",
                tier->name.c_str(), tier->netns.name.c_str(),
                tier->ipv4.c_str(), tier->ipv6.c_str(), tier->identity,
                tier->hook->ifname.c_str(), tier->endpoint.ifindex);
  }
  if (!lab.instance().empty()) {
    std::printf("\nMaps pinned under /sys/fs/bpf/stockade/%s\n",
                lab.instance().c_str());
  }
}

// Runs the probes and prints the table; returns how many surprised us.
// Drop events that belong to no probe go to `other_events`.
int RunProbes(SegmentationLab& lab, std::vector<drop_event>& other_events) {
  std::printf(
      "\nProbes (allowed ones answer at once; a denied one waits out %lld "
      "ms):\n\n",
      static_cast<long long>(kDenyTimeout.count()));
  std::printf("  %-34s %-8s %-10s %s\n", "probe", "expected", "got", "detail");
  int surprises = 0;
  for (const ProbeRow& row : Rows(lab)) {
    if (g_stop) break;
    absl::StatusOr<ProbeResult> result = lab.Run(
        row.probe, {.timeout = row.allowed ? kAllowTimeout : kDenyTimeout});
    std::string got, detail;
    if (!result.ok()) {
      got = "error";
      detail = result.status().ToString();
    } else {
      got = result->answered() ? "allowed" : "denied";
      detail = result->detail;
    }
    // A drop names its reason; an allowed probe's flow has no event.
    if (absl::StatusOr<std::vector<drop_event>> events = lab.DrainEvents();
        events.ok()) {
      for (const drop_event& event : *events) {
        if (EventIsFor(event, row.probe)) {
          detail = Reason(lab, event);
        } else {
          other_events.push_back(event);
        }
      }
    }
    const bool as_expected = result.ok() && result->answered() == row.allowed;
    if (!as_expected) ++surprises;
    std::printf("  %-34s %-8s %-10s %s%s\n", Describe(row.probe).c_str(),
                row.allowed ? "allow" : "deny", got.c_str(), detail.c_str(),
                as_expected ? "" : "   <-- UNEXPECTED");
  }
  return surprises;
}

void PrintEventsAndCounters(SegmentationLab& lab,
                            std::vector<drop_event> other_events) {
  absl::StatusOr<std::vector<drop_event>> late = lab.DrainEvents();
  if (late.ok()) {
    other_events.insert(other_events.end(), late->begin(), late->end());
  }
  std::printf("\nDrop events other than the probes' own (shown above):\n");
  if (other_events.empty()) std::printf("  none\n");
  for (const drop_event& event : other_events) {
    std::printf("  %s\n", FormatDropEvent(event).c_str());
  }

  std::printf("\nCounters (all hooks, non-zero only):\n");
  std::printf("  %-20s %-8s %-10s %8s %10s\n", "reason", "dir", "verdict",
              "packets", "bytes");
  std::vector<int> reasons = {REASON_NONE};
  for (int value = STOCKADE_REASON_BASE; value <= STOCKADE_REASON_LAST;
       ++value) {
    reasons.push_back(-value);
  }
  const char* verdicts[VERDICT_MAX] = {"forwarded", "dropped", "audit"};
  for (int reason : reasons) {
    for (uint32_t dir = 0; dir < DIR_MAX; ++dir) {
      for (uint32_t verdict = 0; verdict < VERDICT_MAX; ++verdict) {
        absl::StatusOr<metrics_value> counter =
            lab.datapath().Counter(reason, dir, verdict);
        if (!counter.ok() || counter->packets == 0) continue;
        std::printf("  %-20s %-8s %-10s %8llu %10llu\n",
                    std::string(DropReasonName(reason)).c_str(),
                    dir == DIR_EGRESS ? "egress" : "ingress", verdicts[verdict],
                    static_cast<unsigned long long>(counter->packets),
                    static_cast<unsigned long long>(counter->bytes));
      }
    }
  }
}

void WaitForEnterOrSignal(const SegmentationLab& lab) {
  std::printf(
      "\nThe lab stays up. Try, from another shell:\n"
      "  ip netns exec %s ping -c 1 %s\n"
      "  ip netns exec %s ping -c 1 %s     (denied)\n"
      "Press Enter or Ctrl-C to tear it down.\n",
      lab.frontend().netns.name.c_str(), lab.web().ipv4.c_str(),
      lab.frontend().netns.name.c_str(), lab.db().ipv4.c_str());
  std::fflush(stdout);
  while (!g_stop) {
    pollfd input = {.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&input, 1, -1);
    if (ready > 0) break;  // a line, or end of input
    if (ready < 0 && errno != EINTR) break;
  }
}

int Main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--keep") == 0) {
      options.keep = true;
    } else if (std::strcmp(argv[i], "--pin") == 0) {
      options.pin = true;
    } else if (std::strcmp(argv[i], "--version") == 0) {
      return stockade::PrintVersion("stockade-netns-demo");
    } else {
      Usage(argv[0]);
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "stockade-netns-demo: needs root (namespaces, BPF)\n");
    return 2;
  }
  // Ctrl-C must not skip the teardown: the handler only sets a flag, and
  // without SA_RESTART a waiting poll() returns at once.
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);

  std::printf("Building the lab...\n");
  std::fflush(stdout);
  absl::StatusOr<std::unique_ptr<SegmentationLab>> lab =
      SegmentationLab::Create({.pin_maps = options.pin});
  if (!lab.ok()) {
    std::fprintf(stderr, "stockade-netns-demo: %s\n",
                 lab.status().ToString().c_str());
    return 1;
  }
  PrintIntroduction(**lab);
  std::vector<drop_event> other_events;
  const int surprises = RunProbes(**lab, other_events);
  PrintEventsAndCounters(**lab, std::move(other_events));
  if (options.keep && !g_stop) WaitForEnterOrSignal(**lab);

  std::printf("\nTearing down...\n");
  const absl::Status teardown = (*lab)->Teardown();
  if (!teardown.ok()) {
    std::fprintf(stderr, "stockade-netns-demo: teardown: %s\n",
                 teardown.ToString().c_str());
    return 1;
  }
  if (g_stop) {
    std::printf("Interrupted.\n");
    return 130;
  }
  std::printf(surprises == 0 ? "Every probe behaved as the policy says.\n"
                             : "%d probe(s) did not behave as expected.\n",
              surprises);
  return surprises == 0 ? 0 : 1;
}

}  // namespace
}  // namespace stockade::lab

int main(int argc, char** argv) { return stockade::lab::Main(argc, argv); }
