// Parses *.safetensors.index.json with RapidJSON's DOM (iterative parser,
// UTF-8 validated first) into a ParsedIndex; see index_json.h for the rules.
// Thread-safe: no shared state.
#include "index/index_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "util/clip_name.h"
#include "util/errno_error.h"
#include "util/fd.h"
#include "util/small_file.h"
#include "util/utf8.h"

namespace shardload::index {
namespace {

using rapidjson::Value;

// The encoding is validated before parsing (FindInvalidUtf8 is several times
// faster than RapidJSON's kParseValidateEncodingFlag); the strings that
// escapes produce are validated one by one (CheckUtf8).
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag;

std::string_view View(const Value& v) { return {v.GetString(), v.GetStringLength()}; }

std::string_view TypeName(const Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType:
      return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      return "a boolean";
    case rapidjson::kObjectType:
      return "an object";
    case rapidjson::kArrayType:
      return "an array";
    case rapidjson::kStringType:
      return "a string";
    case rapidjson::kNumberType:
      return "a number";
  }
  return "a value";
}

Error IndexError(const std::string& index_path, std::string tensor, std::string detail) {
  return MakeError(ErrorCode::kIndexJson, index_path, std::move(tensor), std::move(detail));
}

// "line L, column C" (1-based, columns in bytes) of byte `offset`.
std::string Where(std::string_view json, std::size_t offset) {
  offset = std::min(offset, json.size());
  std::string_view before = json.substr(0, offset);
  std::size_t line = 1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
  std::size_t nl = before.rfind('\n');
  std::size_t column = offset - (nl == std::string_view::npos ? 0 : nl + 1) + 1;
  return fmt::format("line {}, column {}", line, column);
}

// Container nesting of `v` (0 for a scalar), computed without recursion.
std::size_t Depth(const Value& v) {
  std::size_t max_depth = 0;
  std::vector<std::pair<const Value*, std::size_t>> stack = {{&v, 0}};
  while (!stack.empty()) {
    auto [value, depth] = stack.back();
    stack.pop_back();
    if (value->IsArray()) {
      max_depth = std::max(max_depth, depth + 1);
      for (const Value& item : value->GetArray()) stack.emplace_back(&item, depth + 1);
    } else if (value->IsObject()) {
      max_depth = std::max(max_depth, depth + 1);
      for (const auto& m : value->GetObject()) stack.emplace_back(&m.value, depth + 1);
    }
  }
  return max_depth;
}

// The compact JSON text of a value (for non-string metadata values).
// REQUIRES: Depth(v) is small (the writer recurses).
std::string CompactJson(const Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// kIndexJson if a key of `object` (at `where`) appears twice.
Status CheckUniqueKeys(const Value& object, std::string_view where, const std::string& index_path) {
  std::unordered_set<std::string_view> seen;
  seen.reserve(object.MemberCount());
  for (const auto& m : object.GetObject()) {
    if (!seen.insert(View(m.name)).second) {
      return IndexError(index_path, {},
                        fmt::format("key \"{}\" appears twice in {}", ClipName(View(m.name)), where));
    }
  }
  return {};
}

// Lone low-surrogate escapes ("\udc00") decode to invalid UTF-8; refuse them.
Status CheckUtf8(std::string_view text, std::string_view what, const std::string& index_path) {
  if (IsValidUtf8(text)) return {};
  return IndexError(index_path, {},
                    fmt::format("{} is not valid UTF-8 (lone surrogate escape?)", what));
}

Status ParseTotalSize(const Value& v, const std::string& index_path, ParsedIndex& out) {
  if (!v.IsUint64()) {
    return IndexError(index_path, {},
                      fmt::format("metadata.total_size must be an integer in "
                                  "[0, 2^64), got {} ({})",
                                  TypeName(v), CompactJson(v)));
  }
  out.total_size = v.GetUint64();
  return {};
}

Status ParseMetadata(const Value& v, const std::string& index_path, ParsedIndex& out) {
  if (!v.IsObject()) {
    return IndexError(index_path, {},
                      fmt::format("\"metadata\" must be an object, got {}", TypeName(v)));
  }
  if (Status s = CheckUniqueKeys(v, "\"metadata\"", index_path); !s) return s;
  for (const auto& m : v.GetObject()) {
    std::string_view key = View(m.name);
    if (Status s = CheckUtf8(key, "a metadata key", index_path); !s) return s;
    // Depth first: CompactJson (also used by ParseTotalSize's message) recurses.
    if (Depth(m.value) > kMaxMetadataDepth) {
      return IndexError(
          index_path, {},
          fmt::format("metadata \"{}\" nests deeper than {} levels", ClipName(key),
                      kMaxMetadataDepth));
    }
    if (key == "total_size") {
      if (Status s = ParseTotalSize(m.value, index_path, out); !s) return s;
    }
    std::string text = m.value.IsString() ? std::string(View(m.value)) : CompactJson(m.value);
    if (Status s = CheckUtf8(text, fmt::format("metadata \"{}\"", ClipName(key)), index_path); !s) {
      return s;
    }
    out.metadata.emplace_back(std::string(key), std::move(text));
  }
  return {};
}

// Collects weight_map; shard ids are in first-seen order until SortShards.
class WeightMapBuilder {
 public:
  // `check_utf8`: validate names one by one (needed only when the text
  // holds \u escapes, the one way to an invalid string in valid UTF-8 text).
  WeightMapBuilder(const std::string& index_path, bool check_utf8, ParsedIndex& out)
      : index_path_(index_path), check_utf8_(check_utf8), out_(out) {}

  Status Add(const Value& name, const Value& shard);
  void Reserve(std::size_t n);
  Status SortAndCheckShards();

 private:
  const std::string& index_path_;
  const bool check_utf8_;
  ParsedIndex& out_;
  // Views into the document, which outlives the builder.
  std::unordered_map<std::string_view, std::uint32_t> shard_ids_;
  std::unordered_map<std::string_view, std::uint32_t> tensor_shard_;
  std::vector<std::string_view> shard_names_;
};

void WeightMapBuilder::Reserve(std::size_t n) {
  tensor_shard_.reserve(n);
  out_.entries.reserve(n);
}

Status WeightMapBuilder::Add(const Value& name, const Value& shard) {
  std::string_view tensor = View(name);
  if (!shard.IsString()) {
    return IndexError(index_path_, std::string(tensor),
                      fmt::format("weight_map value must be a shard file name "
                                  "string, got {}",
                                  TypeName(shard)));
  }
  std::string_view shard_name = View(shard);
  if (check_utf8_) {
    if (Status s = CheckUtf8(tensor, "a weight_map tensor name", index_path_); !s) return s;
    if (Status s = CheckUtf8(shard_name, "a weight_map shard name", index_path_); !s) return s;
  }
  auto [sit, new_shard] =
      shard_ids_.try_emplace(shard_name, static_cast<std::uint32_t>(shard_names_.size()));
  if (new_shard) shard_names_.push_back(shard_name);
  auto [tit, new_tensor] = tensor_shard_.try_emplace(tensor, sit->second);
  if (!new_tensor) {
    return MakeError(ErrorCode::kDuplicateTensor, index_path_, std::string(tensor),
                     fmt::format("listed twice in weight_map (shards \"{}\" and \"{}\")",
                                 ClipName(shard_names_[tit->second]), ClipName(shard_name)));
  }
  out_.entries.push_back({std::string(tensor), sit->second});
  return {};
}

Status WeightMapBuilder::SortAndCheckShards() {
  std::vector<std::uint32_t> order(shard_names_.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](std::uint32_t a, std::uint32_t b) { return shard_names_[a] < shard_names_[b]; });
  std::vector<std::uint32_t> new_id(order.size());
  out_.shard_names.reserve(order.size());
  for (std::uint32_t i = 0; i < order.size(); ++i) {
    new_id[order[i]] = i;
    out_.shard_names.emplace_back(shard_names_[order[i]]);
  }
  for (IndexEntry& e : out_.entries) e.shard = new_id[e.shard];
  for (std::uint32_t i = 0; i < out_.shard_names.size(); ++i) {
    std::string problem = ShardNameProblem(out_.shard_names[i]);
    if (problem.empty()) continue;
    ShardTensors t = TensorsOfShard(out_, i);
    return MakeError(ErrorCode::kBadShardName, index_path_, t.first,
                     fmt::format("weight_map shard name \"{}\" {} (the index maps "
                                 "{} tensor(s) to it)",
                                 ClipName(out_.shard_names[i]), problem, t.count));
  }
  return {};
}

Status ParseWeightMap(const Value& v, const std::string& index_path, bool check_utf8,
                      ParsedIndex& out) {
  if (!v.IsObject()) {
    return IndexError(index_path, {},
                      fmt::format("\"weight_map\" must be an object, got {}", TypeName(v)));
  }
  WeightMapBuilder builder(index_path, check_utf8, out);
  builder.Reserve(v.MemberCount());
  for (const auto& m : v.GetObject()) {
    if (Status s = builder.Add(m.name, m.value); !s) return s;
  }
  return builder.SortAndCheckShards();
}

Status ParseRoot(const Value& root, const std::string& index_path, bool has_escapes,
                 ParsedIndex& out) {
  if (!root.IsObject()) {
    return IndexError(index_path, {},
                      fmt::format("the index must be a JSON object, got {}", TypeName(root)));
  }
  if (Status s = CheckUniqueKeys(root, "the top-level object", index_path); !s) {
    return s;
  }
  auto weight_map = root.FindMember("weight_map");
  if (weight_map == root.MemberEnd()) {
    return IndexError(index_path, {}, "missing the \"weight_map\" key");
  }
  if (auto metadata = root.FindMember("metadata"); metadata != root.MemberEnd()) {
    if (Status s = ParseMetadata(metadata->value, index_path, out); !s) return s;
  }
  return ParseWeightMap(weight_map->value, index_path, has_escapes, out);
}

}  // namespace

