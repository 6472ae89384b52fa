// SPDX-License-Identifier: Apache-2.0
//
// Internal to the HTTP clients (Docker's, etcd's): a libcurl easy handle set
// up for one request to a server reached directly (no proxy from the
// environment), optionally over TLS with a client certificate, and the
// mapping of a failed transfer to a status that names the request, the
// server and, for TLS, which of CA, expiry or name is wrong.
#ifndef STOCKADE_USERSPACE_NET_CURL_REQUEST_H_
#define STOCKADE_USERSPACE_NET_CURL_REQUEST_H_

#include <curl/curl.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stockade::curl_internal {

struct CurlEasyDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlMultiDeleter {
  void operator()(CURLM* multi) const { curl_multi_cleanup(multi); }
};
using CurlMulti = std::unique_ptr<CURLM, CurlMultiDeleter>;

// How TLS errors name the server and its settings, in the client's terms.
struct CurlPeerWords {
  const char* peer;          // "the daemon"
  const char* host_setting;  // "DOCKER_HOST"
  const char* client_files;  // "cert.pem, key.pem"
};

struct CurlTlsFiles {
  std::string ca_file;
  std::string cert_file;  // empty: no client certificate
  std::string key_file;   // empty: no client key
};

// One request's easy handle and the buffer libcurl writes its error text
// into. libcurl keeps a pointer to `error`, so a request lives behind a
// unique_ptr.
struct CurlRequest {
  CurlEasy handle;
  char error[CURL_ERROR_SIZE] = {};
  std::string what;     // heads error messages: "inspect container abc"
  std::string host;     // the server's, for error messages
  std::string ca_file;  // with TLS, for error messages
  CurlPeerWords words{};
};

// A request of `url`: error buffer, no signals, connect timeout, no proxy,
// http(s) only, and with `tls` the CA, the verification of
// the server's certificate and name, and the client certificate. The caller
// sets the method, body and callbacks.
[[nodiscard]] absl::StatusOr<std::unique_ptr<CurlRequest>> NewCurlRequest(
    const std::string& url, absl::string_view what, absl::string_view host, const CurlTlsFiles* tls,
    absl::Duration connect_timeout, const CurlPeerWords& words);

// A transfer that ended with `code` != CURLE_OK, e.g.
//   Unavailable "ping: connect to unix:///var/run/docker.sock: No such file or directory"
//   DeadlineExceeded "list containers: unix:///var/run/docker.sock did not answer in time: ..."
//   Unavailable "ping: tcp://10.0.0.5:2376: TLS expired: the daemon's certificate has expired (...)";
//     a TLS failure says which of wrong CA, expired, not yet valid, name mismatch.
[[nodiscard]] absl::Status TransferError(const CurlRequest& request, CURLcode code);

// The HTTP status code of a completed request (0 before any answer).
long ResponseCode(const CurlRequest& request);

// Percent-encodes a path segment or query value.
std::string UrlEscape(absl::string_view text);

// CURLOPT_WRITEFUNCTION that appends to the std::string in userdata.
size_t AppendToString(char* data, size_t size, size_t count, void* userdata);

}  // namespace stockade::curl_internal

#endif  // STOCKADE_USERSPACE_NET_CURL_REQUEST_H_
