// Crafted-header tests for the safetensors header reader: one case per rule
// of docs/format.md §3 (in the reference's order of checks) with the exact
// ErrorCode, plus the edge cases the reference accepts.
// Thread-compatible: each test uses its own temporary directory.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "format/header.h"
#include "util/clip_name.h"
#include "support/test_util.h"

namespace doctest {
template <>
struct StringMaker<shardload::ErrorCode> {
  static String convert(shardload::ErrorCode code) {
    return String(std::string(shardload::ErrorCodeName(code)).c_str());
  }
};
}  // namespace doctest

namespace shardload::format {
namespace {

using test::RawSafetensors;
using test::TempDir;
using test::WriteFile;

const std::string kPath = "crafted.safetensors";
const std::string kMax64 = "18446744073709551615";  // 2^64-1
const std::string k2Pow64 = "18446744073709551616";

// "NAME":{"dtype":"DTYPE","shape":SHAPE,"data_offsets":[BEGIN,END]}
std::string T(std::string_view name, std::string_view dtype, std::string_view shape,
              std::string_view begin, std::string_view end) {
  return "\"" + std::string(name) + "\":{\"dtype\":\"" + std::string(dtype) +
         "\",\"shape\":" + std::string(shape) + ",\"data_offsets\":[" + std::string(begin) +
         "," + std::string(end) + "]}";
}
std::string T(std::string_view name, std::string_view dtype, std::string_view shape,
              std::uint64_t begin, std::uint64_t end) {
  return T(name, dtype, shape, std::to_string(begin), std::to_string(end));
}

// A tensor entry with the given body: "NAME":{BODY}.
std::string E(std::string_view name, std::string_view body) {
  return "\"" + std::string(name) + "\":{" + std::string(body) + "}";
}

// A valid U8 [4] tensor at [0,4]: needs 4 data bytes.
const std::string kGood = T("t", "U8", "[4]", 0, 4);
const std::string kGoodBody = R"("dtype":"U8","shape":[4],"data_offsets":[0,4])";

// ParseHeader for a file of 8 + json.size() + data_size bytes.
Result<Header> Parse(std::string_view json, std::uint64_t data_size = 0) {
  return ParseHeader(json, 8 + json.size() + data_size, kPath);
}

std::string Repeat(std::string_view s, std::size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

// The error has `code`, names `path` and `tensor`, and says why.
void CheckError(const Result<Header>& result, ErrorCode code, const std::string& tensor = {},
                const std::string& path = kPath) {
  REQUIRE_FALSE(result.has_value());
  const Error& error = result.error();
  std::string text = error.ToString();
  INFO(text);
  CHECK(error.code == code);
  CHECK(error.path == path);
  CHECK(error.tensor == tensor);
  CHECK_FALSE(error.detail.empty());
  CHECK(text.find(path) != std::string::npos);
  if (!tensor.empty()) CHECK(text.find("`" + tensor + "`") != std::string::npos);
}

struct BadCase {
  std::string json;
  ErrorCode code;
  std::string tensor;
  std::uint64_t data_size = 0;
};

void CheckTable(const std::vector<BadCase>& cases) {
  for (const BadCase& c : cases) {
    CAPTURE(c.json);
    CheckError(Parse(c.json, c.data_size), c.code, c.tensor);
  }
}

// A file holding `bytes`, read back with ReadHeaderFile.
Result<Header> ReadBytes(const TempDir& dir, std::string_view bytes) {
  WriteFile(dir / "f.safetensors", bytes);
  return ReadHeaderFile(dir / "f.safetensors");
}

// The 8-byte little-endian length prefix for `n`.
std::string Prefix(std::uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out;
}

// ---------------------------------------------------------------------------
// Steps 1-3: the length prefix (files).

TEST_CASE("prefix: a file shorter than 8 bytes is kHeaderTooSmall") {
  TempDir dir;
  for (std::size_t size : {0, 1, 7}) {
    CAPTURE(size);
    CheckError(ReadBytes(dir, std::string(size, '{')), ErrorCode::kHeaderTooSmall, {},
               dir / "f.safetensors");
  }
}

TEST_CASE("prefix: N above 100,000,000 is kHeaderTooLarge") {
  TempDir dir;
  std::string path = dir / "f.safetensors";
  CheckError(ReadBytes(dir, Prefix(100'000'001) + "{}"), ErrorCode::kHeaderTooLarge, {}, path);
  CheckError(ReadBytes(dir, Prefix(UINT64_MAX) + "{}"), ErrorCode::kHeaderTooLarge, {}, path);
  // A Git LFS pointer instead of the file: the classic report, with a hint.
  Result<Header> lfs = ReadBytes(dir, "version https://git-lfs.github.com/spec/v1\n");
  CheckError(lfs, ErrorCode::kHeaderTooLarge, {}, path);
  CHECK(lfs.error().detail.find("Git LFS") != std::string::npos);
  // A PyTorch zip archive, with its hint.
  Result<Header> zip = ReadBytes(dir, std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10));
  CheckError(zip, ErrorCode::kHeaderTooLarge, {}, path);
  CHECK(zip.error().detail.find("ZIP") != std::string::npos);
  // ParseHeader applies the same limit to text it is given.
  std::string huge(kMaxHeaderSize + 1, ' ');
  CheckError(ParseHeader(huge, 8 + huge.size(), kPath), ErrorCode::kHeaderTooLarge);
}

TEST_CASE("prefix: N == 100,000,000 is allowed; a short file is kInvalidHeaderLength") {
  TempDir dir;
  std::string path = dir / "f.safetensors";
  CheckError(ReadBytes(dir, Prefix(100'000'000) + "{}"), ErrorCode::kInvalidHeaderLength, {},
             path);
}

TEST_CASE("prefix: 8 + N past the end of the file is kInvalidHeaderLength") {
  TempDir dir;
  std::string path = dir / "f.safetensors";
  std::string json = "{}";
  CheckError(ReadBytes(dir, Prefix(json.size() + 1) + json), ErrorCode::kInvalidHeaderLength,
             {}, path);
  CheckError(ReadBytes(dir, Prefix(1000) + std::string(80, ' ')),
             ErrorCode::kInvalidHeaderLength, {}, path);
  CheckError(ReadBytes(dir, Prefix(1)), ErrorCode::kInvalidHeaderLength, {}, path);
  // ParseHeader given a file size too small for its text.
  CheckError(ParseHeader("{}", 9, kPath), ErrorCode::kInvalidHeaderLength);
}

TEST_CASE("prefix: N == 0 is a JSON error") {
  TempDir dir;
  CheckError(ReadBytes(dir, Prefix(0)), ErrorCode::kJsonSyntax, {}, dir / "f.safetensors");
  CheckError(Parse(""), ErrorCode::kJsonSyntax);
}

TEST_CASE("prefix: checks come in the reference's order") {
  TempDir dir;
  std::string path = dir / "f.safetensors";
  // Too large beats past-EOF; past-EOF beats bad UTF-8 and bad JSON.
  CheckError(ReadBytes(dir, Prefix(200'000'000) + "\xff"), ErrorCode::kHeaderTooLarge, {},
             path);
  CheckError(ReadBytes(dir, Prefix(5) + "\xff{"), ErrorCode::kInvalidHeaderLength, {}, path);
  // Bad UTF-8 beats bad JSON.
  CheckError(Parse("{\xff"), ErrorCode::kInvalidUtf8);
  // Bad JSON beats bad offsets.
  CheckError(Parse("{" + T("t", "U8", "[4]", 4, 8) + ",}", 8), ErrorCode::kJsonSyntax);
}

// ---------------------------------------------------------------------------
// Opening files.

TEST_CASE("ReadHeaderFile: regular files only, symlinks followed") {
  TempDir dir;
  Result<Header> missing = ReadHeaderFile(dir / "missing.safetensors");
  CheckError(missing, ErrorCode::kIoError, {}, dir / "missing.safetensors");
  CHECK(missing.error().sys_errno == ENOENT);

  CheckError(ReadHeaderFile(dir.path()), ErrorCode::kNotRegularFile, {}, dir.path());

  std::string fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CheckError(ReadHeaderFile(fifo), ErrorCode::kNotRegularFile, {}, fifo);  // must not hang

  WriteFile(dir / "real.safetensors", RawSafetensors("{" + kGood + "}", "abcd"));
  std::filesystem::create_symlink(dir / "real.safetensors", dir / "link.safetensors");
  Result<Header> linked = ReadHeaderFile(dir / "link.safetensors");
  REQUIRE(linked.has_value());
  CHECK(linked->tensors.size() == 1);
}

TEST_CASE("ReadHeader: reads the prefix and header from a descriptor") {
  TempDir dir;
  std::string json = R"({"__metadata__":{"format":"pt"},)" + kGood + "}";
  WriteFile(dir / "f.safetensors", RawSafetensors(json, "abcd"));
  int fd = ::open((dir / "f.safetensors").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  Result<Header> header = ReadHeader(fd, 8 + json.size() + 4, "given-name");
  REQUIRE(header.has_value());
  CHECK(header->header_size == json.size());
  REQUIRE(header->metadata.has_value());
  CHECK(header->metadata->size() == 1);
  // The caller's file size is what counts: one byte more is incomplete.
  Result<Header> longer = ReadHeader(fd, 8 + json.size() + 5, "given-name");
  CheckError(longer, ErrorCode::kIncompleteBuffer, {}, "given-name");
  // A size below 8 is refused before anything is read.
  CheckError(ReadHeader(fd, 7, "given-name"), ErrorCode::kHeaderTooSmall, {}, "given-name");
  ::close(fd);
  // A file shorter than the size it was said to have: the read comes up short.
  WriteFile(dir / "short.safetensors", Prefix(100) + std::string(10, ' '));
  fd = ::open((dir / "short.safetensors").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  CheckError(ReadHeader(fd, 200, "short"), ErrorCode::kTruncated, {}, "short");
  ::close(fd);
}

// ---------------------------------------------------------------------------
// Step 4: UTF-8.

TEST_CASE("utf8: header bytes must be strict UTF-8 (kInvalidUtf8)") {
  CheckTable({
      {"{\"\xC0\xAF\":{}}", ErrorCode::kInvalidUtf8, ""},          // overlong '/'
      {"{\"\xE0\x80\xAF\":{}}", ErrorCode::kInvalidUtf8, ""},      // overlong, 3 bytes
      {"{\"\xED\xA0\x80\":{}}", ErrorCode::kInvalidUtf8, ""},      // surrogate U+D800
      {"{\"\xED\xBF\xBF\":{}}", ErrorCode::kInvalidUtf8, ""},      // surrogate U+DFFF
      {"{\"\xE2\x82\":{}}", ErrorCode::kInvalidUtf8, ""},          // truncated sequence
      {"{}  \xE2\x82", ErrorCode::kInvalidUtf8, ""},               // truncated at the end
      {"{\"\xFF\":{}}", ErrorCode::kInvalidUtf8, ""},              // never valid
      {"{\"\xF4\x90\x80\x80\":{}}", ErrorCode::kInvalidUtf8, ""},  // above U+10FFFF
      {"{\"\x80\":{}}", ErrorCode::kInvalidUtf8, ""},              // lone continuation
      {"{\"__metadata__\":{\"k\":\"\xC1\xBF\"}}", ErrorCode::kInvalidUtf8, ""},
  });
}

TEST_CASE("utf8: lone surrogate escapes are kInvalidUtf8, pairs are accepted") {
  std::string body = "{" + kGoodBody + "}";
  CheckTable({
      {R"({"\ud800":)" + body + "}", ErrorCode::kInvalidUtf8, ""},         // lone high
      {R"({"\udc00":)" + body + "}", ErrorCode::kInvalidUtf8, ""},         // lone low
      {R"({"a\uDFFFb":)" + body + "}", ErrorCode::kInvalidUtf8, ""},       // low, upper case
      {R"({"\ud800\u0041":)" + body + "}", ErrorCode::kInvalidUtf8, ""},   // high + non-low
      {R"({"\udc00\ud800":)" + body + "}", ErrorCode::kInvalidUtf8, ""},   // reversed pair
      {R"({"__metadata__":{"k":"\udc00"}})", ErrorCode::kInvalidUtf8, ""},  // metadata value
      {R"({"__metadata__":{"\udc00":"v"}})", ErrorCode::kInvalidUtf8, ""},  // metadata key
      {R"({"t":{"dtype":"\udc00"}})", ErrorCode::kInvalidUtf8, "t"},        // dtype
      {R"({"t":{"x":["\udc00"]}})", ErrorCode::kInvalidUtf8, "t"},          // ignored value
      {R"({"t":{"x":{"\udc00":1}}})", ErrorCode::kInvalidUtf8, "t"},        // ignored key
  });
  Result<Header> pair = Parse(R"({"\ud83d\ude00":)" + body + "}", 4);
  REQUIRE(pair.has_value());
  CHECK(pair->tensors[0].name == "\xF0\x9F\x98\x80");
}

// ---------------------------------------------------------------------------
// Step 5: JSON.

TEST_CASE("json: malformed JSON is kJsonSyntax") {
  std::string good = "{" + kGood + "}";
  CheckTable({
      {"", ErrorCode::kJsonSyntax, ""},
      {"    ", ErrorCode::kJsonSyntax, ""},
      {"\xEF\xBB\xBF{}", ErrorCode::kJsonSyntax, ""},  // BOM
      {"{", ErrorCode::kJsonSyntax, ""},
      {"}", ErrorCode::kJsonSyntax, ""},
      {"{}x", ErrorCode::kJsonSyntax, ""},
      {"{} {}", ErrorCode::kJsonSyntax, ""},
      {"{},", ErrorCode::kJsonSyntax, ""},
      {good + "}", ErrorCode::kJsonSyntax, "", 4},
      {R"({"a":})", ErrorCode::kJsonSyntax, ""},
      {R"({"a"})", ErrorCode::kJsonSyntax, ""},
      {R"({a:1})", ErrorCode::kJsonSyntax, ""},
      {R"({'a':1})", ErrorCode::kJsonSyntax, ""},
      {"{" + kGood + ",}", ErrorCode::kJsonSyntax, "", 4},          // trailing comma
      {R"({"t":{"dtype":"U8","shape":[4,],"data_offsets":[0,4]}})", ErrorCode::kJsonSyntax, "t", 4},
      {"/*c*/" + good, ErrorCode::kJsonSyntax, "", 4},              // comments
      {good + "//c", ErrorCode::kJsonSyntax, "", 4},
      // Errors inside a tensor entry name the tensor.
      {R"({"t":{"x":NaN}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"x":Infinity}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"x":-Infinity}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"dtype":"U8","shape":[04],"data_offsets":[0,4]}})", ErrorCode::kJsonSyntax, "t", 4},
      {R"({"t":{"dtype":"U8","shape":[+4],"data_offsets":[0,4]}})", ErrorCode::kJsonSyntax, "t", 4},
      {R"({"t":{"x":.5}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"x":1.}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"x":1e}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"x":0x10}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"x":True}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"x":nul}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t":{"x":"a\qb"}})", ErrorCode::kJsonSyntax, "t"},
      {R"({"t\x":{}})", ErrorCode::kJsonSyntax, ""},                // bad escape
      {R"({"t\u12":{}})", ErrorCode::kJsonSyntax, ""},              // short \u
      {"{\"a\nb\":{}}", ErrorCode::kJsonSyntax, ""},                // raw LF in a string
      {"{\"a\tb\":{}}", ErrorCode::kJsonSyntax, ""},                // raw tab
      {"{\"a\x01" "b\":{}}", ErrorCode::kJsonSyntax, ""},           // raw control
      {"{\"a\x1f\":{}}", ErrorCode::kJsonSyntax, ""},
      {R"({"a":{}} ])", ErrorCode::kJsonSyntax, ""},
      {R"({"a" : {} "b":{}})", ErrorCode::kJsonSyntax, ""},         // missing comma
  });
  // Syntax errors say where, with the file offset.
  Result<Header> r = Parse(R"({"a":})");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().detail.find("header byte 5") != std::string::npos);
  CHECK(r.error().detail.find("file offset 13") != std::string::npos);
}

TEST_CASE("json: only SP, HT, LF and CR are whitespace") {
  std::string good = "{" + kGood + "}";
  CheckTable({
      {"\f" + good, ErrorCode::kJsonSyntax, "", 4},
      {good + "\f", ErrorCode::kJsonSyntax, "", 4},
      {"\v" + good, ErrorCode::kJsonSyntax, "", 4},
      {good + "\v", ErrorCode::kJsonSyntax, "", 4},
      {good + "\xC2\xA0", ErrorCode::kJsonSyntax, "", 4},  // U+00A0
      {"{\f}", ErrorCode::kJsonSyntax, ""},
  });
  for (std::string ws : {" ", "\t", "\n", "\r", " \t\r\n  "}) {
    CAPTURE(ws);
    CHECK(Parse(ws + good, 4).has_value());
    CHECK(Parse(good + ws, 4).has_value());
    CHECK(Parse(ws + good + ws, 4).has_value());
    CHECK(Parse("{" + ws + kGood + ws + "}", 4).has_value());
  }
}

TEST_CASE("json: NUL bytes are refused wherever they are") {
  using namespace std::string_literals;
  std::string good = "{" + kGood + "}";
  std::vector<std::pair<std::string, std::string>> cases = {
      {good + "\0"s, ""},                                   // right after the object
      {good + "   \0"s, ""},                                // after padding
      {good + "\0   "s, ""},
      {"\0"s + good, ""},                                   // before it
      {"{\0"s + kGood + "}", ""},                           // between tokens
      {"{\"t\0\":{}}"s, ""},                                // inside a string
      {R"({"t":{"dtype":"U8","shape":[4)" + "\0"s + "],\"data_offsets\":[0,4]}}", "t"},
      {"\0"s, ""},
  };
  for (const auto& [json_text, tensor] : cases) {
    const std::string& json = json_text;  // clang 14 cannot capture a binding
    CAPTURE(json);
    Result<Header> r = Parse(json, 4);
    CheckError(r, ErrorCode::kJsonSyntax, tensor);
    if (!r.has_value()) CHECK(r.error().detail.find("NUL") != std::string::npos);
  }
}

TEST_CASE("json: a syntax error wins over an earlier schema error") {
  CheckTable({
      {R"({"t":5, )", ErrorCode::kJsonSyntax, ""},
      {R"({"t":{"dtype":"nope"}} x)", ErrorCode::kJsonSyntax, ""},
      {R"([1,2)", ErrorCode::kJsonSyntax, ""},
      {R"({"a":{},"a":{})", ErrorCode::kJsonSyntax, ""},
  });
}

TEST_CASE("json: numbers beyond the double range are refused; tiny ones accepted") {
  std::string prefix = R"({"t":{)" + kGoodBody + R"(,"x":)";
  CheckTable({
      {prefix + "1e400}}", ErrorCode::kJsonSyntax, "t", 4},
      {prefix + "2e308}}", ErrorCode::kJsonSyntax, "t", 4},
      {prefix + "-1e309}}", ErrorCode::kJsonSyntax, "t", 4},
      {prefix + "1" + std::string(400, '0') + "}}", ErrorCode::kJsonSyntax, "t", 4},
  });
  for (std::string n : {"1e-400", "-1e-400", "1.7e308", "0.00001e310", "123456789.5e-3"}) {
    CAPTURE(n);
    CHECK(Parse(prefix + n + "}}", 4).has_value());
  }
}

// ---------------------------------------------------------------------------
// Step 5: depth.

TEST_CASE("depth: 127 nested containers are accepted, 128 are kJsonTooDeep") {
  // Root object (1) + tensor object (2) + k arrays in an ignored field.
  auto nested = [](std::size_t k, std::string_view open, std::string_view close) {
    return R"({"t":{)" + kGoodBody + R"(,"x":)" + Repeat(open, k) + "1" + Repeat(close, k) +
           "}}";
  };
  CHECK(Parse(nested(125, "[", "]"), 4).has_value());
  CheckError(Parse(nested(126, "[", "]"), 4), ErrorCode::kJsonTooDeep, "t");
  CHECK(Parse(nested(125, "{\"k\":", "}"), 4).has_value());
  CheckError(Parse(nested(126, "{\"k\":", "}"), 4), ErrorCode::kJsonTooDeep, "t");
  // Mixed: 62 x ([ + {) = 124 containers, + 2 = 126; one more [ = 127.
  std::string mixed127 = R"({"t":{)" + kGoodBody + R"(,"x":[)" + Repeat("[{\"k\":", 62) +
                         "1" + Repeat("}]", 62) + "]}}";
  CHECK(Parse(mixed127, 4).has_value());
  // The same depth in metadata counts too, before its type is judged.
  std::string meta128 = R"({"__metadata__":{"k":)" + Repeat("[", 126) + Repeat("]", 126) + "}}";
  CheckError(Parse(meta128), ErrorCode::kJsonTooDeep);
  std::string meta127 = R"({"__metadata__":{"k":)" + Repeat("[", 125) + Repeat("]", 125) + "}}";
  CheckError(Parse(meta127), ErrorCode::kBadMetadata);
  // Top level.
  CheckError(Parse(Repeat("[", 127) + Repeat("]", 127)), ErrorCode::kHeaderNotObject);
  CheckError(Parse(Repeat("[", 128) + Repeat("]", 128)), ErrorCode::kJsonTooDeep);
}

TEST_CASE("depth: a million open brackets fail fast, without recursion") {
  CheckError(Parse(Repeat("[", 1'000'000)), ErrorCode::kJsonTooDeep);
  CheckError(Parse(R"({"t":{"x":)" + Repeat("{\"a\":", 1'000'000)), ErrorCode::kJsonTooDeep,
             "t");
  // Depth is counted after a schema error, and wins over it.
  CheckError(Parse(R"({"t":5,"u":)" + Repeat("[", 200) + Repeat("]", 200) + "}"),
             ErrorCode::kJsonTooDeep);
}

// ---------------------------------------------------------------------------
// Step 5: the shape of the JSON.

TEST_CASE("top level: a value other than an object is kHeaderNotObject") {
  CheckTable({
      {"[]", ErrorCode::kHeaderNotObject, ""},
      {"[{}]", ErrorCode::kHeaderNotObject, ""},
      {"5", ErrorCode::kHeaderNotObject, ""},
      {" 5 ", ErrorCode::kHeaderNotObject, ""},
      {R"("{}")", ErrorCode::kHeaderNotObject, ""},
      {"null", ErrorCode::kHeaderNotObject, ""},
      {"true", ErrorCode::kHeaderNotObject, ""},
  });
}

TEST_CASE("metadata: null, {} and string values are accepted") {
  Result<Header> absent = Parse("{" + kGood + "}", 4);
  REQUIRE(absent.has_value());
  CHECK_FALSE(absent->metadata.has_value());

  Result<Header> null = Parse(R"({"__metadata__":null,)" + kGood + "}", 4);
  REQUIRE(null.has_value());
  CHECK_FALSE(null->metadata.has_value());

  Result<Header> empty = Parse(R"({"__metadata__":{}})");
  REQUIRE(empty.has_value());
  REQUIRE(empty->metadata.has_value());
  CHECK(empty->metadata->empty());
  CHECK(empty->tensors.empty());

  // Keys in file order; values decoded; metadata may come after tensors.
  Result<Header> strings =
      Parse("{" + kGood + R"(,"__metadata__":{"z":"1","a":"x\ny","":"","\u00e9":"\"q\""}})", 4);
  REQUIRE(strings.has_value());
  REQUIRE(strings->metadata.has_value());
  Metadata expected = {{"z", "1"}, {"a", "x\ny"}, {"", ""}, {"\xC3\xA9", "\"q\""}};
  CHECK(*strings->metadata == expected);
}