Result<ParsedIndex> ParseIndexJson(std::string_view json, const std::string& index_path) {
  // RapidJSON stops at a NUL byte as at the end of input; valid JSON never
  // holds a raw NUL, so refuse it before parsing.
  if (std::size_t nul = json.find('\0'); nul != std::string_view::npos) {
    return IndexError(index_path, {},
                      fmt::format("invalid JSON: NUL byte at {}", Where(json, nul)));
  }
  // RapidJSON skips a UTF-8 BOM; Python's json (transformers) refuses one.
  if (json.starts_with("\xEF\xBB\xBF")) {
    return IndexError(index_path, {}, "invalid JSON: starts with a UTF-8 byte order mark");
  }
  if (std::size_t bad = FindInvalidUtf8(json); bad != json.size()) {
    return IndexError(index_path, {}, fmt::format("invalid UTF-8 at {}", Where(json, bad)));
  }
  rapidjson::Document doc;
  doc.Parse<kParseFlags>(json.data(), json.size());
  if (doc.HasParseError()) {
    return IndexError(index_path, {},
                      fmt::format("invalid JSON at {}: {}", Where(json, doc.GetErrorOffset()),
                                  rapidjson::GetParseError_En(doc.GetParseError())));
  }
  ParsedIndex out;
  bool has_escapes = json.find("\\u") != std::string_view::npos;
  if (Status s = ParseRoot(doc, index_path, has_escapes, out); !s) {
    return std::move(s).error();
  }
  return out;
}

