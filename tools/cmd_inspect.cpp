// `shardload inspect PATH [--tensors] [--json]`: validates a checkpoint's
// headers and index and describes its files, tensors, dtypes and metadata.
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <string>

#include "commands.h"
#include "shardload/checkpoint.h"

namespace shardload::cli {

const CommandSpec kInspectSpec = {
    "inspect",
    "PATH [--tensors] [--json]",
    "Validate a checkpoint (file, index or directory) and describe it.",
    {"PATH"},
    {{"--tensors", "", "list every tensor: name, dtype, shape, shard, offset, bytes"},
     {"--json", "", "print one JSON object instead of text"}},
};

namespace {

struct DTypeTotals {
  std::uint64_t tensors = 0;
  std::uint64_t bytes = 0;
};

std::map<std::string, DTypeTotals> TotalsByDType(const Checkpoint& ckpt) {
  std::map<std::string, DTypeTotals> totals;
  for (const TensorInfo& t : ckpt.tensors()) {
    DTypeTotals& d = totals[std::string(DTypeName(t.dtype))];
    ++d.tensors;
    d.bytes += t.size;
  }
  return totals;
}

std::string ShapeText(const std::vector<std::uint64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string MetadataJson(const Metadata& metadata) {
  std::string out = "{";
  for (const auto& [key, value] : metadata) {
    if (out.size() > 1) out += ",";
    out += JsonString(key) + ":" + JsonString(value);
  }
  return out + "}";
}

std::string MetadataText(const Metadata& metadata) {
  std::string out;
  for (const auto& [key, value] : metadata) {
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", key, value);
  }
  return out;
}

std::string ShardJson(const ShardInfo& s) {
  return fmt::format(
      "{{\"name\":{},\"path\":{},\"file_size\":{},\"header_size\":{},"
      "\"data_offset\":{},\"tensors\":{},\"metadata\":{}}}",
      JsonString(s.name), JsonString(s.path), s.file_size, s.header_size,
      s.data_offset, s.num_tensors, s.metadata ? MetadataJson(*s.metadata) : "null");
}

std::string TensorJson(const Checkpoint& ckpt, const TensorInfo& t) {
  return fmt::format(
      "{{\"name\":{},\"dtype\":\"{}\",\"shape\":[{}],\"shard\":{},\"offset\":{},"
      "\"bytes\":{}}}",
      JsonString(t.name), DTypeName(t.dtype), fmt::join(t.shape, ","),
      JsonString(ckpt.shards()[t.shard].name), t.offset, t.size);
}

void PrintJson(const Checkpoint& ckpt, bool with_tensors) {
  std::string out = fmt::format(
      "{{\"path\":{},\"index\":{},\"valid\":true,\"tensor_count\":{},\"total_bytes\":{},",
      JsonString(ckpt.path()),
      ckpt.index_path().empty() ? "null" : JsonString(ckpt.index_path()),
      ckpt.tensors().size(), ckpt.TotalBytes());
  out += "\"shards\":[";
  for (std::size_t i = 0; i < ckpt.shards().size(); ++i) {
    if (i) out += ',';
    out += ShardJson(ckpt.shards()[i]);
  }
  out += "],\"dtypes\":{";
  bool first = true;
  for (const auto& [name, d] : TotalsByDType(ckpt)) {
    out += fmt::format("{}\"{}\":{{\"tensors\":{},\"bytes\":{}}}", first ? "" : ",",
                       name, d.tensors, d.bytes);
    first = false;
  }
  out += "},\"index_metadata\":" + MetadataJson(ckpt.index_metadata());
  out += ",\"warnings\":[";
  for (std::size_t i = 0; i < ckpt.warnings().size(); ++i) {
    if (i) out += ',';
    out += ErrorJson(ckpt.warnings()[i]);
  }
  out += "]";
  if (with_tensors) {
    out += ",\"tensors\":[";
    for (std::size_t i = 0; i < ckpt.tensors().size(); ++i) {
      if (i) out += ',';
      out += TensorJson(ckpt, ckpt.tensors()[i]);
    }
    out += "]";
  }
  std::printf("%s}\n", out.c_str());
}

void PrintShards(const Checkpoint& ckpt) {
  std::uint64_t file_bytes = 0;
  for (const ShardInfo& s : ckpt.shards()) file_bytes += s.file_size;
  fmt::print("shards      {} file{}, {}\n", ckpt.shards().size(),
             ckpt.shards().size() == 1 ? "" : "s", HumanBytes(file_bytes));
  for (const ShardInfo& s : ckpt.shards()) {
    fmt::print("  {}  {}  {} tensors  header {} B{}\n", s.name, HumanBytes(s.file_size),
               s.num_tensors, s.header_size,
               s.metadata ? "  metadata " + MetadataText(*s.metadata) : "");
  }
}

void PrintTensors(const Checkpoint& ckpt) {
  fmt::print("\n{:<48} {:<11} {:<20} {:<36} {:>14} {:>14}\n", "NAME", "DTYPE", "SHAPE",
             "SHARD", "OFFSET", "BYTES");
  for (const TensorInfo& t : ckpt.tensors()) {
    fmt::print("{:<48} {:<11} {:<20} {:<36} {:>14} {:>14}\n", t.name, DTypeName(t.dtype),
               ShapeText(t.shape), ckpt.shards()[t.shard].name, t.offset, t.size);
  }
}

void PrintText(const Checkpoint& ckpt, bool with_tensors) {
  fmt::print("checkpoint  {}\n", ckpt.path());
  if (!ckpt.index_path().empty()) fmt::print("index       {}\n", ckpt.index_path());
  PrintShards(ckpt);
  fmt::print("tensors     {}, {} ({} bytes)\n", ckpt.tensors().size(),
             HumanBytes(ckpt.TotalBytes()), ckpt.TotalBytes());
  for (const auto& [name, d] : TotalsByDType(ckpt)) {
    fmt::print("  {:<11} {} tensors, {}\n", name, d.tensors, HumanBytes(d.bytes));
  }
  if (!ckpt.index_metadata().empty()) {
    fmt::print("metadata    {}\n", MetadataText(ckpt.index_metadata()));
  }
  fmt::print("warnings    {}\n", ckpt.warnings().size());
  for (const Warning& w : ckpt.warnings()) fmt::print("  warning: {}\n", w.ToString());
  if (with_tensors) PrintTensors(ckpt);
}

}  // namespace

int RunInspect(int argc, char** argv) {
  int exit_code = kExitOk;
  auto args = ParseArgs(kInspectSpec, argc, argv, &exit_code);
  if (!args) return exit_code;
  bool json = args->Has("--json");
  Result<Checkpoint> ckpt = Checkpoint::Open(args->Positional(0));
  if (!ckpt) return ReportError(ckpt.error(), json);
  for (const Warning& w : ckpt->warnings()) {
    std::fprintf(stderr, "shardload: warning: %s\n", w.ToString().c_str());
  }
  if (json) {
    PrintJson(*ckpt, args->Has("--tensors"));
  } else {
    PrintText(*ckpt, args->Has("--tensors"));
  }
  return kExitOk;
}

}  // namespace shardload::cli
