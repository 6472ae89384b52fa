// SPDX-License-Identifier: Apache-2.0
//
// The store's scale benchmark (issue 20, docs/benchmarks.md "store"): plays
// N hosts that publish M endpoints each in a real etcd, through the real key
// layout (endpoint keys, node, complete; one lease per host), then churns
// (containers stopping and starting at a given rate, for a bounded time) and
// prints what it measured:
//   - publish: keys/s and etcd requests/s of the first full publication;
//   - listing: a reader's full listing of every host, and StoreMirror's
//     ApplyListing of it;
//   - churn: the start and stop rate reached, and etcd requests per
//     container start (its put, and the share of the hosts' keepalives);
//   - watch: put to the event applied in a reader's StoreMirror, p50/p99.
// Every key it writes is under its hosts' leases, revoked at the end: the
// store is left as it was found (--keep leaves the keys).
//
// With --agent-instance=NAME (a stockaded following the same etcd), also
// what one real agent does with it: the publication to its last map write
// (from `stockadectl status`), each churned start's put to its entry in the
// agent's maps (`endpoint list --remote`, enforced_at), and the agent's CPU
// time and memory over the run.
//
//   stockade-store-load --etcd-endpoints=http://127.0.0.1:2379 --hosts=100
//       --endpoints-per-host=100 --batch=100 --churn-rate=200 --churn-seconds=20
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "stockade/agent/control_socket.h"
#include "stockade/store/endpoint_record.h"
#include "stockade/store/etcd_client.h"
#include "stockade/store/store_mirror.h"

namespace stockade {
namespace {

// Bounds that keep a mistyped flag from filling etcd or running for hours.
constexpr int kMaxHosts = 10000;
constexpr int64_t kMaxEndpoints = 1000000;
constexpr absl::Duration kMaxChurn = absl::Minutes(10);
// etcd's default --max-txn-ops.
constexpr int kMaxBatch = 128;

struct LoadOptions {
  EtcdClientOptions etcd;
  int hosts = 4;
  int endpoints_per_host = 5;
  int batch = 1;           // puts per request of the first publication (a txn when > 1)
  int writers = 4;         // threads that publish and churn
  double churn_rate = 10;  // container starts + stops per second, in all
  absl::Duration churn_duration = absl::Seconds(5);
  absl::Duration lease_ttl = absl::Seconds(30);
  int listing_repeats = 3;
  bool keep = false;
  std::string agent_instance;  // empty: no agent measured
};

constexpr char kUsage[] =
    "usage: stockade-store-load --etcd-endpoints=URL[,URL] [--cacert=F --cert=F --key=F] [--user=U "
    "--password-file=F]\n"
    "         [--hosts=N] [--endpoints-per-host=M] [--batch=B] [--writers=K] [--churn-rate=R]\n"
    "         [--churn-seconds=S] [--lease-ttl=SECONDS] [--listing-repeats=R] [--keep] [--agent-instance=NAME]\n";

absl::StatusOr<LoadOptions> ParseArgs(int argc, char** argv) {
  LoadOptions options;
  options.etcd.command_timeout = absl::Seconds(30);  // a 100k-key listing is large
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--keep") {
      options.keep = true;
      continue;
    }
    const size_t equals = arg.find('=');
    if (!absl::StartsWith(arg, "--") || equals == absl::string_view::npos)
      return absl::InvalidArgumentError(absl::StrCat("argument '", arg, "': expected --name=value"));
    const absl::string_view name = arg.substr(2, equals - 2);
    const std::string value(arg.substr(equals + 1));
    auto number = [&](auto* out, double low, double high) -> absl::Status {
      double parsed = 0;
      if (!absl::SimpleAtod(value, &parsed) || parsed < low || parsed > high)
        return absl::InvalidArgumentError(absl::StrCat("--", name, "=", value, ": expected ", low, " to ", high));
      *out = static_cast<std::remove_pointer_t<decltype(out)>>(parsed);
      return absl::OkStatus();
    };
    double seconds = 0;
    absl::Status parsed = absl::OkStatus();
    if (name == "etcd-endpoints") {
      options.etcd.endpoints = std::vector<std::string>(absl::StrSplit(value, ',', absl::SkipEmpty()));
    } else if (name == "cacert") {
      options.etcd.cacert = value;
    } else if (name == "cert") {
      options.etcd.cert = value;
    } else if (name == "key") {
      options.etcd.key = value;
    } else if (name == "user") {
      options.etcd.user = value;
    } else if (name == "password-file") {
      options.etcd.password_file = value;
    } else if (name == "hosts") {
      parsed = number(&options.hosts, 1, kMaxHosts);
    } else if (name == "endpoints-per-host") {
      parsed = number(&options.endpoints_per_host, 1, kMaxEndpoints);
    } else if (name == "batch") {
      parsed = number(&options.batch, 1, kMaxBatch);
    } else if (name == "writers") {
      parsed = number(&options.writers, 1, 64);
    } else if (name == "churn-rate") {
      parsed = number(&options.churn_rate, 0, 100000);
    } else if (name == "churn-seconds") {
      parsed = number(&seconds, 0, absl::ToDoubleSeconds(kMaxChurn));
      options.churn_duration = absl::Seconds(seconds);
    } else if (name == "lease-ttl") {
      parsed = number(&seconds, 5, 3600);
      options.lease_ttl = absl::Seconds(seconds);
    } else if (name == "agent-instance") {
      options.agent_instance = value;
    } else if (name == "listing-repeats") {
      parsed = number(&options.listing_repeats, 1, 100);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument --", name));
    }
    if (!parsed.ok()) return parsed;
  }
  if (options.etcd.endpoints.empty()) return absl::InvalidArgumentError("--etcd-endpoints is required");
  // Started containers take new addresses too; all stay below 10.255.0.0.
  if (static_cast<int64_t>(options.hosts) * options.endpoints_per_host +
          static_cast<int64_t>(options.churn_rate * absl::ToDoubleSeconds(options.churn_duration)) >
      kMaxEndpoints)
    return absl::InvalidArgumentError(
        absl::StrCat("--hosts x --endpoints-per-host + the churn's starts is more than ", kMaxEndpoints));
  return options;
}

