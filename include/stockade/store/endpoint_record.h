// SPDX-License-Identifier: Apache-2.0
//
// What one host publishes in etcd for the others (docs/multihost.md): the key
// layout and the JSON of each value. Every key of a host is under that host's
// lease, so a host that dies leaves the store after the lease's TTL.
//
//   /stockade/v1/hosts/<host-id>/endpoints/<address>  RemoteEndpoint
//   /stockade/v1/hosts/<host-id>/node                 NodeRecord
//   /stockade/v1/hosts/<host-id>/complete             CompleteMarker
//
// A reader trusts a host's endpoint listing only once its `complete` key is
// there: the host writes it after its first full publication.
// Pure logic: no I/O. Errors name the key they are about.
#ifndef STOCKADE_INCLUDE_STOCKADE_STORE_ENDPOINT_RECORD_H_
#define STOCKADE_INCLUDE_STOCKADE_STORE_ENDPOINT_RECORD_H_

#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stockade/net/addresses.h"
#include "stockade/identity/labels.h"

namespace stockade {

// The prefix of every key of every host; a reader lists and watches it.
inline constexpr absl::string_view kStoreHostsPrefix = "/stockade/v1/hosts/";

// A host id is 1 to 253 characters of [A-Za-z0-9._-] (a hostname fits), not
// "." or "..": it is one path segment of every key of the host.
[[nodiscard]] absl::Status ValidateHostId(absl::string_view host_id);

// "/stockade/v1/hosts/<host-id>/": everything one host owns.
std::string HostKeyPrefix(absl::string_view host_id);
// "/stockade/v1/hosts/<host-id>/endpoints/<address>", the address in its
// canonical text ("10.0.0.5", "fd00::5"), so one address has one key.
std::string EndpointKey(absl::string_view host_id, const IpAddress& address);
std::string NodeKey(absl::string_view host_id);
std::string CompleteKey(absl::string_view host_id);

// A container of another host, as that host sees it: one of its addresses.
struct RemoteEndpoint {
  IpAddress address;
  LabelSet labels;             // identity labels, as policy names them
  std::string host;            // the publishing host's id
  std::string container_name;  // for drop events and status; may be empty
  bool operator==(const RemoteEndpoint&) const = default;
};

// The addresses of a host itself: traffic from them is the remote-host entity.
struct NodeRecord {
  std::string host;
  std::vector<IpAddress> addresses;
  bool operator==(const NodeRecord&) const = default;
};

// Written last by a host's first full publication: its listing is complete.
struct CompleteMarker {
  std::string host;
  bool operator==(const CompleteMarker&) const = default;
};

using StoreRecord = std::variant<RemoteEndpoint, NodeRecord, CompleteMarker>;

// The key a record is stored under.
std::string StoreKeyOf(const StoreRecord& record);
// The value: compact JSON, e.g. for an endpoint
//   {"address":"10.0.0.5","container":"web-1","host":"a","labels":{"app":"web"}}
std::string EncodeStoreRecord(const StoreRecord& record);

// What a key under kStoreHostsPrefix names, without its value: a reader
// needs this for a delete, which carries no value.
struct StoreKey {
  enum class Kind { kEndpoint, kNode, kComplete };
  Kind kind = Kind::kEndpoint;
  std::string host;
  IpAddress address;  // kEndpoint only
  bool operator==(const StoreKey&) const = default;
};
// InvalidArgument naming the key for anything outside the layout, e.g.
//   "store key /stockade/v1/hosts/a/endpoints/10.0.0.05: address ...".
[[nodiscard]] absl::StatusOr<StoreKey> ParseStoreKey(absl::string_view key);

// The record under `key`: the value must be the JSON its key's kind takes,
// and its host and address must be the key's. InvalidArgument naming the key.
[[nodiscard]] absl::StatusOr<StoreRecord> DecodeStoreRecord(absl::string_view key, absl::string_view value);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_STORE_ENDPOINT_RECORD_H_
