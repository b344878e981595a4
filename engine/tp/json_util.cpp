// RapidJSON helpers of the tp stage (see json_util.h).
// Thread-safe: no shared state.
#include "tp/json_util.h"

#include <algorithm>
#include <unordered_set>

#include <fmt/format.h>
#include <rapidjson/error/en.h>

namespace shardload::tp {
namespace {

constexpr unsigned kParseFlags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;

// "line L, column C" (1-based, columns in bytes) of byte OFFSET.
std::string Where(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  std::string_view before = text.substr(0, offset);
  std::size_t line = 1 + static_cast<std::size_t>(
                             std::count(before.begin(), before.end(), '\n'));
  std::size_t nl = before.rfind('\n');
  std::size_t column = offset - (nl == std::string_view::npos ? 0 : nl + 1) + 1;
  return fmt::format("line {}, column {}", line, column);
}

}  // namespace

Status ParseJson(std::string_view text, const std::string& path,
                 rapidjson::Document& doc) {
  doc.Parse<kParseFlags>(text.data(), text.size());
  if (!doc.HasParseError()) return {};
  return MakeError(ErrorCode::kTpPlanJson, path, {},
                   fmt::format("invalid JSON at {}: {}",
                               Where(text, doc.GetErrorOffset()),
                               rapidjson::GetParseError_En(doc.GetParseError())));
}

Status CheckUniqueKeys(const JsonValue& object, std::string_view where,
                       ErrorCode code, const std::string& path) {
  std::unordered_set<std::string_view> seen;
  seen.reserve(object.MemberCount());
  for (const auto& m : object.GetObject()) {
    if (!seen.insert(JsonView(m.name)).second) {
      return MakeError(code, path, {},
                       fmt::format("{}: key \"{}\" appears twice", where,
                                   ClipName(JsonView(m.name))));
    }
  }
  return {};
}

std::string_view JsonView(const JsonValue& v) {
  return {v.GetString(), v.GetStringLength()};
}

std::string_view JsonTypeName(const JsonValue& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType: return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: return "a boolean";
    case rapidjson::kObjectType: return "an object";
    case rapidjson::kArrayType: return "an array";
    case rapidjson::kStringType: return "a string";
    case rapidjson::kNumberType: return "a number";
  }
  return "a value";
}

const JsonValue* FindMember(const JsonValue& object, std::string_view name) {
  for (const auto& m : object.GetObject()) {
    if (JsonView(m.name) == name) return &m.value;
  }
  return nullptr;
}

Result<std::optional<std::uint64_t>> ReadCount(const JsonValue& object, std::string_view key,
                                               const std::string& path) {
  const JsonValue* v = FindMember(object, key);
  if (v == nullptr || v->IsNull()) return std::optional<std::uint64_t>();
  if (!v->IsUint64() || v->GetUint64() == 0) {
    return MakeError(ErrorCode::kTpPlanJson, path, {},
                     fmt::format("\"{}\" must be a positive integer, got {}", key,
                                 JsonTypeName(*v)));
  }
  return std::optional<std::uint64_t>(v->GetUint64());
}

}  // namespace shardload::tp
