// The hostile-header corpus (tests/corpus/header, made by
// tools/make-header-corpus.py): every file is refused with the code its
// MANIFEST.tsv row names, in an error naming the file and the tensor, or
// accepted when the row says `ok`. Plus the size limits, on files made at
// test time because they are too big to commit.
// Thread-compatible: each test uses its own temporary directory.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "format/header.h"
#include "support/test_util.h"

namespace shardload::format {
namespace {

using test::TempDir;

constexpr std::size_t kMinMalformed = 80;

std::string CorpusDir() { return std::string(SHARDLOAD_SOURCE_DIR) + "/tests/corpus/header"; }

struct Row {
  std::string file;
  std::string code;    // an ErrorCodeName, or "ok"
  std::string tensor;  // decoded; empty for '-'
  std::string what;
};

// "\xHH" escapes (for tensor names holding bytes a TSV cannot) to bytes.
std::string Unescape(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text.substr(i, 2) == "\\x" && i + 4 <= text.size()) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 2, 2)), nullptr, 16));
      i += 3;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::vector<std::string> SplitTabs(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream in(line);
  for (std::string field; std::getline(in, field, '\t');) fields.push_back(field);
  return fields;
}

std::vector<Row> ReadManifest() {
  std::ifstream in(CorpusDir() + "/MANIFEST.tsv");
  REQUIRE(in.good());
  std::vector<Row> rows;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = SplitTabs(line);
    INFO(line);
    REQUIRE(f.size() == 4);
    rows.push_back({f[0], f[1], f[2] == "-" ? "" : Unescape(f[2]), f[3]});
  }
  return rows;
}

// The result's code name, "ok" on success.
std::string CodeName(const Result<Header>& result) {
  return std::string(result.has_value() ? "ok" : ErrorCodeName(result.error().code));
}

void CheckRow(const Row& row) {
  std::string path = CorpusDir() + "/" + row.file;
  INFO(row.file, ": ", row.what);
  Result<Header> result = ReadHeaderFile(path);
  std::string got = result.has_value() ? "accepted" : result.error().ToString();
  INFO(got);
  CHECK(CodeName(result) == row.code);
  if (result.has_value()) return;
  const Error& error = result.error();
  std::string text = error.ToString();
  CHECK(error.path == path);
  CHECK(text.find(path) != std::string::npos);
  CHECK(error.tensor == row.tensor);
  if (!row.tensor.empty()) CHECK(text.find("`" + row.tensor + "`") != std::string::npos);
  CHECK_FALSE(error.detail.empty());
}

// The same file through ParseHeader, on a heap copy of exactly the header
// bytes (so that a sanitizer sees any read past them): same verdict.
void CheckParseAgrees(const Row& row) {
  std::string path = CorpusDir() + "/" + row.file;
  std::string bytes = test::ReadFile(path);
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < 8 && i < bytes.size(); ++i) {
    n |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  }
  if (bytes.size() < 8 || n > bytes.size() - 8) return;  // refused before step 4
  auto copy = std::make_unique<char[]>(n);
  bytes.copy(copy.get(), n, 8);
  INFO(row.file);
  CHECK(CodeName(ParseHeader(std::string_view(copy.get(), n), bytes.size(), path)) == row.code);
}

TEST_CASE("corpus: the manifest lists every file once, and enough of them") {
  std::vector<Row> rows = ReadManifest();
  std::set<std::string> listed;
  std::size_t malformed = 0, valid = 0;
  for (const Row& row : rows) {
    CHECK_MESSAGE(listed.insert(row.file).second, "listed twice: ", row.file);
    (row.code == "ok" ? valid : malformed)++;
  }
  std::set<std::string> present;
  for (const auto& entry : std::filesystem::directory_iterator(CorpusDir())) {
    if (entry.path().extension() == ".safetensors") present.insert(entry.path().filename());
  }
  CHECK(listed == present);
  CHECK(malformed >= kMinMalformed);
  CHECK(valid >= 3);
}

TEST_CASE("corpus: every file gets its documented code, naming the file and tensor") {
  for (const Row& row : ReadManifest()) CheckRow(row);
}

