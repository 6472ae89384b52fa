// SPDX-License-Identifier: Apache-2.0
//
// A client of etcd's v3 API through its JSON gateway (POST /v3/kv/range and
// the like, keys and values base64), over libcurl. Chosen over gRPC because
// Debian ships etcd's server and libcurl but not etcd's .proto files for a
// C++ build, and the gateway is part of every etcd 3.4+ server.
//
//   absl::StatusOr<EtcdClient> etcd = EtcdClient::Create({.endpoints = {"https://10.0.0.1:2379"},
//                                                          .cacert = "ca.pem", .cert = "c.pem", .key = "k.pem"});
//   absl::StatusOr<EtcdRangeResult> hosts = etcd->RangePrefix("/stockade/v1/hosts/");
//
// Errors name the call, its key and the endpoint, e.g.
//   Unavailable "etcd range /stockade/v1/: connect to https://10.0.0.1:2379: Connection refused"
//   NotFound "etcd lease revoke 7587: at http://127.0.0.1:2379: etcdserver: requested lease not found"
// etcd's own errors keep their gRPC code (absl's codes are the same numbers).
// A watch or range from a compacted revision is its own status
// (IsEtcdCompacted): the caller lists afresh and watches from there.
//
// Thread-safe: every call uses its own connection. Key material is never read
// by this code (libcurl reads the files), so no message or log can carry it;
// the password is read for each authenticate request only, and this code's
// copies of it and of the token are overwritten when done with (best effort:
// libcurl's and the JSON library's copies are not).
//
// With etcd's auth, a call outside the user's role is PermissionDenied
// naming the user, e.g.
//   "etcd put /stockade/v1/hosts/b/node: at http://...: as user host-a:
//    etcdserver: permission denied".
#ifndef STOCKADE_INCLUDE_STOCKADE_STORE_ETCD_CLIENT_H_
#define STOCKADE_INCLUDE_STOCKADE_STORE_ETCD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stockade {

// Named as etcdctl names its flags (--endpoints, --cacert, --cert, --key,
// --user, --dial-timeout, --command-timeout); etcdctl takes a password on
// its command line, where others can read it, so ours is in a file.
struct EtcdClientOptions {
  // "https://10.0.0.1:2379" or "10.0.0.1:2379" (https when cacert or cert is
  // set, else http). Tried in order; the first that answers is used first
  // next time.
  std::vector<std::string> endpoints;
  std::string cacert;  // empty with https: the system's CAs
  std::string cert;    // client certificate; with `key`
  std::string key;     // must be private to its owner (no group/other bits)
  // etcd's own auth: the user's name, and a file holding its password (one
  // line; private to its owner, like `key`). The client gets a token from
  // /v3/auth/authenticate, sends it with every call, and when etcd calls it
  // invalid (expired, or auth re-enabled) authenticates once more and
  // retries. Neither the password nor the token is ever in a message.
  std::string user;
  std::string password_file;
  absl::Duration dial_timeout = absl::Seconds(2);
  // Each call but Watch, connecting included.
  absl::Duration command_timeout = absl::Seconds(5);
};

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;  // 0: none
  bool operator==(const EtcdKeyValue&) const = default;
};

struct EtcdRangeResult {
  std::vector<EtcdKeyValue> kvs;  // ordered by key
  int64_t revision = 0;           // the store's revision the range was read at
};

struct EtcdPut {
  std::string key;
  std::string value;
  int64_t lease = 0;
};
struct EtcdDelete {
  std::string key;
  bool prefix = false;  // every key that starts with `key`
};
using EtcdOp = std::variant<EtcdPut, EtcdDelete>;

// One comparison of a transaction: `key`'s `target` against `number` (or
// `value` for kValue). A missing key has version, create and mod revision 0.
struct EtcdCompare {
  enum class Target { kVersion, kCreateRevision, kModRevision, kValue, kLease };
  enum class Result { kEqual, kNotEqual, kGreater, kLess };
  std::string key;
  Target target = Target::kVersion;
  Result result = Result::kEqual;
  int64_t number = 0;
  std::string value;
};

struct EtcdTxn {
  std::vector<EtcdCompare> compare;  // all must hold for `success` to run
  std::vector<EtcdOp> success;
  std::vector<EtcdOp> failure;
};

struct EtcdTxnResult {
  bool succeeded = false;
  int64_t revision = 0;
};

struct EtcdLease {
  int64_t id = 0;
  absl::Duration ttl;  // as granted
};

struct EtcdWatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  EtcdKeyValue kv;  // for a delete: the key and mod_revision only
};

struct EtcdWatchOptions {
  std::string key;
  bool prefix = true;
  // The first revision to deliver; 0: from now on. A listing at revision R
  // is followed by a watch from R + 1, which misses nothing.
  int64_t start_revision = 0;
};

// Ends a Watch() from another thread: the watch returns Cancelled at once.
// Thread-safe; cancelling before the watch starts makes it return at once.
class EtcdWatchCancel {
 public:
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class EtcdClient;
  // Set by the running watch: interrupts its wait for data.
  void SetWakeup(std::function<void()> wakeup);

  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::function<void()> wakeup_;
};

