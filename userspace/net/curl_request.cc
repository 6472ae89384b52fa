// SPDX-License-Identifier: Apache-2.0
#include "userspace/net/curl_request.h"

#include <openssl/x509_vfy.h>

#include "absl/strings/str_cat.h"
#include "stockade/os/errno_status.h"

namespace stockade::curl_internal {
namespace {

// curl_global_init is not thread-safe everywhere; a function-local static is.
absl::Status InitCurlOnce() {
  static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) return absl::InternalError(absl::StrCat("curl_global_init: ", curl_easy_strerror(init)));
  return absl::OkStatus();
}

// A TLS failure in words an operator acts on; empty when `code` is not one.
// libcurl's own text follows it in the message (it names the detail, not
// which of CA, expiry or name is wrong in terms of the client's settings).
std::string TlsFailure(const CurlRequest& request, CURLcode code) {
  const CurlPeerWords& words = request.words;
  if (code == CURLE_SSL_CACERT_BADFILE) return absl::StrCat("cannot use the CA file ", request.ca_file);
  if (code == CURLE_SSL_CERTPROBLEM)
    return absl::StrCat("cannot use the client certificate or key (", words.client_files, ")");
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
      return absl::StrCat("name mismatch: ", words.peer, "'s certificate is not issued for the host in ",
                          words.host_setting, " (", request.host, ")");
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return absl::StrCat("expired: ", words.peer, "'s certificate has expired");
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return absl::StrCat("not yet valid: ", words.peer, "'s certificate starts later (is this host's clock right?)");
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return absl::StrCat("wrong CA: ", words.peer, "'s certificate is not signed by the CA in ", request.ca_file);
    default:
      return absl::StrCat(words.peer, "'s certificate was refused (verify error ", verify, ")");
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<CurlRequest>> NewCurlRequest(const std::string& url, absl::string_view what,
                                                            absl::string_view host, const CurlTlsFiles* tls,
                                                            absl::Duration connect_timeout,
                                                            const CurlPeerWords& words) {
  if (absl::Status init = InitCurlOnce(); !init.ok()) return init;
  auto request = std::make_unique<CurlRequest>();
  request->handle.reset(curl_easy_init());
  if (request->handle == nullptr) return absl::ResourceExhaustedError(absl::StrCat(what, ": curl_easy_init failed"));
  request->what = std::string(what);
  request->host = std::string(host);
  request->words = words;
  if (tls != nullptr) request->ca_file = tls->ca_file;
  CURL* h = request->handle.get();
  // The first failing option is kept; one fails only if libcurl was built
  // without a feature (e.g. unix sockets), so naming the option adds little.
  CURLcode code = CURLE_OK;
  auto set = [&](CURLoption option, auto value) {
    if (code == CURLE_OK) code = curl_easy_setopt(h, option, value);
  };
  set(CURLOPT_URL, url.c_str());
  set(CURLOPT_ERRORBUFFER, request->error);
  // Signals for timeouts would hit other threads of the agent.
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(connect_timeout)));
  // The server is reached directly, never through an HTTP proxy from the environment.
  set(CURLOPT_PROXY, "");
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  if (tls != nullptr) {
    // Without a CA file, the system's trusted CAs verify the server.
    if (!tls->ca_file.empty()) set(CURLOPT_CAINFO, tls->ca_file.c_str());
    set(CURLOPT_SSL_VERIFYPEER, 1L);
    set(CURLOPT_SSL_VERIFYHOST, 2L);
    if (!tls->cert_file.empty()) set(CURLOPT_SSLCERT, tls->cert_file.c_str());
    if (!tls->key_file.empty()) set(CURLOPT_SSLKEY, tls->key_file.c_str());
  }
  if (code != CURLE_OK)
    return absl::InternalError(absl::StrCat(what, ": curl_easy_setopt: ", curl_easy_strerror(code)));
  return request;
}

absl::Status TransferError(const CurlRequest& request, CURLcode code) {
  const std::string& host = request.host;
  const std::string detail = request.error[0] != '\0' ? request.error : curl_easy_strerror(code);
  if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST) {
    long os_errno = 0;
    curl_easy_getinfo(request.handle.get(), CURLINFO_OS_ERRNO, &os_errno);
    const std::string what = absl::StrCat(request.what, ": connect to ", host);
    // Always Unavailable, even for ENOENT: NotFound is kept for "the server
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

long ResponseCode(const CurlRequest& request) {
  long http_status = 0;
  curl_easy_getinfo(request.handle.get(), CURLINFO_RESPONSE_CODE, &http_status);
  return http_status;
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

}  // namespace stockade::curl_internal
