// Manifest parsing: sha256sum text or a JSON object of name -> digest.
// Thread-safe: pure functions.
#include "integrity/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "integrity/sha256.h"
#include "util/errno_error.h"
#include "util/fd.h"

namespace shardload {
namespace {

// Manifests are small text files; anything larger is not one.
constexpr std::uint64_t kMaxManifestBytes = 64ULL << 20;

Error Bad(const std::string& path, std::string detail) {
  return MakeError(ErrorCode::kBadManifest, path, "", std::move(detail));
}

std::string StripDotSlash(std::string name) {
  while (name.size() > 2 && name.compare(0, 2, "./") == 0) name.erase(0, 2);
  return name;
}

// Sorts the entries and rejects a name given twice.
Result<Manifest> Finish(std::vector<std::pair<std::string, std::string>> entries,
                        const std::string& path) {
  std::sort(entries.begin(), entries.end());
  for (std::size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].first == entries[i - 1].first) {
      return Bad(path, "file `" + entries[i].first + "` is listed twice");
    }
  }
  return Manifest{std::move(entries)};
}

Result<Manifest> ParseJson(std::string_view text, const std::string& path) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseStopWhenDoneFlag>(text.data(), text.size());
  if (doc.HasParseError()) {
    return Bad(path, std::string("not valid JSON at byte ") + std::to_string(doc.GetErrorOffset()) +
                         ": " + rapidjson::GetParseError_En(doc.GetParseError()));
  }
  if (!doc.IsObject()) return Bad(path, "a JSON manifest must be an object of name -> SHA-256 hex");
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& m : doc.GetObject()) {
    std::string name(m.name.GetString(), m.name.GetStringLength());
    if (!m.value.IsString() ||
        !IsSha256Hex({m.value.GetString(), m.value.GetStringLength()})) {
      return Bad(path, "the value of `" + name + "` is not a SHA-256 hex digest (64 hex digits)");
    }
    if (name.empty()) return Bad(path, "an empty file name");
    entries.emplace_back(StripDotSlash(name),
                         LowerHex({m.value.GetString(), m.value.GetStringLength()}));
  }
  return Finish(std::move(entries), path);
}

// sha256sum's escaping: a line starting with '\' has "\\" and "\n" in its name.
std::optional<std::string> Unescape(std::string_view name) {
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '\\') {
      out.push_back(name[i]);
      continue;
    }
    if (++i == name.size()) return std::nullopt;
    if (name[i] == '\\') out.push_back('\\');
    else if (name[i] == 'n') out.push_back('\n');
    else if (name[i] == 'r') out.push_back('\r');
    else return std::nullopt;
  }
  return out;
}

Result<Manifest> ParseSha256sum(std::string_view text, const std::string& path) {
  std::vector<std::pair<std::string, std::string>> entries;
  std::size_t line_no = 0;
  while (!text.empty()) {
    std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    bool escaped = line.front() == '\\';
    if (escaped) line.remove_prefix(1);
    std::string where = "line " + std::to_string(line_no) + ": ";
    if (line.size() < 67 || !IsSha256Hex(line.substr(0, 64)) || line[64] != ' ' ||
        (line[65] != ' ' && line[65] != '*')) {
      return Bad(path, where + "expected `HEX  NAME` (64 hex digits, two spaces or ' *', a name)");
    }
    std::optional<std::string> name =
        escaped ? Unescape(line.substr(66)) : std::string(line.substr(66));
    if (!name) return Bad(path, where + "bad escape in the file name");
    entries.emplace_back(StripDotSlash(std::move(*name)), LowerHex(line.substr(0, 64)));
  }
  if (entries.empty()) return Bad(path, "no entries");
  return Finish(std::move(entries), path);
}

}  // namespace

const std::string* Manifest::Find(std::string_view name) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), name,
                             [](const auto& e, std::string_view n) { return e.first < n; });
  return it != entries.end() && it->first == name ? &it->second : nullptr;
}

Result<Manifest> ParseManifest(std::string_view text, const std::string& path) {
  std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return Bad(path, "the manifest is empty");
  if (text[first] == '{') return ParseJson(text, path);
  return ParseSha256sum(text, path);
}

Result<Manifest> ReadManifest(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(path, "open manifest", errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(path, "fstat manifest", errno);
  if (!S_ISREG(st.st_mode)) return Bad(path, "the manifest is not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) > kMaxManifestBytes) {
    return Bad(path, "the manifest is larger than 64 MiB");
  }
  std::string text;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(path, "read manifest", errno);
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > kMaxManifestBytes) return Bad(path, "the manifest is larger than 64 MiB");
  }
  return ParseManifest(text, path);
}

}  // namespace shardload
