// SPDX-License-Identifier: Apache-2.0
//
// The drop event path: any bytes as a drop_event from the ring buffer, with a
// context of workloads, identity labels and rule origins made from the rest
// of the input, through AppendEventJson (what the agent sends subscribers),
// then what stockade-tail does with it: parse the line as JSON and format it.
// Beyond "no crash": every line is one JSON object with the fields
// docs/events.md promises, first fields in their fixed order.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "fuzz/fuzz_check.h"
#include "stockade/events/event_record.h"
#include "stockade/events/event_text.h"

namespace {

stockade::LabelSet ConsumeLabels(FuzzedDataProvider& input) {
  stockade::LabelSet labels;
  const int count = input.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < count; ++i) {
    std::string key = input.ConsumeRandomLengthString(32);
    labels[key] = input.ConsumeRandomLengthString(32);
  }
  return labels;
}

void MaybeAddWorkload(FuzzedDataProvider& input, const drop_event& raw, const uint8_t address[16],
                      stockade::EventContext& context) {
  if (!input.ConsumeBool()) return;
  stockade::IpAddress ip;
  ip.family = raw.family;
  std::memcpy(ip.bytes.data(), address, 16);
  stockade::EventWorkload workload{.container = input.ConsumeRandomLengthString(32),
                                   .container_id = input.ConsumeRandomLengthString(64),
                                   .network = input.ConsumeRandomLengthString(32),
                                   .interface = input.ConsumeRandomLengthString(16),
                                   .labels = ConsumeLabels(input)};
  context.AddWorkload(ip, std::move(workload));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(drop_event) + sizeof(int64_t)) return 0;
  stockade::EventRecord event;
  std::memcpy(&event.raw, data, sizeof(drop_event));
  std::memcpy(&event.time_ns, data + sizeof(drop_event), sizeof(int64_t));
  FuzzedDataProvider input(data + sizeof(drop_event) + sizeof(int64_t), size - sizeof(drop_event) - sizeof(int64_t));
  if (input.ConsumeBool()) {
    auto context = std::make_shared<stockade::EventContext>();
    MaybeAddWorkload(input, event.raw, event.raw.saddr, *context);
    MaybeAddWorkload(input, event.raw, event.raw.daddr, *context);
    if (input.ConsumeBool()) context->AddIdentityLabels(event.raw.remote_identity, ConsumeLabels(input));
    if (input.ConsumeBool()) context->AddIdentityLabels(event.raw.local_identity, ConsumeLabels(input));
    if (input.ConsumeBool()) context->AddRule(event.raw.rule_id, input.ConsumeRandomLengthString(64));
    event.context = std::move(context);
  }

  std::string line;
  stockade::AppendEventJson(event, line);
  FUZZ_CHECK(absl::StartsWith(line, "{\"type\":\"event\",\"time\":\""), line);
  const nlohmann::json json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(json.is_object(), "not one JSON object: " + line);
  for (const char* field : {"type", "time", "verdict", "reason", "direction", "protocol", "interface", "ifindex",
                            "count", "packet_length", "rule_id", "rule", "source", "destination"})
    FUZZ_CHECK(json.contains(field), std::string("no \"") + field + "\" in " + line);
  FUZZ_CHECK(json.at("count") == event.raw.count, line);
  FUZZ_CHECK(json.at("rule_id") == event.raw.rule_id, line);
  for (const char* end : {"source", "destination"})
    FUZZ_CHECK(json.at(end).is_object() && json.at(end).at("labels").is_object(), line);

  // What stockade-tail prints, with and without colour.
  (void)stockade::FormatEventText(json, true);
  (void)stockade::FormatEventText(json, false);
  return 0;
}