TEST_CASE("metadata: anything but an object of strings or null is kBadMetadata") {
  CheckTable({
      {R"({"__metadata__":"pt"})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":5})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":true})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":[]})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":[["a","b"]]})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":{"a":1}})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":{"a":1.5}})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":{"a":null}})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":{"a":false}})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":{"a":{"b":"c"}}})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":{"a":["c"]}})", ErrorCode::kBadMetadata, ""},
      {R"({"__metadata__":{"ok":"v","a":{}}})", ErrorCode::kBadMetadata, ""},
  });
  Result<Header> r = Parse(R"({"__metadata__":{"total":7}})");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().detail.find("\"total\"") != std::string::npos);
}

TEST_CASE("duplicates: any repeated key is kDuplicateKey, naming it") {
  std::string body = "{" + kGoodBody + "}";
  CheckTable({
      {"{" + kGood + "," + kGood + "}", ErrorCode::kDuplicateKey, "t", 4},  // identical
      {"{" + kGood + "," + T("t", "U8", "[0]", 4, 4) + "}", ErrorCode::kDuplicateKey, "t", 4},
      {R"({"t":)" + body + R"(,"\u0074":)" + body + "}", ErrorCode::kDuplicateKey, "t", 4},
      {R"({"":)" + body + R"(,"":)" + body + "}", ErrorCode::kDuplicateKey, "", 4},
      {R"({"__metadata__":{},"__metadata__":{}})", ErrorCode::kDuplicateKey, ""},
      {R"({"__metadata__":null,"__metadata__":null})", ErrorCode::kDuplicateKey, ""},
      {R"({"__metadata__":{"k":"a","k":"a"}})", ErrorCode::kDuplicateKey, ""},
      {R"({"__metadata__":{"k":"a","k":"b"}})", ErrorCode::kDuplicateKey, ""},
      {"{" + E("t", kGoodBody + R"(,"dtype":"U8")") + "}", ErrorCode::kDuplicateKey, "t", 4},
      {"{" + E("t", kGoodBody + R"(,"shape":[4])") + "}", ErrorCode::kDuplicateKey, "t", 4},
      {"{" + E("t", kGoodBody + R"(,"data_offsets":[0,4])") + "}", ErrorCode::kDuplicateKey,
       "t", 4},
      {"{" + E("t", kGoodBody + R"(,"x":1,"x":1)") + "}", ErrorCode::kDuplicateKey, "t", 4},
  });
  for (auto& [json, key] : std::vector<std::pair<std::string, std::string>>{
           {"{" + kGood + "," + kGood + "}", "\"t\""},
           {R"({"__metadata__":{},"__metadata__":{}})", "\"__metadata__\""},
           {R"({"__metadata__":{"fmt":"a","fmt":"b"}})", "\"fmt\""},
           {"{" + E("t", kGoodBody + R"(,"extra":1,"extra":2)") + "}", "\"extra\""}}) {
    const std::string& json_ref = json;  // clang 14 cannot capture a binding
    CAPTURE(json_ref);
    Result<Header> r = Parse(json, 4);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().detail.find(key) != std::string::npos);
  }
}

