// SPDX-License-Identifier: Apache-2.0
#include "userspace/agent/identity_file_writer.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "stockade/agent/agent_log.h"
#include "stockade/os/errno_status.h"

namespace stockade {

absl::Status IdentityFileWriter::Write(const IdentityTable& table) const {
  std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << SerializeIdentityTable(table);
    if (!out) return absl::InternalError(absl::StrCat("write ", tmp));
  }
  if (rename(tmp.c_str(), path_.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("rename ", tmp));
  return absl::OkStatus();
}

void IdentityFileWriter::LogNotSaved(const absl::Status& s) {
  AgentLog(absl::StrCat("identities not saved: ", s.message()));
}

}  // namespace stockade
