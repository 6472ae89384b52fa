// SPDX-License-Identifier: Apache-2.0
#include "stockade/datapath/typed_map.h"

#include <fcntl.h>

#include "absl/strings/str_format.h"

namespace stockade {

absl::StatusOr<std::string> CheckMapLayout(int fd, uint32_t key_size, uint32_t value_size,
                                           std::optional<bpf_map_type> type) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_map_get_info_by_fd(fd, &info, &len) != 0)
    return ErrnoStatus(errno, absl::StrCat("read info of map fd ", fd));
  std::string name = info.name;
  if (info.key_size != key_size || info.value_size != value_size) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "map %s: key/value size %u/%u, this build expects %u/%u (a pin from another version?)", name,
        info.key_size, info.value_size, key_size, value_size));
  }
  if (type && info.type != static_cast<uint32_t>(*type))
    return absl::FailedPreconditionError(absl::StrFormat("map %s: type %u, expected %u", name, info.type, *type));
  return name;
}

absl::StatusOr<ScopedFd> OpenPinnedMap(const std::string& path, uint32_t key_size, uint32_t value_size) {
  ScopedFd fd(bpf_obj_get(path.c_str()));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("open pinned map ", path));
  auto name = CheckMapLayout(fd.get(), key_size, value_size);
  if (!name.ok()) return name.status();
  return fd;
}

}  // namespace stockade