TEST_CASE("tensor: an entry that is not an object is kTensorNotObject") {
  CheckTable({
      {R"({"t":5})", ErrorCode::kTensorNotObject, "t"},
      {R"({"t":"U8"})", ErrorCode::kTensorNotObject, "t"},
      {R"({"t":null})", ErrorCode::kTensorNotObject, "t"},
      {R"({"t":["U8",[4],[0,4]]})", ErrorCode::kTensorNotObject, "t"},
      {"{" + kGood + R"(,"u":true})", ErrorCode::kTensorNotObject, "u", 4},
  });
}

TEST_CASE("tensor: a missing field is kMissingField, naming it") {
  CheckTable({
      {R"({"t":{}})", ErrorCode::kMissingField, "t"},
      {R"({"t":{"shape":[4],"data_offsets":[0,4]}})", ErrorCode::kMissingField, "t", 4},
      {R"({"t":{"dtype":"U8","data_offsets":[0,4]}})", ErrorCode::kMissingField, "t", 4},
      {R"({"t":{"dtype":"U8","shape":[4]}})", ErrorCode::kMissingField, "t", 4},
      {R"({"t":{"DType":"U8","shape":[4],"data_offsets":[0,4]}})", ErrorCode::kMissingField,
       "t", 4},
  });
  for (std::string field : {"dtype", "shape", "data_offsets"}) {
    std::string body = kGoodBody;
    std::size_t at = body.find("\"" + field + "\"");
    body.replace(at, field.size() + 2, "\"other\"");
    Result<Header> r = Parse("{" + E("t", body) + "}", 4);
    CheckError(r, ErrorCode::kMissingField, "t");
    CHECK(r.error().detail.find("\"" + field + "\"") != std::string::npos);
  }
}

