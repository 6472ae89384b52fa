// SPDX-License-Identifier: Apache-2.0
//
// The store as one more input of the reconciler (docs/multihost.md): the
// other hosts' endpoints and node addresses, read from etcd, and this
// host's own, published there under a lease of its own.
//
// Two threads of its own, neither of which touches the agent:
// - the reader lists kStoreHostsPrefix, then watches it from the listing's
//   revision on; a broken stream or a compacted revision means a fresh
//   listing, never a missed change. While etcd cannot be reached, what was
//   read last stays in force (an unreachable store changes nothing).
// - the publisher holds the lease (grant, keepalive, grant again after it
//   was lost: everything published again) and writes what Publish() last
//   asked for as a diff, the complete marker last. Its destructor revokes
//   the lease: a host that stops cleanly leaves the others' maps at once.
// changed_fd() becomes readable when the remote view changed: the agent's
// loop then reconciles.
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_STORE_SOURCE_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_STORE_SOURCE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stockade/os/scoped_fd.h"
#include "stockade/store/endpoint_record.h"
#include "stockade/store/etcd_client.h"
#include "stockade/store/store_mirror.h"

namespace stockade {

struct StoreOptions {
  EtcdClientOptions etcd;
  std::string host_id;  // this host's subtree (ValidateHostId)
  // The lease of this host's keys: how long the others keep them after this
  // agent died. Keepalives every third of it.
  // An agent restarted within it writes every key again under a new lease
  // (the values unchanged, so the others see no gap) and deletes the rest.
  absl::Duration lease_ttl = absl::Seconds(20);
};

// For metrics and status.
struct StoreStats {
  bool connected = false;  // the reader's listing and watch are current
  size_t remote_hosts = 0;
  size_t remote_endpoints = 0;
  size_t published_keys = 0;
  uint64_t bad_records = 0;
  uint64_t relists = 0;         // listings after the first: broken streams, compactions
  uint64_t publish_errors = 0;  // failed writes and keepalives
  uint64_t leases_granted = 0;
  absl::Time last_change = absl::InfinitePast();  // when the remote view last changed
};

class StoreSource {
 public:
  // InvalidArgument for a bad host id or etcd option (a key file others may
  // read, say). etcd need not answer yet: the threads keep trying.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<StoreSource>> Start(StoreOptions options);
  ~StoreSource();
  StoreSource(const StoreSource&) = delete;
  StoreSource& operator=(const StoreSource&) = delete;

  // Readable when the remote view changed since the last ClearChanged().
  int changed_fd() const { return changed_.get(); }
  void ClearChanged();

  // False until the first listing: before it, other hosts are unknown.
  bool listed() const;
  std::vector<RemoteEndpoint> RemoteEndpoints() const;
  std::vector<IpAddress> RemoteNodeAddresses() const;

  // What this host should have in the store now: its endpoints (labels as
  // policy names them) and its own addresses. Written by the publisher.
  void Publish(const std::vector<RemoteEndpoint>& endpoints, const std::vector<IpAddress>& node_addresses);

  StoreStats Stats() const;
  nlohmann::json Status() const;  // `stockadectl status`, "store"
  const std::string& host_id() const { return options_.host_id; }

 private:
  StoreSource(StoreOptions options, EtcdClient client, ScopedFd changed);
  void ReadLoop();
  void PublishLoop();
  // One pass of the publisher: the lease, then the diff. Its error, if any.
  absl::Status PublishOnce(absl::Time now);
  [[nodiscard]] absl::Status WriteDiff(const PublicationDiff& diff, int64_t lease);
  void SignalChanged();
  // Sleeps `d` unless the source stops first; false when it stops.
  bool SleepUnlessStopping(absl::Duration d);

  const StoreOptions options_;
  EtcdClient client_;
  ScopedFd changed_;  // eventfd
  std::atomic<bool> stopping_{false};
  EtcdWatchCancel watch_cancel_;

  mutable std::mutex mu_;  // everything below
  std::condition_variable wake_;  // the publisher: new wanted keys, or stop
  StoreMirror mirror_;
  bool listed_ = false;
  bool connected_ = false;
  std::string read_error_, publish_error_;
  std::optional<std::map<std::string, std::string>> wanted_;  // nullopt until the first Publish
  std::map<std::string, std::string> written_;  // what the publisher wrote under lease_
  int64_t lease_ = 0;
  bool republish_all_ = true;  // after a new lease: every key written again (moved onto it)
  absl::Time next_keepalive_ = absl::InfinitePast();
  StoreStats stats_;

  std::thread reader_, publisher_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_STORE_SOURCE_H_
