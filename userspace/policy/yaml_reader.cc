// SPDX-License-Identifier: Apache-2.0
#include "userspace/policy/yaml_reader.h"

#include <yaml.h>

#include <algorithm>
#include <limits>
#include <new>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stockade {
namespace {

const char* Describe(YamlNode::Kind kind) {
  switch (kind) {
    case YamlNode::Kind::kMapping:
      return "a map";
    case YamlNode::Kind::kSequence:
      return "a list";
    case YamlNode::Kind::kScalar:
      return "a scalar";
    case YamlNode::Kind::kNull:
      break;
  }
  return "nothing";
}

uint32_t LineOf(const yaml_mark_t& mark) { return static_cast<uint32_t>(mark.line) + 1; }

std::string TextOf(const yaml_char_t* text) { return text == nullptr ? "" : reinterpret_cast<const char*>(text); }

class YamlEvent {
 public:
  YamlEvent() = default;
  YamlEvent(const YamlEvent&) = delete;
  YamlEvent& operator=(const YamlEvent&) = delete;
  ~YamlEvent() {
    if (filled_) yaml_event_delete(&event_);
  }

  yaml_event_t* Fill() {
    filled_ = true;
    return &event_;
  }
  const yaml_event_t& operator*() const { return event_; }
  const yaml_event_t* operator->() const { return &event_; }

 private:
  yaml_event_t event_{};
  bool filled_ = false;
};

// libyaml's parser over `text`, which must outlive it.
class YamlEventParser {
 public:
  explicit YamlEventParser(absl::string_view text) : text_(text) {
    if (yaml_parser_initialize(&parser_) == 0) throw std::bad_alloc();
    yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  }
  YamlEventParser(const YamlEventParser&) = delete;
  YamlEventParser& operator=(const YamlEventParser&) = delete;
  ~YamlEventParser() { yaml_parser_delete(&parser_); }

  void Next(YamlEvent& event) {
    if (yaml_parser_parse(&parser_, event.Fill()) == 0) {
      // The event is left empty on failure, and deleting an empty one is a no-op.
      ThrowError();
    }
  }

 private:
  [[noreturn]] void ThrowError() const {
    if (parser_.error == YAML_MEMORY_ERROR) throw std::bad_alloc();
    std::string reason = parser_.problem != nullptr ? parser_.problem : "not YAML";
    int line = LineOf(parser_.problem_mark);
    if (parser_.error == YAML_READER_ERROR) {
      // The reader (encoding) has no mark, only the offset of the bad byte.
      const size_t offset = std::min(parser_.problem_offset, text_.size());
      line = 1 + static_cast<int>(std::count(text_.begin(), text_.begin() + offset, '\n'));
    } else if (parser_.context != nullptr) {
      absl::StrAppend(&reason, " (", parser_.context, " that starts on line ", LineOf(parser_.context_mark), ")");
    }
    throw YamlSchemaError(line, "", reason);
  }

  absl::string_view text_;
  yaml_parser_t parser_;
};

bool IsNullText(absl::string_view text) {
  return text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL";
}

// Builds the tree from the events without recursion: `open` holds the
// containers being read, `pending` the finished children of each, in order.
class TreeBuilder {
 public:
  // A policy has a node per 6-7 bytes of text: reserved above that, a big
  // text's tree is never copied while it grows (the pages reserved and not
  // used are never touched). Past 256 MiB of text the vectors grow as usual.
  TreeBuilder(YamlTree& tree, size_t text_size) : tree_(tree) {
    const size_t reserve_for = std::min(text_size, size_t{256} << 20);
    tree_.nodes.reserve(reserve_for / 4);
    tree_.children.reserve(reserve_for / 4);
    tree_.texts.reserve(reserve_for / 2);
  }

