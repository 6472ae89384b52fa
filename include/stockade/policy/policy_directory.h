// SPDX-License-Identifier: Apache-2.0
//
// The policies of a directory's files, kept parsed between reloads. A reload
// parses again only the files whose (device, inode, size, mtime) changed: an
// edit of one small file beside a 100k-rule file costs the small file. All
// or nothing, as before: when any file is bad or two files define the same
// policy name, nothing changes and the last good set stays in force.
#ifndef STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_DIRECTORY_H_
#define STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_DIRECTORY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stockade/policy/policy.h"

namespace stockade {

struct PolicyReloadStats {
  size_t files = 0;   // in the new set
  size_t parsed = 0;  // of those, read and parsed again
  size_t removed = 0; // files of the last set that are gone
  bool changed() const { return parsed != 0 || removed != 0; }
};

class PolicyDirectory {
 public:
  // The .yaml and .yml regular files of `dir`, sorted.
  [[nodiscard]] static absl::StatusOr<std::vector<std::string>> ListPolicyFiles(const std::string& dir);

  // Makes `files` (sorted) the set, parsing those that changed.
  [[nodiscard]] absl::StatusOr<PolicyReloadStats> Reload(const std::vector<std::string>& files);

  // The last good set in file order. The pointers stay valid until the next
  // successful Reload; they let the compiler read 100k rules without a copy.
  const std::vector<const Policy*>& policies() const { return policies_; }

 private:
  // What tells a file's content changed without reading it: an atomic
  // rename gives a new inode, an edit in place a new size or mtime.
  struct FileVersion {
    uint64_t device = 0, inode = 0;
    int64_t size = 0, mtime_ns = 0;
    bool operator==(const FileVersion&) const = default;
  };
  struct ParsedFile {
    FileVersion version;
    // Written so shortly before it was read that a second write could share
    // its mtime (file times tick with the kernel's coarse clock) and, with a
    // reused inode and the same size, its version: read again next time.
    bool racy = false;
    size_t text_hash = 0;  // tells a racy file read again unchanged, which changes nothing
    std::vector<Policy> policies;
  };
  [[nodiscard]] static absl::StatusOr<FileVersion> Stat(const std::string& path);

  std::map<std::string, ParsedFile> files_;
  std::vector<const Policy*> policies_;
};

}  // namespace stockade

#endif  // STOCKADE_INCLUDE_STOCKADE_POLICY_POLICY_DIRECTORY_H_
