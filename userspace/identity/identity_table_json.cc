// SPDX-License-Identifier: Apache-2.0
//
// The identity table's state file:
//   {"version": 1, "next_id": 259,
//    "labels": [{"id": 256, "labels": {"tier": "db"}}],
//    "cidrs": [{"id": 258, "cidr": "198.51.100.0/24"}]}
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "stockade/identity/identity_allocator.h"

namespace stockade {
namespace {

using Json = nlohmann::json;

constexpr int kTableVersion = 1;

// A member of `object` that must be there with the given type; `where` names it in errors.
const Json& Member(const Json& object, const char* key, Json::value_t type, const std::string& where) {
  const std::string path = where.empty() ? key : absl::StrCat(where, ".", key);
  auto found = object.find(key);
  if (found == object.end()) throw std::invalid_argument(absl::StrCat(path, ": missing"));
  const bool type_ok = type == Json::value_t::number_unsigned ? found->is_number_unsigned() : found->type() == type;
  if (!type_ok) throw std::invalid_argument(absl::StrCat(path, ": expected ", Json(type).type_name()));
  return *found;
}

uint32_t Id(const Json& object, const std::string& where) {
  uint64_t id = Member(object, "id", Json::value_t::number_unsigned, where).get<uint64_t>();
  if (id > UINT32_MAX) throw std::invalid_argument(absl::StrCat(where, ".id: ", id, " does not fit 32 bits"));
  return static_cast<uint32_t>(id);
}

IdentityTable TableFromJson(const Json& root) {
  if (!root.is_object()) throw std::invalid_argument("expected an object");
  if (int version = Member(root, "version", Json::value_t::number_unsigned, "").get<int>(); version != kTableVersion)
    throw std::invalid_argument(absl::StrCat("version ", version, " is not supported (expected ", kTableVersion, ")"));
  IdentityTable table;
  uint64_t next_id = Member(root, "next_id", Json::value_t::number_unsigned, "").get<uint64_t>();
  if (next_id > UINT32_MAX) throw std::invalid_argument(absl::StrCat("next_id ", next_id, " does not fit 32 bits"));
  table.next_id = static_cast<uint32_t>(next_id);

  const Json& labels = Member(root, "labels", Json::value_t::array, "");
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string where = absl::StrCat("labels[", i, "]");
    LabelSet set;
    for (const auto& [key, value] : Member(labels[i], "labels", Json::value_t::object, where).items()) {
      if (!value.is_string()) throw std::invalid_argument(absl::StrCat(where, ".labels.", key, ": expected string"));
      set.emplace(key, value.get<std::string>());
    }
    if (!table.labels.emplace(set, Id(labels[i], where)).second)
      throw std::invalid_argument(absl::StrCat(where, ": labels ", FormatLabels(set), " listed twice"));
  }

  const Json& cidrs = Member(root, "cidrs", Json::value_t::array, "");
  for (size_t i = 0; i < cidrs.size(); ++i) {
    const std::string where = absl::StrCat("cidrs[", i, "]");
    const std::string text = Member(cidrs[i], "cidr", Json::value_t::string, where).get<std::string>();
    absl::StatusOr<IpPrefix> prefix = ParseIpPrefix(text);
    if (!prefix.ok()) throw std::invalid_argument(absl::StrCat(where, ".cidr: ", prefix.status().message()));
    if (!table.cidrs.emplace(*prefix, Id(cidrs[i], where)).second)
      throw std::invalid_argument(absl::StrCat(where, ": cidr ", text, " listed twice"));
  }
  return table;
}

}  // namespace

std::string SerializeIdentityTable(const IdentityTable& table) {
  Json labels = Json::array();
  for (const auto& [set, id] : table.labels) labels.push_back({{"id", id}, {"labels", set}});
  Json root = {{"version", kTableVersion}, {"next_id", table.next_id}, {"labels", labels}};
  std::string out = root.dump(2);
  // CIDRs written as text, one a line: a prefix needs no escaping, and at
  // 100k of them a JSON tree cost 130 ms at every new identity.
  out.resize(out.size() - 2);  // "\n}", the object's end
  absl::StrAppend(&out, ",\n  \"cidrs\": [");
  const char* separator = "\n";
  for (const auto& [prefix, id] : table.cidrs) {
    absl::StrAppend(&out, separator, "    {\"id\": ", id, ", \"cidr\": \"", prefix.ToString(), "\"}");
    separator = ",\n";
  }
  absl::StrAppend(&out, table.cidrs.empty() ? "]" : "\n  ]", "\n}\n");
  return out;
}

absl::StatusOr<IdentityTable> ParseIdentityTable(absl::string_view json) {
  IdentityTable table;
  try {
    table = TableFromJson(Json::parse(json.begin(), json.end()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("identity table: ", e.what()));
  }
  if (absl::Status s = ValidateIdentityTable(table); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("identity table: ", s.message()));
  return table;
}

}  // namespace stockade
