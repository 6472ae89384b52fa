// SPDX-License-Identifier: Apache-2.0
#include "stockade/store/etcd_client.h"

#include <string.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "stockade/docker/docker_endpoint.h"
#include "userspace/net/curl_request.h"

namespace stockade {
namespace {

using Json = nlohmann::json;
using curl_internal::CurlRequest;

constexpr curl_internal::CurlPeerWords kEtcdWords{
    .peer = "etcd", .host_setting = "--endpoints", .client_files = "--cert, --key"};

// Where a compacted revision travels in a status: its payload, so that no
// other OutOfRange (a bad argument etcd calls out of range) is taken for it.
constexpr char kCompactedPayload[] = "type.googleapis.com/stockade.EtcdCompacted";

// The TCP keepalives of a watch, which has no timeout of its own: a peer
// gone without a FIN is found after idle + 9 probes, about a minute.
constexpr long kWatchKeepIdleSeconds = 15;
constexpr long kWatchKeepIntervalSeconds = 5;

absl::Status CompactedStatus(absl::string_view what, absl::string_view base_url, int64_t compact_revision) {
  absl::Status status =
      absl::OutOfRangeError(absl::StrCat(what, ": at ", base_url, ": revision compacted (etcd keeps revisions after ",
                                         compact_revision, "): list again and watch from the listing's revision"));
  status.SetPayload(kCompactedPayload, absl::Cord(absl::StrCat(compact_revision)));
  return status;
}

// The gateway writes int64 as JSON strings; a number is taken too. Absent: 0.
int64_t Int64Member(const Json& object, const char* name) {
  auto found = object.find(name);
  if (found == object.end() || found->is_null()) return 0;
  if (found->is_number_integer()) return found->get<int64_t>();
  int64_t value = 0;
  if (!found->is_string() || !absl::SimpleAtoi(found->get<std::string>(), &value))
    throw std::invalid_argument(absl::StrCat("\"", name, "\" is not an integer: ", found->dump()));
  return value;
}

// A base64 member as its bytes; absent (the gateway leaves out empty ones): "".
std::string BytesMember(const Json& object, const char* name) {
  auto found = object.find(name);
  if (found == object.end() || found->is_null()) return "";
  std::string bytes;
  if (!found->is_string() || !absl::Base64Unescape(found->get<std::string>(), &bytes))
    throw std::invalid_argument(absl::StrCat("\"", name, "\" is not base64"));
  return bytes;
}

int64_t HeaderRevision(const Json& answer) {
  auto header = answer.find("header");
  return header == answer.end() ? 0 : Int64Member(*header, "revision");
}

EtcdKeyValue KeyValueOf(const Json& kv) {
  return EtcdKeyValue{.key = BytesMember(kv, "key"),
                      .value = BytesMember(kv, "value"),
                      .create_revision = Int64Member(kv, "create_revision"),
                      .mod_revision = Int64Member(kv, "mod_revision"),
                      .version = Int64Member(kv, "version"),
                      .lease = Int64Member(kv, "lease")};
}

// etcd's range_end for "every key with this prefix": the prefix with its
// last byte below 0xff incremented and what follows it cut; "\0" (no end)
// when every byte is 0xff.
std::string PrefixRangeEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

Json KeyRange(absl::string_view key, bool prefix) {
  Json range = {{"key", absl::Base64Escape(key)}};
  if (prefix) range["range_end"] = absl::Base64Escape(PrefixRangeEnd(key));
  return range;
}

Json PutRequest(absl::string_view key, absl::string_view value, int64_t lease) {
  Json put = {{"key", absl::Base64Escape(key)}, {"value", absl::Base64Escape(value)}};
  if (lease != 0) put["lease"] = absl::StrCat(lease);
  return put;
}

Json OpRequest(const EtcdOp& op) {
  if (const auto* put = std::get_if<EtcdPut>(&op))
    return {{"request_put", PutRequest(put->key, put->value, put->lease)}};
  const auto& del = std::get<EtcdDelete>(op);
  return {{"request_delete_range", KeyRange(del.key, del.prefix)}};
}

Json CompareRequest(const EtcdCompare& compare) {
  static constexpr const char* kResults[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
  // Per EtcdCompare::Target, in its order: the gateway's name of the target
  // and of the member that holds what it is compared with.
  struct TargetNames {
    const char* target;
    const char* member;
  };
  static constexpr TargetNames kTargets[] = {
      {"VERSION", "version"}, {"CREATE", "create_revision"}, {"MOD", "mod_revision"},
      {"VALUE", "value"},     {"LEASE", "lease"},
  };
  const TargetNames& names = kTargets[static_cast<int>(compare.target)];
  return {{"key", absl::Base64Escape(compare.key)},
          {"result", kResults[static_cast<int>(compare.result)]},
          {"target", names.target},
          {names.member, compare.target == EtcdCompare::Target::kValue ? absl::Base64Escape(compare.value)
                                                                       : absl::StrCat(compare.number)}};
}

// etcd 3.4's gateway, with auth on, refuses any request whose client
// certificate has a CommonName (it cannot pass the CN on as the user), in
// plain text with HTTP 400.
constexpr char kGatewayCommonName[] = "CommonName of client sending a request against gateway";

// An answer that is not the gateway's JSON (a proxy's page, etcd's plain
// text): its first line, cut short, or "HTTP <status>".
absl::Status PlainTextError(absl::string_view what, absl::string_view base_url, absl::string_view text,
                            long http_status) {
  if (absl::StrContains(text, kGatewayCommonName))
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": at ", base_url,
                     ": etcd's gateway refuses a client certificate with a CommonName while etcd's auth is on; use a "
                     "certificate without CN and --user (docs/multihost.md, \"etcd's auth, per host\")"));
  absl::string_view line = absl::StripAsciiWhitespace(text.substr(0, text.find('\n')));
  if (line.size() > 200) line = line.substr(0, 200);
  return absl::UnknownError(
      absl::StrCat(what, ": at ", base_url, ": HTTP ", http_status, line.empty() ? "" : ": ", line));
}

// An error etcd answered, in the gateway's form: {"error": "...", "code": 5,
// "message": "..."} for a call, {"error": {"grpc_code": 5, "message": ...}}
// inside a stream. gRPC's codes are absl's. Compaction is told apart.
absl::Status EtcdError(absl::string_view what, absl::string_view base_url, const Json& error, long http_status) {
  const Json& detail = error.contains("error") && error["error"].is_object() ? error["error"] : error;
  std::string message;
  if (detail.contains("message") && detail["message"].is_string()) message = detail["message"].get<std::string>();
  if (message.empty() && detail.contains("error") && detail["error"].is_string())
    message = detail["error"].get<std::string>();
  if (message.empty()) message = absl::StrCat("HTTP ", http_status);
  int code = static_cast<int>(absl::StatusCode::kUnknown);
  for (const char* name : {"code", "grpc_code"}) {
    if (detail.contains(name) && detail[name].is_number_integer()) code = detail[name].get<int>();
  }
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated))
    code = static_cast<int>(absl::StatusCode::kUnknown);
  if (absl::StrContains(message, "required revision has been compacted")) {
    // The message carries no revision; 0 says "unknown" to the caller.
    return CompactedStatus(what, base_url, 0);
  }
  return absl::Status(static_cast<absl::StatusCode>(code), absl::StrCat(what, ": at ", base_url, ": ", message));
}