TEST_CASE("tensor: a field of the wrong JSON type is kBadFieldType") {
  auto with = [](std::string_view field, std::string_view value) {
    std::string body = R"("dtype":"U8","shape":[4],"data_offsets":[0,4])";
    std::string key = "\"" + std::string(field) + "\":";
    std::size_t at = body.find(key) + key.size();
    std::size_t end = field == "dtype" ? body.find(',', at) : body.find(']', at) + 1;
    body.replace(at, end - at, value);
    return "{" + E("t", body) + "}";
  };
  CheckTable({
      {with("dtype", "5"), ErrorCode::kBadFieldType, "t", 4},
      {with("dtype", "null"), ErrorCode::kBadFieldType, "t", 4},
      {with("dtype", R"(["U8"])"), ErrorCode::kBadFieldType, "t", 4},
      {with("dtype", R"({"U8":1})"), ErrorCode::kBadFieldType, "t", 4},
      {with("shape", "4"), ErrorCode::kBadFieldType, "t", 4},
      {with("shape", R"("[4]")"), ErrorCode::kBadFieldType, "t", 4},
      {with("shape", "null"), ErrorCode::kBadFieldType, "t", 4},
      {with("shape", R"({"0":4})"), ErrorCode::kBadFieldType, "t", 4},
      {with("data_offsets", R"({"begin":0,"end":4})"), ErrorCode::kBadFieldType, "t", 4},
      {with("data_offsets", "0"), ErrorCode::kBadFieldType, "t", 4},
      {with("data_offsets", "null"), ErrorCode::kBadFieldType, "t", 4},
  });
}

