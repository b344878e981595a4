// The SAX parse of a safetensors header: RapidJSON's iterative reader feeds a
// small state machine that builds the Header directly (no DOM, no recursion),
// counts container depth like serde_json, and refuses duplicate keys.
// Thread-safe: no shared state.
#include "format/header_json.h"

#include <fmt/format.h>
#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <optional>
#include <unordered_set>
#include <utility>
#include <vector>

#include "util/utf8.h"

namespace shardload::format {
namespace {

// Iterative: no recursion whatever the nesting. StopWhenDone: we check what
// follows the object ourselves, so that a NUL there is an error rather than
// the end of input. NumbersAsStrings: integers are checked from their text.
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag |
                                 rapidjson::kParseStopWhenDoneFlag |
                                 rapidjson::kParseNumbersAsStringsFlag;
constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kJsonWhitespace = " \t\n\r";
constexpr std::size_t kMaxQuoted = 120;  // bytes of a name or number shown

// A RapidJSON input stream over exactly `text`. RapidJSON takes a '\0' from
// Peek() as the end of input; a NUL byte inside the text therefore also stops
// the parse with an error, which ParseHeaderJson names as a NUL.
class BoundedStream {
 public:
  using Ch = char;
  explicit BoundedStream(std::string_view text)
      : begin_(text.data()), cur_(text.data()), end_(text.data() + text.size()) {}
  Ch Peek() const { return cur_ < end_ ? *cur_ : '\0'; }
  Ch Take() { return cur_ < end_ ? *cur_++ : '\0'; }
  std::size_t Tell() const { return static_cast<std::size_t>(cur_ - begin_); }
  // Output side of the stream concept: unused without in-situ parsing.
  Ch* PutBegin() { return nullptr; }
  void Put(Ch) {}
  void Flush() {}
  std::size_t PutEnd(Ch*) { return 0; }

 private:
  const char* begin_;
  const char* cur_;
  const char* end_;
};

// "at header byte X (file offset X+8)".
std::string At(std::size_t offset) {
  return fmt::format("at header byte {} (file offset {})", offset, offset + 8);
}

// `text` in double quotes with control characters escaped and long text cut
// (at a UTF-8 boundary), for messages.
std::string Quote(std::string_view text) {
  bool cut = text.size() > kMaxQuoted;
  if (cut) {
    std::size_t n = kMaxQuoted;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
    text = text.substr(0, n);
  }
  std::string out = "\"";
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7F) {
      out += fmt::format("\\u{:04x}", u);
    } else {
      out += c;
    }
  }
  out += cut ? "\"..." : "\"";
  return out;
}

// floor(log10(|x|)) of a non-zero JSON number, read from its digits; the
// exponent saturates. LLONG_MIN for zero.
long long DecimalMagnitude(std::string_view text) {
  std::size_t i = (!text.empty() && text[0] == '-') ? 1 : 0;
  auto digit = [&](std::size_t k) { return k < text.size() && text[k] >= '0' && text[k] <= '9'; };
  std::size_t int_begin = i;
  while (digit(i)) ++i;
  std::optional<long long> magnitude;
  for (std::size_t k = int_begin; k < i && !magnitude; ++k) {
    if (text[k] != '0') magnitude = static_cast<long long>(i - k) - 1;
  }
  if (i < text.size() && text[i] == '.') {
    std::size_t frac_begin = ++i;
    for (; digit(i); ++i) {
      if (!magnitude && text[i] != '0') magnitude = -static_cast<long long>(i - frac_begin + 1);
    }
  }
  if (!magnitude) return LLONG_MIN;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool negative = i < text.size() && text[i] == '-';
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    long long exponent = 0;
    for (; digit(i); ++i) exponent = std::min(exponent * 10 + (text[i] - '0'), 1'000'000'000'000LL);
    *magnitude += negative ? -exponent : exponent;
  }
  return *magnitude;
}