TEST_CASE("corpus: ParseHeader on the exact header bytes agrees with ReadHeaderFile") {
  for (const Row& row : ReadManifest()) CheckParseAgrees(row);
}

// ---------------------------------------------------------------------------
// Files made at test time.

// Writes prefix(n) + text + `pad` spaces + data, without holding the whole
// file in memory.
void WriteHeaderFile(const std::string& path, std::uint64_t n, std::string_view text,
                     std::uint64_t pad, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  const std::string spaces(1 << 20, ' ');
  for (std::uint64_t left = pad; left > 0;) {
    std::uint64_t chunk = std::min<std::uint64_t>(left, spaces.size());
    out.write(spaces.data(), static_cast<std::streamsize>(chunk));
    left -= chunk;
  }
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

// Resets the peak resident set size of this process (Linux clear_refs 5);
// false where the kernel does not allow it.
bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

// VmHWM (peak resident set size) in bytes, 0 when unknown.
std::uint64_t PeakRssBytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

std::uint64_t CurrentRssBytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

TEST_CASE("limits: a 100,000,000-byte header is accepted, one byte more is refused") {
  TempDir dir;
  const std::string json = R"({"__metadata__":{"format":"pt"},"t":{"dtype":"U8","shape":[4],)"
                           R"("data_offsets":[0,4]}})";
  const std::string data = "\x01\x02\x03\x04";
  std::string at_limit = dir / "at-limit.safetensors";
  WriteHeaderFile(at_limit, kMaxHeaderSize, json, kMaxHeaderSize - json.size(), data);

  bool reset = ResetPeakRss();
  std::uint64_t rss_before = CurrentRssBytes();
  auto start = std::chrono::steady_clock::now();
  Result<Header> header = ReadHeaderFile(at_limit);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::uint64_t peak = PeakRssBytes();
  if (!header.has_value()) FAIL(header.error().ToString());
  CHECK(header->header_size == kMaxHeaderSize);
  CHECK(header->tensors.size() == 1);
  std::string note = reset ? "" : "; the peak could not be reset: an upper bound";
  MESSAGE("N = 100,000,000: parsed in ", seconds, " s; peak RSS ", peak >> 20, " MiB (",
          (peak - std::min(peak, rss_before)) >> 20, " MiB above the ", rss_before >> 20,
          " MiB before", note, ")");
  // Bounded memory: the header text once, plus small change. Sanitizers'
  // shadow memory counts in RSS too, so the bound is checked without them.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  if (reset) CHECK(peak - std::min(peak, rss_before) < 2 * kMaxHeaderSize);
#endif
  std::filesystem::remove(at_limit);

  std::string over = dir / "over-limit.safetensors";
  WriteHeaderFile(over, kMaxHeaderSize + 1, json, kMaxHeaderSize + 1 - json.size(), data);
  Result<Header> refused = ReadHeaderFile(over);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code == ErrorCode::kHeaderTooLarge);
  CHECK(refused.error().path == over);
}

TEST_CASE("limits: a million open brackets in a file are refused without recursion") {
  TempDir dir;
  std::string path = dir / "deep.safetensors";
  std::string text = R"({"t":{"x":)" + std::string(1'000'000, '[');
  WriteHeaderFile(path, text.size(), text, 0, "");
  Result<Header> result = ReadHeaderFile(path);
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error().code == ErrorCode::kJsonTooDeep);
  CHECK(result.error().tensor == "t");
}

TEST_CASE("limits: a million-dimension shape in a file") {
  TempDir dir;
  std::string path = dir / "dims.safetensors";
  std::string dims = "3";
  dims.reserve(2'000'000);
  for (int i = 1; i < 1'000'000; ++i) dims += ",1";
  std::string text = R"({"t":{"dtype":"U8","shape":[)" + dims + R"(],"data_offsets":[0,3]}})";
  WriteHeaderFile(path, text.size(), text, 0, "abc");
  Result<Header> result = ReadHeaderFile(path);
  if (!result.has_value()) FAIL(result.error().ToString());
  CHECK(result->tensors[0].shape.size() == 1'000'000);
}

}  // namespace
}  // namespace shardload::format
