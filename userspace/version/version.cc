// SPDX-License-Identifier: Apache-2.0
#include "stockade/version/version.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace stockade {

std::string VersionString() { return absl::StrCat(STOCKADE_VERSION, " (git ", STOCKADE_GIT_REVISION, ")"); }

int PrintVersion(std::string_view program) {
  std::printf("%s %s\n", std::string(program).c_str(), VersionString().c_str());
  return 0;
}

}  // namespace stockade