// True when the JSON number is beyond the range of a double: serde_json
// refuses those anywhere in the document. Tiny numbers round to zero and are
// accepted.
bool NumberOverflowsDouble(std::string_view text) {
  if (text.size() < 300 && text.find_first_of("eE") == std::string_view::npos) return false;
  double value = 0;
  auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (result.ec == std::errc()) return std::isinf(value);
  return result.ec == std::errc::result_out_of_range && DecimalMagnitude(text) >= 0;
}

// Why `text` (a valid JSON number) is not a plain integer in [0, 2^64-1].
std::string_view IntegerProblem(std::string_view text) {
  if (!text.empty() && text[0] == '-') return "is negative";
  if (text.find_first_of(".eE") != std::string_view::npos) return "has a fraction or an exponent";
  return "is larger than 2^64-1";
}

std::optional<std::uint64_t> ParsePlainInteger(std::string_view text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto result = std::from_chars(text.data(), end, value);
  if (text.empty() || result.ec != std::errc() || result.ptr != end) return std::nullopt;
  return value;
}

enum class Kind : std::uint8_t { kNull, kBool, kNumber, kString, kObject, kArray };

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kNull: return "null";
    case Kind::kBool: return "boolean";
    case Kind::kNumber: return "number";
    case Kind::kString: return "string";
    case Kind::kObject: return "object";
    case Kind::kArray: return "array";
  }
  return "value";
}

// The containers the handler interprets; anything else is skipped.
enum class Frame : std::uint8_t { kRoot, kMetadata, kTensor, kShape, kOffsets };

// What the next value means.
enum class Slot : std::uint8_t {
  kRoot,           // the top-level value
  kMetadata,       // the value of __metadata__
  kMetadataValue,  // a value inside __metadata__
  kTensor,         // the value of a tensor name
  kDtype,          // known fields of a tensor
  kShape,
  kOffsets,
  kShapeItem,      // an element of shape
  kOffsetsItem,    // an element of data_offsets
  kIgnored,        // an unknown field of a tensor: any JSON value
};

constexpr std::uint8_t kDtypeBit = 1, kShapeBit = 2, kOffsetsBit = 4;

// The RapidJSON SAX handler. Lexical errors (depth, strings that decode to
// invalid UTF-8, numbers out of range) stop the parse at once ("fatal").
// Schema errors are recorded and the parse goes on, only counting depth, so
// that a syntax error later in the text still takes precedence.
class HeaderHandler {
 public:
  HeaderHandler(const BoundedStream& stream, const std::string& path)
      : stream_(stream), path_(path) {}

  bool Null() { return OnValue(Kind::kNull, {}); }
  bool Bool(bool) { return OnValue(Kind::kBool, {}); }
  // Never called with kParseNumbersAsStringsFlag: RawNumber instead.
  bool Int(int) { return Unreachable(); }
  bool Uint(unsigned) { return Unreachable(); }
  bool Int64(std::int64_t) { return Unreachable(); }
  bool Uint64(std::uint64_t) { return Unreachable(); }
  bool Double(double) { return Unreachable(); }
  bool RawNumber(const char* str, rapidjson::SizeType length, bool) {
    return OnNumber(std::string_view(str, length));
  }
  bool String(const char* str, rapidjson::SizeType length, bool) {
    return OnString(std::string_view(str, length), /*is_key=*/false);
  }
  bool Key(const char* str, rapidjson::SizeType length, bool) {
    return OnString(std::string_view(str, length), /*is_key=*/true);
  }
  bool StartObject() { return OnOpen(Kind::kObject); }
  bool StartArray() { return OnOpen(Kind::kArray); }
  bool EndObject(rapidjson::SizeType) { return OnClose(); }
  bool EndArray(rapidjson::SizeType) { return OnClose(); }