  // The node just finished when it is a document's root.
  std::optional<uint32_t> Add(const yaml_event_t& event) {
    const uint32_t line = LineOf(event.start_mark);
    switch (event.type) {
      case YAML_ALIAS_EVENT:
        throw YamlSchemaError(line, "",
                              absl::StrCat("alias '*", TextOf(event.data.alias.anchor),
                                           "': anchors and aliases are not supported in policies"));
      case YAML_SCALAR_EVENT: {
        const auto& scalar = event.data.scalar;
        RefuseAnchor(scalar.anchor, line);
        const absl::string_view text(reinterpret_cast<const char*>(scalar.value), scalar.length);
        YamlNode node{.kind = YamlNode::Kind::kScalar,
                      .plain = scalar.style == YAML_PLAIN_SCALAR_STYLE,
                      .line = line,
                      .text_offset = static_cast<uint32_t>(tree_.texts.size()),
                      .text_size = static_cast<uint32_t>(text.size()),
                      .tag = Tag(scalar.tag)};
        if (node.plain && node.tag == 0 && IsNullText(text)) node.kind = YamlNode::Kind::kNull;
        tree_.texts.append(text.data(), text.size());
        return Finish(node);
      }
      case YAML_SEQUENCE_START_EVENT:
        RefuseAnchor(event.data.sequence_start.anchor, line);
        Open(YamlNode{.kind = YamlNode::Kind::kSequence, .line = line, .tag = Tag(event.data.sequence_start.tag)});
        return std::nullopt;
      case YAML_MAPPING_START_EVENT:
        RefuseAnchor(event.data.mapping_start.anchor, line);
        Open(YamlNode{.kind = YamlNode::Kind::kMapping, .line = line, .tag = Tag(event.data.mapping_start.tag)});
        return std::nullopt;
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        return Close();
      default:
        return std::nullopt;
    }
  }

 private:
  struct OpenContainer {
    YamlNode node;
    size_t first_pending;
  };

  uint32_t Tag(const yaml_char_t* tag) {
    if (tag == nullptr) return 0;
    auto [it, added] = tag_index_.try_emplace(TextOf(tag), static_cast<uint32_t>(tree_.tags.size()));
    if (added) tree_.tags.push_back(it->first);
    return it->second;
  }

  static void RefuseAnchor(const yaml_char_t* anchor, uint32_t line) {
    if (anchor != nullptr)
      throw YamlSchemaError(
          line, "", absl::StrCat("anchor '&", TextOf(anchor), "': anchors and aliases are not supported in policies"));
  }

  void Open(const YamlNode& node) {
    if (open_.size() >= kYamlMaxDepth)
      throw YamlSchemaError(node.line, "", absl::StrCat("nested deeper than ", kYamlMaxDepth, " levels"));
    open_.push_back({node, pending_.size()});
  }

  std::optional<uint32_t> Close() {
    OpenContainer done = std::move(open_.back());
    open_.pop_back();
    done.node.first_child = static_cast<uint32_t>(tree_.children.size());
    done.node.child_count = static_cast<uint32_t>(pending_.size() - done.first_pending);
    tree_.children.insert(tree_.children.end(), pending_.begin() + done.first_pending, pending_.end());
    pending_.resize(done.first_pending);
    return Finish(done.node);
  }

  std::optional<uint32_t> Finish(const YamlNode& node) {
    const auto index = static_cast<uint32_t>(tree_.nodes.size());
    tree_.nodes.push_back(node);
    if (!open_.empty()) {
      pending_.push_back(index);
      return std::nullopt;
    }
    return index;
  }

  YamlTree& tree_;
  absl::flat_hash_map<std::string, uint32_t> tag_index_;
  std::vector<OpenContainer> open_;
  std::vector<uint32_t> pending_;
};

}  // namespace

