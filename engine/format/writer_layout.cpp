// Validation, the reference writer's ordering and header JSON, the greedy
// shard split and the index text.
#include "format/writer_layout.h"

#include <algorithm>
#include <string_view>

#include "format/header.h"
#include "format/json_text.h"
#include "util/checked.h"
#include "util/utf8.h"

namespace shardload::format {
namespace {

constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::size_t kPrefixBytes = 8;
constexpr std::size_t kHeaderAlignment = 8;

// `name` with invalid UTF-8 bytes shown as \xNN, for error messages.
std::string PrintableName(std::string_view name) {
  std::string out;
  std::size_t i = 0;
  while (i < name.size()) {
    std::size_t bad = FindInvalidUtf8(name.substr(i)) + i;
    out.append(name.substr(i, bad - i));
    if (bad == name.size()) break;
    static constexpr char kHex[] = "0123456789abcdef";
    unsigned char c = static_cast<unsigned char>(name[bad]);
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
    i = bad + 1;
  }
  return out;
}

Status CheckMetadata(const std::string& path, const Metadata& metadata) {
  std::vector<std::string_view> keys;
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return MakeError(ErrorCode::kInvalidUtf8, path, "",
                       "__metadata__ entry `" + PrintableName(key) + "` is not valid UTF-8");
    }
    keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());
  auto dup = std::adjacent_find(keys.begin(), keys.end());
  if (dup != keys.end()) {
    return MakeError(ErrorCode::kInvalidArgument, path, "",
                     "__metadata__ key `" + std::string(*dup) + "` given twice");
  }
  return {};
}

void AppendMetadataJson(const Metadata& metadata, std::string* out) {
  AppendSerdeJsonString(kMetadataKey, out);
  out->append(":{");
  for (std::size_t i = 0; i < metadata.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendSerdeJsonString(metadata[i].first, out);
    out->push_back(':');
    AppendSerdeJsonString(metadata[i].second, out);
  }
  out->push_back('}');
}

void AppendTensorJson(const TensorData& t, std::uint64_t begin, std::uint64_t end,
                      std::string* out) {
  AppendSerdeJsonString(t.name, out);
  out->append(":{\"dtype\":");
  AppendSerdeJsonString(DTypeName(t.dtype), out);
  out->append(",\"shape\":[");
  for (std::size_t i = 0; i < t.shape.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendDecimal(t.shape[i], out);
  }
  out->append("],\"data_offsets\":[");
  AppendDecimal(begin, out);
  out->push_back(',');
  AppendDecimal(end, out);
  out->append("]}");
}

// The reference order: dtype descending, then name ascending by bytes.
std::vector<std::size_t> FileOrder(const TensorRefs& tensors) {
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const TensorData& l = *tensors[a];
    const TensorData& r = *tensors[b];
    if (l.dtype != r.dtype) return l.dtype > r.dtype;
    return std::string_view(l.name) < std::string_view(r.name);
  });
  return order;
}

// Prepends the 8-byte little-endian N to `json` padded to a multiple of 8.
std::string FramedHeader(std::string json) {
  json.append((kHeaderAlignment - json.size() % kHeaderAlignment) % kHeaderAlignment, ' ');
  std::string out(kPrefixBytes, '\0');
  std::uint64_t n = json.size();
  for (std::size_t i = 0; i < kPrefixBytes; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  out += json;
  return out;
}

}  // namespace

Result<std::uint64_t> ValidatedTensorSize(const std::string& path, const TensorData& t) {
  if (!IsValidUtf8(t.name)) {
    return MakeError(ErrorCode::kInvalidUtf8, path, PrintableName(t.name),
                     "tensor name is not valid UTF-8");
  }
  if (t.name == kMetadataKey) {
    return MakeError(ErrorCode::kInvalidArgument, path, t.name,
                     "`__metadata__` is reserved and cannot name a tensor");
  }
  std::optional<std::uint64_t> elements = 1;
  for (std::uint64_t dim : t.shape) elements = elements ? CheckedMul(*elements, dim) : elements;
  std::optional<std::uint64_t> bits =
      elements ? CheckedMul(*elements, DTypeBits(t.dtype)) : std::nullopt;
  if (!bits) {
    return MakeError(ErrorCode::kValidationOverflow, path, t.name,
                     "element or bit count of the shape overflows 64 bits");
  }
  if (*bits % 8 != 0) {
    return MakeError(ErrorCode::kMisalignedSlice, path, t.name,
                     std::to_string(*elements) + " elements of " + std::string(DTypeName(t.dtype)) +
                         " do not fill whole bytes (F4 needs an even count, F6 a multiple of 4)");
  }
  std::uint64_t size = *bits / 8;
  if (!t.fill && t.bytes.size() != size) {
    return MakeError(ErrorCode::kInvalidArgument, path, t.name,
                     std::to_string(t.bytes.size()) + " bytes given but " +
                         std::string(DTypeName(t.dtype)) + " with this shape needs " +
                         std::to_string(size));
  }
  return size;
}