absl::Status NotEtcd(absl::string_view what, absl::string_view base_url, absl::string_view why) {
  return absl::InternalError(absl::StrCat(what, ": at ", base_url, ": unexpected answer: ", why));
}

// A watch etcd cancelled, its reason "rpc error: code = Unauthenticated desc
// = etcdserver: invalid auth token" kept as its code where auth is the
// reason, so that a stale token is told apart (and replaced).
absl::Status CancelledWatchStatus(absl::string_view what, absl::string_view base_url, absl::string_view reason) {
  absl::StatusCode code = absl::StatusCode::kFailedPrecondition;
  absl::string_view why = reason;
  if (absl::ConsumePrefix(&why, "rpc error: code = ")) {
    if (absl::ConsumePrefix(&why, "Unauthenticated"))
      code = absl::StatusCode::kUnauthenticated;
    else if (absl::ConsumePrefix(&why, "PermissionDenied"))
      code = absl::StatusCode::kPermissionDenied;
    else if (absl::ConsumePrefix(&why, "InvalidArgument"))
      code = absl::StatusCode::kInvalidArgument;
    if (code != absl::StatusCode::kFailedPrecondition) {
      absl::ConsumePrefix(&why, " desc = ");
      reason = why;
    }
  }
  return absl::Status(code, absl::StrCat(what, ": at ", base_url, ": etcd cancelled the watch: ", reason));
}

// etcd refused the token itself, not the call: expired or dropped (auth was
// disabled and enabled again), or issued before the auth store changed.
// Nothing of the call was done, so a fresh token and one retry are safe.
bool IsStaleToken(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnauthenticated ||
         (status.code() == absl::StatusCode::kInvalidArgument &&
          absl::StrContains(status.message(), "etcdserver: revision of auth store is old"));
}

