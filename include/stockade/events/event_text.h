// SPDX-License-Identifier: Apache-2.0
//
// How stockade-tail shows an event on a terminal: one line from the JSON the
// agent sent (event_record.h has its fields). Pure logic.
#ifndef STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_TEXT_H_
#define STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_TEXT_H_

#include <string>

#include <nlohmann/json.hpp>

namespace stockade {

// "2026-11-26 10:51:17.123 DROPPED POLICY_DENIED  web 10.0.0.2:40000 -> db 10.0.0.3:5432 tcp x3 egress eth0
//  rule: default deny". `colour` adds ANSI colours (for a terminal only).
std::string FormatEventText(const nlohmann::json& event, bool colour);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_EVENTS_EVENT_TEXT_H_
