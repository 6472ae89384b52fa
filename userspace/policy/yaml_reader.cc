// SPDX-License-Identifier: Apache-2.0
#include "userspace/policy/yaml_reader.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stockade {
namespace {

const char* Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "nothing";
  }
}

// Sees where each document starts, and nothing else.
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { last_start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  YAML::Mark last_start = YAML::Mark::null_mark();
};

}  // namespace

std::vector<YAML::Node> LoadYamlDocuments(const std::string& text) {
  // A first pass that only watches the parser advance: each document starts
  // past the one before, unless the parser is stuck on a token no document
  // can start with, and then it would never end.
  {
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentStarts starts;
    YAML::Mark previous = YAML::Mark::null_mark();
    while (parser.HandleNextDocument(starts)) {
      const YAML::Mark& start = starts.last_start;
      if (!previous.is_null() && start.pos == previous.pos) {
        const char c = start.pos >= 0 && static_cast<size_t>(start.pos) < text.size() ? text[start.pos] : '?';
        throw YAML::ParserException(start, absl::StrCat("unexpected '", std::string(1, c), "'"));
      }
      previous = start;
    }
  }
  return YAML::LoadAll(text);
}

YamlValue::YamlValue(YAML::Node node, std::string path, int line)
    : node_(std::move(node)), path_(std::move(path)), line_(node_.Mark().is_null() ? line : node_.Mark().line + 1) {}

void YamlValue::Fail(const std::string& reason) const { throw YamlSchemaError(line_, path_, reason); }

void YamlValue::Expect(YAML::NodeType::value type, const char* what) const {
  if (node_.Type() != type) Fail(absl::StrCat("expected ", what, ", found ", Describe(node_)));
}

std::string YamlValue::String() const {
  Expect(YAML::NodeType::Scalar, "a string");
  return node_.Scalar();
}

uint64_t YamlValue::Integer(uint64_t max) const {
  Expect(YAML::NodeType::Scalar, "a number");
  uint64_t value = 0;
  if (!absl::SimpleAtoi(node_.Scalar(), &value) || value > max)
    Fail(absl::StrCat("\"", node_.Scalar(), "\" is not a number from 0 to ", max));
  return value;
}

bool YamlValue::Bool() const {
  Expect(YAML::NodeType::Scalar, "true or false");
  if (node_.Scalar() == "true") return true;
  if (node_.Scalar() == "false") return false;
  Fail(absl::StrCat("\"", node_.Scalar(), "\" is not true or false"));
}

std::vector<YamlValue> YamlValue::ListOrEmpty() const {
  Expect(YAML::NodeType::Sequence, "a list");
  std::vector<YamlValue> out;
  for (size_t i = 0; i < node_.size(); ++i) out.emplace_back(node_[i], absl::StrCat(path_, "[", i, "]"), line_);
  return out;
}

std::vector<YamlValue> YamlValue::List() const {
  std::vector<YamlValue> out = ListOrEmpty();
  if (out.empty()) Fail("empty list: it would match nothing; list something or remove the key");
  return out;
}

std::vector<YamlEntry> YamlValue::Entries() const {
  Expect(YAML::NodeType::Map, "a map");
  std::vector<YamlEntry> out;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    YamlValue key(it->first, path_, line_);
    const std::string name = key.String();
    for (const YamlEntry& seen : out)
      if (seen.key == name) key.Fail(absl::StrCat("duplicate key '", name, "' (also on line ", seen.key_line, ")"));
    out.push_back(
        {name, key.line(), YamlValue(it->second, path_.empty() ? name : absl::StrCat(path_, ".", name), key.line())});
  }
  return out;
}

YamlMap YamlValue::Map(std::initializer_list<absl::string_view> allowed) const {
  std::vector<YamlEntry> entries = Entries();
  for (const YamlEntry& entry : entries) {
    if (std::find(allowed.begin(), allowed.end(), entry.key) == allowed.end())
      throw YamlSchemaError(
          entry.key_line, path_,
          absl::StrCat("unknown key '", entry.key, "' (expected one of: ", absl::StrJoin(allowed, ", "), ")"));
  }
  return YamlMap(*this, std::move(entries));
}

const YamlValue* YamlMap::Find(absl::string_view key) const {
  for (const YamlEntry& entry : entries_)
    if (entry.key == key) return &entry.value;
  return nullptr;
}

const YamlValue& YamlMap::Get(absl::string_view key) const {
  const YamlValue* found = Find(key);
  if (found == nullptr) self_.Fail(absl::StrCat("missing key '", key, "'"));
  return *found;
}

}  // namespace stockade
