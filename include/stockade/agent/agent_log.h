// SPDX-License-Identifier: Apache-2.0
//
// stockaded's log: one timestamped line on stderr (the journal under systemd).
#ifndef STOCKADE_INCLUDE_STOCKADE_AGENT_AGENT_LOG_H_
#define STOCKADE_INCLUDE_STOCKADE_AGENT_AGENT_LOG_H_

#include <string>

namespace stockade {

void AgentLog(const std::string& line);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_AGENT_AGENT_LOG_H_