TEST_CASE("tensor: a dtype outside the 22 names is kUnknownDtype") {
  std::vector<BadCase> cases;
  for (std::string dtype : {"f32", "F8_E4M3FN", "F128", "C128", "I4", "", "U8 ", "bool",
                            "BFloat16", "F6", "F8", "\\u0046\\u0033\\u0032x"}) {
    cases.push_back({"{" + T("t", dtype, "[4]", 0, 4) + "}", ErrorCode::kUnknownDtype, "t", 4});
  }
  CheckTable(cases);
  // Escapes are decoded first: "\u0055\u0038" is U8.
  CHECK(Parse("{" + T("t", "\\u0055\\u0038", "[4]", 0, 4) + "}", 4).has_value());
}

TEST_CASE("tensor: integers must be plain, non-negative and below 2^64 (kBadInteger)") {
  std::vector<BadCase> cases;
  std::vector<std::string> bad = {"2.0", "2e0", "1E2", "-0", "-1", "\"2\"", "null", "true",
                                  "[2]", "{}", k2Pow64, "99999999999999999999", "4.5",
                                  "-18446744073709551615"};
  for (const std::string& n : bad) {
    cases.push_back({"{" + T("t", "U8", "[" + n + "]", 0, 4) + "}", ErrorCode::kBadInteger,
                     "t", 4});
    cases.push_back({"{" + T("t", "U8", "[4]", "0", n) + "}", ErrorCode::kBadInteger, "t", 4});
    cases.push_back({"{" + T("t", "U8", "[4]", n, "4") + "}", ErrorCode::kBadInteger, "t", 4});
  }
  CheckTable(cases);
  Result<Header> r = Parse("{" + T("t", "U8", "[2.0]", 0, 4) + "}", 4);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().detail.find("2.0") != std::string::npos);
}

TEST_CASE("tensor: 2^64-1 is a valid integer") {
  // In a shape with a zero dimension: zero bytes, no overflow.
  Result<Header> r = Parse("{" + T("t", "U8", "[0," + kMax64 + "]", 0, 0) + "}");
  REQUIRE(r.has_value());
  CHECK(r->tensors[0].shape == std::vector<std::uint64_t>{0, UINT64_MAX});
  // As an offset it parses, then fails the layout rules, not the integer rule.
  CheckError(Parse("{" + T("t", "U8", "[0]", kMax64, kMax64) + "}"),
             ErrorCode::kInvalidOffset, "t");
}

TEST_CASE("tensor: data_offsets must have exactly two entries (kBadDataOffsets)") {
  CheckTable({
      {"{" + E("t", R"("dtype":"U8","shape":[0],"data_offsets":[])") + "}",
       ErrorCode::kBadDataOffsets, "t"},
      {"{" + E("t", R"("dtype":"U8","shape":[0],"data_offsets":[0])") + "}",
       ErrorCode::kBadDataOffsets, "t"},
      {"{" + E("t", R"("dtype":"U8","shape":[4],"data_offsets":[0,4,4])") + "}",
       ErrorCode::kBadDataOffsets, "t", 4},
      // Like the reference, the length is refused before a third entry's type.
      {"{" + E("t", R"("dtype":"U8","shape":[4],"data_offsets":[0,4,"x"])") + "}",
       ErrorCode::kBadDataOffsets, "t", 4},
  });
}