// The password: the first line of `path`, re-checked as private.
absl::StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  if (absl::Status private_file = CheckPrivateFile(path, "etcd password file"); !private_file.ok()) return private_file;
  std::ifstream in(path);
  std::string password;
  if (!in || !std::getline(in, password))
    return absl::FailedPreconditionError(absl::StrCat("etcd password file ", path, ": cannot read a line"));
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty()) return absl::FailedPreconditionError(absl::StrCat("etcd password file ", path, " is empty"));
  return password;
}

// Parses a 2xx answer's JSON object; a bad one is named.
absl::StatusOr<Json> ParseAnswer(absl::string_view what, absl::string_view base_url, absl::string_view text) {
  Json answer = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (answer.is_discarded() || !answer.is_object()) return NotEtcd(what, base_url, "not a JSON object");
  return answer;
}

// "10.0.0.1:2379" or "https://10.0.0.1:2379/" -> "https://10.0.0.1:2379".
absl::StatusOr<std::string> BaseUrlOf(absl::string_view endpoint, bool tls) {
  absl::string_view text = absl::StripSuffix(absl::StripAsciiWhitespace(endpoint), "/");
  absl::string_view address = text;
  std::string scheme = tls ? "https" : "http";
  if (const size_t sep = text.find("://"); sep != absl::string_view::npos) {
    scheme = std::string(text.substr(0, sep));
    address = text.substr(sep + 3);
    if (scheme != "http" && scheme != "https")
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint ", endpoint, ": scheme '", scheme, "' is not supported; use http or https"));
  }
  const size_t colon = address.rfind(':');
  int port = 0;
  if (address.empty() || address.find('/') != absl::string_view::npos || colon == absl::string_view::npos ||
      colon == 0 || !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 || port > 65535)
    return absl::InvalidArgumentError(
        absl::StrCat("etcd endpoint '", endpoint, "': expected host:port, e.g. https://10.0.0.1:2379"));
  return absl::StrCat(scheme, "://", address);
}

struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using CurlHeaders = std::unique_ptr<curl_slist, SlistDeleter>;

// Overwrites a secret's bytes before its memory goes back to the heap.
void Wipe(std::string& secret) {
  explicit_bzero(secret.data(), secret.size());
  secret.clear();
}

// One POST's request, headers and body, on one endpoint. libcurl keeps
// pointers to the headers and the body, so a post lives behind a unique_ptr.
struct EtcdPost {
  std::unique_ptr<CurlRequest> request;
  CurlHeaders headers;
  std::string body;
  std::string answer;
  // The body of an authenticate carries a password.
  ~EtcdPost() { Wipe(body); }
};

// `token` ("" for none) goes in the Authorization header, as the gateway
// wants it: the bare token, no "Bearer".
absl::StatusOr<std::unique_ptr<EtcdPost>> NewPost(const std::string& base_url, absl::string_view path, std::string body,
                                                  absl::string_view what, const EtcdClientOptions& options,
                                                  const std::string& token) {
  const bool https = absl::StartsWith(base_url, "https://");
  const curl_internal::CurlTlsFiles tls{.ca_file = options.cacert, .cert_file = options.cert, .key_file = options.key};
  auto request = curl_internal::NewCurlRequest(absl::StrCat(base_url, path), what, base_url, https ? &tls : nullptr,
                                               options.dial_timeout, kEtcdWords);
  if (!request.ok()) return request.status();
  auto post = std::make_unique<EtcdPost>();
  post->request = *std::move(request);
  post->body = std::move(body);
  post->headers.reset(curl_slist_append(nullptr, "Content-Type: application/json"));
  if (post->headers != nullptr && !token.empty()) {
    std::string authorization = absl::StrCat("Authorization: ", token);
    curl_slist* appended = curl_slist_append(post->headers.get(), authorization.c_str());
    Wipe(authorization);
    if (appended == nullptr) post->headers.reset();
  }
  if (post->headers == nullptr) return absl::ResourceExhaustedError(absl::StrCat(what, ": curl_slist_append failed"));
  CURL* h = post->request->handle.get();
  CURLcode code = CURLE_OK;
  auto set = [&](CURLoption option, auto value) {
    if (code == CURLE_OK) code = curl_easy_setopt(h, option, value);
  };
  set(CURLOPT_HTTPHEADER, post->headers.get());
  set(CURLOPT_POSTFIELDS, post->body.c_str());
  set(CURLOPT_POSTFIELDSIZE, static_cast<long>(post->body.size()));
  set(CURLOPT_TCP_KEEPALIVE, 1L);
  if (code != CURLE_OK)
    return absl::InternalError(absl::StrCat(what, ": curl_easy_setopt: ", curl_easy_strerror(code)));
  return post;
}

