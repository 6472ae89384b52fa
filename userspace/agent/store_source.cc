// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/store_source.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "stockade/agent/agent_log.h"
#include "stockade/os/errno_status.h"

namespace stockade {
namespace {

// etcd refuses a transaction of more than --max-txn-ops operations (128 by
// default): a publication is written in transactions of at most this many.
constexpr size_t kOpsPerTxn = 100;
// The reader's wait before it lists again after a failure, doubling up to
// the cap: short, so that a store back from a restart is followed within
// seconds (issue 20's target: reconverged within 5 s).
constexpr absl::Duration kReadBackoffFirst = absl::Milliseconds(200);
constexpr absl::Duration kReadBackoffCap = absl::Seconds(2);
// The publisher looks again at least this often: retained hosts expire,
// failed writes are retried.
constexpr absl::Duration kPublishTick = absl::Seconds(1);
// After a failed write or keepalive.
constexpr absl::Duration kPublishRetry = absl::Milliseconds(500);

std::vector<StoreChange> ListingChanges(const EtcdRangeResult& range) {
  std::vector<StoreChange> keys;
  keys.reserve(range.kvs.size());
  for (const EtcdKeyValue& kv : range.kvs) keys.push_back({.key = kv.key, .value = kv.value});
  return keys;
}

}  // namespace

absl::StatusOr<std::unique_ptr<StoreSource>> StoreSource::Start(StoreOptions options) {
  if (absl::Status s = ValidateHostId(options.host_id); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("store host id: ", s.message()));
  if (options.lease_ttl < absl::Seconds(2))
    return absl::InvalidArgumentError(
        absl::StrCat("store lease TTL ", absl::FormatDuration(options.lease_ttl), ": at least 2s"));
  auto client = EtcdClient::Create(options.etcd);
  if (!client.ok()) return client.status();
  ScopedFd changed(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!changed.valid()) return ErrnoStatus(errno, "eventfd for the store");
  std::unique_ptr<StoreSource> source(new StoreSource(std::move(options), std::move(*client), std::move(changed)));
  source->reader_ = std::thread([s = source.get()] { s->ReadLoop(); });
  source->publisher_ = std::thread([s = source.get()] { s->PublishLoop(); });
  return source;
}

StoreSource::StoreSource(StoreOptions options, EtcdClient client, ScopedFd changed)
    : options_(std::move(options)),
      client_(std::move(client)),
      changed_(std::move(changed)),
      mirror_(options_.host_id, options_.lease_ttl) {}

StoreSource::~StoreSource() {
  {
    std::lock_guard<std::mutex> hold(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  watch_cancel_.Cancel();
  if (reader_.joinable()) reader_.join();
  if (publisher_.joinable()) publisher_.join();
  // A clean stop: every key of this host goes at once, with its lease.
  if (lease_ != 0) {
    if (absl::Status s = client_.RevokeLease(lease_); !s.ok())
      AgentLog(absl::StrCat("store: this host's keys stay until their lease expires: ", s.message()));
  }
}

void StoreSource::SignalChanged() {
  uint64_t one = 1;
  (void)!write(changed_.get(), &one, sizeof(one));
}

void StoreSource::ClearChanged() {
  uint64_t count;
  (void)!read(changed_.get(), &count, sizeof(count));
}

bool StoreSource::SleepUnlessStopping(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  wake_.wait_for(lock, absl::ToChronoMilliseconds(d), [this] { return stopping_.load(); });
  return !stopping_;
}

void StoreSource::ReadLoop() {
  absl::Duration backoff = kReadBackoffFirst;
  bool first = true;
  while (!stopping_) {
    auto listing = client_.RangePrefix(kStoreHostsPrefix);
    if (!listing.ok()) {
      {
        std::lock_guard<std::mutex> hold(mu_);
        if (connected_ || read_error_.empty())
          AgentLog(absl::StrCat("store unreachable, what is known stays enforced: ", listing.status().message()));
        connected_ = false;
        read_error_ = std::string(listing.status().message());
      }
      if (!SleepUnlessStopping(backoff)) return;
      backoff = std::min(backoff * 2, kReadBackoffCap);
      continue;
    }
    backoff = kReadBackoffFirst;
    {
      std::lock_guard<std::mutex> hold(mu_);
      bool changed = mirror_.ApplyListing(ListingChanges(*listing), listing->revision, absl::Now());
      if (!first) ++stats_.relists;
      first = false;
      if (!connected_) AgentLog(absl::StrCat("store listed: ", listing->kvs.size(), " keys at revision ", listing->revision));
      listed_ = connected_ = true;
      read_error_.clear();
      if (changed) stats_.last_change = absl::Now();
      // The publisher waits for the first listing (this host's keys in it).
      wake_.notify_all();
      if (changed) SignalChanged();
    }
    absl::Status watched = client_.Watch(
        {.key = std::string(kStoreHostsPrefix), .prefix = true, .start_revision = listing->revision + 1},
        [this](const EtcdWatchEvent& event) {
          std::lock_guard<std::mutex> hold(mu_);
          StoreChange change{.key = event.kv.key, .value = event.kv.value,
                             .deleted = event.type == EtcdWatchEvent::Type::kDelete};
          if (mirror_.ApplyChange(change, event.kv.mod_revision, absl::Now())) {
            stats_.last_change = absl::Now();
            SignalChanged();
          }
          return absl::OkStatus();
        },
        &watch_cancel_);
    if (stopping_) return;
    {
      std::lock_guard<std::mutex> hold(mu_);
      connected_ = false;
      read_error_ = std::string(watched.message());
    }
    AgentLog(absl::StrCat("store watch ended, listing again: ", watched.message()));
    if (!IsEtcdCompacted(watched) && !SleepUnlessStopping(kReadBackoffFirst)) return;
  }
}

void StoreSource::PublishLoop() {
  while (!stopping_) {
    absl::Status s = PublishOnce(absl::Now());
    std::unique_lock<std::mutex> lock(mu_);
    if (!s.ok()) {
      if (publish_error_.empty()) AgentLog(absl::StrCat("store publish: ", s.message(), "; retrying"));
      publish_error_ = std::string(s.message());
      ++stats_.publish_errors;
    } else {
      publish_error_.clear();
    }
    if (mirror_.Expire(absl::Now())) {
      stats_.last_change = absl::Now();
      SignalChanged();
    }
    if (!s.ok()) {
      // etcd away or refusing: try again after a pause, not at once (what
      // is wanted is still unwritten, and would wake the wait below at once).
      wake_.wait_for(lock, absl::ToChronoMilliseconds(kPublishRetry), [this] { return stopping_.load(); });
      continue;
    }
    // Woken by Publish() with new keys, by the first listing, or to stop.
    absl::Duration wait = std::min(kPublishTick, std::max(absl::ZeroDuration(), next_keepalive_ - absl::Now()));
    wake_.wait_for(lock, absl::ToChronoMilliseconds(wait), [this] {
      return stopping_ || (listed_ && wanted_ && lease_ != 0 && (republish_all_ || *wanted_ != written_));
    });
  }
}

absl::Status StoreSource::PublishOnce(absl::Time now) {
  int64_t lease;
  bool keepalive_due;
  {
    std::lock_guard<std::mutex> hold(mu_);
    lease = lease_;
    keepalive_due = now >= next_keepalive_;
  }
  if (lease == 0) {
    auto granted = client_.GrantLease(options_.lease_ttl);
    if (!granted.ok()) return granted.status();
    std::lock_guard<std::mutex> hold(mu_);
    lease = lease_ = granted->id;
    republish_all_ = true;  // the keys move onto the new lease (or come back after a wipe)
    written_.clear();
    ++stats_.leases_granted;
    next_keepalive_ = now + options_.lease_ttl / 3;
  } else if (keepalive_due) {
    auto renewed = client_.KeepAliveOnce(lease);
    std::lock_guard<std::mutex> hold(mu_);
    if (!renewed.ok()) {
      // Expired (etcd was away too long, or lost its data): its keys are
      // gone; a new lease and everything again.
      if (absl::IsNotFound(renewed.status())) lease_ = 0;
      return renewed.status();
    }
    next_keepalive_ = now + options_.lease_ttl / 3;
  }

  PublicationDiff diff;
  std::map<std::string, std::string> wanted;
  {
    std::lock_guard<std::mutex> hold(mu_);
    if (!listed_ || !wanted_) return absl::OkStatus();  // this host's keys in the store not known yet
    if (!republish_all_ && *wanted_ == written_) return absl::OkStatus();
    wanted = *wanted_;
    if (republish_all_) {
      // Blank values: every wanted key is put (onto this lease); whatever
      // else the store holds for this host (a predecessor's) is deleted.
      std::map<std::string, std::string> stale;
      for (const auto& [key, value] : mirror_.OwnKeys()) stale.emplace(key, "");
      diff = DiffPublication(wanted, stale);
    } else {
      diff = DiffPublication(wanted, written_);
    }
  }
  absl::Status written = WriteDiff(diff, lease);
  std::lock_guard<std::mutex> hold(mu_);
  if (!written.ok()) {
    // Half a publication may have landed: the next try writes all of it.
    republish_all_ = true;
    if (absl::IsNotFound(written)) lease_ = 0;
    return written;
  }
  written_ = std::move(wanted);
  republish_all_ = false;
  return absl::OkStatus();
}

absl::Status StoreSource::WriteDiff(const PublicationDiff& diff, int64_t lease) {
  std::vector<EtcdOp> ops;
  for (const std::string& key : diff.deletes) ops.push_back(EtcdDelete{.key = key});
  // The complete marker is the last put: a reader sees it after every endpoint.
  for (const auto& [key, value] : diff.puts) ops.push_back(EtcdPut{.key = key, .value = value, .lease = lease});
  for (size_t at = 0; at < ops.size(); at += kOpsPerTxn) {
    EtcdTxn txn;
    txn.success.assign(ops.begin() + at, ops.begin() + std::min(ops.size(), at + kOpsPerTxn));
    auto result = client_.Txn(txn);
    if (!result.ok()) return result.status();
  }
  return absl::OkStatus();
}

void StoreSource::Publish(const std::vector<RemoteEndpoint>& endpoints, const std::vector<IpAddress>& node_addresses) {
  std::map<std::string, std::string> wanted = WantedPublication(options_.host_id, endpoints, node_addresses);
  std::lock_guard<std::mutex> hold(mu_);
  if (wanted_ == wanted) return;
  wanted_ = std::move(wanted);
  wake_.notify_all();
}

bool StoreSource::listed() const {
  std::lock_guard<std::mutex> hold(mu_);
  return listed_;
}

std::vector<RemoteEndpoint> StoreSource::RemoteEndpoints() const {
  std::lock_guard<std::mutex> hold(mu_);
  return mirror_.RemoteEndpoints();
}

std::vector<IpAddress> StoreSource::RemoteNodeAddresses() const {
  std::lock_guard<std::mutex> hold(mu_);
  return mirror_.RemoteNodeAddresses();
}

StoreStats StoreSource::Stats() const {
  std::lock_guard<std::mutex> hold(mu_);
  StoreStats stats = stats_;
  stats.connected = connected_;
  stats.bad_records = mirror_.bad_records();
  stats.published_keys = written_.size();
  for (const StoreHostView& host : mirror_.Hosts()) {
    ++stats.remote_hosts;
    stats.remote_endpoints += host.endpoints;
  }
  return stats;
}

nlohmann::json StoreSource::Status() const {
  StoreStats stats = Stats();
  std::lock_guard<std::mutex> hold(mu_);
  nlohmann::json hosts = nlohmann::json::array();
  for (const StoreHostView& host : mirror_.Hosts())
    hosts.push_back({{"host", host.host},
                     {"endpoints", host.endpoints},
                     {"node_addresses", host.node_addresses},
                     {"complete", host.complete},
                     {"retained", host.retained}});
  return {{"state", connected_ ? "connected" : (listed_ ? "unreachable" : "not listed yet")},
          {"host_id", options_.host_id},
          {"etcd_endpoints", options_.etcd.endpoints},
          {"error", read_error_},
          {"publish_error", publish_error_},
          {"lease", lease_},
          {"lease_ttl_s", absl::ToInt64Seconds(options_.lease_ttl)},
          {"revision", mirror_.revision()},
          {"hosts", hosts},
          {"remote_endpoints", stats.remote_endpoints},
          {"published_keys", stats.published_keys},
          {"bad_records", stats.bad_records},
          {"last_bad_record", mirror_.last_bad_record()},
          {"relists", stats.relists},
          {"publish_errors", stats.publish_errors}};
}

}  // namespace stockade