TEST_CASE("tensor: unknown fields are ignored, whatever their value") {
  for (std::string value : {"123", "-1.5e3", "\"x\"", "null", "true", "[]", "{}",
                            R"({"a":[1,{"b":null,"b":2}],"c":"\u0000"})", R"([[[],[{}]]])"}) {
    CAPTURE(value);
    Result<Header> r = Parse("{" + E("t", R"("extra":)" + value + "," + kGoodBody +
                                              R"(,"zz":)" + value) +
                                 "}",
                             4);
    REQUIRE(r.has_value());
    CHECK(r->tensors.size() == 1);
    CHECK(r->tensors[0].shape == std::vector<std::uint64_t>{4});
  }
}

TEST_CASE("tensor: names are any JSON string") {
  struct Name {
    std::string json;
    std::string decoded;
  };
  using namespace std::string_literals;
  for (const Name& n : std::vector<Name>{
           {"", ""},
           {"\\u0000", "\0"s},
           {"a\\u0000b", "a\0b"s},
           {"w\xC3\xABight.\xE6\x97\xA5\xE6\x9C\xAC", "w\xC3\xABight.\xE6\x97\xA5\xE6\x9C\xAC"},
           {"\\n\\t\\\"\\\\\\/", "\n\t\"\\/"},
           {"__metadata__x", "__metadata__x"},
           {"__METADATA__", "__METADATA__"},
           {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight"},
       }) {
    CAPTURE(n.json);
    Result<Header> r = Parse("{" + T(n.json, "U8", "[4]", 0, 4) + "}", 4);
    REQUIRE(r.has_value());
    CHECK(r->tensors[0].name == n.decoded);
  }
  // A tensor error names the decoded tensor.
  CheckError(Parse("{" + T("a\\u0000b", "U8", "[5]", 0, 4) + "}", 4),
             ErrorCode::kTensorInvalidInfo, "a\0b"s);
}

TEST_CASE("schema errors: the first in document order is reported") {
  Result<Header> r = Parse(R"({"a":5,"b":{"dtype":"X"}})");
  CheckError(r, ErrorCode::kTensorNotObject, "a");
  r = Parse(R"({"b":{"dtype":"X"},"a":5})");
  CheckError(r, ErrorCode::kUnknownDtype, "b");
}

// ---------------------------------------------------------------------------
// Steps 6-8: offsets and sizes.

TEST_CASE("layout: tensors must tile the buffer from 0, else kInvalidOffset") {
  CheckTable({
      {"{" + T("t", "U8", "[4]", 4, 8) + "}", ErrorCode::kInvalidOffset, "t", 8},  // not at 0
      {"{" + T("a", "U8", "[4]", 0, 4) + "," + T("b", "U8", "[4]", 5, 9) + "}",  // gap
       ErrorCode::kInvalidOffset, "b", 9},
      {"{" + T("a", "U8", "[4]", 0, 4) + "," + T("b", "U8", "[4]", 2, 6) + "}",  // overlap
       ErrorCode::kInvalidOffset, "b", 6},
      {"{" + T("a", "U8", "[4]", 0, 4) + "," + T("b", "U8", "[4]", 0, 4) + "}",  // same range
       ErrorCode::kInvalidOffset, "b", 4},
      {"{" + T("t", "U8", "[4]", 4, 0) + "}", ErrorCode::kInvalidOffset, "t", 4},  // end<begin
      {"{" + T("a", "U8", "[4]", 0, 4) + "," + T("b", "U8", "[0]", 6, 5) + "}",
       ErrorCode::kInvalidOffset, "b", 4},
      // A lying header: offsets past the data (the gap is found first).
      {"{" + T("a", "U8", "[4]", 0, 4) + "," + T("b", "U8", "[4]", 1000, 1004) + "}",
       ErrorCode::kInvalidOffset, "b", 8},
  });
  // Ties sort by end: a zero-size tensor at 0 comes before [0,4].
  CHECK(Parse("{" + T("b", "U8", "[4]", 0, 4) + "," + T("a", "U8", "[0]", 0, 0) + "}", 4)
            .has_value());
}

TEST_CASE("layout: per tensor, offsets are checked before sizes, in offset order") {
  // Same tensor: a gap and a wrong size: the offset error comes first.
  CheckError(Parse("{" + T("t", "U8", "[9]", 2, 4) + "}", 4), ErrorCode::kInvalidOffset, "t");
  // JSON lists `z` (bad offsets) first, but `a` (bad size) is first in offset order.
  CheckError(Parse("{" + T("z", "U8", "[4]", 10, 14) + "," + T("a", "U8", "[3]", 0, 4) + "}",
                   14),
             ErrorCode::kTensorInvalidInfo, "a");
  // And the other way round: `a`'s offsets are bad before `z`'s size is checked.
  CheckError(Parse("{" + T("a", "U8", "[4]", 0, 4) + "," + T("z", "U8", "[1]", 4, 8) + "," +
                       T("y", "U8", "[4]", 9, 13) + "}",
                   13),
             ErrorCode::kTensorInvalidInfo, "z");
  CheckError(Parse("{" + T("a", "U8", "[4]", 0, 4) + "," + T("y", "U8", "[4]", 5, 9) + "," +
                       T("z", "U8", "[1]", 9, 13) + "}",
                   13),
             ErrorCode::kInvalidOffset, "y");
  // Sizes are checked before coverage.
  CheckError(Parse("{" + T("t", "U8", "[3]", 0, 4) + "}", 99), ErrorCode::kTensorInvalidInfo,
             "t");
}

TEST_CASE("layout: element or bit counts beyond 64 bits are kValidationOverflow") {
  std::string max = kMax64;
  CheckTable({
      {"{" + T("t", "U8", "[" + max + "]", "0", max) + "}", ErrorCode::kValidationOverflow, "t"},
      {"{" + T("t", "U8", "[4294967296,4294967296]", 0, 0) + "}",
       ErrorCode::kValidationOverflow, "t"},
      {"{" + T("t", "U8", "[" + max + "," + max + ",0]", 0, 0) + "}",
       ErrorCode::kValidationOverflow, "t"},
      {"{" + T("t", "F64", "[2305843009213693952]", 0, 0) + "}",  // 2^61 * 64 bits
       ErrorCode::kValidationOverflow, "t"},
      {"{" + T("t", "BOOL", "[2305843009213693952]", 0, 0) + "}",  // 2^61 * 8 bits
       ErrorCode::kValidationOverflow, "t"},
      {"{" + T("t", "F4", "[4611686018427387904]", 0, 0) + "}",  // 2^62 * 4 bits
       ErrorCode::kValidationOverflow, "t"},
  });
  // Left to right: a leading zero never overflows.
  Result<Header> zero = Parse("{" + T("t", "U8", "[0," + max + "," + max + "]", 0, 0) + "}");
  REQUIRE(zero.has_value());
  // The largest byte-addressable tensor passes its own checks and then fails coverage.
  CheckError(Parse("{" + T("t", "U8", "[2305843009213693951]", 0, 2305843009213693951ULL) + "}"),
             ErrorCode::kIncompleteBuffer);
  // F4 [2^61] is 2^63 bits: no overflow, just the wrong size.
  CheckError(Parse("{" + T("t", "F4", "[2305843009213693952]", 0, 0) + "}"),
             ErrorCode::kTensorInvalidInfo, "t");
}

TEST_CASE("layout: 8 + N + last end overflowing is kIncompleteBuffer, not a wrap") {
  // Eight U8 tensors of 2^61-1 bytes end at 2^64-8: adding 8 + N overflows.
  std::string json = "{";
  std::uint64_t size = (std::uint64_t{1} << 61) - 1;
  for (std::uint64_t i = 0; i < 8; ++i) {
    json += (i ? "," : "") + T("t" + std::to_string(i), "U8", "[" + std::to_string(size) + "]",
                               i * size, (i + 1) * size);
  }
  json += "}";
  Result<Header> r = Parse(json);
  CheckError(r, ErrorCode::kIncompleteBuffer);
  CHECK(r.error().detail.find("overflow") != std::string::npos);
}

TEST_CASE("layout: sub-byte dtypes need a whole number of bytes (kMisalignedSlice)") {
  CheckTable({
      {"{" + T("t", "F4", "[3]", 0, 2) + "}", ErrorCode::kMisalignedSlice, "t", 2},
      {"{" + T("t", "F4", "[]", 0, 1) + "}", ErrorCode::kMisalignedSlice, "t", 1},  // scalar
      {"{" + T("t", "F6_E2M3", "[3]", 0, 3) + "}", ErrorCode::kMisalignedSlice, "t", 3},
      {"{" + T("t", "F6_E3M2", "[2,3]", 0, 5) + "}", ErrorCode::kMisalignedSlice, "t", 5},
      {"{" + T("t", "F6_E3M2", "[5]", 0, 4) + "}", ErrorCode::kMisalignedSlice, "t", 4},
  });
  // F4 [2,3] is 3 bytes; F6 [4] is 3 bytes.
  Result<Header> r = Parse("{" + T("a", "F4", "[2,3]", 0, 3) + "," +
                               T("b", "F6_E2M3", "[4]", 3, 6) + "," +
                               T("c", "F6_E3M2", "[2,2]", 6, 9) + "}",
                           9);
  REQUIRE(r.has_value());
  CHECK(r->tensors.size() == 3);
}

TEST_CASE("layout: a span that does not match dtype and shape is kTensorInvalidInfo") {
  CheckTable({
      {"{" + T("t", "F32", "[2]", 0, 4) + "}", ErrorCode::kTensorInvalidInfo, "t", 4},
      {"{" + T("t", "F32", "[2]", 0, 12) + "}", ErrorCode::kTensorInvalidInfo, "t", 12},
      {"{" + T("t", "F32", "[]", 0, 0) + "}", ErrorCode::kTensorInvalidInfo, "t"},
      {"{" + T("t", "F32", "[0]", 0, 4) + "}", ErrorCode::kTensorInvalidInfo, "t", 4},
      {"{" + T("t", "F4", "[2,3]", 0, 6) + "}", ErrorCode::kTensorInvalidInfo, "t", 6},
      {"{" + T("t", "C64", "[1]", 0, 4) + "}", ErrorCode::kTensorInvalidInfo, "t", 4},
  });
}

TEST_CASE("layout: the tensors must cover the file exactly (kIncompleteBuffer)") {
  CheckTable({
      {"{" + kGood + "}", ErrorCode::kIncompleteBuffer, "", 5},  // a trailing byte
      {"{" + kGood + "}", ErrorCode::kIncompleteBuffer, "", 3},  // truncated data
      {"{" + kGood + "}", ErrorCode::kIncompleteBuffer, "", 0},
      {"{}", ErrorCode::kIncompleteBuffer, "", 1},
      {R"({"__metadata__":{"a":"b"}})", ErrorCode::kIncompleteBuffer, "", 16},
  });
  Result<Header> trailing = Parse("{" + kGood + "}", 5);
  REQUIRE_FALSE(trailing.has_value());
  CHECK(trailing.error().detail.find("1 trailing byte") != std::string::npos);
  // On files too.
  TempDir dir;
  CheckError(ReadBytes(dir, RawSafetensors("{" + kGood + "}", "abc")),
             ErrorCode::kIncompleteBuffer, {}, dir / "f.safetensors");
}

TEST_CASE("layout: zero-size tensors and scalars are accepted") {
  // {} with no data.
  Result<Header> empty = Parse("{}");
  REQUIRE(empty.has_value());
  CHECK(empty->tensors.empty());
  CHECK(empty->header_size == 2);
  // Several zero-size tensors sharing an offset, before and after data.
  Result<Header> zeros = Parse("{" + T("z1", "F32", "[0]", 0, 0) + "," +
                                   T("z2", "BF16", "[3,0,5]", 0, 0) + "," +
                                   T("x", "F32", "[2]", 0, 8) + "," + T("z3", "U8", "[0]", 8, 8) +
                                   "," + T("z4", "F4", "[0]", 8, 8) + "}",
                               8);
  REQUIRE(zeros.has_value());
  CHECK(zeros->tensors.size() == 5);
  // Scalars: shape [] is one element.
  Result<Header> scalar =
      Parse("{" + T("s", "F32", "[]", 0, 4) + "," + T("b", "BOOL", "[]", 4, 5) + "}", 5);
  REQUIRE(scalar.has_value());
  CHECK(scalar->tensors[0].shape.empty());
  // Only zero-size tensors: the buffer is empty.
  CHECK(Parse("{" + T("z", "U8", "[0]", 0, 0) + "}").has_value());
}

TEST_CASE("dtypes: all 22 names are accepted with their sizes") {
  struct Row {
    std::string name;
    DType dtype;
    unsigned bits;
  };
  std::vector<Row> rows = {
      {"BOOL", DType::kBool, 8},          {"F4", DType::kF4, 4},
      {"F6_E2M3", DType::kF6E2M3, 6},     {"F6_E3M2", DType::kF6E3M2, 6},
      {"U8", DType::kU8, 8},              {"I8", DType::kI8, 8},
      {"F8_E5M2", DType::kF8E5M2, 8},     {"F8_E4M3", DType::kF8E4M3, 8},
      {"F8_E8M0", DType::kF8E8M0, 8},     {"F8_E4M3FNUZ", DType::kF8E4M3Fnuz, 8},
      {"F8_E5M2FNUZ", DType::kF8E5M2Fnuz, 8}, {"I16", DType::kI16, 16},
      {"U16", DType::kU16, 16},           {"F16", DType::kF16, 16},
      {"BF16", DType::kBF16, 16},         {"I32", DType::kI32, 32},
      {"U32", DType::kU32, 32},           {"F32", DType::kF32, 32},
      {"C64", DType::kC64, 64},           {"F64", DType::kF64, 64},
      {"I64", DType::kI64, 64},           {"U64", DType::kU64, 64},
  };
  REQUIRE(rows.size() == kNumDTypes);
  // One header with a [2,4] tensor of every dtype, laid out back to back:
  // 8 elements of `bits` bits is `bits` bytes.
  std::string json = "{";
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    json += (i ? "," : "") + T("t_" + rows[i].name, rows[i].name, "[2,4]", offset,
                               offset + rows[i].bits);
    offset += rows[i].bits;
  }
  json += "}";
  Result<Header> r = Parse(json, offset);
  REQUIRE(r.has_value());
  REQUIRE(r->tensors.size() == rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(rows[i].name);
    CHECK(r->tensors[i].dtype == rows[i].dtype);
    CHECK(r->tensors[i].end - r->tensors[i].begin == rows[i].bits);
  }
  // And one byte off for each is kTensorInvalidInfo.
  for (const Row& row : rows) {
    CAPTURE(row.name);
    CheckError(Parse("{" + T("t", row.name, "[2,4]", 0, row.bits + 1) + "}", row.bits + 1),
               ErrorCode::kTensorInvalidInfo, "t");
  }
}

