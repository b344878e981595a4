// Step 5 of the reference reader: turns the JSON text of a safetensors
// header into a Header (metadata plus tensors in JSON order), refusing every
// JSON-level and schema-level error. Offsets are not validated here (steps
// 6-8 live in header.cpp). Internal to the format stage.
// Thread-safe: a pure function.
#pragma once

#include <string>
#include <string_view>

#include "format/header.h"
#include "shardload/error.h"

namespace shardload::format {

// REQUIRES: `json` is valid UTF-8 (step 4 already ran). `path` only names
// the file in errors. Never recurses and never builds a DOM: memory is a
// small constant times json.size().
//
// Precedence: lexical errors (syntax, depth, bad string contents, numbers out
// of range) are reported at the first one in document order; schema errors
// (types, fields, duplicates) are reported only for well-formed JSON, the
// first in document order.
Result<Header> ParseHeaderJson(std::string_view json, const std::string& path);

}  // namespace shardload::format