  // Set when the handler stopped the parse.
  const std::optional<Error>& fatal() const { return fatal_; }
  // The first schema error, if any.
  const std::optional<Error>& schema_error() const { return schema_error_; }
  Header TakeHeader() { return std::move(header_); }
  // The tensor whose entry is being read, for errors ("" outside one, or
  // once a schema error stopped the interpretation).
  std::string TensorContext() const;

 private:
  bool OnString(std::string_view text, bool is_key);
  bool OnNumber(std::string_view text);
  bool OnKey(std::string_view key);
  bool OnRootKey(std::string_view key);
  bool OnMetadataKey(std::string_view key);
  bool OnFieldKey(std::string_view key);
  bool OnValue(Kind kind, std::string_view text);
  bool OnMetadataValue(Kind kind, std::string_view text);
  bool OnDtype(Kind kind, std::string_view text);
  bool OnItem(Slot slot, Kind kind, std::string_view text);
  bool OnOpen(Kind kind);
  bool OnClose();
  bool FinishTensor();
  Slot CurrentSlot() const;
  bool Fatal(ErrorCode code, std::string tensor, std::string detail);
  bool Fail(ErrorCode code, std::string tensor, std::string detail);
  bool Unreachable() { return Fatal(ErrorCode::kInternal, {}, "unexpected number event"); }

  const BoundedStream& stream_;
  const std::string& path_;
  Header header_;
  std::optional<Error> fatal_;
  std::optional<Error> schema_error_;
  int depth_ = 0;           // open containers, all of them
  std::size_t skip_ = 0;    // open containers inside an ignored value
  std::vector<Frame> frames_;  // interpreted containers (at most 3)
  Slot next_ = Slot::kRoot;    // meaning of the value after the last key
  bool seen_metadata_ = false;
  std::unordered_set<std::string> names_;          // tensor names so far
  std::unordered_set<std::string> metadata_keys_;
  HeaderTensor tensor_;                            // the tensor being read
  std::uint8_t field_bits_ = 0;                    // known fields seen
  std::unordered_set<std::string> extra_fields_;   // unknown fields seen
  int offsets_count_ = 0;                          // data_offsets entries
};

bool HeaderHandler::Fatal(ErrorCode code, std::string tensor, std::string detail) {
  fatal_ = MakeError(code, path_, std::move(tensor), std::move(detail));
  return false;
}

bool HeaderHandler::Fail(ErrorCode code, std::string tensor, std::string detail) {
  if (!schema_error_) {
    schema_error_ = MakeError(code, path_, std::move(tensor),
                              fmt::format("{} (near header byte {}, file offset {})", detail,
                                          stream_.Tell(), stream_.Tell() + 8));
  }
  return true;
}

std::string HeaderHandler::TensorContext() const {
  if (schema_error_ || frames_.size() < 2 || frames_[1] != Frame::kTensor) return {};
  return tensor_.name;
}

Slot HeaderHandler::CurrentSlot() const {
  if (!frames_.empty() && frames_.back() == Frame::kShape) return Slot::kShapeItem;
  if (!frames_.empty() && frames_.back() == Frame::kOffsets) return Slot::kOffsetsItem;
  return next_;
}

bool HeaderHandler::OnString(std::string_view text, bool is_key) {
  // RapidJSON lets a lone low-surrogate escape (\udc00) through as the bytes
  // ED B0 80: every decoded string is checked. A lone surrogate escape is
  // kInvalidUtf8, like the raw surrogate bytes it stands for.
  if (std::size_t bad = FindInvalidUtf8(text); bad != text.size()) {
    return Fatal(ErrorCode::kInvalidUtf8, TensorContext(),
                 fmt::format("lone UTF-16 surrogate escape in a {} ending {}: it decodes "
                             "to invalid UTF-8 (at decoded byte {})",
                             is_key ? "key" : "string", At(stream_.Tell()), bad));
  }
  return is_key ? OnKey(text) : OnValue(Kind::kString, text);
}