TEST_CASE("accepted: JSON key order differs from offset order") {
  Result<Header> r = Parse("{" + T("c", "F32", "[1]", 6, 10) + "," + T("a", "U8", "[2]", 0, 2) +
                               R"(,"__metadata__":{"format":"pt"},)" +
                               T("b", "I16", "[2]", 2, 6) + "}",
                           10);
  REQUIRE(r.has_value());
  REQUIRE(r->tensors.size() == 3);
  // Tensors stay in JSON order.
  CHECK(r->tensors[0].name == "c");
  CHECK(r->tensors[0].begin == 6);
  CHECK(r->tensors[0].end == 10);
  CHECK(r->tensors[0].dtype == DType::kF32);
  CHECK(r->tensors[1].name == "a");
  CHECK(r->tensors[2].name == "b");
  CHECK(r->tensors[2].shape == std::vector<std::uint64_t>{2});
}

TEST_CASE("accepted: whitespace padding before and after the object") {
  std::string json = "{" + kGood + "}";
  for (std::string padded : {json + "      ", "   " + json, "\n\t\r " + json + " \r\n\t",
                             json + std::string(4096, ' ')}) {
    Result<Header> r = Parse(padded, 4);
    REQUIRE(r.has_value());
    CHECK(r->header_size == padded.size());
    CHECK(r->tensors.size() == 1);
  }
  // Through a file, with the data after the padding.
  TempDir dir;
  Result<Header> file = ReadBytes(dir, RawSafetensors("  " + json + "  ", "abcd"));
  REQUIRE(file.has_value());
  CHECK(file->header_size == json.size() + 4);
}

