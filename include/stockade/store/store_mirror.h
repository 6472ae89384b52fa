// SPDX-License-Identifier: Apache-2.0
//
// What the store holds under kStoreHostsPrefix, as one host reads it: the
// other hosts' endpoints and node addresses, and this host's own keys (so
// that its publication is a diff against what etcd really has). Fed by a
// listing, then by the watch from the listing's revision on. Pure logic: no
// I/O; time comes in as an argument.
//
// What a reader keeps (docs/multihost.md, "Failures"):
// - a host with its `complete` marker: exactly its keys;
// - a host without one (starting, or republishing after etcd lost its
//   data): its keys, plus what it had before, for one grace period (the
//   lease TTL), so a store that restarts empty does not drop its flows;
// - a host whose `complete` key is deleted (lease expired or revoked: all
//   its keys go at that revision): nothing, at once.
// A record that does not decode is skipped and counted, never guessed at.
#ifndef STOCKADE_INCLUDE_STOCKADE_STORE_STORE_MIRROR_H_
#define STOCKADE_INCLUDE_STOCKADE_STORE_STORE_MIRROR_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "stockade/store/endpoint_record.h"

namespace stockade {

// One key of a listing, or one change from the watch (a delete has no value).
struct StoreChange {
  std::string key;
  std::string value;
  bool deleted = false;
};

// One other host as the mirror has it, for status.
struct StoreHostView {
  std::string host;
  size_t endpoints = 0;  // in effect, retained ones included
  bool complete = false;
  bool retained = false;  // endpoints kept from before a fresh listing lacked them
  size_t node_addresses = 0;
};

class StoreMirror {
 public:
  StoreMirror(std::string self_host, absl::Duration grace) : self_(std::move(self_host)), grace_(grace) {}

  // A full listing read at `revision`: replaces the view (see above for
  // what a host without its marker keeps). True when the other hosts'
  // endpoints or node addresses changed.
  bool ApplyListing(const std::vector<StoreChange>& keys, int64_t revision, absl::Time now);
  // One change from the watch, at `revision`. True as for ApplyListing.
  bool ApplyChange(const StoreChange& change, int64_t revision, absl::Time now);
  // Drops what was retained past its grace. True when something went.
  bool Expire(absl::Time now);

  // The other hosts' endpoints in effect, by host then address.
  std::vector<RemoteEndpoint> RemoteEndpoints() const;
  // The other hosts' own addresses: the remote-host entity.
  std::vector<IpAddress> RemoteNodeAddresses() const;
  std::vector<StoreHostView> Hosts() const;
  // This host's keys as the store has them: key to value.
  const std::map<std::string, std::string>& OwnKeys() const { return own_; }

  int64_t revision() const { return revision_; }
  uint64_t bad_records() const { return bad_records_; }
  const std::string& last_bad_record() const { return last_bad_; }

 private:
  struct Host {
    std::map<std::string, RemoteEndpoint> endpoints;  // by key
    std::optional<NodeRecord> node;
    bool complete = false;
    // Kept from before a listing that lacked them, until retained_until.
    std::map<std::string, RemoteEndpoint> retained;
    std::optional<NodeRecord> retained_node;
    absl::Time retained_until = absl::InfinitePast();
  };
  // Applies one key's put or delete to hosts_/own_; false when it changed
  // nothing another host has.
  bool Apply(const StoreChange& change);
  void CountBad(absl::string_view what);

  std::string self_;
  absl::Duration grace_;
  std::map<std::string, Host> hosts_;  // other hosts only
  std::map<std::string, std::string> own_;
  int64_t revision_ = 0;
  uint64_t bad_records_ = 0;
  std::string last_bad_;
};

// What this host should have in the store: each endpoint's key and value,
// the node record and, last, the complete marker. Endpoints are given as
// records (host set to `host_id`); duplicates by address keep the first.
std::map<std::string, std::string> WantedPublication(const std::string& host_id,
                                                     const std::vector<RemoteEndpoint>& endpoints,
                                                     const std::vector<IpAddress>& node_addresses);

// The writes that bring `observed` (OwnKeys) to `wanted`: keys to put (new
// or changed values) and keys to delete. The complete marker, when it is to
// be put, is the last put, so a reader sees it only after every endpoint.
struct PublicationDiff {
  std::vector<std::pair<std::string, std::string>> puts;
  std::vector<std::string> deletes;
  bool empty() const { return puts.empty() && deletes.empty(); }
};
PublicationDiff DiffPublication(const std::map<std::string, std::string>& wanted,
                                const std::map<std::string, std::string>& observed);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_STORE_STORE_MIRROR_H_