Status CheckUniqueNames(const std::string& path, const TensorRefs& tensors) {
  std::vector<std::string_view> names;
  names.reserve(tensors.size());
  for (const TensorData* t : tensors) names.push_back(t->name);
  std::sort(names.begin(), names.end());
  auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end()) {
    return MakeError(ErrorCode::kInvalidArgument, path, PrintableName(*dup),
                     "tensor name given twice");
  }
  return {};
}

Result<SafetensorsLayout> LayOutSafetensors(const std::string& path, const TensorRefs& tensors,
                                            const std::optional<Metadata>& metadata) {
  SafetensorsLayout layout;
  layout.sizes.reserve(tensors.size());
  for (const TensorData* t : tensors) {
    Result<std::uint64_t> size = ValidatedTensorSize(path, *t);
    if (!size) return std::move(size).error();
    layout.sizes.push_back(*size);
  }
  if (Status s = CheckUniqueNames(path, tensors); !s.ok()) return std::move(s).error();
  if (metadata) {
    if (Status s = CheckMetadata(path, *metadata); !s.ok()) return std::move(s).error();
  }
  layout.order = FileOrder(tensors);
  std::string json = "{";
  if (metadata) AppendMetadataJson(*metadata, &json);
  for (std::size_t index : layout.order) {
    std::uint64_t begin = layout.data_size;
    std::optional<std::uint64_t> end = CheckedAdd(begin, layout.sizes[index]);
    if (!end) {
      return MakeError(ErrorCode::kValidationOverflow, path, tensors[index]->name,
                       "the data section would exceed 2^64 bytes");
    }
    if (json.size() > 1) json.push_back(',');
    AppendTensorJson(*tensors[index], begin, *end, &json);
    layout.data_size = *end;
  }
  json.push_back('}');
  layout.header = FramedHeader(std::move(json));
  std::uint64_t n = layout.header.size() - kPrefixBytes;
  if (n > kMaxHeaderSize) {
    return MakeError(ErrorCode::kHeaderTooLarge, path, "",
                     "the header would be " + std::to_string(n) + " bytes, above the limit of " +
                         std::to_string(kMaxHeaderSize));
  }
  if (!CheckedAdd(layout.data_size, layout.header.size())) {
    return MakeError(ErrorCode::kValidationOverflow, path, "", "the file would exceed 2^64 bytes");
  }
  return layout;
}

std::vector<std::vector<std::size_t>> SplitIntoShards(std::span<const std::uint64_t> sizes,
                                                      std::uint64_t max_shard_size) {
  std::vector<std::vector<std::size_t>> shards;
  std::vector<std::size_t> current;
  std::uint64_t current_size = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] > max_shard_size) {
      shards.push_back({i});
      continue;
    }
    // Both terms are at most max_shard_size, so compare without overflow.
    if (current_size > max_shard_size - sizes[i]) {
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(i);
    current_size += sizes[i];
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));
  return shards;
}

std::string ShardFileName(const std::string& prefix, std::size_t index, std::size_t count,
                          bool sharded) {
  if (!sharded) return prefix + ".safetensors";
  auto five_digits = [](std::size_t v) {
    std::string s = std::to_string(v);
    return std::string(s.size() < 5 ? 5 - s.size() : 0, '0') + s;
  };
  return prefix + "-" + five_digits(index + 1) + "-of-" + five_digits(count) + ".safetensors";
}

std::string IndexJson(std::uint64_t total_size,
                      std::vector<std::pair<std::string, std::string>> weight_map) {
  std::sort(weight_map.begin(), weight_map.end());
  std::string out = "{\n  \"metadata\": {\n    \"total_size\": ";
  AppendDecimal(total_size, &out);
  out += "\n  },\n  \"weight_map\": {";
  for (std::size_t i = 0; i < weight_map.size(); ++i) {
    out += i == 0 ? "\n    " : ",\n    ";
    AppendPythonJsonString(weight_map[i].first, &out);
    out += ": ";
    AppendPythonJsonString(weight_map[i].second, &out);
  }
  out += weight_map.empty() ? "}\n}\n" : "\n  }\n}\n";
  return out;
}

}  // namespace shardload::format
