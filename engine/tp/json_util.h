// RapidJSON helpers shared by the two plan parsers (ours and Hugging Face's):
// strict parsing (iterative, UTF-8 validated, no trailing text), duplicate-key
// refusal and readable type names. Used by the tp stage, and by the loader
// to tell our plan from a config.json (PlanSource::FromFileContent).
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include "shardload/error.h"
#include "util/clip_name.h"  // error text quotes JSON keys and values clipped

namespace shardload::tp {

using JsonValue = rapidjson::Value;

// Parses TEXT into DOC. Errors: kTpPlanJson "invalid JSON at line L, column
// C: ..." naming PATH.
Status ParseJson(std::string_view text, const std::string& path,
                 rapidjson::Document& doc);

// CODE naming PATH and WHERE when a key of OBJECT appears twice.
// REQUIRES: object.IsObject().
Status CheckUniqueKeys(const JsonValue& object, std::string_view where,
                       ErrorCode code, const std::string& path);

std::string_view JsonView(const JsonValue& v);       // REQUIRES: IsString()
std::string_view JsonTypeName(const JsonValue& v);   // "a string", "null", ...

// The member named NAME, or nullptr. REQUIRES: object.IsObject().
const JsonValue* FindMember(const JsonValue& object, std::string_view name);

// A positive integer member KEY of OBJECT, or nullopt when absent or null.
// Errors: kTpPlanJson naming PATH and KEY. REQUIRES: object.IsObject().
Result<std::optional<std::uint64_t>> ReadCount(const JsonValue& object, std::string_view key,
                                               const std::string& path);

}  // namespace shardload::tp