// The watch or range asked for a revision that etcd has compacted away.
[[nodiscard]] bool IsEtcdCompacted(const absl::Status& status);
// The compacted revision it carries (the oldest still kept is one more), or 0.
int64_t EtcdCompactRevision(const absl::Status& status);

struct EtcdAnswer;     // internal: a 2xx answer's JSON and the endpoint that gave it
struct EtcdAuthState;  // internal: the current token, shared by every call

class EtcdClient {
 public:
  // InvalidArgument without endpoints or with a bad one, or with only one of
  // cert and key, or of user and password_file; the error of
  // CheckPrivateFile for a key or password file others may read. Does not
  // connect: the first call authenticates.
  [[nodiscard]] static absl::StatusOr<EtcdClient> Create(EtcdClientOptions options);

  EtcdClient(EtcdClient&& other) noexcept;
  EtcdClient& operator=(EtcdClient&&) = delete;
  ~EtcdClient();

  // The value under `key`, nullopt when there is none.
  [[nodiscard]] absl::StatusOr<std::optional<EtcdKeyValue>> Get(absl::string_view key) const;
  // Every key that starts with `prefix`, and the revision read at.
  [[nodiscard]] absl::StatusOr<EtcdRangeResult> RangePrefix(absl::string_view prefix) const;
  // The store's revision after the put.
  [[nodiscard]] absl::StatusOr<int64_t> Put(absl::string_view key, absl::string_view value, int64_t lease = 0) const;
  // How many keys were deleted.
  [[nodiscard]] absl::StatusOr<int64_t> Delete(absl::string_view key) const;
  [[nodiscard]] absl::StatusOr<int64_t> DeletePrefix(absl::string_view prefix) const;
  [[nodiscard]] absl::StatusOr<EtcdTxnResult> Txn(const EtcdTxn& txn) const;
  // Drops the history before `revision` (watches from before it then fail
  // with IsEtcdCompacted).
  [[nodiscard]] absl::Status Compact(int64_t revision) const;

  // A lease of `ttl` (whole seconds, at least one); etcd may raise it to its
  // minimum.
  [[nodiscard]] absl::StatusOr<EtcdLease> GrantLease(absl::Duration ttl) const;
  // Renews the lease once; its TTL from now. NotFound when it has expired or
  // been revoked (its keys are gone: grant a new one and publish again).
  [[nodiscard]] absl::StatusOr<absl::Duration> KeepAliveOnce(int64_t lease) const;
  // Ends the lease and deletes every key attached to it.
  [[nodiscard]] absl::Status RevokeLease(int64_t lease) const;

  // Streams the changes under `options.key` to `on_event`, in revision
  // order, until the stream ends: returns Cancelled after `cancel`,
  // IsEtcdCompacted when start_revision is compacted, Unavailable when the
  // connection broke or etcd went away, or the first error `on_event`
  // returns. Never returns OK. Waits without a timeout; a dead peer is found
  // by TCP keepalives within about a minute.
  [[nodiscard]] absl::Status Watch(const EtcdWatchOptions& options,
                                   absl::FunctionRef<absl::Status(const EtcdWatchEvent&)> on_event,
                                   EtcdWatchCancel* cancel = nullptr) const;

  const EtcdClientOptions& options() const { return options_; }
  // How many tokens this client has been given (0 without a user): one,
  // plus one per token etcd dropped. For status.
  uint64_t authentications() const;

 private:
  explicit EtcdClient(EtcdClientOptions options, std::vector<std::string> base_urls);

  // POST of `body` to `path` ("/v3/kv/range") on the first endpoint that
  // answers, with the token when auth is on (authenticating first when
  // there is none, and once more when etcd calls it invalid). `what` heads
  // errors.
  [[nodiscard]] absl::StatusOr<EtcdAnswer> Post(absl::string_view path, const std::string& body,
                                                absl::string_view what) const;
  // One POST with `token` ("" for none), no retry for auth.
  [[nodiscard]] absl::StatusOr<EtcdAnswer> PostWithToken(absl::string_view path, const std::string& body,
                                                         absl::string_view what, const std::string& token) const;
  [[nodiscard]] absl::Status WatchWithToken(const std::string& body, absl::string_view what,
                                            absl::FunctionRef<absl::Status(const EtcdWatchEvent&)> on_event,
                                            EtcdWatchCancel* cancel, const std::string& token) const;
  // The token to send: "" without a user; else the current one, after
  // authenticating when there is none or when `stale` is the current one.
  [[nodiscard]] absl::StatusOr<std::string> Token(const std::string* stale) const;
  // A call's error, with "as user <name>" added to a refusal of etcd's auth.
  absl::Status WithUser(absl::Status status) const;

  EtcdClientOptions options_;
  std::vector<std::string> base_urls_;  // "https://10.0.0.1:2379", one per endpoint
  // The endpoint that answered last: tried first.
  mutable std::atomic<size_t> preferred_{0};
  std::unique_ptr<EtcdAuthState> auth_;  // null without a user
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_STORE_ETCD_CLIENT_H_