// Nothing of the request reached the endpoint (no connection, a refused TLS
// handshake): the next endpoint may be tried without doing the call twice.
bool NothingSent(const CurlRequest& request) {
  long sent = 0;
  curl_easy_getinfo(request.handle.get(), CURLINFO_REQUEST_SIZE, &sent);
  return sent == 0;
}

// The lines of a gateway stream (one JSON message each) as they complete.
class LineSplitter {
 public:
  template <typename OnLine>
  bool Feed(absl::string_view data, OnLine on_line) {
    buffer_.append(data.data(), data.size());
    size_t start = 0;
    for (size_t newline; (newline = buffer_.find('\n', start)) != std::string::npos; start = newline + 1) {
      const absl::string_view line =
          absl::StripAsciiWhitespace(absl::string_view(buffer_).substr(start, newline - start));
      if (!line.empty() && !on_line(line)) return false;
    }
    buffer_.erase(0, start);
    return true;
  }

 private:
  std::string buffer_;
};

// One POST /v3/watch on a multi handle, so that waiting happens in
// curl_multi_poll(), which EtcdWatchCancel interrupts with curl_multi_wakeup().
struct WatchTransfer {
  std::unique_ptr<EtcdPost> post;
  curl_internal::CurlMulti multi;
  bool attached = false;
  std::string base_url;
  std::string what;
  absl::FunctionRef<absl::Status(const EtcdWatchEvent&)> on_event;
  LineSplitter lines;
  std::string error_body;  // of a non-200 answer
  absl::Status stop;       // why the data callback ended the transfer
  std::optional<absl::Status> ended;

  WatchTransfer(std::unique_ptr<EtcdPost> p, std::string base, std::string w,
                absl::FunctionRef<absl::Status(const EtcdWatchEvent&)> callback)
      : post(std::move(p)), base_url(std::move(base)), what(std::move(w)), on_event(callback) {}
  ~WatchTransfer() {
    if (attached) curl_multi_remove_handle(multi.get(), post->request->handle.get());
  }

  // One message of the stream; false ends the transfer with `stop` set.
  bool OnMessage(absl::string_view line) {
    const Json message = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (message.is_discarded() || !message.is_object()) {
      stop = NotEtcd(what, base_url, "a watch message that is not a JSON object");
      return false;
    }
    if (message.contains("error")) {
      stop = EtcdError(what, base_url, message, 200);
      return false;
    }
    const Json& result = message.contains("result") ? message["result"] : message;
    try {
      if (const int64_t compacted = Int64Member(result, "compact_revision"); compacted != 0) {
        stop = CompactedStatus(what, base_url, compacted);
        return false;
      }
      if (result.value("canceled", false)) {
        stop = CancelledWatchStatus(what, base_url, result.value("cancel_reason", "no reason given"));
        return false;
      }
      if (auto events = result.find("events"); events != result.end()) {
        for (const Json& event : *events) {
          EtcdWatchEvent decoded{.type = event.value("type", "PUT") == "DELETE" ? EtcdWatchEvent::Type::kDelete
                                                                                : EtcdWatchEvent::Type::kPut};
          if (auto kv = event.find("kv"); kv != event.end()) decoded.kv = KeyValueOf(*kv);
          if (absl::Status handled = on_event(decoded); !handled.ok()) {
            stop = handled;
            return false;
          }
        }
      }
    } catch (const std::exception& e) {
      stop = NotEtcd(what, base_url, e.what());
      return false;
    }
    return true;
  }

  static size_t OnData(char* data, size_t size, size_t count, void* userdata) {
    auto* transfer = static_cast<WatchTransfer*>(userdata);
    const size_t length = size * count;
    if (curl_internal::ResponseCode(*transfer->post->request) != 200) {
      transfer->error_body.append(data, length);
      return length;
    }
    const bool go_on = transfer->lines.Feed(absl::string_view(data, length),
                                            [&](absl::string_view line) { return transfer->OnMessage(line); });
    return go_on ? length : 0;  // 0 aborts the transfer with CURLE_WRITE_ERROR
  }

  absl::Status WhyEnded(CURLcode result) const {
    if (!stop.ok()) return stop;
    if (result != CURLE_OK) return curl_internal::TransferError(*post->request, result);
    if (const long http = curl_internal::ResponseCode(*post->request); http != 200) {
      const Json error = Json::parse(error_body, nullptr, /*allow_exceptions=*/false);
      if (!error.is_object()) return PlainTextError(what, base_url, error_body, http);
      return EtcdError(what, base_url, error, http);
    }
    return absl::UnavailableError(absl::StrCat(what, ": at ", base_url, ": etcd ended the stream"));
  }