bool HeaderHandler::OnNumber(std::string_view text) {
  if (NumberOverflowsDouble(text)) {
    return Fatal(ErrorCode::kJsonSyntax, TensorContext(),
                 fmt::format("number {} ending {} is out of range",
                             Quote(text), At(stream_.Tell())));
  }
  return OnValue(Kind::kNumber, text);
}

bool HeaderHandler::OnKey(std::string_view key) {
  if (schema_error_ || skip_ > 0) return true;
  switch (frames_.back()) {
    case Frame::kRoot: return OnRootKey(key);
    case Frame::kMetadata: return OnMetadataKey(key);
    case Frame::kTensor: return OnFieldKey(key);
    case Frame::kShape:
    case Frame::kOffsets: break;
  }
  return Fatal(ErrorCode::kInternal, {}, "object key inside an array");
}

bool HeaderHandler::OnRootKey(std::string_view key) {
  if (key == kMetadataKey) {
    if (seen_metadata_) {
      return Fail(ErrorCode::kDuplicateKey, {}, "duplicate key \"__metadata__\"");
    }
    seen_metadata_ = true;
    next_ = Slot::kMetadata;
    return true;
  }
  if (!names_.emplace(key).second) {
    return Fail(ErrorCode::kDuplicateKey, std::string(key),
                fmt::format("duplicate tensor name {}", Quote(key)));
  }
  tensor_ = HeaderTensor{};
  tensor_.name = key;
  next_ = Slot::kTensor;
  return true;
}

bool HeaderHandler::OnMetadataKey(std::string_view key) {
  if (!metadata_keys_.emplace(key).second) {
    return Fail(ErrorCode::kDuplicateKey, {},
                fmt::format("duplicate key {} in __metadata__", Quote(key)));
  }
  header_.metadata->emplace_back(std::string(key), std::string());
  next_ = Slot::kMetadataValue;
  return true;
}

bool HeaderHandler::OnFieldKey(std::string_view key) {
  Slot slot = Slot::kIgnored;
  std::uint8_t bit = 0;
  if (key == "dtype") {
    slot = Slot::kDtype;
    bit = kDtypeBit;
  } else if (key == "shape") {
    slot = Slot::kShape;
    bit = kShapeBit;
  } else if (key == "data_offsets") {
    slot = Slot::kOffsets;
    bit = kOffsetsBit;
  }
  bool fresh = bit != 0 ? (field_bits_ & bit) == 0 : extra_fields_.emplace(key).second;
  if (!fresh) {
    return Fail(ErrorCode::kDuplicateKey, tensor_.name,
                fmt::format("duplicate field {}", Quote(key)));
  }
  field_bits_ |= bit;
  next_ = slot;
  return true;
}

// A scalar, or a container in a place where the handler does not open a
// frame for it (those are all type errors).
bool HeaderHandler::OnValue(Kind kind, std::string_view text) {
  if (schema_error_ || skip_ > 0) return true;
  Slot slot = CurrentSlot();
  switch (slot) {
    case Slot::kRoot:
      return Fail(ErrorCode::kHeaderNotObject, {},
                  fmt::format("the header is a JSON {}, not an object", KindName(kind)));
    case Slot::kMetadata:
    case Slot::kMetadataValue: return OnMetadataValue(kind, text);
    case Slot::kTensor:
      return Fail(ErrorCode::kTensorNotObject, tensor_.name,
                  fmt::format("tensor entry is a {}, not an object", KindName(kind)));
    case Slot::kDtype: return OnDtype(kind, text);
    case Slot::kShape:
    case Slot::kOffsets:
      return Fail(ErrorCode::kBadFieldType, tensor_.name,
                  fmt::format("field \"{}\" is a {}, not an array",
                              slot == Slot::kShape ? "shape" : "data_offsets", KindName(kind)));
    case Slot::kShapeItem:
    case Slot::kOffsetsItem: return OnItem(slot, kind, text);
    case Slot::kIgnored: return true;
  }
  return true;
}

