// SPDX-License-Identifier: Apache-2.0
#include "tests/docker/docker_test_env.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "stockade/netns/netns.h"

namespace stockade::testing {
namespace {

// docker import and rm of a few containers can take seconds on a busy host.
constexpr std::chrono::milliseconds kDockerTimeout{120'000};

std::string LastLine(absl::string_view output) {
  std::vector<absl::string_view> lines = absl::StrSplit(output, '\n', absl::SkipWhitespace());
  return lines.empty() ? "" : std::string(absl::StripAsciiWhitespace(lines.back()));
}

}  // namespace

absl::StatusOr<std::string> Docker(std::vector<std::string> args) {
  args.insert(args.begin(), "docker");
  absl::StatusOr<std::string> output = RunCommand(args, std::nullopt, kDockerTimeout);
  if (!output.ok()) return output.status();
  return std::string(absl::StripAsciiWhitespace(*output));
}

std::string MissingDocker() {
  if (absl::StatusOr<std::string> version = Docker({"version", "--format", "{{.Server.APIVersion}}"}); !version.ok())
    return absl::StrCat("no dockerd answers: ", version.status().message());
  if (absl::StatusOr<std::string> image = Docker({"image", "inspect", "--format", "{{.Id}}", kTestImage}); !image.ok())
    return absl::StrCat("no test image ", kTestImage, ": ", image.status().message());
  return "";
}

DockerScratch::DockerScratch()
    : run_id_(absl::StrCat(getpid(), "x", absl::ToUnixMicros(absl::Now()) % 1'000'000'000)) {}

DockerScratch::~DockerScratch() {
  const std::string filter = absl::StrCat("label=", kTestLabel, "=", run_id_);
  // Containers first: a network or image in use cannot be removed.
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> sweeps = {
      {{"ps", "-aq", "--filter", filter}, {"rm", "-f", "-v"}},
      {{"network", "ls", "-q", "--filter", filter}, {"network", "rm"}},
      {{"images", "-q", "--filter", filter}, {"rmi", "-f"}},
  };
  for (const auto& [list, remove] : sweeps) {
    absl::StatusOr<std::string> ids = Docker(list);
    if (!ids.ok()) {
      ADD_FAILURE() << "cleanup of run " << run_id_ << ": " << ids.status();
      continue;
    }
    std::vector<std::string> command = remove;
    for (absl::string_view id : absl::StrSplit(*ids, '\n', absl::SkipWhitespace())) command.emplace_back(id);
    if (command.size() == remove.size()) continue;
    if (absl::StatusOr<std::string> removed = Docker(command); !removed.ok())
      ADD_FAILURE() << "cleanup of run " << run_id_ << ": " << removed.status();
  }
}

std::string DockerScratch::Name(absl::string_view what) const { return absl::StrCat("stk-", run_id_, "-", what); }

absl::StatusOr<std::string> DockerScratch::RunContainer(absl::string_view what, std::vector<std::string> options,
                                                        const std::string& image,
                                                        const std::vector<std::string>& command) {
  std::vector<std::string> args = {"run",      "-d",      "--name",
                                   Name(what), "--label", absl::StrCat(kTestLabel, "=", run_id_)};
  args.insert(args.end(), options.begin(), options.end());
  args.push_back(image);
  args.insert(args.end(), command.begin(), command.end());
  absl::StatusOr<std::string> output = Docker(args);
  if (!output.ok()) return output.status();
  return LastLine(*output);
}

absl::StatusOr<std::string> DockerScratch::CreateNetwork(absl::string_view what, std::vector<std::string> options) {
  std::vector<std::string> args = {"network", "create", "--label", absl::StrCat(kTestLabel, "=", run_id_)};
  args.insert(args.end(), options.begin(), options.end());
  args.push_back(Name(what));
  absl::StatusOr<std::string> output = Docker(args);
  if (!output.ok()) return output.status();
  return LastLine(*output);
}

absl::StatusOr<std::string> DockerScratch::ImportLabelledImage(absl::string_view what,
                                                               const std::vector<std::string>& labels) {
  const std::string run_label = absl::StrCat(kTestLabel, "=", run_id_);
  // The test image's files, exported from a container made of it.
  absl::StatusOr<std::string> source = Docker({"create", "--label", run_label, kTestImage, "true"});
  if (!source.ok()) return source.status();
  const std::string tarball = absl::StrCat(::testing::TempDir(), "/", Name(what), ".tar");
  absl::Cleanup remove_tarball = [&] { std::filesystem::remove(tarball); };
  if (absl::StatusOr<std::string> exported = Docker({"export", "-o", tarball, LastLine(*source)}); !exported.ok())
    return exported.status();
  std::vector<std::string> args = {"import", "--change", absl::StrCat("LABEL ", run_label)};
  for (const std::string& label : labels) args.insert(args.end(), {"--change", absl::StrCat("LABEL ", label)});
  args.insert(args.end(), {tarball, Name(what)});
  absl::StatusOr<std::string> imported = Docker(args);
  if (!imported.ok()) return imported.status();
  return LastLine(*imported);
}

}  // namespace stockade::testing