  void Perform() {
    int running = 0;
    if (CURLMcode code = curl_multi_perform(multi.get(), &running); code != CURLM_OK) {
      ended = absl::InternalError(absl::StrCat(what, ": curl_multi_perform: ", curl_multi_strerror(code)));
      return;
    }
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi.get(), &queued)) {
      if (message->msg == CURLMSG_DONE) ended = WhyEnded(message->data.result);
    }
  }
};

}  // namespace

void EtcdWatchCancel::Cancel() {
  cancelled_.store(true);
  std::lock_guard<std::mutex> lock(mutex_);
  if (wakeup_) wakeup_();
}

void EtcdWatchCancel::SetWakeup(std::function<void()> wakeup) {
  std::lock_guard<std::mutex> lock(mutex_);
  wakeup_ = std::move(wakeup);
}

bool IsEtcdCompacted(const absl::Status& status) {
  return status.code() == absl::StatusCode::kOutOfRange && status.GetPayload(kCompactedPayload).has_value();
}

int64_t EtcdCompactRevision(const absl::Status& status) {
  auto payload = status.GetPayload(kCompactedPayload);
  int64_t revision = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &revision)) return 0;
  return revision;
}

absl::StatusOr<EtcdClient> EtcdClient::Create(EtcdClientOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("etcd: no endpoints (--endpoints)");
  if (options.cert.empty() != options.key.empty())
    return absl::InvalidArgumentError("etcd: --cert and --key go together: set both or neither");
  if (!options.key.empty()) {
    if (absl::Status key = CheckPrivateKeyFile(options.key); !key.ok()) return key;
  }
  if (options.user.empty() != options.password_file.empty())
    return absl::InvalidArgumentError("etcd: --user and --password-file go together: set both or neither");
  if (absl::StrContains(options.user, ':'))
    return absl::InvalidArgumentError(
        "etcd: --user is a name only; a password goes in --password-file, not on a command line");
  if (!options.password_file.empty()) {
    if (absl::Status password = CheckPrivateFile(options.password_file, "etcd password file"); !password.ok())
      return password;
  }
  const bool tls = !options.cacert.empty() || !options.cert.empty();
  std::vector<std::string> base_urls;
  for (const std::string& endpoint : options.endpoints) {
    absl::StatusOr<std::string> base_url = BaseUrlOf(endpoint, tls);
    if (!base_url.ok()) return base_url.status();
    base_urls.push_back(*std::move(base_url));
  }
  return EtcdClient(std::move(options), std::move(base_urls));
}

struct EtcdAuthState {
  std::mutex mutex;   // held while authenticating, so that one call does it for all
  std::string token;  // "" until the first authenticate
  std::atomic<uint64_t> authentications{0};
  ~EtcdAuthState() { Wipe(token); }
};

EtcdClient::EtcdClient(EtcdClientOptions options, std::vector<std::string> base_urls)
    : options_(std::move(options)), base_urls_(std::move(base_urls)) {
  if (!options_.user.empty()) auth_ = std::make_unique<EtcdAuthState>();
}

EtcdClient::EtcdClient(EtcdClient&& other) noexcept
    : options_(std::move(other.options_)),
      base_urls_(std::move(other.base_urls_)),
      preferred_(other.preferred_.load()),
      auth_(std::move(other.auth_)) {}

EtcdClient::~EtcdClient() = default;

struct EtcdAnswer {
  std::string base_url;
  Json json;
};

namespace {

// `decode` of a call's answer; what it throws (a member of the wrong type)
// becomes an error naming the call and the endpoint.
template <typename Decode>
auto Decoded(absl::StatusOr<EtcdAnswer> answer, absl::string_view what, Decode decode)
    -> absl::StatusOr<decltype(decode(answer->json))> {
  if (!answer.ok()) return answer.status();
  try {
    return decode(answer->json);
  } catch (const std::exception& e) {
    return NotEtcd(what, answer->base_url, e.what());
  }
}

}  // namespace