bool HeaderHandler::OnMetadataValue(Kind kind, std::string_view text) {
  if (next_ == Slot::kMetadata) {
    if (kind == Kind::kNull) return true;  // null: no metadata
    return Fail(ErrorCode::kBadMetadata, {},
                fmt::format("__metadata__ is a {}, not an object or null", KindName(kind)));
  }
  if (kind != Kind::kString) {
    return Fail(ErrorCode::kBadMetadata, {},
                fmt::format("__metadata__ value of key {} is a {}, not a string",
                            Quote(header_.metadata->back().first), KindName(kind)));
  }
  header_.metadata->back().second = text;
  return true;
}

bool HeaderHandler::OnDtype(Kind kind, std::string_view text) {
  if (kind != Kind::kString) {
    return Fail(ErrorCode::kBadFieldType, tensor_.name,
                fmt::format("field \"dtype\" is a {}, not a string", KindName(kind)));
  }
  std::optional<DType> dtype = ParseDType(text);
  if (!dtype) {
    return Fail(ErrorCode::kUnknownDtype, tensor_.name,
                fmt::format("unknown dtype {} (names are case-sensitive)", Quote(text)));
  }
  tensor_.dtype = *dtype;
  return true;
}

bool HeaderHandler::OnItem(Slot slot, Kind kind, std::string_view text) {
  bool shape = slot == Slot::kShapeItem;
  std::string_view field = shape ? "shape" : "data_offsets";
  if (!shape && offsets_count_ >= 2) {
    return Fail(ErrorCode::kBadDataOffsets, tensor_.name,
                "field \"data_offsets\" has more than 2 entries");
  }
  if (kind != Kind::kNumber) {
    return Fail(ErrorCode::kBadInteger, tensor_.name,
                fmt::format("an entry of \"{}\" is a {}, not an integer", field, KindName(kind)));
  }
  std::optional<std::uint64_t> value = ParsePlainInteger(text);
  if (!value) {
    return Fail(ErrorCode::kBadInteger, tensor_.name,
                fmt::format("entry {} of \"{}\" {}: only plain non-negative integers "
                            "up to 2^64-1 are allowed",
                            Quote(text), field, IntegerProblem(text)));
  }
  if (shape) {
    tensor_.shape.push_back(*value);
  } else {
    (offsets_count_++ == 0 ? tensor_.begin : tensor_.end) = *value;
  }
  return true;
}

bool HeaderHandler::OnOpen(Kind kind) {
  if (++depth_ > kMaxJsonDepth) {
    return Fatal(ErrorCode::kJsonTooDeep, TensorContext(),
                 fmt::format("JSON containers nested deeper than {} {}", kMaxJsonDepth,
                             At(stream_.Tell())));
  }
  if (schema_error_) return true;
  if (skip_ > 0) {
    ++skip_;
    return true;
  }
  Slot slot = CurrentSlot();
  if (slot == Slot::kIgnored) {
    skip_ = 1;
  } else if (kind == Kind::kObject && slot == Slot::kRoot) {
    frames_.push_back(Frame::kRoot);
  } else if (kind == Kind::kObject && slot == Slot::kMetadata) {
    header_.metadata.emplace();
    frames_.push_back(Frame::kMetadata);
  } else if (kind == Kind::kObject && slot == Slot::kTensor) {
    field_bits_ = 0;
    extra_fields_.clear();
    frames_.push_back(Frame::kTensor);
  } else if (kind == Kind::kArray && (slot == Slot::kShape || slot == Slot::kOffsets)) {
    offsets_count_ = 0;
    frames_.push_back(slot == Slot::kShape ? Frame::kShape : Frame::kOffsets);
  } else {
    return OnValue(kind, {});  // a type error
  }
  return true;
}