std::string HostId(int host) { return absl::StrFormat("load-%05d", host); }

// The k-th container address of the run: 10.0.0.0/8 in order (k < 2^24).
IpAddress ContainerAddress(int64_t k) {
  absl::StatusOr<IpAddress> address =
      ParseIpAddress(absl::StrFormat("10.%d.%d.%d", (k >> 16) & 255, (k >> 8) & 255, k & 255));
  return *address;  // well-formed by construction
}

RemoteEndpoint ContainerEndpoint(const std::string& host, int64_t k) {
  return RemoteEndpoint{.address = ContainerAddress(k),
                        .labels = {{"app", absl::StrCat("app-", k % 50)}, {"tier", k % 2 == 0 ? "web" : "db"}},
                        .host = host,
                        .container_name = absl::StrCat("c-", k)};
}

// The etcd requests the run made, by kind.
struct RequestCounts {
  std::atomic<int64_t> puts{0};  // a batch's txn counts once
  std::atomic<int64_t> deletes{0};
  std::atomic<int64_t> keepalives{0};
  std::atomic<int64_t> other{0};  // grants, revokes, ranges
};

// One simulated host: its lease and its live container addresses.
struct SimulatedHost {
  std::string id;
  int64_t lease = 0;
  std::deque<int64_t> live;  // address indexes, oldest first
};

double Percentile(std::vector<double> samples, double fraction) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const size_t index = std::min(samples.size() - 1, static_cast<size_t>(fraction * samples.size()));
  return samples[index];
}