absl::StatusOr<std::string> EtcdClient::Token(const std::string* stale) const {
  if (auth_ == nullptr) return std::string();
  std::lock_guard<std::mutex> lock(auth_->mutex);
  // Another call may have replaced the stale token while this one waited.
  if (!auth_->token.empty() && (stale == nullptr || *stale != auth_->token)) return auth_->token;
  absl::StatusOr<std::string> password = ReadPasswordFile(options_.password_file);
  if (!password.ok()) return password.status();
  std::string body;
  try {
    body = absl::StrCat("{\"name\":", Json(options_.user).dump(), ",\"password\":", Json(*password).dump(), "}");
  } catch (const Json::exception&) {  // JSON strings are UTF-8
    Wipe(*password);
    return absl::InvalidArgumentError(
        absl::StrCat("etcd --user or password file ", options_.password_file, ": not UTF-8 text"));
  }
  Wipe(*password);
  const std::string what = absl::StrCat("etcd authenticate as user ", options_.user);
  absl::StatusOr<EtcdAnswer> answer = PostWithToken("/v3/auth/authenticate", body, what, "");
  Wipe(body);
  if (!answer.ok()) return answer.status();
  auto token = answer->json.find("token");
  if (token == answer->json.end() || !token->is_string() || token->get_ref<const std::string&>().empty())
    return NotEtcd(what, answer->base_url, "no token");
  Wipe(auth_->token);
  auth_->token = token->get<std::string>();
  Wipe(token->get_ref<std::string&>());
  auth_->authentications.fetch_add(1);
  return auth_->token;
}

uint64_t EtcdClient::authentications() const { return auth_ == nullptr ? 0 : auth_->authentications.load(); }

absl::Status EtcdClient::WithUser(absl::Status status) const {
  if (auth_ == nullptr && status.code() == absl::StatusCode::kInvalidArgument &&
      absl::StrContains(status.message(), "etcdserver: user name is empty"))
    return absl::UnauthenticatedError(
        absl::StrCat(status.message(), " (etcd's auth is on: give a user, --user and --password-file)"));
  if (auth_ == nullptr || status.ok() ||
      (status.code() != absl::StatusCode::kPermissionDenied && status.code() != absl::StatusCode::kUnauthenticated))
    return status;
  return absl::Status(status.code(), absl::StrCat(status.message(), " (as etcd user ", options_.user, ")"));
}

absl::StatusOr<EtcdAnswer> EtcdClient::Post(absl::string_view path, const std::string& body,
                                            absl::string_view what) const {
  absl::StatusOr<std::string> token = Token(nullptr);
  if (!token.ok()) return token.status();
  absl::StatusOr<EtcdAnswer> answer = PostWithToken(path, body, what, *token);
  if (auth_ != nullptr && !answer.ok() && IsStaleToken(answer.status())) {
    token = Token(&*token);
    if (!token.ok()) return token.status();
    answer = PostWithToken(path, body, what, *token);
  }
  if (!answer.ok()) return WithUser(answer.status());
  return answer;
}

absl::StatusOr<EtcdAnswer> EtcdClient::PostWithToken(absl::string_view path, const std::string& body,
                                                     absl::string_view what, const std::string& token) const {
  absl::Status last_error;
  const size_t first = preferred_.load();
  for (size_t i = 0; i < base_urls_.size(); ++i) {
    const size_t index = (first + i) % base_urls_.size();
    const std::string& base_url = base_urls_[index];
    absl::StatusOr<std::unique_ptr<EtcdPost>> created = NewPost(base_url, path, body, what, options_, token);
    if (!created.ok()) return created.status();
    EtcdPost* post = created->get();
    CURL* h = post->request->handle.get();
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &curl_internal::AppendToString);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &post->answer);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(options_.command_timeout)));
    if (CURLcode code = curl_easy_perform(h); code != CURLE_OK) {
      last_error = curl_internal::TransferError(*post->request, code);
      if (NothingSent(*post->request)) continue;
      return last_error;
    }
    preferred_.store(index);
    const long http = curl_internal::ResponseCode(*post->request);
    if (http < 200 || http >= 300) {
      const Json error = Json::parse(post->answer, nullptr, /*allow_exceptions=*/false);
      if (!error.is_object()) return PlainTextError(what, base_url, post->answer, http);
      return EtcdError(what, base_url, error, http);
    }
    absl::StatusOr<Json> json = ParseAnswer(what, base_url, post->answer);
    if (!json.ok()) return json.status();
    return EtcdAnswer{.base_url = base_url, .json = *std::move(json)};
  }
  return last_error;
}

absl::StatusOr<std::optional<EtcdKeyValue>> EtcdClient::Get(absl::string_view key) const {
  const std::string what = absl::StrCat("etcd get ", key);
  return Decoded(Post("/v3/kv/range", KeyRange(key, /*prefix=*/false).dump(), what), what,
                 [](const Json& answer) -> std::optional<EtcdKeyValue> {
                   auto kvs = answer.find("kvs");
                   if (kvs == answer.end() || kvs->empty()) return std::nullopt;
                   return KeyValueOf(kvs->at(0));
                 });
}

