// Strict UTF-8 validation with the rules of Rust's str::from_utf8: no
// overlong forms, no surrogates, nothing above U+10FFFF.
// Thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

namespace shardload {

// Returns the byte offset of the first invalid sequence, or text.size().
std::size_t FindInvalidUtf8(std::string_view text);
inline bool IsValidUtf8(std::string_view text) {
  return FindInvalidUtf8(text) == text.size();
}

}  // namespace shardload
