// SPDX-License-Identifier: Apache-2.0
#include "stockade/store/store_mirror.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace stockade {
namespace {

// The host a key belongs to, without decoding the rest: "" outside the layout.
std::string HostOfKey(absl::string_view key) {
  if (!absl::StartsWith(key, kStoreHostsPrefix)) return "";
  key.remove_prefix(kStoreHostsPrefix.size());
  size_t slash = key.find('/');
  return slash == absl::string_view::npos ? "" : std::string(key.substr(0, slash));
}

}  // namespace

void StoreMirror::CountBad(absl::string_view what) {
  ++bad_records_;
  last_bad_ = std::string(what);
}

bool StoreMirror::Apply(const StoreChange& change) {
  const std::string host_id = HostOfKey(change.key);
  if (!host_id.empty() && host_id == self_) {
    if (change.deleted) {
      own_.erase(change.key);
    } else {
      own_[change.key] = change.value;
    }
    return false;
  }
  auto key = ParseStoreKey(change.key);
  if (!key.ok()) {
    CountBad(key.status().message());
    return false;
  }
  if (change.deleted) {
    auto found = hosts_.find(key->host);
    if (found == hosts_.end()) return false;
    Host& host = found->second;
    bool changed = false;
    switch (key->kind) {
      case StoreKey::Kind::kEndpoint:
        changed = host.endpoints.erase(change.key) > 0;
        break;
      case StoreKey::Kind::kNode:
        changed = host.node.has_value();
        host.node.reset();
        break;
      case StoreKey::Kind::kComplete:
        // The host left (its lease ended): nothing of it is kept.
        host.complete = false;
        changed = !host.retained.empty() || host.retained_node.has_value();
        host.retained.clear();
        host.retained_node.reset();
        break;
    }
    if (host.endpoints.empty() && !host.node && !host.complete && host.retained.empty() && !host.retained_node)
      hosts_.erase(found);
    return changed;
  }
  auto record = DecodeStoreRecord(change.key, change.value);
  if (!record.ok()) {
    CountBad(record.status().message());
    return false;
  }
  Host& host = hosts_[key->host];
  if (auto* endpoint = std::get_if<RemoteEndpoint>(&*record)) {
    auto [it, inserted] = host.endpoints.try_emplace(change.key, *endpoint);
    if (inserted) return true;
    if (it->second == *endpoint) return false;
    it->second = *endpoint;
    return true;
  }
  if (auto* node = std::get_if<NodeRecord>(&*record)) {
    if (host.node == *node) return false;
    host.node = *node;
    return true;
  }
  // The marker: the host's listing is complete, what was retained is not wanted.
  host.complete = true;
  bool changed = !host.retained.empty() || host.retained_node.has_value();
  host.retained.clear();
  host.retained_node.reset();
  return changed;
}

bool StoreMirror::ApplyListing(const std::vector<StoreChange>& keys, int64_t revision, absl::Time now) {
  const std::vector<RemoteEndpoint> endpoints_before = RemoteEndpoints();
  const std::vector<IpAddress> nodes_before = RemoteNodeAddresses();
  std::map<std::string, Host> before = std::move(hosts_);
  hosts_.clear();
  own_.clear();
  for (const StoreChange& key : keys) Apply(key);
  // A host without its marker keeps what it had, for a grace period: it may
  // be republishing into a store that lost its data.
  for (auto& [id, was] : before) {
    Host& host = hosts_[id];
    if (host.complete) continue;
    std::map<std::string, RemoteEndpoint> had = std::move(was.retained);
    for (auto& [key, endpoint] : was.endpoints) had.insert_or_assign(key, std::move(endpoint));
    for (auto& [key, endpoint] : had)
      if (!host.endpoints.contains(key)) host.retained.emplace(key, std::move(endpoint));
    host.retained_node = was.node ? was.node : was.retained_node;
    host.retained_until = was.complete || was.retained_until == absl::InfinitePast() ? now + grace_ : was.retained_until;
    if (host.endpoints.empty() && !host.node && host.retained.empty() && !host.retained_node) hosts_.erase(id);
  }
  revision_ = revision;
  return RemoteEndpoints() != endpoints_before || RemoteNodeAddresses() != nodes_before;
}