absl::StatusOr<EtcdRangeResult> EtcdClient::RangePrefix(absl::string_view prefix) const {
  const std::string what = absl::StrCat("etcd range ", prefix);
  return Decoded(Post("/v3/kv/range", KeyRange(prefix, /*prefix=*/true).dump(), what), what, [](const Json& answer) {
    EtcdRangeResult result{.revision = HeaderRevision(answer)};
    if (auto kvs = answer.find("kvs"); kvs != answer.end()) {
      result.kvs.reserve(kvs->size());
      for (const Json& kv : *kvs) result.kvs.push_back(KeyValueOf(kv));
    }
    return result;
  });
}

absl::StatusOr<int64_t> EtcdClient::Put(absl::string_view key, absl::string_view value, int64_t lease) const {
  const std::string what = absl::StrCat("etcd put ", key);
  return Decoded(Post("/v3/kv/put", PutRequest(key, value, lease).dump(), what), what, &HeaderRevision);
}

absl::StatusOr<int64_t> EtcdClient::Delete(absl::string_view key) const {
  const std::string what = absl::StrCat("etcd delete ", key);
  return Decoded(Post("/v3/kv/deleterange", KeyRange(key, /*prefix=*/false).dump(), what), what,
                 [](const Json& answer) { return Int64Member(answer, "deleted"); });
}

absl::StatusOr<int64_t> EtcdClient::DeletePrefix(absl::string_view prefix) const {
  const std::string what = absl::StrCat("etcd delete prefix ", prefix);
  return Decoded(Post("/v3/kv/deleterange", KeyRange(prefix, /*prefix=*/true).dump(), what), what,
                 [](const Json& answer) { return Int64Member(answer, "deleted"); });
}

absl::StatusOr<EtcdTxnResult> EtcdClient::Txn(const EtcdTxn& txn) const {
  const std::string what = "etcd txn";
  Json request = {{"compare", Json::array()}, {"success", Json::array()}, {"failure", Json::array()}};
  for (const EtcdCompare& compare : txn.compare) request["compare"].push_back(CompareRequest(compare));
  for (const EtcdOp& op : txn.success) request["success"].push_back(OpRequest(op));
  for (const EtcdOp& op : txn.failure) request["failure"].push_back(OpRequest(op));
  return Decoded(Post("/v3/kv/txn", request.dump(), what), what, [](const Json& answer) {
    return EtcdTxnResult{.succeeded = answer.value("succeeded", false), .revision = HeaderRevision(answer)};
  });
}

absl::Status EtcdClient::Compact(int64_t revision) const {
  const std::string what = absl::StrCat("etcd compact ", revision);
  // physical: the answer comes once the history is really gone, so that a
  // watch from before it fails for sure.
  const Json request = {{"revision", absl::StrCat(revision)}, {"physical", true}};
  return Post("/v3/kv/compaction", request.dump(), what).status();
}

absl::StatusOr<EtcdLease> EtcdClient::GrantLease(absl::Duration ttl) const {
  const int64_t seconds = std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1))));
  const std::string what = absl::StrCat("etcd lease grant ttl ", seconds, "s");
  absl::StatusOr<EtcdAnswer> answer = Post("/v3/lease/grant", Json({{"TTL", absl::StrCat(seconds)}}).dump(), what);
  if (!answer.ok()) return answer.status();
  if (std::string error = answer->json.value("error", ""); !error.empty())
    return absl::FailedPreconditionError(absl::StrCat(what, ": at ", answer->base_url, ": ", error));
  absl::StatusOr<EtcdLease> lease = Decoded(answer, what, [](const Json& json) {
    return EtcdLease{.id = Int64Member(json, "ID"), .ttl = absl::Seconds(Int64Member(json, "TTL"))};
  });
  if (lease.ok() && lease->id == 0) return NotEtcd(what, answer->base_url, "no lease ID");
  return lease;
}

absl::StatusOr<absl::Duration> EtcdClient::KeepAliveOnce(int64_t lease) const {
  const std::string what = absl::StrCat("etcd lease keepalive ", lease);
  // A stream in gRPC; through the gateway, one request message gets one
  // answer ({"result": {...}}) and the stream ends with the request body.
  absl::StatusOr<EtcdAnswer> answer = Post("/v3/lease/keepalive", Json({{"ID", absl::StrCat(lease)}}).dump(), what);
  if (!answer.ok()) return answer.status();
  if (answer->json.contains("error")) return EtcdError(what, answer->base_url, answer->json, 200);
  absl::StatusOr<int64_t> ttl = Decoded(answer, what, [](const Json& json) {
    return Int64Member(json.contains("result") ? json["result"] : json, "TTL");
  });
  if (!ttl.ok()) return ttl.status();
  if (*ttl <= 0)
    return absl::NotFoundError(absl::StrCat(what, ": at ", answer->base_url, ": the lease has expired or was revoked"));
  return absl::Seconds(*ttl);
}

