// SPDX-License-Identifier: Apache-2.0
//
// The one part of the policy parser that touches the system: reading a file.
#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "stockade/os/errno_status.h"
#include "stockade/policy/policy_parser.h"

namespace stockade {

absl::StatusOr<std::string> ReadPolicyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return ErrnoStatus(errno, absl::StrCat("read policy file ", path));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return ErrnoStatus(errno, absl::StrCat("read policy file ", path));
  return text.str();
}

absl::StatusOr<std::vector<Policy>> ValidatePolicyFile(const std::string& path) {
  auto text = ReadPolicyFile(path);
  if (!text.ok()) return text.status();
  return ParsePolicyText(*text, path);
}

}  // namespace stockade
