// SPDX-License-Identifier: Apache-2.0
#include "stockade/docker/docker_events.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "stockade/docker/docker_parse.h"
#include "userspace/docker/docker_http.h"

namespace stockade {

// One GET /events on a multi handle, so that waiting happens in
// curl_multi_poll(), which Stop() interrupts with curl_multi_wakeup().
struct DockerEventStream::Transfer {
  std::unique_ptr<docker_internal::DockerRequest> request;
  docker_internal::CurlMulti multi;
  bool attached = false;  // request's handle added to multi
  std::atomic<bool> stop_requested{false};

  bool headers_done = false;
  std::string partial_line;  // bytes after the last newline
  std::deque<DockerEvent> pending;
  std::string error_body;             // of a non-200 answer
  absl::Status parse_error;           // the first bad line, which aborts the transfer
  std::optional<absl::Status> ended;  // why the stream is over, once it is

  ~Transfer() {
    if (attached) curl_multi_remove_handle(multi.get(), request->handle.get());
  }

  long HttpCode() const {
    long code = 0;
    curl_easy_getinfo(request->handle.get(), CURLINFO_RESPONSE_CODE, &code);
    return code;
  }

  // Lets libcurl move the transfer on without waiting; notes when it is over.
  void Perform() {
    int running = 0;
    if (CURLMcode code = curl_multi_perform(multi.get(), &running); code != CURLM_OK) {
      ended = absl::InternalError(absl::StrCat("docker events: curl_multi_perform: ", curl_multi_strerror(code)));
      return;
    }
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi.get(), &queued)) {
      if (message->msg == CURLMSG_DONE) ended = WhyEnded(message->data.result);
    }
  }

  absl::Status WhyEnded(CURLcode result) const {
    if (!parse_error.ok()) return parse_error;
    if (result != CURLE_OK) return docker_internal::TransferError(*request, result);
    if (absl::Status http = docker_internal::HttpStatus(*request, error_body); !http.ok()) return http;
    return absl::UnavailableError(absl::StrCat("docker events: ", request->host, " ended the stream"));
  }

  // Blocks until the socket is ready, `timeout` passes or Stop() wakes it.
  // Waits of over a minute are cut short (the caller loops): poll takes an int.
  void Wait(absl::Duration timeout) {
    const int timeout_ms = static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(timeout), 0, 60'000));
    if (CURLMcode code = curl_multi_poll(multi.get(), nullptr, 0, timeout_ms, nullptr); code != CURLM_OK)
      ended = absl::InternalError(absl::StrCat("docker events: curl_multi_poll: ", curl_multi_strerror(code)));
  }

  static size_t OnHeader(char* data, size_t size, size_t count, void* userdata) {
    const absl::string_view line(data, size * count);
    if (absl::StripAsciiWhitespace(line).empty()) static_cast<Transfer*>(userdata)->headers_done = true;
    return size * count;
  }

  static size_t OnData(char* data, size_t size, size_t count, void* userdata) {
    auto* transfer = static_cast<Transfer*>(userdata);
    const size_t length = size * count;
    if (transfer->HttpCode() != 200) {
      transfer->error_body.append(data, length);
      return length;
    }
    std::string& buffer = transfer->partial_line;
    buffer.append(data, length);
    size_t line_start = 0;
    for (size_t newline; (newline = buffer.find('\n', line_start)) != std::string::npos; line_start = newline + 1) {
      const absl::string_view line =
          absl::StripAsciiWhitespace(absl::string_view(buffer).substr(line_start, newline - line_start));
      if (line.empty()) continue;
      absl::StatusOr<std::optional<DockerEvent>> event = ParseDockerEvent(line);
      if (!event.ok()) {
        transfer->parse_error = event.status();
        return 0;  // aborts the transfer with CURLE_WRITE_ERROR
      }
      if (*event) transfer->pending.push_back(**std::move(event));
    }
    buffer.erase(0, line_start);
    return length;
  }
};

absl::StatusOr<std::unique_ptr<DockerEventStream>> DockerEventStream::Open(const DockerEndpoint& endpoint,
                                                                           const DockerEventStreamOptions& options) {
  std::string query = absl::StrCat("/events?filters=", docker_internal::UrlEscape(SubscribedEventFilters()));
  if (options.until) {
    // dockerd reads "seconds.nanoseconds".
    const int64_t seconds = absl::ToUnixSeconds(*options.until);
    absl::StrAppend(&query, "&until=",
                    absl::StrFormat("%d.%09d", seconds, absl::ToUnixNanos(*options.until) - seconds * 1'000'000'000));
  }
  auto request = docker_internal::NewDockerRequest(endpoint, query, "docker events", options.open_timeout);
  if (!request.ok()) return request.status();

  auto transfer = std::make_unique<Transfer>();
  transfer->request = *std::move(request);
  CURL* handle = transfer->request->handle.get();
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, transfer.get());
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &Transfer::OnData);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, transfer.get());
  transfer->multi.reset(curl_multi_init());
  if (transfer->multi == nullptr) return absl::ResourceExhaustedError("docker events: curl_multi_init failed");
  if (CURLMcode code = curl_multi_add_handle(transfer->multi.get(), handle); code != CURLM_OK)
    return absl::InternalError(absl::StrCat("docker events: curl_multi_add_handle: ", curl_multi_strerror(code)));
  transfer->attached = true;

  // dockerd registers the subscription before it sends the response headers.
  const absl::Time deadline = absl::Now() + options.open_timeout;
  while (true) {
    transfer->Perform();
    if (transfer->ended) return *transfer->ended;
    if (transfer->headers_done && transfer->HttpCode() == 200)
      return std::unique_ptr<DockerEventStream>(new DockerEventStream(std::move(transfer)));
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration())
      return absl::DeadlineExceededError(absl::StrCat("docker events: ", endpoint.host, " did not answer within ",
                                                      absl::FormatDuration(options.open_timeout)));
    transfer->Wait(left);
  }
}

DockerEventStream::DockerEventStream(std::unique_ptr<Transfer> transfer) : transfer_(std::move(transfer)) {}

DockerEventStream::~DockerEventStream() = default;

absl::StatusOr<std::optional<DockerEvent>> DockerEventStream::Next(absl::Duration timeout) {
  Transfer& t = *transfer_;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    // Events that came before the end are delivered first, unless stopped.
    if (t.stop_requested.load()) {
      t.ended = absl::CancelledError("docker events: stopped");
    } else if (!t.pending.empty()) {
      DockerEvent event = std::move(t.pending.front());
      t.pending.pop_front();
      return event;
    }
    if (t.ended) return *t.ended;
    t.Perform();
    if (!t.pending.empty() || t.ended) continue;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::nullopt;
    t.Wait(left);
  }
}

void DockerEventStream::Stop() {
  transfer_->stop_requested.store(true);
  curl_multi_wakeup(transfer_->multi.get());
}

}  // namespace stockade
