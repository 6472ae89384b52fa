// SPDX-License-Identifier: Apache-2.0
#include "stockade/agent/agent_log.h"

#include <cstdio>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace stockade {

void AgentLog(const std::string& line) {
  std::fprintf(stderr, "%s stockaded: %s\n",
               absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()).c_str(), line.c_str());
}

}  // namespace stockade
