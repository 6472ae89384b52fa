// SPDX-License-Identifier: Apache-2.0
#include "stockade/os/capabilities.h"

#include <sys/capability.h>
#include <sys/prctl.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "stockade/os/errno_status.h"

namespace stockade {
namespace {

// The header spells the numbers out to stay free of <sys/capability.h>.
static_assert(kAgentCapabilities[0].number == CAP_BPF);
static_assert(kAgentCapabilities[1].number == CAP_NET_ADMIN);
static_assert(kAgentCapabilities[2].number == CAP_SYS_ADMIN);
static_assert(kAgentCapabilities[3].number == CAP_SYS_PTRACE);

struct CapFree {
  void operator()(void* p) const { cap_free(p); }
};
using CapState = std::unique_ptr<std::remove_pointer_t<cap_t>, CapFree>;

bool Holds(cap_t state, int cap, cap_flag_t set) {
  cap_flag_value_t value = CAP_CLEAR;
  return cap_get_flag(state, cap, set, &value) == 0 && value == CAP_SET;
}

std::string CapName(int cap) {
  std::unique_ptr<char, CapFree> name(cap_to_name(cap));
  return name == nullptr ? absl::StrCat("capability ", cap) : absl::AsciiStrToUpper(name.get());
}

bool IsKept(absl::Span<const Capability> kept, int cap) {
  for (const Capability& c : kept)
    if (c.number == cap) return true;
  return false;
}

}  // namespace

absl::Status CheckCapabilities(absl::Span<const Capability> needed) {
  CapState current(cap_get_proc());
  if (current == nullptr) return ErrnoStatus(errno, "read this process's capabilities");
  std::vector<std::string> missing;
  for (const Capability& c : needed)
    if (!Holds(current.get(), c.number, CAP_PERMITTED)) missing.push_back(absl::StrCat(c.name, " (", c.why, ")"));
  if (missing.empty()) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("missing capabilities: ", absl::StrJoin(missing, ", "),
                   "; run as root or grant them (packaging/systemd/stockaded.service)"));
}

absl::Status KeepOnlyCapabilities(absl::Span<const Capability> kept) {
  std::error_code ec;
  const auto tasks = std::distance(std::filesystem::directory_iterator("/proc/self/task", ec),
                                   std::filesystem::directory_iterator());
  if (ec) return absl::InternalError(absl::StrCat("count threads in /proc/self/task: ", ec.message()));
  if (tasks != 1)
    return absl::FailedPreconditionError(absl::StrCat(
        "drop capabilities: ", tasks, " threads run, and each would keep its own; drop before starting any"));
  if (absl::Status s = CheckCapabilities(kept); !s.ok()) return s;
  // The bounding set first: dropping from it takes CAP_SETPCAP, which the
  // next step gives up. Under the systemd unit it holds only `kept` already.
  for (int cap = 0; cap < static_cast<int>(cap_max_bits()); ++cap) {
    if (IsKept(kept, cap) || cap_get_bound(cap) != 1) continue;
    if (cap_drop_bound(cap) != 0)
      return ErrnoStatus(errno, absl::StrCat("drop ", CapName(cap), " from the bounding set (needs CAP_SETPCAP)"));
  }
  if (cap_reset_ambient() != 0) return ErrnoStatus(errno, "clear the ambient capabilities");
  CapState state(cap_init());  // every set empty
  if (state == nullptr) return ErrnoStatus(errno, "cap_init");
  for (const Capability& c : kept) {
    const cap_value_t value = c.number;
    if (cap_set_flag(state.get(), CAP_EFFECTIVE, 1, &value, CAP_SET) != 0 ||
        cap_set_flag(state.get(), CAP_PERMITTED, 1, &value, CAP_SET) != 0)
      return ErrnoStatus(errno, absl::StrCat("cap_set_flag ", c.name));
  }
  if (cap_set_proc(state.get()) != 0) return ErrnoStatus(errno, "set capabilities");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return ErrnoStatus(errno, "prctl(PR_SET_NO_NEW_PRIVS)");
  return absl::OkStatus();
}

std::vector<std::string> EffectiveCapabilities() {
  std::vector<std::string> names;
  CapState current(cap_get_proc());
  if (current == nullptr) return names;
  for (int cap = 0; cap < static_cast<int>(cap_max_bits()); ++cap)
    if (Holds(current.get(), cap, CAP_EFFECTIVE)) names.push_back(CapName(cap));
  return names;
}

}  // namespace stockade
