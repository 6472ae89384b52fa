// SPDX-License-Identifier: Apache-2.0
//
// Typed access to one BPF map. The key and value types are the structs of
// maps/; opening checks their sizes against the map the kernel holds, so a
// stale pin or a mismatched object fails at open, not as garbage later.
// Lookups tell 'not found' (an empty optional) from a failed syscall (an
// error status).
#ifndef STOCKADE_INCLUDE_STOCKADE_DATAPATH_TYPED_MAP_H_
#define STOCKADE_INCLUDE_STOCKADE_DATAPATH_TYPED_MAP_H_

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "stockade/os/errno_status.h"
#include "stockade/os/scoped_fd.h"

namespace stockade {

// Checks an open map's key and value sizes and type; returns its name.
[[nodiscard]] absl::StatusOr<std::string> CheckMapLayout(int fd, uint32_t key_size, uint32_t value_size,
                                                         std::optional<bpf_map_type> type = std::nullopt);

// Opens a pinned map, checked like CheckMapLayout.
[[nodiscard]] absl::StatusOr<ScopedFd> OpenPinnedMap(const std::string& path, uint32_t key_size,
                                                     uint32_t value_size);

template <typename Key, typename Value>
class TypedMap {
 public:
  // Takes its own reference (a dup) of `fd`, after checking the layout.
  [[nodiscard]] static absl::StatusOr<TypedMap> FromFd(int fd) {
    auto name = CheckMapLayout(fd, sizeof(Key), sizeof(Value));
    if (!name.ok()) return name.status();
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) return ErrnoStatus(errno, absl::StrCat("dup fd of map ", *name));
    return TypedMap(ScopedFd(own), *name);
  }
  [[nodiscard]] static absl::StatusOr<TypedMap> FromPin(const std::string& path) {
    auto fd = OpenPinnedMap(path, sizeof(Key), sizeof(Value));
    if (!fd.ok()) return fd.status();
    return TypedMap(std::move(*fd), path);
  }