Result<ParsedIndex> ReadIndexFile(const std::string& index_path) {
  Result<std::string> text =
      ReadSmallFile(index_path, "the index", kMaxIndexFileSize, ErrorCode::kIndexJson);
  if (!text) return std::move(text).error();
  return ParseIndexJson(*text, index_path);
}

std::string ShardNameProblem(std::string_view shard) {
  if (shard.empty()) return "is empty";
  if (shard.find('\0') != std::string_view::npos) return "contains a NUL byte";
  if (shard.find('\\') != std::string_view::npos) {
    return "contains a backslash (a Windows path separator)";
  }
  if (shard.front() == '/') return "is an absolute path";
  bool alpha = (shard[0] >= 'A' && shard[0] <= 'Z') || (shard[0] >= 'a' && shard[0] <= 'z');
  if (shard.size() >= 2 && alpha && shard[1] == ':') {
    return "starts with a drive letter";
  }
  std::size_t start = 0;
  while (true) {
    std::size_t slash = shard.find('/', start);
    std::string_view part = shard.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty()) return "has an empty path component";
    if (part == ".") return "has a \".\" path component";
    if (part == "..") return "has a \"..\" path component (leaves the checkpoint directory)";
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (!shard.ends_with(kShardSuffix)) return "does not end in \".safetensors\"";
  return {};
}

ShardTensors TensorsOfShard(const ParsedIndex& index, std::uint32_t shard) {
  ShardTensors out;
  const std::string* first = nullptr;
  for (const IndexEntry& e : index.entries) {
    if (e.shard != shard) continue;
    ++out.count;
    if (first == nullptr || e.tensor < *first) first = &e.tensor;
  }
  if (first != nullptr) out.first = *first;
  return out;
}

}  // namespace shardload::index
