// serde_json and Python json string escaping, and decimal integers.
#include "format/json_text.h"

#include <charconv>
#include <cstddef>

namespace shardload::format {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

void AppendU4(unsigned unit, std::string* out) {
  out->append("\\u");
  for (int shift = 12; shift >= 0; shift -= 4) {
    out->push_back(kHexDigits[(unit >> shift) & 0xF]);
  }
}

// The two-character escape of `c` shared by both dialects, or nullptr.
const char* ShortEscape(unsigned c) {
  switch (c) {
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    default:
      return nullptr;
  }
}

// Decodes the code point at text[*i] and advances *i past it.
// REQUIRES: valid UTF-8 at *i.
std::uint32_t DecodeUtf8(std::string_view text, std::size_t* i) {
  auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(text[*i + k]));
  };
  std::uint32_t b0 = byte(0);
  std::size_t n = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
  std::uint32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (std::size_t k = 1; k < n && *i + k < text.size(); ++k) {
    cp = (cp << 6) | (byte(k) & 0x3F);
  }
  *i += n;
  return cp;
}

}  // namespace

void AppendSerdeJsonString(std::string_view text, std::string* out) {
  out->push_back('"');
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < text.size(); ++i) {
    unsigned c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(text.substr(run, i - run));
    run = i + 1;
    if (const char* esc = ShortEscape(c)) {
      out->append(esc);
    } else {
      AppendU4(c, out);
    }
  }
  out->append(text.substr(run));
  out->push_back('"');
}

void AppendPythonJsonString(std::string_view text, std::string* out) {
  out->push_back('"');
  std::size_t i = 0;
  while (i < text.size()) {
    std::uint32_t cp = DecodeUtf8(text, &i);
    if (const char* esc = cp < 0x80 ? ShortEscape(cp) : nullptr) {
      out->append(esc);
    } else if (cp >= 0x20 && cp <= 0x7E) {
      out->push_back(static_cast<char>(cp));
    } else if (cp <= 0xFFFF) {
      AppendU4(cp, out);
    } else {
      std::uint32_t v = cp - 0x10000;
      AppendU4(0xD800 | (v >> 10), out);
      AppendU4(0xDC00 | (v & 0x3FF), out);
    }
  }
  out->push_back('"');
}

void AppendDecimal(std::uint64_t value, std::string* out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  (void)ec;  // 24 bytes always hold a uint64
  out->append(buf, end);
}

}  // namespace shardload::format