bool HeaderHandler::OnClose() {
  --depth_;
  if (schema_error_) return true;
  if (skip_ > 0) {
    --skip_;
    return true;
  }
  Frame frame = frames_.back();
  frames_.pop_back();
  if (frame == Frame::kOffsets && offsets_count_ != 2) {
    return Fail(ErrorCode::kBadDataOffsets, tensor_.name,
                fmt::format("field \"data_offsets\" has {} entr{}, not 2", offsets_count_,
                            offsets_count_ == 1 ? "y" : "ies"));
  }
  if (frame == Frame::kTensor) return FinishTensor();
  return true;
}

bool HeaderHandler::FinishTensor() {
  static constexpr std::pair<std::uint8_t, std::string_view> kRequired[] = {
      {kDtypeBit, "dtype"}, {kShapeBit, "shape"}, {kOffsetsBit, "data_offsets"}};
  for (const auto& [bit, field] : kRequired) {
    if ((field_bits_ & bit) == 0) {
      return Fail(ErrorCode::kMissingField, tensor_.name,
                  fmt::format("missing field \"{}\"", field));
    }
  }
  header_.tensors.push_back(std::move(tensor_));
  return true;
}

std::string DescribeByte(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u == 0) return "a NUL byte";
  if (u > 0x20 && u < 0x7F) return fmt::format("'{}'", c);
  return fmt::format("byte 0x{:02X}", u);
}

// The error for a failed RapidJSON parse, in the most precise words we have.
Error SyntaxError(std::string_view json, const rapidjson::ParseResult& result,
                  const std::string& path, const std::string& tensor) {
  std::size_t offset = result.Offset();
  std::size_t nul = json.find('\0');
  auto syntax = [&](std::string detail) {
    return MakeError(ErrorCode::kJsonSyntax, path, tensor, std::move(detail));
  };
  // RapidJSON reads a NUL as the end of input, so it cannot have passed one.
  if (nul != std::string_view::npos && nul <= offset) {
    return syntax(fmt::format("invalid JSON: a NUL byte {}", At(nul)));
  }
  switch (result.Code()) {
    case rapidjson::kParseErrorDocumentEmpty:
      return syntax("invalid JSON: the header is empty or only whitespace");
    case rapidjson::kParseErrorStringUnicodeSurrogateInvalid:
      return MakeError(ErrorCode::kInvalidUtf8, path, tensor,
                       fmt::format("lone UTF-16 surrogate escape {}", At(offset)));
    case rapidjson::kParseErrorStringEscapeInvalid:
      if (offset < json.size() && static_cast<unsigned char>(json[offset]) < 0x20) {
        return syntax(fmt::format("invalid JSON: unescaped control character {} in a string {}",
                                  DescribeByte(json[offset]), At(offset)));
      }
      break;
    default: break;
  }
  return syntax(fmt::format("invalid JSON {}: {}", At(offset),
                            rapidjson::GetParseError_En(result.Code())));
}

// Only JSON whitespace may follow the top-level value.
std::optional<Error> TrailingError(std::string_view json, std::size_t end,
                                   const std::string& path) {
  std::size_t bad = json.find_first_not_of(kJsonWhitespace, end);
  if (bad == std::string_view::npos) return std::nullopt;
  return MakeError(ErrorCode::kJsonSyntax, path, {},
                   fmt::format("invalid JSON: {} {} after the top-level value "
                               "(only JSON whitespace may follow)",
                               DescribeByte(json[bad]), At(bad)));
}

}  // namespace

Result<Header> ParseHeaderJson(std::string_view json, const std::string& path) {
  BoundedStream stream(json);
  HeaderHandler handler(stream, path);
  rapidjson::Reader reader;
  rapidjson::ParseResult result = reader.Parse<kParseFlags>(stream, handler);
  if (handler.fatal()) return *handler.fatal();
  if (result.IsError()) return SyntaxError(json, result, path, handler.TensorContext());
  if (std::optional<Error> trailing = TrailingError(json, stream.Tell(), path)) {
    return *std::move(trailing);
  }
  if (handler.schema_error()) return *handler.schema_error();
  Header header = handler.TakeHeader();
  header.header_size = json.size();
  return header;
}

}  // namespace shardload::format