// ---------------------------------------------------------------------------
// Robustness.

TEST_CASE("scale: a 10,000-dimension shape") {
  std::string dims = "[";
  for (int i = 0; i < 10'000; ++i) dims += i ? ",1" : "2";
  dims += "]";
  Result<Header> r = Parse("{" + T("t", "U16", dims, 0, 4) + "}", 4);
  REQUIRE(r.has_value());
  CHECK(r->tensors[0].shape.size() == 10'000);
  CheckError(Parse("{" + T("t", "U16", dims, 0, 2) + "}", 2), ErrorCode::kTensorInvalidInfo,
             "t");
}

TEST_CASE("scale: a million tiny tensors") {
  constexpr std::uint64_t kCount = 1'000'000;
  std::string json;
  json.reserve(kCount * 64);
  json += "{";
  for (std::uint64_t i = 0; i < kCount; ++i) {
    // Listed in reverse offset order, so the sort has work to do.
    std::uint64_t begin = kCount - 1 - i;
    if (i) json += ",";
    json += T("model.t" + std::to_string(i), "U8", "[1]", begin, begin + 1);
  }
  json += "}";
  Result<Header> r = Parse(json, kCount);
  REQUIRE(r.has_value());
  CHECK(r->tensors.size() == kCount);
  CHECK(r->tensors.back().begin == 0);
}

TEST_CASE("ReadHeaderFile: a valid file with metadata") {
  TempDir dir;
  std::string json = R"({"__metadata__":{"format":"pt"},)" + T("w", "F16", "[2,2]", 0, 8) +
                     "," + T("b", "F16", "[2]", 8, 12) + "}";
  json += std::string((8 - json.size() % 8) % 8, ' ');
  WriteFile(dir / "m.safetensors", RawSafetensors(json, std::string(12, '\x01')));
  Result<Header> r = ReadHeaderFile(dir / "m.safetensors");
  REQUIRE(r.has_value());
  CHECK(r->header_size == json.size());
  REQUIRE(r->metadata.has_value());
  CHECK(*r->metadata == Metadata{{"format", "pt"}});
  REQUIRE(r->tensors.size() == 2);
  CHECK(r->tensors[0].name == "w");
  CHECK(r->tensors[0].dtype == DType::kF16);
  CHECK(r->tensors[0].shape == std::vector<std::uint64_t>{2, 2});
  CHECK(r->tensors[1].begin == 8);
  CHECK(r->tensors[1].end == 12);
}

TEST_CASE("a 10 MB tensor name is clipped in the error that names it") {
  const std::string huge(10 << 20, 'n');
  // The huge tensor overlaps the one before it: both names are quoted.
  const std::string json = "{" + T(huge, "U8", "[4]", 2, 6) + "," + T(huge + "2", "U8", "[4]", 0, 4) +
                           "}";
  auto header = ParseHeader(json, 8 + json.size() + 6, kPath);
  REQUIRE_FALSE(header);
  CHECK(header.error().code == ErrorCode::kInvalidOffset);
  CHECK(header.error().tensor.size() < 300);
  CHECK(header.error().tensor.find("... (10485760 bytes)") != std::string::npos);
  CHECK(header.error().detail.size() < 600);
  CHECK(header.error().ToString().size() < 1200);
}

TEST_CASE("ClipName: short names whole; long ones cut before a UTF-8 character, length said") {
  CHECK(ClipName("layers.0.w") == "layers.0.w");
  const std::string exact(kMaxQuotedName, 'a');
  CHECK(ClipName(exact) == exact);
  // 255 ASCII bytes then a 2-byte character across the limit: cut before it.
  const std::string across = std::string(kMaxQuotedName - 1, 'a') + "\xc3\xa9" + "tail";
  CHECK(ClipName(across) == std::string(kMaxQuotedName - 1, 'a') + "... (" +
                                std::to_string(across.size()) + " bytes)");
  const std::string ascii(kMaxQuotedName + 1, 'b');
  CHECK(ClipName(ascii) == std::string(kMaxQuotedName, 'b') + "... (257 bytes)");
}

}  // namespace
}  // namespace shardload::format
