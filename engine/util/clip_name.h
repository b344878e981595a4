// Names quoted in error text, bounded: a key, tensor name, pattern or path
// from a hostile file can be megabytes long, and an error must not repeat it
// whole (on stderr, and again in `--json`'s message and detail).
// Thread-safe: a pure function.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace shardload {

// The most bytes of a name that error text quotes (docs/errors.md).
inline constexpr std::size_t kMaxQuotedName = 256;

// NAME when it has at most kMaxQuotedName bytes; else its first bytes (cut
// before a UTF-8 sequence that would cross the limit) followed by
// "... (N bytes)", N being NAME's length.
std::string ClipName(std::string_view name);

}  // namespace shardload