std::vector<YamlValue> LoadYamlDocuments(absl::string_view text) {
  // Offsets and lines in the tree are 32 bits.
  if (text.size() > std::numeric_limits<uint32_t>::max())
    throw YamlSchemaError(1, "", absl::StrCat("a text of ", text.size(), " bytes: at most 4 GiB"));
  auto tree = std::make_shared<YamlTree>();
  std::vector<uint32_t> roots;
  {
    YamlEventParser parser(text);
    TreeBuilder builder(*tree, text.size());
    for (bool end = false; !end;) {
      YamlEvent event;
      parser.Next(event);
      end = event->type == YAML_STREAM_END_EVENT;
      if (std::optional<uint32_t> root = builder.Add(*event)) roots.push_back(*root);
    }
  }
  std::vector<YamlValue> documents;
  documents.reserve(roots.size());
  for (uint32_t root : roots) documents.emplace_back(tree, root, "");
  return documents;
}

YamlValue::YamlValue(std::shared_ptr<const YamlTree> tree, uint32_t node, std::string path)
    : tree_(std::move(tree)), node_(node), path_(std::move(path)) {}

void YamlValue::Fail(const std::string& reason) const { throw YamlSchemaError(line(), path_, reason); }

const YamlNode& YamlValue::Expect(YamlNode::Kind kind, const char* what) const {
  if (node().kind != kind) Fail(absl::StrCat("expected ", what, ", found ", Describe(node().kind)));
  return node();
}

std::string YamlValue::String() const { return std::string(tree_->Text(Expect(YamlNode::Kind::kScalar, "a string"))); }

uint64_t YamlValue::Integer(uint64_t max) const {
  const absl::string_view text = tree_->Text(Expect(YamlNode::Kind::kScalar, "a number"));
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value > max)
    Fail(absl::StrCat("\"", text, "\" is not a number from 0 to ", max));
  return value;
}

bool YamlValue::Bool() const {
  const absl::string_view text = tree_->Text(Expect(YamlNode::Kind::kScalar, "true or false"));
  if (text == "true") return true;
  if (text == "false") return false;
  Fail(absl::StrCat("\"", text, "\" is not true or false"));
}

std::vector<YamlValue> YamlValue::ListOrEmpty() const {
  const YamlNode& list = Expect(YamlNode::Kind::kSequence, "a list");
  std::vector<YamlValue> out;
  out.reserve(list.child_count);
  for (uint32_t i = 0; i < list.child_count; ++i) out.emplace_back(tree_, Child(i), absl::StrCat(path_, "[", i, "]"));
  return out;
}

std::vector<YamlValue> YamlValue::List() const {
  std::vector<YamlValue> out = ListOrEmpty();
  if (out.empty()) Fail("empty list: it would match nothing; list something or remove the key");
  return out;
}

std::vector<YamlEntry> YamlValue::Entries() const {
  const YamlNode& map = Expect(YamlNode::Kind::kMapping, "a map");
  std::vector<YamlEntry> out;
  out.reserve(map.child_count / 2);
  // Keys are compared with each other below a handful and hashed above: a
  // map of 100k keys must not take 100k² comparisons, and a rule's few keys
  // are not worth a hash table.
  constexpr uint32_t kHashedKeys = 8;
  absl::flat_hash_map<absl::string_view, int> line_of_key;
  for (uint32_t i = 0; i + 1 < map.child_count; i += 2) {
    YamlValue key(tree_, Child(i), path_);
    std::string name = key.String();
    int seen_line = 0;
    if (map.child_count / 2 > kHashedKeys) {
      auto [seen, added] = line_of_key.try_emplace(tree_->Text(tree_->nodes[Child(i)]), key.line());
      if (!added) seen_line = seen->second;
    } else {
      for (const YamlEntry& seen : out)
        if (seen.key == name) seen_line = seen.key_line;
    }
    if (seen_line != 0) key.Fail(absl::StrCat("duplicate key '", name, "' (also on line ", seen_line, ")"));
    std::string path = path_.empty() ? name : absl::StrCat(path_, ".", name);
    out.push_back({std::move(name), key.line(), YamlValue(tree_, Child(i + 1), std::move(path))});
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
