// SPDX-License-Identifier: Apache-2.0
#include "stockade/policy/policy_directory.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "stockade/os/errno_status.h"
#include "stockade/policy/policy_parser.h"

namespace stockade {
namespace {

// Well above the coarse clock's tick (1-10 ms), well below a human's edits.
constexpr int64_t kRacyNs = 100'000'000;

}  // namespace

absl::StatusOr<std::vector<std::string>> PolicyDirectory::ListPolicyFiles(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string ext = entry.path().extension();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) files.push_back(entry.path());
  }
  if (ec) return absl::NotFoundError(absl::StrCat("read policy directory ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  return files;
}

absl::StatusOr<PolicyDirectory::FileVersion> PolicyDirectory::Stat(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("read policy file ", path));
  return FileVersion{.device = st.st_dev,
                     .inode = st.st_ino,
                     .size = st.st_size,
                     .mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec};
}

absl::StatusOr<PolicyReloadStats> PolicyDirectory::Reload(const std::vector<std::string>& files) {
  PolicyReloadStats stats{.files = files.size()};
  // Parse what changed aside; the last good set is untouched until all is well.
  std::map<std::string, ParsedFile> fresh;
  for (const std::string& path : files) {
    auto version = Stat(path);
    if (!version.ok()) return version.status();
    auto known = files_.find(path);
    if (known != files_.end() && known->second.version == *version && !known->second.racy) continue;
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    const bool racy = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec - version->mtime_ns < kRacyNs;
    auto text = ReadPolicyFile(path);
    if (!text.ok()) return text.status();
    const size_t text_hash = absl::Hash<std::string>{}(*text);
    if (known != files_.end() && known->second.text_hash == text_hash) {
      // Read again only because it was racy, and the same: keep its policies.
      known->second.version = *version;
      known->second.racy = racy;
      continue;
    }
    auto parsed = ParsePolicyText(*text, path);
    if (!parsed.ok()) return parsed.status();
    // A file replaced between the stat and the read is seen again on its own
    // inotify event; its version here is the older one, so it is read again then.
    fresh[path] = ParsedFile{.version = *version, .racy = racy, .text_hash = text_hash, .policies = std::move(*parsed)};
    ++stats.parsed;
  }
  std::vector<const Policy*> all;
  for (const std::string& path : files) {
    auto it = fresh.find(path);
    const ParsedFile& file = it != fresh.end() ? it->second : files_.at(path);
    for (const Policy& p : file.policies) all.push_back(&p);
  }
  if (absl::Status s = CheckUniquePolicyNames(all); !s.ok()) return s;

  for (const auto& [path, file] : files_)
    if (!std::binary_search(files.begin(), files.end(), path)) ++stats.removed;
  // Moving a ParsedFile moves its vector's buffer: the pointers in `all` stay valid.
  std::map<std::string, ParsedFile> next;
  for (const std::string& path : files) {
    auto it = fresh.find(path);
    next[path] = std::move(it != fresh.end() ? it->second : files_.at(path));
  }
  files_ = std::move(next);
  policies_ = std::move(all);
  return stats;
}

}  // namespace stockade
