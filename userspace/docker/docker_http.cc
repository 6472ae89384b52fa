// SPDX-License-Identifier: Apache-2.0
#include "userspace/docker/docker_http.h"

#include <openssl/x509_vfy.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "stockade/docker/docker_parse.h"
#include "stockade/errno_status.h"

namespace stockade::docker_internal {
namespace {

// curl_global_init is not thread-safe everywhere; a function-local static is.
absl::Status InitCurlOnce() {
  static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) return absl::InternalError(absl::StrCat("curl_global_init: ", curl_easy_strerror(init)));
  return absl::OkStatus();
}

absl::StatusCode CodeForHttpStatus(long http_status) {
  switch (http_status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kFailedPrecondition;
    case 500:
      return absl::StatusCode::kInternal;
    case 503:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

// A TLS failure in words an operator acts on; empty when `code` is not one.
// libcurl's own text follows it in the message (it names the detail, not
// which of CA, expiry or name is wrong in terms of DOCKER_* settings).
std::string TlsFailure(const DockerRequest& request, CURLcode code) {
  if (code == CURLE_SSL_CACERT_BADFILE) return absl::StrCat("cannot use the CA file ", request.ca_file);
  if (code == CURLE_SSL_CERTPROBLEM) return "cannot use the client certificate or key (cert.pem, key.pem)";
  if (code != CURLE_PEER_FAILED_VERIFICATION) return "";
  long verify = X509_V_OK;
  curl_easy_getinfo(request.handle.get(), CURLINFO_SSL_VERIFYRESULT, &verify);
  switch (verify) {
    // The chain was good and libcurl's own name match failed: it reports
    // X509_V_ERR_UNSPECIFIED (curl 7.88) or leaves X509_V_OK. Its only other
    // check of its own, a pinned public key, is not used here.
    case X509_V_OK:
    case X509_V_ERR_UNSPECIFIED:
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return absl::StrCat("name mismatch: the daemon's certificate is not issued for the host in DOCKER_HOST (",
                          request.host, ")");
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return "expired: the daemon's certificate has expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "not yet valid: the daemon's certificate starts later (is this host's clock right?)";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return absl::StrCat("wrong CA: the daemon's certificate is not signed by the CA in ", request.ca_file);
    default:
      return absl::StrCat("the daemon's certificate was refused (verify error ", verify, ")");
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<DockerRequest>> NewDockerRequest(const DockerEndpoint& endpoint,
                                                                absl::string_view path_and_query,
                                                                absl::string_view what,
                                                                absl::Duration connect_timeout) {
  if (absl::Status init = InitCurlOnce(); !init.ok()) return init;
  auto request = std::make_unique<DockerRequest>();
  request->handle.reset(curl_easy_init());
  if (request->handle == nullptr) return absl::ResourceExhaustedError(absl::StrCat(what, ": curl_easy_init failed"));
  request->what = std::string(what);
  request->host = endpoint.host;
  if (endpoint.tls) request->ca_file = endpoint.tls->ca_file;
  CURL* h = request->handle.get();
  // The first failing option is kept; one fails only if libcurl was built
  // without a feature (e.g. unix sockets), so naming the option adds little.
  CURLcode code = CURLE_OK;
  auto set = [&](CURLoption option, auto value) {
    if (code == CURLE_OK) code = curl_easy_setopt(h, option, value);
  };
  const std::string url = absl::StrCat(endpoint.base_url, "/", kApiVersion, path_and_query);
  set(CURLOPT_URL, url.c_str());
  set(CURLOPT_ERRORBUFFER, request->error);
  // Signals for timeouts would hit other threads of the agent.
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(connect_timeout)));
  // The daemon is reached directly, never through an HTTP proxy from the environment.
  set(CURLOPT_PROXY, "");
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  if (!endpoint.unix_socket_path.empty()) {
    set(CURLOPT_UNIX_SOCKET_PATH, endpoint.unix_socket_path.c_str());
  } else {
    set(CURLOPT_TCP_KEEPALIVE, 1L);
  }
  if (endpoint.tls) {
    set(CURLOPT_CAINFO, endpoint.tls->ca_file.c_str());
    set(CURLOPT_SSL_VERIFYPEER, 1L);
    set(CURLOPT_SSL_VERIFYHOST, 2L);
    if (!endpoint.tls->cert_file.empty()) set(CURLOPT_SSLCERT, endpoint.tls->cert_file.c_str());
    if (!endpoint.tls->key_file.empty()) set(CURLOPT_SSLKEY, endpoint.tls->key_file.c_str());
  }
  if (code != CURLE_OK)
    return absl::InternalError(absl::StrCat(what, ": curl_easy_setopt: ", curl_easy_strerror(code)));
  return request;
}

absl::Status TransferError(const DockerRequest& request, CURLcode code) {
  const std::string& host = request.host;
  const std::string detail = request.error[0] != '\0' ? request.error : curl_easy_strerror(code);
  if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST) {
    long os_errno = 0;
    curl_easy_getinfo(request.handle.get(), CURLINFO_OS_ERRNO, &os_errno);
    const std::string what = absl::StrCat(request.what, ": connect to ", host);
    // Always Unavailable, even for ENOENT: NotFound is kept for "the daemon
    // says no such object", which a caller acts on differently.
    if (os_errno != 0) return absl::UnavailableError(ErrnoStatus(static_cast<int>(os_errno), what).message());
    return absl::UnavailableError(absl::StrCat(what, ": ", detail));
  }
  if (std::string tls = TlsFailure(request, code); !tls.empty())
    return absl::UnavailableError(absl::StrCat(request.what, ": ", host, ": TLS ", tls, " (", detail, ")"));
  if (code == CURLE_OPERATION_TIMEDOUT)
    return absl::DeadlineExceededError(absl::StrCat(request.what, ": ", host, " did not answer in time: ", detail));
  return absl::UnavailableError(absl::StrCat(request.what, ": ", host, ": ", detail));
}

absl::Status HttpStatus(const DockerRequest& request, absl::string_view body) {
  long http_status = 0;
  curl_easy_getinfo(request.handle.get(), CURLINFO_RESPONSE_CODE, &http_status);
  if (http_status >= 200 && http_status < 300) return absl::OkStatus();
  return absl::Status(CodeForHttpStatus(http_status),
                      absl::StrCat(request.what, ": ", http_status, " ", ParseErrorMessage(body)));
}

std::string UrlEscape(absl::string_view text) {
  std::unique_ptr<char, decltype(&curl_free)> escaped(
      curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size())), &curl_free);
  return escaped == nullptr ? std::string() : std::string(escaped.get());
}

size_t AppendToString(char* data, size_t size, size_t count, void* userdata) {
  static_cast<std::string*>(userdata)->append(data, size * count);
  return size * count;
}

}  // namespace stockade::docker_internal
