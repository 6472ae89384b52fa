// SPDX-License-Identifier: Apache-2.0
//
// Strict reading of a YAML tree for a schema: every value knows its path
// ("spec.ingress[0].toPorts") and line, maps reject unknown and duplicate
// keys, and scalars are read as exactly the type asked for. A mismatch
// throws YamlSchemaError, which the parser turns into one Status: reading
// stops at the first error and nothing half-read is used.
#ifndef STOCKADE_USERSPACE_POLICY_YAML_READER_H_
#define STOCKADE_USERSPACE_POLICY_YAML_READER_H_

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace stockade {

struct YamlSchemaError : std::runtime_error {
  YamlSchemaError(int line, std::string path, const std::string& reason)
      : std::runtime_error(reason), line(line), path(std::move(path)) {}
  int line;  // 1-based
  std::string path;
};

class YamlMap;
struct YamlEntry;

// YAML::LoadAll, made safe for any text: yaml-cpp 0.7 loops forever, making
// empty documents without end, on a text with a stray ',', '}' or ']' where
// a document would start ("a: b}"). Such a text throws YAML::ParserException
// at that character instead.
[[nodiscard]] std::vector<YAML::Node> LoadYamlDocuments(const std::string& text);

class YamlValue {
 public:
  // `line` stands in where the node has no position of its own.
  YamlValue(YAML::Node node, std::string path, int line);

  int line() const { return line_; }
  [[noreturn]] void Fail(const std::string& reason) const;

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
  void Expect(YAML::NodeType::value type, const char* what) const;

  YAML::Node node_;
  std::string path_;
  int line_;
};

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
