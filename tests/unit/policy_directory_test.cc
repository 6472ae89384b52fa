// SPDX-License-Identifier: Apache-2.0
//
// The incremental policy path: a directory of policy files, one of them
// changed, read again alone; compiled and diffed against what the maps hold,
// the change is exactly that file's entries. A bad file keeps the last good
// set, and so the entries in force.
#include "stockade/policy/policy_directory.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "stockade/policy/policy_compiler.h"
#include "stockade/policy/policy_entries.h"

namespace stockade {
namespace {

using ::testing::HasSubstr;

std::string AllowFromCidr(const std::string& name, const std::string& cidr, int port) {
  return absl::StrCat("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: ", name,
                      "}\nspec:\n  endpointSelector: {matchLabels: {role: server}}\n  ingress:\n",
                      "    - fromCIDR: [", cidr, "]\n      toPorts: [{ports: [{port: \"", port,
                      "\", protocol: TCP}]}]\n");
}

class PolicyDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("stockade-policydir-", getpid(), "-", rand());
    std::filesystem::create_directories(dir_);
    server_ = allocator_.ForLabels({{"role", "server"}}).value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // As an editor or the benchmark does: written aside, renamed into place;
  // dated a while back, as a file is that was not written this instant
  // (each with a time of its own).
  void Write(const std::string& file, const std::string& text, bool just_now = false) {
    std::string tmp = dir_ / (file + ".tmp");
    std::ofstream(tmp) << text;
    ASSERT_EQ(std::rename(tmp.c_str(), (dir_ / file).c_str()), 0);
    if (just_now) return;
    static int written = 0;
    std::filesystem::last_write_time(
        dir_ / file, std::filesystem::file_time_type::clock::now() - std::chrono::seconds(10) +
                         std::chrono::milliseconds(++written));
  }

  absl::StatusOr<PolicyReloadStats> Reload() {
    auto files = PolicyDirectory::ListPolicyFiles(dir_);
    if (!files.ok()) return files.status();
    return policies_.Reload(*files);
  }

  // The entries the agent would want for one server endpoint.
  std::vector<PolicyEntry> Entries() {
    PolicyInputs inputs;
    inputs.policies_held = policies_.policies();
    inputs.endpoints.push_back({.id = "server", .identity = server_, .labels = {{"role", "server"}}});
    auto compiled = CompilePolicies(inputs, allocator_);
    EXPECT_TRUE(compiled.ok()) << compiled.status();
    if (!compiled.ok()) return {};
    auto entries = CompilePolicyEntries(compiled->rules);
    EXPECT_TRUE(entries.ok()) << entries.status();
    return entries.ok() ? *entries : std::vector<PolicyEntry>{};
  }

  static PolicyEntryMap InForce(const std::vector<PolicyEntry>& entries) {
    PolicyEntryMap map;
    for (const PolicyEntry& e : entries) map[e.key] = e.value;
    return map;
  }

  uint32_t CidrIdentity(const std::string& cidr) { return allocator_.ForCidr(ParseIpPrefix(cidr).value()).value(); }

  std::filesystem::path dir_;
  IdentityAllocator allocator_;
  uint32_t server_ = 0;
  PolicyDirectory policies_;
};

TEST_F(PolicyDirectoryTest, AChangeToOneFileOfManyIsReadAloneAndDiffsToExactlyItsEntries) {
  for (int i = 0; i < 20; ++i)
    Write(absl::StrCat("p", i, ".yaml"), AllowFromCidr(absl::StrCat("p", i), absl::StrCat("10.1.0.", i + 1, "/32"),
                                                       1000 + i));
  auto first = Reload();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->files, 20u);
  EXPECT_EQ(first->parsed, 20u);
  PolicyEntryMap in_force = InForce(Entries());
  ASSERT_EQ(in_force.size(), 20u);

  // p7 now allows its peer on another port.
  Write("p7.yaml", AllowFromCidr("p7", "10.1.0.8/32", 2007));
  auto second = Reload();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->parsed, 1u) << "only the changed file is read again";
  EXPECT_EQ(second->files, 20u);

  PolicyEntryDiff diff = DiffPolicyEntries(in_force, Entries());
  EXPECT_TRUE(diff.denies.empty());
  ASSERT_EQ(diff.allows.size(), 1u);
  ASSERT_EQ(diff.stale.size(), 1u);
  const uint32_t peer = CidrIdentity("10.1.0.8/32");
  EXPECT_EQ(diff.allows[0].key.local_identity, server_);
  EXPECT_EQ(diff.allows[0].key.remote_identity, peer);
  EXPECT_EQ(ntohs(diff.allows[0].key.dport), 2007);
  EXPECT_EQ(diff.allows[0].key.protocol, IPPROTO_TCP);
  EXPECT_EQ(diff.allows[0].value.action, POLICY_ACTION_ALLOW);
  EXPECT_EQ(diff.stale[0].remote_identity, peer);
  EXPECT_EQ(ntohs(diff.stale[0].dport), 1007);

  // Nothing changed: nothing read, nothing to write.
  auto third = Reload();
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->changed());
}

