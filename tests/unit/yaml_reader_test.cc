// SPDX-License-Identifier: Apache-2.0
//
// The YAML layer under the policy parser (libyaml's events into a tree of
// our own): documents, nulls, lines, and what it refuses: anchors and
// aliases, syntax errors, nesting deeper than kYamlMaxDepth.
#include "userspace/policy/yaml_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "stockade/policy/policy_parser.h"

namespace stockade {
namespace {

using ::testing::HasSubstr;

// The error LoadYamlDocuments throws for `text`, as "<line>: <reason>"; "" when it loads.
std::string LoadError(const std::string& text) {
  try {
    (void)LoadYamlDocuments(text);
  } catch (const YamlSchemaError& e) {
    return std::to_string(e.line) + ": " + e.what();
  }
  return "";
}

TEST(YamlReaderTest, DocumentsInOrderWithTheirLines) {
  std::vector<YamlValue> docs = LoadYamlDocuments("a: 1\n---\n---\n# two\nb: [x, 'y']\n...\n");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].line(), 1);
  EXPECT_TRUE(docs[1].IsNull());
  EXPECT_EQ(docs[2].line(), 5);
  std::vector<YamlEntry> entries = docs[2].Entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].key, "b");
  std::vector<YamlValue> items = entries[0].value.List();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].String(), "y");
  EXPECT_TRUE(LoadYamlDocuments("").empty());
  EXPECT_TRUE(LoadYamlDocuments("# only a comment\n").empty());
}

TEST(YamlReaderTest, NullIsPlainAndUntagged) {
  std::vector<YamlEntry> entries =
      LoadYamlDocuments("a:\nb: ~\nc: null\nd: NULL\ne: 'null'\nf: \"\"\ng: !!str\nh: !!str null\n").at(0).Entries();
  ASSERT_EQ(entries.size(), 8u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(entries[i].value.IsNull()) << entries[i].key;
  EXPECT_EQ(entries[4].value.String(), "null");
  EXPECT_EQ(entries[5].value.String(), "");
  EXPECT_EQ(entries[6].value.String(), "");
  EXPECT_EQ(entries[7].value.String(), "null");
  // The line of a missing value is its key's.
  try {
    (void)entries[0].value.List();
    ADD_FAILURE() << "a null is not a list";
  } catch (const YamlSchemaError& e) {
    EXPECT_EQ(e.line, 1);
    EXPECT_EQ(e.path, "a");
    EXPECT_STREQ(e.what(), "expected a list, found nothing");
  }
}

TEST(YamlReaderTest, AnchorsAndAliasesAreRefused) {
  EXPECT_EQ(LoadError("a: 1\nb: &x [1, 2]\nc: *x\n"),
            "2: anchor '&x': anchors and aliases are not supported in policies");
  EXPECT_EQ(LoadError("a: &s text\n"), "1: anchor '&s': anchors and aliases are not supported in policies");
  EXPECT_EQ(LoadError("a: {b: c}\nd: *nowhere\n"),
            "2: alias '*nowhere': anchors and aliases are not supported in policies");
  // An alias bomb ends at its first anchor, before anything is expanded.
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'z'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 9; ++i) bomb += std::string(i ? ", *" : "*") + static_cast<char>(c - 1);
    bomb += "]\n";
  }
  EXPECT_EQ(LoadError(bomb), "1: anchor '&a': anchors and aliases are not supported in policies");

  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(
      "apiVersion: stockade/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  endpointSelector: &all {}\n"
      "  ingress: [{fromEndpoints: [*all]}]\n",
      "alias.yaml");
  ASSERT_FALSE(policies.ok());
  EXPECT_EQ(std::string(policies.status().message()),
            "alias.yaml:5: anchor '&all': anchors and aliases are not supported in policies");
}

TEST(YamlReaderTest, SyntaxErrorsNameTheirLine) {
  EXPECT_EQ(LoadError("a: 1\nb: [1, 2\nc: 3\n"),
            "3: did not find expected ',' or ']' (while parsing a flow sequence that starts on line 2)");
  EXPECT_EQ(LoadError("a:\n  b: 1\n c: 2\n"),
            "3: did not find expected key (while parsing a block mapping that starts on line 1)");
  EXPECT_EQ(LoadError("a: 1\nb: 2\nc: \"\xff\"\n"), "3: invalid leading UTF-8 octet");
  EXPECT_EQ(LoadError("a: 1\nb: \"open\n"),
            "3: found unexpected end of stream (while scanning a quoted scalar that starts on line 2)");

  absl::StatusOr<std::vector<Policy>> policies =
      ParsePolicyText("apiVersion: stockade/v1\nkind: Policy\n---\nkind: [Policy\n", "broken.yaml");
  ASSERT_FALSE(policies.ok());
  EXPECT_THAT(std::string(policies.status().message()), HasSubstr("broken.yaml:5: "));
}

TEST(YamlReaderTest, NestingIsBoundedAndNeverRecursed) {
  const auto flow = [](size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_EQ(LoadError(flow(kYamlMaxDepth)), "");
  EXPECT_EQ(LoadError(flow(kYamlMaxDepth + 1)), "1: nested deeper than 64 levels");
  // Far past any stack: refused at the limit, before libyaml's own stacks grow with the text.
  EXPECT_EQ(LoadError(flow(1'000'000)), "1: nested deeper than 64 levels");

  std::string block;
  for (size_t i = 0; i <= kYamlMaxDepth; ++i) block += std::string(i, ' ') + "k:\n";
  EXPECT_EQ(LoadError(block), "65: nested deeper than 64 levels");

  absl::StatusOr<std::vector<Policy>> policies = ParsePolicyText(flow(100'000), "deep.yaml");
  ASSERT_FALSE(policies.ok());
  EXPECT_EQ(std::string(policies.status().message()), "deep.yaml:1: nested deeper than 64 levels");
}

TEST(YamlReaderTest, ALongListIsOneNodeOfManyChildren) {
  std::string text = "[";
  constexpr size_t kItems = 200'000;
  for (size_t i = 0; i < kItems; ++i) text += i ? ", x" : "x";
  text += "]";
  std::vector<YamlValue> docs = LoadYamlDocuments(text);
  ASSERT_EQ(docs.size(), 1u);
  std::vector<YamlValue> items = docs[0].List();
  ASSERT_EQ(items.size(), kItems);
  EXPECT_EQ(items.back().String(), "x");
}

// Small maps compare keys with each other, big ones hash them: both find a duplicate.
TEST(YamlReaderTest, DuplicateKeysInSmallAndBigMaps) {
  for (int keys : {3, 100'000}) {
    std::string text;
    for (int i = 1; i <= keys; ++i) text += "k" + std::to_string(i) + ": v\n";
    std::vector<YamlValue> docs = LoadYamlDocuments(text);
    EXPECT_EQ(docs.at(0).Entries().size(), static_cast<size_t>(keys));
    text += "k2: again\n";
    try {
      (void)LoadYamlDocuments(text).at(0).Entries();
      ADD_FAILURE() << "a duplicate key among " << keys;
    } catch (const YamlSchemaError& e) {
      EXPECT_EQ(e.line, keys + 1);
      EXPECT_STREQ(e.what(), "duplicate key 'k2' (also on line 2)");
    }
  }
}

}  // namespace
}  // namespace stockade