bool StoreMirror::ApplyChange(const StoreChange& change, int64_t revision, absl::Time /*now*/) {
  revision_ = std::max(revision_, revision);
  return Apply(change);
}

bool StoreMirror::Expire(absl::Time now) {
  bool changed = false;
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    Host& host = it->second;
    if ((!host.retained.empty() || host.retained_node) && now >= host.retained_until) {
      host.retained.clear();
      host.retained_node.reset();
      changed = true;
    }
    if (host.endpoints.empty() && !host.node && !host.complete && host.retained.empty() && !host.retained_node) {
      it = hosts_.erase(it);
    } else {
      ++it;
    }
  }
  return changed;
}

std::vector<RemoteEndpoint> StoreMirror::RemoteEndpoints() const {
  std::vector<RemoteEndpoint> out;
  for (const auto& [id, host] : hosts_) {
    std::map<std::string, const RemoteEndpoint*> effective;
    for (const auto& [key, endpoint] : host.retained) effective[key] = &endpoint;
    for (const auto& [key, endpoint] : host.endpoints) effective[key] = &endpoint;
    for (const auto& [key, endpoint] : effective) out.push_back(*endpoint);
  }
  return out;
}

std::vector<IpAddress> StoreMirror::RemoteNodeAddresses() const {
  std::vector<IpAddress> out;
  for (const auto& [id, host] : hosts_) {
    const std::optional<NodeRecord>& node = host.node ? host.node : host.retained_node;
    if (node) out.insert(out.end(), node->addresses.begin(), node->addresses.end());
  }
  return out;
}

std::vector<StoreHostView> StoreMirror::Hosts() const {
  std::vector<StoreHostView> out;
  for (const auto& [id, host] : hosts_) {
    std::set<std::string> keys;
    for (const auto& [key, endpoint] : host.retained) keys.insert(key);
    for (const auto& [key, endpoint] : host.endpoints) keys.insert(key);
    const std::optional<NodeRecord>& node = host.node ? host.node : host.retained_node;
    out.push_back({.host = id,
                   .endpoints = keys.size(),
                   .complete = host.complete,
                   .retained = !host.retained.empty() || (!host.node && host.retained_node),
                   .node_addresses = node ? node->addresses.size() : 0});
  }
  return out;
}

std::map<std::string, std::string> WantedPublication(const std::string& host_id,
                                                     const std::vector<RemoteEndpoint>& endpoints,
                                                     const std::vector<IpAddress>& node_addresses) {
  std::map<std::string, std::string> wanted;
  for (RemoteEndpoint endpoint : endpoints) {
    endpoint.host = host_id;
    StoreRecord record = std::move(endpoint);
    wanted.try_emplace(StoreKeyOf(record), EncodeStoreRecord(record));
  }
  StoreRecord node = NodeRecord{.host = host_id, .addresses = node_addresses};
  wanted[StoreKeyOf(node)] = EncodeStoreRecord(node);
  StoreRecord complete = CompleteMarker{.host = host_id};
  wanted[StoreKeyOf(complete)] = EncodeStoreRecord(complete);
  return wanted;
}

PublicationDiff DiffPublication(const std::map<std::string, std::string>& wanted,
                                const std::map<std::string, std::string>& observed) {
  PublicationDiff diff;
  std::optional<std::pair<std::string, std::string>> complete;
  for (const auto& [key, value] : wanted) {
    auto found = observed.find(key);
    if (found != observed.end() && found->second == value) continue;
    if (absl::EndsWith(key, "/complete")) {
      complete = {key, value};
    } else {
      diff.puts.push_back({key, value});
    }
  }
  if (complete) diff.puts.push_back(std::move(*complete));
  for (const auto& [key, value] : observed)
    if (!wanted.contains(key)) diff.deletes.push_back(key);
  return diff;
}

}  // namespace stockade