double Milliseconds(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

class StoreLoad {
 public:
  StoreLoad(const LoadOptions& options, EtcdClient etcd) : options_(options), etcd_(std::move(etcd)) {}

  absl::Status Run() {
    agent_cpu_before_ = AgentCpuSeconds();
    absl::Status measured = GrantLeases();
    // Kept alive from the grant on, as an agent does: a large publication
    // takes longer than a TTL.
    if (measured.ok()) StartKeepalives();
    if (measured.ok()) measured = Publish();
    if (measured.ok()) measured = MeasureListing();
    if (measured.ok()) measured = MeasureAgentSync();
    if (measured.ok()) measured = Churn();
    if (measured.ok()) measured = MeasureAgentChurn();
    StopKeepalives();
    ReportAgentResources();
    absl::Status cleaned = Cleanup();  // whatever failed: no keys are left behind
    if (!options_.etcd.user.empty())
      std::printf("auth: as etcd user %s, %llu tokens\n", options_.etcd.user.c_str(),
                  static_cast<unsigned long long>(etcd_.authentications()));
    return measured.ok() ? cleaned : measured;
  }

 private:
  // 1. One lease per host.
  absl::Status GrantLeases() {
    hosts_.resize(options_.hosts);
    for (int h = 0; h < options_.hosts; ++h) {
      hosts_[h].id = HostId(h);
      absl::StatusOr<EtcdLease> lease = etcd_.GrantLease(options_.lease_ttl);
      requests_.other.fetch_add(1);
      if (!lease.ok()) return lease.status();
      hosts_[h].lease = lease->id;
    }
    return absl::OkStatus();
  }

  // 2. Every host's endpoints, node and (last) complete.
  absl::Status Publish() {
    next_address_ = static_cast<int64_t>(options_.hosts) * options_.endpoints_per_host;
    std::atomic<int64_t> keys{0};
    absl::Status first_error;
    std::mutex error_mutex;
    const absl::Time start = absl::Now();
    const int64_t requests_before = requests_.puts.load();
    ForEachWriter([&](int writer) {
      for (int h = writer; h < options_.hosts; h += options_.writers) {
        SimulatedHost& host = hosts_[h];
        std::vector<StoreRecord> records;
        for (int e = 0; e < options_.endpoints_per_host; ++e) {
          const int64_t k = static_cast<int64_t>(h) * options_.endpoints_per_host + e;
          records.push_back(ContainerEndpoint(host.id, k));
          host.live.push_back(k);
        }
        records.push_back(NodeRecord{.host = host.id, .addresses = {ContainerAddress((1 << 24) - 1 - h)}});
        records.push_back(CompleteMarker{.host = host.id});
        absl::Status put = PutRecords(host, records);
        if (!put.ok()) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (first_error.ok()) first_error = put;
          return;
        }
        keys.fetch_add(static_cast<int64_t>(records.size()));
      }
    });
    const absl::Duration took = absl::Now() - start;
    published_at_ = absl::Now();
    if (!first_error.ok()) return first_error;
    const int64_t requests = requests_.puts.load() - requests_before;
    std::printf(
        "publish: %lld keys (%d hosts x %d endpoints, + node and complete each) in %.2f s: %.0f keys/s, %.0f etcd "
        "requests/s (batch %d, %d writers)\n",
        static_cast<long long>(keys.load()), options_.hosts, options_.endpoints_per_host, absl::ToDoubleSeconds(took),
        keys.load() / absl::ToDoubleSeconds(took), requests / absl::ToDoubleSeconds(took), options_.batch,
        options_.writers);
    return absl::OkStatus();
  }

  // In order, `batch` to a request; the complete marker is in the last.
  absl::Status PutRecords(const SimulatedHost& host, const std::vector<StoreRecord>& records) {
    for (size_t i = 0; i < records.size(); i += options_.batch) {
      const size_t end = std::min(records.size(), i + options_.batch);
      absl::Status status;
      if (end - i == 1) {
        status = etcd_.Put(StoreKeyOf(records[i]), EncodeStoreRecord(records[i]), host.lease).status();
      } else {
        EtcdTxn txn;
        for (size_t j = i; j < end; ++j)
          txn.success.push_back(
              EtcdPut{.key = StoreKeyOf(records[j]), .value = EncodeStoreRecord(records[j]), .lease = host.lease});
        status = etcd_.Txn(txn).status();
      }
      requests_.puts.fetch_add(1);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  // The hosts' keepalives, each lease every third of its TTL, as agents do.
  void StartKeepalives() {
    keepalive_thread_ = std::thread([this] {
      while (!stop_keepalives_.HasBeenNotified()) {
        const absl::Time round = absl::Now();
        for (const SimulatedHost& host : hosts_) {
          if (stop_keepalives_.HasBeenNotified()) return;
          if (absl::StatusOr<absl::Duration> ttl = etcd_.KeepAliveOnce(host.lease); !ttl.ok())
            std::fprintf(stderr, "keepalive: %s\n", ttl.status().ToString().c_str());
          requests_.keepalives.fetch_add(1);
        }
        stop_keepalives_.WaitForNotificationWithTimeout(options_.lease_ttl / 3 - (absl::Now() - round));
      }
    });
  }
  void StopKeepalives() {
    stop_keepalives_.Notify();
    if (keepalive_thread_.joinable()) keepalive_thread_.join();
  }

  // 3. A reader's full listing and its ApplyListing, the median of repeats.
  absl::Status MeasureListing() {
    std::vector<double> range_ms, apply_ms;
    size_t keys = 0, endpoints = 0;
    for (int r = 0; r < options_.listing_repeats; ++r) {
      const absl::Time start = absl::Now();
      absl::StatusOr<EtcdRangeResult> listing = etcd_.RangePrefix(kStoreHostsPrefix);
      requests_.other.fetch_add(1);
      if (!listing.ok()) return listing.status();
      const absl::Time listed = absl::Now();
      std::vector<StoreChange> changes;
      changes.reserve(listing->kvs.size());
      for (EtcdKeyValue& kv : listing->kvs)
        changes.push_back(StoreChange{.key = std::move(kv.key), .value = std::move(kv.value)});
      reader_ = std::make_unique<StoreMirror>("load-reader", options_.lease_ttl);
      reader_->ApplyListing(changes, listing->revision, absl::Now());
      const absl::Time applied = absl::Now();
      range_ms.push_back(Milliseconds(listed - start));
      apply_ms.push_back(Milliseconds(applied - listed));
      keys = changes.size();
      endpoints = reader_->RemoteEndpoints().size();
      listing_revision_ = listing->revision;
    }
    std::printf(
        "listing: %zu keys, %zu endpoints in the mirror: range %.1f ms + ApplyListing %.1f ms = %.1f ms (median of "
        "%d)\n",
        keys, endpoints, Percentile(range_ms, 0.5), Percentile(apply_ms, 0.5),
        Percentile(range_ms, 0.5) + Percentile(apply_ms, 0.5), options_.listing_repeats);
    const size_t expected = static_cast<size_t>(options_.hosts) * options_.endpoints_per_host;
    if (endpoints != expected)
      return absl::InternalError(
          absl::StrCat("listing: the mirror has ", endpoints, " endpoints, ", expected, " were published"));
    return absl::OkStatus();
  }

  // 4. Stops and starts at churn_rate in all (a stop of a host's oldest
  // container, then a start of a new one), watched by the reader's mirror.
  absl::Status Churn() {
    if (options_.churn_rate <= 0 || options_.churn_duration <= absl::ZeroDuration()) return absl::OkStatus();
    std::mutex sent_mutex;
    std::map<std::string, absl::Time> sent;  // key of a start -> just before its put
    std::vector<double> latency_ms;
    std::atomic<int64_t> watched{0};
    EtcdWatchCancel cancel;
    absl::Status watch_ended;
    std::thread watcher([&] {
      watch_ended = etcd_.Watch(
          {.key = std::string(kStoreHostsPrefix), .start_revision = listing_revision_ + 1},
          [&](const EtcdWatchEvent& event) {
            reader_->ApplyChange(StoreChange{.key = event.kv.key,
                                             .value = event.kv.value,
                                             .deleted = event.type == EtcdWatchEvent::Type::kDelete},
                                 event.kv.mod_revision, absl::Now());
            if (event.type != EtcdWatchEvent::Type::kPut) return absl::OkStatus();
            const absl::Time applied = absl::Now();
            std::lock_guard<std::mutex> lock(sent_mutex);
            if (auto it = sent.find(event.kv.key); it != sent.end()) {
              latency_ms.push_back(Milliseconds(applied - it->second));
              sent.erase(it);
              watched.fetch_add(1);
            }
            return absl::OkStatus();
          },
          &cancel);
    });
    // The watch is created before the churn starts: a start before it would
    // still be delivered (from the listing's revision), only late.
    absl::SleepFor(absl::Milliseconds(200));

    std::atomic<int64_t> starts{0}, stops{0};
    std::atomic<int64_t> next_address{next_address_};
    absl::Status first_error;
    std::mutex error_mutex;
    const int64_t puts_before = requests_.puts.load(), deletes_before = requests_.deletes.load(),
                  keepalives_before = requests_.keepalives.load();
    // Writers beyond the hosts have none to churn: the rate is shared by the rest.
    const int churning_writers = std::min(options_.writers, options_.hosts);
    const double rate_per_writer = options_.churn_rate / churning_writers;
    const absl::Time start = absl::Now();
    const absl::Time end = start + options_.churn_duration;
    ForEachWriter([&](int writer) {
      std::vector<SimulatedHost*> mine;
      for (int h = writer; h < options_.hosts; h += options_.writers) mine.push_back(&hosts_[h]);
      if (mine.empty()) return;
      for (int64_t op = 0;; ++op) {
        const absl::Time due = start + absl::Seconds(op / rate_per_writer);
        if (due >= end) return;
        absl::SleepFor(due - absl::Now());  // negative: behind, no sleep
        SimulatedHost& host = *mine[(op / 2) % mine.size()];
        absl::Status status;
        if (op % 2 == 0 && !host.live.empty()) {
          const int64_t k = host.live.front();
          host.live.pop_front();
          status = etcd_.Delete(EndpointKey(host.id, ContainerAddress(k))).status();
          requests_.deletes.fetch_add(1);
          stops.fetch_add(1);
        } else {
          const int64_t k = next_address.fetch_add(1);
          const RemoteEndpoint endpoint = ContainerEndpoint(host.id, k);
          const std::string key = StoreKeyOf(endpoint);
          {
            std::lock_guard<std::mutex> lock(sent_mutex);
            sent[key] = absl::Now();
            agent_sent_[endpoint.address.ToString()] = sent[key];
          }
          status = etcd_.Put(key, EncodeStoreRecord(endpoint), host.lease).status();
          requests_.puts.fetch_add(1);
          host.live.push_back(k);
          starts.fetch_add(1);
        }
        if (!status.ok()) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (first_error.ok()) first_error = status;
          return;
        }
      }
    });
    // The window asked for: the ops were spread over it.
    const absl::Duration took = std::max(absl::Now() - start, options_.churn_duration);
    const int64_t puts = requests_.puts.load() - puts_before, deletes = requests_.deletes.load() - deletes_before,
                  keepalives = requests_.keepalives.load() - keepalives_before;
    // The last events, bounded.
    for (int i = 0; i < 100 && watched.load() < starts.load(); ++i) absl::SleepFor(absl::Milliseconds(50));
    cancel.Cancel();
    watcher.join();
    if (!first_error.ok()) return first_error;
    if (watch_ended.code() != absl::StatusCode::kCancelled) return watch_ended;

    const double seconds = absl::ToDoubleSeconds(took);
    std::printf(
        "churn: %.1f s at %.0f starts+stops/s asked: %lld starts, %lld stops, %.1f/s reached; etcd requests: %lld "
        "puts, %lld deletes, %lld keepalives (%d leases, TTL %.0f s)\n",
        seconds, options_.churn_rate, static_cast<long long>(starts.load()), static_cast<long long>(stops.load()),
        (starts.load() + stops.load()) / seconds, static_cast<long long>(puts), static_cast<long long>(deletes),
        static_cast<long long>(keepalives), options_.hosts, absl::ToDoubleSeconds(options_.lease_ttl));
    const double per_start = starts.load() > 0 ? static_cast<double>(puts) / starts.load() : 0;
    const double keepalive_share = starts.load() > 0 ? static_cast<double>(keepalives) / starts.load() : 0;
    std::printf("per container start: %.2f etcd requests (its put), %.2f with the keepalives of the same time\n",
                per_start, per_start + keepalive_share);
    std::printf(
        "watch: %lld of %lld starts delivered into the reader's StoreMirror: put to applied p50 %.2f ms, "
        "p99 %.2f ms, max %.2f ms\n",
        static_cast<long long>(watched.load()), static_cast<long long>(starts.load()), Percentile(latency_ms, 0.5),
        Percentile(latency_ms, 0.99), Percentile(latency_ms, 1.0));
    if (watched.load() < starts.load())
      return absl::DeadlineExceededError(
          absl::StrCat("watch: ", starts.load() - watched.load(), " starts not delivered within 5 s"));
    return absl::OkStatus();
  }

  // The agent's control socket: `request`'s answer.
  absl::StatusOr<nlohmann::json> AskAgent(const nlohmann::json& request) const {
    return ControlRequest(DefaultControlSocketPath(options_.agent_instance), request);
  }

  // 3b. The publication to the agent's maps: until `status` counts every
  // published endpoint as written (remote_enforced), from the end of the
  // publication (the agent was started before it).
  absl::Status MeasureAgentSync() {
    if (options_.agent_instance.empty()) return absl::OkStatus();
    const size_t expected = static_cast<size_t>(options_.hosts) * options_.endpoints_per_host;
    size_t enforced = 0;
    for (const absl::Time deadline = absl::Now() + absl::Minutes(5); absl::Now() < deadline;) {
      absl::StatusOr<nlohmann::json> status = AskAgent({{"command", "status"}});
      if (!status.ok()) return status.status();
      enforced = status->value("remote_enforced", size_t{0});
      if (enforced >= expected) {
        std::printf("agent: all %zu remote endpoints in its maps %.2f s after the publication ended\n", expected,
                    absl::ToDoubleSeconds(absl::Now() - published_at_));
        return absl::OkStatus();
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("agent: ", enforced, " of ", expected, " remote endpoints in its maps after 5 minutes"));
  }

  // 4b. Each churned start's put to its entry in the agent's maps.
  absl::Status MeasureAgentChurn() {
    if (options_.agent_instance.empty() || agent_sent_.empty()) return absl::OkStatus();
    std::vector<double> latency_ms;
    for (const absl::Time deadline = absl::Now() + absl::Seconds(10);;) {
      absl::StatusOr<nlohmann::json> list = AskAgent({{"command", "endpoint list"}, {"remote", true}});
      if (!list.ok()) return list.status();
      latency_ms.clear();
      for (const nlohmann::json& e : (*list)["endpoints"]) {
        auto sent = agent_sent_.find(e.value("ipv4", ""));
        const int64_t at = e.value("enforced_at_ns", int64_t{0});
        if (sent != agent_sent_.end() && at > 0) latency_ms.push_back(Milliseconds(absl::FromUnixNanos(at) - sent->second));
      }
      // Starts stopped again within the churn are gone: most are not.
      if (latency_ms.size() >= agent_sent_.size() * 9 / 10 || absl::Now() >= deadline) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    std::printf(
        "agent: %zu of %zu churned starts in its maps: put to map write p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
        latency_ms.size(), agent_sent_.size(), Percentile(latency_ms, 0.5), Percentile(latency_ms, 0.99),
        Percentile(latency_ms, 1.0));
    return absl::OkStatus();
  }

  // The agent's pid, from its instance's lock file.
  pid_t AgentPid() const {
    std::ifstream lock(absl::StrCat("/run/stockade/", options_.agent_instance, ".lock"));
    pid_t pid = 0;
    lock >> pid;
    return pid;
  }
  // utime + stime of the agent, or nullopt without one.
  std::optional<double> AgentCpuSeconds() const {
    if (options_.agent_instance.empty()) return std::nullopt;
    std::ifstream stat(absl::StrCat("/proc/", AgentPid(), "/stat"));
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    // Fields after the command's closing parenthesis: state is 3, utime 14, stime 15.
    std::vector<std::string> fields = absl::StrSplit(text.substr(text.rfind(')') + 2), ' ');
    double utime = 0, stime = 0;
    if (fields.size() < 13 || !absl::SimpleAtod(fields[11], &utime) || !absl::SimpleAtod(fields[12], &stime))
      return std::nullopt;
    return (utime + stime) / sysconf(_SC_CLK_TCK);
  }
  void ReportAgentResources() const {
    std::optional<double> after = AgentCpuSeconds();
    if (!after || !agent_cpu_before_) return;
    std::ifstream status(absl::StrCat("/proc/", AgentPid(), "/status"));
    std::string line, rss = "?", peak = "?";
    while (std::getline(status, line)) {
      if (absl::StartsWith(line, "VmRSS:")) rss = std::string(absl::StripAsciiWhitespace(absl::string_view(line).substr(6)));
      if (absl::StartsWith(line, "VmHWM:")) peak = std::string(absl::StripAsciiWhitespace(absl::string_view(line).substr(6)));
    }
    const double wall = absl::ToDoubleSeconds(absl::Now() - run_started_);
    std::printf("agent: %.2f s of CPU over the run's %.1f s (%.0f%% of one core); RSS %s, peak %s\n",
                *after - *agent_cpu_before_, wall, 100 * (*after - *agent_cpu_before_) / wall, rss.c_str(),
                peak.c_str());
  }

  // 5. Revoking the leases deletes every key of the run.
  absl::Status Cleanup() {
    if (options_.keep) return absl::OkStatus();
    absl::Status first_error;
    for (const SimulatedHost& host : hosts_) {
      if (host.lease == 0) continue;
      absl::Status revoked = etcd_.RevokeLease(host.lease);
      requests_.other.fetch_add(1);
      if (!revoked.ok() && first_error.ok()) first_error = revoked;
    }
    return first_error;
  }

  template <typename Work>
  void ForEachWriter(Work work) {
    std::vector<std::thread> writers;
    for (int w = 0; w < options_.writers; ++w) writers.emplace_back(work, w);
    for (std::thread& writer : writers) writer.join();
  }

  const LoadOptions& options_;
  EtcdClient etcd_;
  std::vector<SimulatedHost> hosts_;
  int64_t next_address_ = 0;
  RequestCounts requests_;
  std::unique_ptr<StoreMirror> reader_;
  int64_t listing_revision_ = 0;
  std::thread keepalive_thread_;
  absl::Notification stop_keepalives_;
  const absl::Time run_started_ = absl::Now();
  absl::Time published_at_;
  std::map<std::string, absl::Time> agent_sent_;  // a churned start's address -> just before its put
  std::optional<double> agent_cpu_before_;
};

}  // namespace
}  // namespace stockade

int main(int argc, char** argv) {
  absl::StatusOr<stockade::LoadOptions> options = stockade::ParseArgs(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "stockade-store-load: %s\n%s", std::string(options.status().message()).c_str(),
                 stockade::kUsage);
    return 2;
  }
  std::printf("command: %s\n", absl::StrJoin(argv, argv + argc, " ").c_str());
  absl::StatusOr<stockade::EtcdClient> etcd = stockade::EtcdClient::Create(options->etcd);
  if (!etcd.ok()) {
    std::fprintf(stderr, "stockade-store-load: %s\n", etcd.status().ToString().c_str());
    return 1;
  }
  stockade::StoreLoad load(*options, *std::move(etcd));
  if (absl::Status ran = load.Run(); !ran.ok()) {
    std::fprintf(stderr, "stockade-store-load: %s\n", ran.ToString().c_str());
    return 1;
  }
  std::printf("done\n");
  return 0;
}
