// JSON text output in the two dialects the writer must reproduce byte for
// byte: serde_json (safetensors headers) and Python's json module with its
// defaults (transformers' index files).
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shardload::format {

// Appends `text` as a JSON string the way serde_json writes it: only `"`,
// `\` and U+0000..U+001F are escaped (\b \f \n \r \t, others as lowercase
// \u00XX); everything else, non-ASCII UTF-8, `/` and DEL included, is copied.
// REQUIRES: `text` is valid UTF-8.
void AppendSerdeJsonString(std::string_view text, std::string* out);

// Appends `text` as Python's json.dumps(ensure_ascii=True) writes it: `"`,
// `\`, \b \f \n \r \t escaped by name, every other code point outside
// 0x20..0x7E as lowercase \uXXXX (UTF-16 surrogate pairs above U+FFFF).
// REQUIRES: `text` is valid UTF-8.
void AppendPythonJsonString(std::string_view text, std::string* out);

// Appends the decimal digits of `value`.
void AppendDecimal(std::uint64_t value, std::string* out);

}  // namespace shardload::format