absl::Status EtcdClient::RevokeLease(int64_t lease) const {
  const std::string what = absl::StrCat("etcd lease revoke ", lease);
  return Post("/v3/lease/revoke", Json({{"ID", absl::StrCat(lease)}}).dump(), what).status();
}

absl::Status EtcdClient::Watch(const EtcdWatchOptions& options,
                               absl::FunctionRef<absl::Status(const EtcdWatchEvent&)> on_event,
                               EtcdWatchCancel* cancel) const {
  const std::string what = absl::StrCat("etcd watch ", options.key, " from revision ", options.start_revision);
  Json create = KeyRange(options.key, options.prefix);
  if (options.start_revision != 0) create["start_revision"] = absl::StrCat(options.start_revision);
  const std::string body = Json({{"create_request", create}}).dump();
  absl::StatusOr<std::string> token = Token(nullptr);
  if (!token.ok()) return token.status();
  bool delivered = false;
  auto counted = [&](const EtcdWatchEvent& event) {
    delivered = true;
    return on_event(event);
  };
  absl::Status ended = WatchWithToken(body, what, counted, cancel, *token);
  // etcd cancels a watch with a stale token as it creates it, before any
  // event: watching again from the same revision misses and repeats nothing.
  if (auth_ != nullptr && !delivered && IsStaleToken(ended)) {
    token = Token(&*token);
    if (!token.ok()) return token.status();
    ended = WatchWithToken(body, what, counted, cancel, *token);
  }
  return WithUser(ended);
}

absl::Status EtcdClient::WatchWithToken(const std::string& body, absl::string_view what,
                                        absl::FunctionRef<absl::Status(const EtcdWatchEvent&)> on_event,
                                        EtcdWatchCancel* cancel, const std::string& token) const {
  absl::Status last_error;
  const size_t first = preferred_.load();
  for (size_t i = 0; i < base_urls_.size(); ++i) {
    const size_t index = (first + i) % base_urls_.size();
    absl::StatusOr<std::unique_ptr<EtcdPost>> post =
        NewPost(base_urls_[index], "/v3/watch", body, what, options_, token);
    if (!post.ok()) return post.status();
    WatchTransfer transfer(*std::move(post), base_urls_[index], std::string(what), on_event);
    CURL* h = transfer.post->request->handle.get();
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WatchTransfer::OnData);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, kWatchKeepIdleSeconds);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, kWatchKeepIntervalSeconds);
    transfer.multi.reset(curl_multi_init());
    if (transfer.multi == nullptr) return absl::ResourceExhaustedError(absl::StrCat(what, ": curl_multi_init failed"));
    if (CURLMcode code = curl_multi_add_handle(transfer.multi.get(), h); code != CURLM_OK)
      return absl::InternalError(absl::StrCat(what, ": curl_multi_add_handle: ", curl_multi_strerror(code)));
    transfer.attached = true;
    if (cancel != nullptr) cancel->SetWakeup([multi = transfer.multi.get()] { curl_multi_wakeup(multi); });
    while (!transfer.ended) {
      if (cancel != nullptr && cancel->cancelled()) {
        transfer.ended = absl::CancelledError(absl::StrCat(what, ": cancelled"));
        break;
      }
      transfer.Perform();
      if (transfer.ended) break;
      // The wait is bounded only so that a lost wakeup costs a second, not more.
      if (CURLMcode code = curl_multi_poll(transfer.multi.get(), nullptr, 0, 1000, nullptr); code != CURLM_OK)
        transfer.ended = absl::InternalError(absl::StrCat(what, ": curl_multi_poll: ", curl_multi_strerror(code)));
    }
    // The multi handle ends with `transfer`: no Cancel() may reach it after.
    if (cancel != nullptr) cancel->SetWakeup(nullptr);
    last_error = *transfer.ended;
    if (curl_internal::ResponseCode(*transfer.post->request) == 0 && NothingSent(*transfer.post->request) &&
        last_error.code() == absl::StatusCode::kUnavailable)
      continue;
    preferred_.store(index);
    return last_error;
  }
  return last_error;
}

}  // namespace stockade