  TypedMap(TypedMap&&) = default;
  TypedMap& operator=(TypedMap&&) = default;

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }

  [[nodiscard]] absl::StatusOr<std::optional<Value>> Lookup(const Key& key) const {
    Value value{};
    if (bpf_map_lookup_elem(fd_.get(), &key, &value) == 0) return value;
    if (errno == ENOENT) return std::nullopt;
    return ErrnoStatus(errno, absl::StrCat("lookup in map ", name_));
  }

  // flags: BPF_ANY, BPF_NOEXIST or BPF_EXIST. A full map is an error
  // (ResourceExhausted "update map policy: Argument list too long").
  [[nodiscard]] absl::Status Update(const Key& key, const Value& value, uint64_t flags = BPF_ANY) {
    if (bpf_map_update_elem(fd_.get(), &key, &value, flags) == 0) return absl::OkStatus();
    int err = errno;
    if (err == E2BIG || err == ENOMEM || err == ENOSPC)
      return absl::ResourceExhaustedError(absl::StrCat("update map ", name_, ": map full (", strerror(err), ")"));
    return ErrnoStatus(err, absl::StrCat("update map ", name_));
  }

  // Writes keys[i] -> values[i] in order, in as few syscalls as the kernel
  // allows (BPF_MAP_UPDATE_BATCH; one update each where a map type lacks
  // it). `written` counts the leading pairs that were written, also on error,
  // so a caller's mirror stays true to the map after a full map stops it.
  [[nodiscard]] absl::Status UpdateBatch(absl::Span<const Key> keys, absl::Span<const Value> values, size_t& written) {
    written = 0;
    if (keys.size() != values.size())
      return absl::InvalidArgumentError(absl::StrCat("update map ", name_, ": ", keys.size(), " keys, ",
                                                     values.size(), " values"));
    LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
    while (written < keys.size()) {
      uint32_t count = static_cast<uint32_t>(std::min<size_t>(keys.size() - written, kBatchMax));
      int rc = bpf_map_update_batch(fd_.get(), &keys[written], &values[written], &count, &opts);
      int err = errno;
      written += count;
      if (rc == 0) continue;
      if (BatchUnsupported(err) && count == 0) {
        for (; written < keys.size(); ++written)
          if (absl::Status s = Update(keys[written], values[written]); !s.ok()) return s;
        return absl::OkStatus();
      }
      if (err == E2BIG || err == ENOMEM || err == ENOSPC)
        return absl::ResourceExhaustedError(absl::StrCat("update map ", name_, ": map full (", strerror(err), ")"));
      return ErrnoStatus(err, absl::StrCat("update map ", name_, " (batch)"));
    }
    return absl::OkStatus();
  }

  // Deletes keys (all present) in order, batched like UpdateBatch.
  [[nodiscard]] absl::Status DeleteBatch(absl::Span<const Key> keys, size_t& deleted) {
    deleted = 0;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    while (deleted < keys.size()) {
      uint32_t count = static_cast<uint32_t>(std::min<size_t>(keys.size() - deleted, kBatchMax));
      int rc = bpf_map_delete_batch(fd_.get(), &keys[deleted], &count, &opts);
      int err = errno;
      deleted += count;
      if (rc == 0) continue;
      if (BatchUnsupported(err) && count == 0) {
        for (; deleted < keys.size(); ++deleted)
          if (auto gone = Delete(keys[deleted]); !gone.ok()) return gone.status();
        return absl::OkStatus();
      }
      return ErrnoStatus(err, absl::StrCat("delete from map ", name_, " (batch)"));
    }
    return absl::OkStatus();
  }

  // Returns false when the key was not there.
  [[nodiscard]] absl::StatusOr<bool> Delete(const Key& key) {
    if (bpf_map_delete_elem(fd_.get(), &key) == 0) return true;
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, absl::StrCat("delete from map ", name_));
  }

  // Calls fn for every entry; entries added or removed meanwhile may or may not be seen.
  [[nodiscard]] absl::Status ForEach(const std::function<void(const Key&, const Value&)>& fn) const {
    Key key{}, next{};
    const Key* prev = nullptr;
    while (bpf_map_get_next_key(fd_.get(), prev, &next) == 0) {
      Value value{};
      if (bpf_map_lookup_elem(fd_.get(), &next, &value) == 0) fn(next, value);
      key = next;
      prev = &key;
    }
    if (errno != ENOENT) return ErrnoStatus(errno, absl::StrCat("iterate map ", name_));
    return absl::OkStatus();
  }

  [[nodiscard]] absl::StatusOr<size_t> Count() const {
    size_t n = 0;
    absl::Status s = ForEach([&](const Key&, const Value&) { ++n; });
    if (!s.ok()) return s;
    return n;
  }

  // Removes every entry.
  [[nodiscard]] absl::Status Clear() {
    std::vector<Key> keys;
    absl::Status s = ForEach([&](const Key& k, const Value&) { keys.push_back(k); });
    if (!s.ok()) return s;
    for (const Key& k : keys) {
      auto deleted = Delete(k);
      if (!deleted.ok()) return deleted.status();
    }
    return absl::OkStatus();
  }

 private:
  // Bounds one syscall's work (the kernel copies the batch element by element).
  static constexpr size_t kBatchMax = 16384;
  // The kernel answers ENOTSUPP (524, not in userspace headers) for a map
  // type without batch operations.
  static bool BatchUnsupported(int err) { return err == 524 || err == EOPNOTSUPP || err == EINVAL; }
  TypedMap(ScopedFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  ScopedFd fd_;
  std::string name_;
};

// A per-CPU array: one Value per possible CPU for every index.
template <typename Value>
class PerCpuArray {
 public:
  [[nodiscard]] static absl::StatusOr<PerCpuArray> FromFd(int fd) {
    auto name = CheckMapLayout(fd, sizeof(uint32_t), sizeof(Value), BPF_MAP_TYPE_PERCPU_ARRAY);
    if (!name.ok()) return name.status();
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return ErrnoStatus(-cpus, "count possible CPUs");
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) return ErrnoStatus(errno, absl::StrCat("dup fd of map ", *name));
    return PerCpuArray(ScopedFd(own), *name, cpus);
  }
  PerCpuArray(PerCpuArray&&) = default;
  PerCpuArray& operator=(PerCpuArray&&) = default;

  int fd() const { return fd_.get(); }

  [[nodiscard]] absl::StatusOr<std::vector<Value>> LookupAllCpus(uint32_t index) const {
    std::vector<Value> values(cpus_);
    if (bpf_map_lookup_elem(fd_.get(), &index, values.data()) != 0)
      return ErrnoStatus(errno, absl::StrCat("lookup index ", index, " in map ", name_));
    return values;
  }

  // Sets index to a zero Value on every CPU.
  [[nodiscard]] absl::Status Zero(uint32_t index) {
    std::vector<Value> zeros(cpus_);
    if (bpf_map_update_elem(fd_.get(), &index, zeros.data(), BPF_ANY) != 0)
      return ErrnoStatus(errno, absl::StrCat("zero index ", index, " of map ", name_));
    return absl::OkStatus();
  }

 private:
  PerCpuArray(ScopedFd fd, std::string name, int cpus) : fd_(std::move(fd)), name_(std::move(name)), cpus_(cpus) {}
  ScopedFd fd_;
  std::string name_;
  int cpus_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_DATAPATH_TYPED_MAP_H_
