// SPDX-License-Identifier: Apache-2.0
//
// The filter a subscriber sends in its subscribe request (stockade-tail, or
// anything that can open the events socket): any JSON is a filter or an
// error saying which field, never a crash. A filter that was accepted must
// survive the trip the real one makes: ToJson in the tail, FromJson in the
// agent, to the same filter.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_check.h"
#include "stockade/events/event_filter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json json = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  absl::StatusOr<stockade::EventFilter> filter = stockade::EventFilter::FromJson(json);
  if (!filter.ok()) {
    FUZZ_CHECK(filter.status().code() == absl::StatusCode::kInvalidArgument, filter.status().ToString());
    FUZZ_CHECK(!filter.status().message().empty(), "an error says what is wrong");
    return 0;
  }
  const nlohmann::json wire = filter->ToJson();
  absl::StatusOr<stockade::EventFilter> back = stockade::EventFilter::FromJson(wire);
  FUZZ_CHECK(back.ok(), "the agent refuses what the tail sends: " + wire.dump() + ": " + back.status().ToString());
  FUZZ_CHECK(back->ToJson() == wire, wire.dump() + " came back as " + back->ToJson().dump());
  return 0;
}
