// SPDX-License-Identifier: Apache-2.0
//
// Engine API bodies (a daemon we do not control, or something posing as one
// on DOCKER_HOST): every body through every parser of docker_parse.h. Each
// returns a value or an InvalidArgument "parse <what>: ...", never a crash or
// an exception.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "fuzz/fuzz_check.h"
#include "stockade/docker/docker_parse.h"

namespace {

template <typename T>
void CheckRefusal(const absl::StatusOr<T>& parsed, const char* what) {
  if (parsed.ok()) return;
  FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument, parsed.status().ToString());
  FUZZ_CHECK(absl::StartsWith(parsed.status().message(), std::string("parse ") + what), parsed.status().ToString());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  CheckRefusal(stockade::ParseContainerList(body), "container list");
  CheckRefusal(stockade::ParseContainerInspect(body), "container inspect");
  CheckRefusal(stockade::ParseImageInspect(body), "image inspect");
  CheckRefusal(stockade::ParseNetworkInspect(body), "network inspect");
  absl::StatusOr<std::optional<stockade::DockerEvent>> event = stockade::ParseDockerEvent(body);
  CheckRefusal(event, "docker event");
  if (event.ok() && event->has_value()) {
    const std::string description = stockade::DescribeDockerEvent(**event);
    FUZZ_CHECK(!absl::StrContains(description, "?"), description);
  }
  (void)stockade::ParseErrorMessage(body);
  return 0;
}
