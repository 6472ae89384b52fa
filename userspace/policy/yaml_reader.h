// SPDX-License-Identifier: Apache-2.0
//
// Strict reading of a YAML tree for a schema: every value knows its path
// ("spec.ingress[0].toPorts") and line, maps reject unknown and duplicate
// keys, and scalars are read as exactly the type asked for. A mismatch
// throws YamlSchemaError, which the parser turns into one Status: reading
// stops at the first error and nothing half-read is used.
//
// The text is parsed by libyaml's event API into a tree of our own: at 100k
// rules yaml-cpp took 8-20 s before the policy could be compiled.
#ifndef STOCKADE_USERSPACE_POLICY_YAML_READER_H_
#define STOCKADE_USERSPACE_POLICY_YAML_READER_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace stockade {

// A text that is not YAML (or uses what we refuse: anchors, aliases, deep
// nesting) throws it too, with an empty path.
struct YamlSchemaError : std::runtime_error {
  YamlSchemaError(int line, std::string path, const std::string& reason)
      : std::runtime_error(reason), line(line), path(std::move(path)) {}
  int line;  // 1-based
  std::string path;
};

// One node of a parsed text. A container's children are
// YamlTree::children[first_child, first_child + child_count): a sequence's
// items, or a mapping's key, value, key, value... in the order written.
// Plain data, texts kept in the tree: a 100k-rule policy has 1.4M nodes.
struct YamlNode {
  // kNull: a plain untagged "", "~", "null", "Null" or "NULL" (what yaml-cpp
  // and YAML 1.2's core schema call null), e.g. the value of "spec:" alone.
  enum class Kind : uint8_t { kNull, kScalar, kSequence, kMapping };
  Kind kind = Kind::kNull;
  bool plain = false;  // a scalar written without quotes
  uint32_t line = 0;   // 1-based, where the node starts
  uint32_t first_child = 0;
  uint32_t child_count = 0;
  uint32_t text_offset = 0;  // a scalar's text: YamlTree::texts[text_offset, + text_size)
  uint32_t text_size = 0;
  uint32_t tag = 0;  // YamlTree::tags[tag]
};

struct YamlTree {
  std::vector<YamlNode> nodes;
  std::vector<uint32_t> children;
  std::string texts;
  // As resolved by libyaml ("tag:yaml.org,2002:str"); tags[0] = "": none written.
  std::vector<std::string> tags = {""};

  absl::string_view Text(const YamlNode& node) const {
    return absl::string_view(texts).substr(node.text_offset, node.text_size);
  }
};

class YamlMap;
struct YamlEntry;

// Deeper than this is refused while parsing: a policy needs about eight
// levels, and nothing else then grows with the depth of a hostile text.
inline constexpr size_t kYamlMaxDepth = 64;

class YamlValue {
 public:
  YamlValue(std::shared_ptr<const YamlTree> tree, uint32_t node, std::string path);

  int line() const { return static_cast<int>(node().line); }
  [[noreturn]] void Fail(const std::string& reason) const;

  bool IsNull() const { return node().kind == YamlNode::Kind::kNull; }
  std::string String() const;  // any scalar, quoted or not
  uint64_t Integer(uint64_t max) const;
  bool Bool() const;  // true or false
  // A sequence; empty is an error unless allowed.
  std::vector<YamlValue> List() const;
  std::vector<YamlValue> ListOrEmpty() const;
  // A map with any keys, in order.
  std::vector<YamlEntry> Entries() const;
  // A map whose keys must be among `allowed`.
  YamlMap Map(std::initializer_list<absl::string_view> allowed) const;

 private:
  const YamlNode& node() const { return tree_->nodes[node_]; }
  const YamlNode& Expect(YamlNode::Kind kind, const char* what) const;
  uint32_t Child(uint32_t i) const { return tree_->children[node().first_child + i]; }

  std::shared_ptr<const YamlTree> tree_;
  uint32_t node_;
  std::string path_;
};

// Every document of a text ('---' between them), null ones included; a
// syntax error, an anchor or alias, or nesting deeper than kYamlMaxDepth
// throws YamlSchemaError with the line.
[[nodiscard]] std::vector<YamlValue> LoadYamlDocuments(absl::string_view text);

struct YamlEntry {
  std::string key;
  int key_line;
  YamlValue value;
};

class YamlMap {
 public:
  YamlMap(const YamlValue& self, std::vector<YamlEntry> entries) : self_(self), entries_(std::move(entries)) {}

  const YamlValue* Find(absl::string_view key) const;  // nullptr when absent
  const YamlValue& Get(absl::string_view key) const;   // absent: fails

 private:
  YamlValue self_;
  std::vector<YamlEntry> entries_;
};

}  // namespace stockade

#endif  // STOCKADE_USERSPACE_POLICY_YAML_READER_H_
