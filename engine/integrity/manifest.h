// Manifest: the expected SHA-256 of files, by name relative to the
// checkpoint's directory. Read from `sha256sum` output ("HEX  NAME" or
// "HEX *NAME" lines, backslash-escaped names included) or from a JSON object
// {"NAME": "HEX", ...}; the first non-blank character decides which.
// Thread-safe once built: a Manifest is immutable plain data.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shardload/error.h"

namespace shardload {

struct Manifest {
  // Sorted by name; names unique, "./" prefixes removed; digests lowercase.
  std::vector<std::pair<std::string, std::string>> entries;

  // The expected digest of `name`, or nullptr.
  const std::string* Find(std::string_view name) const;
};

// Parses manifest text; `path` names the manifest in errors (kBadManifest,
// with the line for sha256sum text).
Result<Manifest> ParseManifest(std::string_view text, const std::string& path);
// Reads and parses the file at `path` (kIoError when it cannot be read).
Result<Manifest> ReadManifest(const std::string& path);

}  // namespace shardload
