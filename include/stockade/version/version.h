// SPDX-License-Identifier: Apache-2.0
//
// What build a binary is: the project version and the git revision it was
// configured from (cmake/version.cmake), the same for every tool.
#ifndef STOCKADE_INCLUDE_STOCKADE_VERSION_VERSION_H_
#define STOCKADE_INCLUDE_STOCKADE_VERSION_VERSION_H_

#include <string>
#include <string_view>

namespace stockade {

// "0.1.0 (git v0.1.0-3-g4a62c9a)"; "(git unknown)" when built outside a clone.
[[nodiscard]] std::string VersionString();

// Prints "PROGRAM VERSION" on stdout, the line `--version` answers (and
// help2man reads); returns the exit status 0.
int PrintVersion(std::string_view program);

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_VERSION_VERSION_H_