TEST_F(PolicyDirectoryTest, ARemovedFileTakesExactlyItsEntriesAway) {
  Write("a.yaml", AllowFromCidr("a", "10.2.0.1/32", 80));
  Write("b.yaml", AllowFromCidr("b", "10.2.0.2/32", 81));
  ASSERT_TRUE(Reload().ok());
  PolicyEntryMap in_force = InForce(Entries());
  std::filesystem::remove(dir_ / "a.yaml");
  auto stats = Reload();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->removed, 1u);
  EXPECT_EQ(stats->parsed, 0u);
  PolicyEntryDiff diff = DiffPolicyEntries(in_force, Entries());
  EXPECT_EQ(diff.size(), 1u);
  ASSERT_EQ(diff.stale.size(), 1u);
  EXPECT_EQ(ntohs(diff.stale[0].dport), 80);
}

TEST_F(PolicyDirectoryTest, ABadFileKeepsTheLastGoodEntries) {
  Write("a.yaml", AllowFromCidr("a", "10.3.0.1/32", 80));
  Write("b.yaml", AllowFromCidr("b", "10.3.0.2/32", 81));
  ASSERT_TRUE(Reload().ok());
  const std::vector<const Policy*> before = policies_.policies();
  PolicyEntryMap in_force = InForce(Entries());

  // b.yaml becomes unreadable in the middle of a change to a.yaml.
  Write("a.yaml", AllowFromCidr("a", "10.3.0.1/32", 8080));
  Write("b.yaml", "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: b}\nspec:\n  ingress: [\n");
  auto rejected = Reload();
  ASSERT_FALSE(rejected.ok());
  EXPECT_THAT(std::string(rejected.status().message()), HasSubstr("b.yaml"));
  EXPECT_EQ(policies_.policies(), before) << "the last good set, untouched";
  EXPECT_EQ(DiffPolicyEntries(in_force, Entries()).size(), 0u) << "nothing to write while the set is bad";

  // Two files defining one policy name: rejected as a whole too.
  Write("b.yaml", AllowFromCidr("a", "10.3.0.2/32", 81));
  auto twice = Reload();
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(std::string(twice.status().message()), HasSubstr("defined twice"));
  EXPECT_EQ(DiffPolicyEntries(in_force, Entries()).size(), 0u);

  // Fixed: both changes land, as one.
  Write("b.yaml", AllowFromCidr("b", "10.3.0.2/32", 81));
  auto fixed = Reload();
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(fixed->parsed, 1u) << "b.yaml is back to the text in force: only a.yaml is new";
  PolicyEntryDiff diff = DiffPolicyEntries(in_force, Entries());
  ASSERT_EQ(diff.allows.size(), 1u);
  EXPECT_EQ(ntohs(diff.allows[0].key.dport), 8080);
  ASSERT_EQ(diff.stale.size(), 1u);
  EXPECT_EQ(ntohs(diff.stale[0].dport), 80);
}

// Two writes in place within one tick of the file clock, the same size:
// device, inode, size and mtime cannot tell them apart.
TEST_F(PolicyDirectoryTest, AFileRewrittenWithinAClockTickIsReadAgain) {
  Write("a.yaml", AllowFromCidr("a", "10.4.0.1/32", 80), /*just_now=*/true);
  ASSERT_TRUE(Reload().ok());
  std::ofstream(dir_ / "a.yaml", std::ios::trunc) << AllowFromCidr("a", "10.4.0.1/32", 81);
  auto stats = Reload();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->parsed, 1u);
  std::vector<PolicyEntry> entries = Entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(ntohs(entries[0].key.dport), 81);
  // Still racy, so read again; the same text is no change (no recompile).
  const std::vector<const Policy*> before = policies_.policies();
  auto again = Reload();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->changed());
  EXPECT_EQ(policies_.policies(), before);
}

TEST_F(PolicyDirectoryTest, AMissingDirectorySaysWhich) {
  auto files = PolicyDirectory::ListPolicyFiles((dir_ / "nowhere").string());
  ASSERT_FALSE(files.ok());
  EXPECT_THAT(std::string(files.status().message()), HasSubstr("nowhere"));
}

// A CIDR peer stands for the CIDR identities inside it and outside its
// excepts, wherever they sit among many others (the compiler walks only
// the prefixes inside the peer).
TEST_F(PolicyDirectoryTest, CidrPeersFindTheirNestedPrefixesAmongMany) {
  std::string spec;
  for (int i = 0; i < 300; ++i) absl::StrAppend(&spec, "    - fromCIDR: [10.9.", i / 256, ".", i % 256, "/32]\n");
  Write("many.yaml", absl::StrCat("apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: many}\nspec:\n",
                                  "  endpointSelector: {matchLabels: {role: server}}\n  ingress:\n", spec,
                                  "    - fromCIDRSet: [{cidr: 10.9.0.0/24, except: [10.9.0.128/25]}]\n",
                                  "      toPorts: [{ports: [{port: \"443\", protocol: TCP}]}]\n"));
  ASSERT_TRUE(Reload().ok());
  std::set<uint32_t> on_443;
  for (const PolicyEntry& e : Entries())
    if (ntohs(e.key.dport) == 443) on_443.insert(e.key.remote_identity);
  std::set<uint32_t> expected = {CidrIdentity("10.9.0.0/24")};
  for (int i = 0; i < 128; ++i) expected.insert(CidrIdentity(absl::StrCat("10.9.0.", i, "/32")));
  EXPECT_EQ(on_443, expected);
}

}  // namespace
}  // namespace stockade
