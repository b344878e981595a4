// Quantization formats of tensor-parallel plans (see quant.h): parsing a
// `quantization_config` and the table of tensor roles per format.
// Thread-safe: pure functions.
#include "tp/quant.h"

#include <array>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "util/checked.h"
#include "util/clip_name.h"

namespace shardload::tp {
namespace {

Error QuantError(ErrorCode code, const std::string& path, std::string detail) {
  return MakeError(code, path, {}, "quantization_config: " + detail);
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// The keys each quant_method uses; STRICT parsing refuses any other.
bool KnownKey(std::string_view key) {
  constexpr std::array<std::string_view, 7> kKeys = {
      "quant_method", "weight_block_size", "bits", "group_size", "desc_act", "version",
      "checkpoint_format"};
  for (std::string_view k : kKeys) {
    if (k == key) return true;
  }
  return false;
}

Result<QuantFormat> ReadMethod(const JsonValue& cfg, const std::string& path) {
  const JsonValue* m = FindMember(cfg, "quant_method");
  if (m == nullptr || !m->IsString()) {
    return QuantError(ErrorCode::kTpPlanJson, path, "needs a string \"quant_method\"");
  }
  std::string_view method = JsonView(*m);
  const JsonValue* block = FindMember(cfg, "weight_block_size");
  bool has_block = block != nullptr && !block->IsNull();
  if (method == "fp8") return has_block ? QuantFormat::kFp8Block : QuantFormat::kFp8;
  if (method == "fbgemm_fp8") return QuantFormat::kFp8;
  if (method == "gptq") return QuantFormat::kGptq;
  if (method == "awq") return QuantFormat::kAwq;
  if (method == "mxfp4") return QuantFormat::kMxfp4;
  return QuantError(ErrorCode::kTpQuantUnsupported, path,
                    fmt::format("quant_method \"{}\" is not supported by the "
                                "tensor-parallel splitter (supported: fp8, "
                                "fbgemm_fp8, gptq, awq, mxfp4); docs/tp-plan.md",
                                ClipName(method)));
}

Status ReadBlockSize(const JsonValue& cfg, const std::string& path, Quant& q) {
  const JsonValue& v = *FindMember(cfg, "weight_block_size");
  if (!v.IsArray() || v.Size() != 2 || !v[0].IsUint64() || !v[1].IsUint64() ||
      v[0].GetUint64() == 0 || v[1].GetUint64() == 0) {
    return QuantError(ErrorCode::kTpPlanJson, path,
                      "\"weight_block_size\" must be two positive integers [bn, bk]");
  }
  q.block_rows = v[0].GetUint64();
  q.block_cols = v[1].GetUint64();
  return {};
}

Status ReadIntegerQuant(const JsonValue& cfg, const std::string& path, Quant& q) {
  const JsonValue* bits = FindMember(cfg, "bits");
  if (bits == nullptr || !bits->IsUint64()) {
    return QuantError(ErrorCode::kTpPlanJson, path, "needs an integer \"bits\"");
  }
  q.bits = bits->GetUint64();
  if (q.bits != 2 && q.bits != 4 && q.bits != 8) {
    return QuantError(ErrorCode::kTpQuantUnsupported, path,
                      fmt::format("{} bits: the splitter covers 2, 4 and 8 bits "
                                  "(packed in int32)", q.bits));
  }
  const JsonValue* group = FindMember(cfg, "group_size");
  if (group == nullptr || !group->IsInt64() || group->GetInt64() == 0 ||
      group->GetInt64() < -1) {
    return QuantError(ErrorCode::kTpPlanJson, path,
                      "needs \"group_size\", a positive integer or -1");
  }
  q.group_size = group->GetInt64() < 0 ? 0 : static_cast<std::uint64_t>(group->GetInt64());
  const JsonValue* desc = FindMember(cfg, "desc_act");
  if (desc != nullptr && !desc->IsNull()) {
    if (!desc->IsBool()) {
      return QuantError(ErrorCode::kTpPlanJson, path, "\"desc_act\" must be true or false");
    }
    q.desc_act = desc->GetBool();
  }
  const JsonValue* layout = FindMember(cfg, "checkpoint_format");
  const JsonValue* marlin = FindMember(cfg, "is_marlin_format");
  bool gptq_layout = layout == nullptr || layout->IsNull() ||
                     (layout->IsString() && (JsonView(*layout) == "gptq" ||
                                             JsonView(*layout) == "gptq_v2"));
  if (q.format == QuantFormat::kGptq &&
      (!gptq_layout || (marlin != nullptr && marlin->IsBool() && marlin->GetBool()))) {
    return QuantError(ErrorCode::kTpQuantUnsupported, path,
                      "GPTQ \"checkpoint_format\" other than \"gptq\"/\"gptq_v2\" "
                      "(marlin and other repacked layouts) is not supported by the splitter");
  }
  const JsonValue* version = FindMember(cfg, "version");
  if (q.format == QuantFormat::kAwq && version != nullptr && !version->IsNull() &&
      !(version->IsString() && (JsonView(*version) == "gemm" ||
                                JsonView(*version) == "GEMM"))) {
    return QuantError(ErrorCode::kTpQuantUnsupported, path,
                      "AWQ \"version\" other than \"gemm\" (gemv, exllama, ipex "
                      "layouts) is not supported by the splitter");
  }
  return {};
}

QuantAxis Same(int logical) { return {logical, AxisKind::kSame, 1, 0}; }
QuantAxis Per(int logical, AxisKind kind, std::uint64_t per) {
  return {logical, per == 1 ? AxisKind::kSame : kind, per, 0};
}
QuantAxis Own(std::uint64_t size) { return {0, AxisKind::kOwn, 1, size}; }

// `X.<suffix>` -> X, or nullopt.
std::optional<std::string_view> Module(std::string_view name, std::string_view suffix) {
  if (!EndsWith(name, suffix) || name.size() == suffix.size()) return std::nullopt;
  std::string_view stem = name.substr(0, name.size() - suffix.size());
  if (stem.back() != '.') return std::nullopt;
  return stem.substr(0, stem.size() - 1);
}

QuantRole Role(std::string_view module, std::string_view weight_suffix,
               std::string_view match_name, std::string_view what,
               std::vector<QuantAxis> axes) {
  QuantRole r;
  r.weight = fmt::format("{}.{}", module, weight_suffix);
  r.match_name = std::string(match_name);
  r.what = what;
  r.axes = std::move(axes);
  return r;
}

std::optional<QuantRole> ClassifyFp8(const Quant& q, std::string_view name,
                                     const std::vector<std::uint64_t>& shape) {
  if (auto m = Module(name, "weight_scale_inv"); m && q.format == QuantFormat::kFp8Block) {
    return Role(*m, "weight", name, "FP8 block scale",
                {Per(-2, AxisKind::kBlock, q.block_rows), Per(-1, AxisKind::kBlock, q.block_cols)});
  }
  std::uint64_t elements = 1;
  for (std::uint64_t d : shape) elements *= d;
  std::optional<std::string_view> m = Module(name, "weight_scale");
  if (!m) m = Module(name, "weight_scale_inv");
  if (m) {
    QuantRole r = Role(*m, "weight", name, "FP8 weight scale", {});
    if (elements == 1) {
      r.whole = true;
    } else if (!shape.empty() && shape.back() == 1) {
      r.axes = {Same(-2), Own(1)};
    } else {
      r.axes = {Same(-2)};
    }
    return r;
  }
  if (auto input = Module(name, "input_scale")) {
    QuantRole r = Role(*input, "weight", name, "FP8 input scale", {});
    r.whole = true;
    return r;
  }
  return std::nullopt;
}

std::optional<QuantRole> ClassifyInt(const Quant& q, std::string_view name) {
  const bool gptq = q.format == QuantFormat::kGptq;
  const std::uint64_t p = q.pack();
  // Groups along `in`; kept whole (kOwn of any size) with desc_act or one group.
  const bool whole_groups = q.group_size == 0 || (gptq && q.desc_act);
  QuantAxis groups = whole_groups ? Own(0) : Per(-1, AxisKind::kGroup, q.group_size);
  if (auto m = Module(name, "qweight")) {
    QuantRole r = gptq ? Role(*m, "qweight", name, "GPTQ packed weight",
                              {Per(-1, AxisKind::kPacked, p), Same(-2)})
                       : Role(*m, "qweight", name, "AWQ packed weight",
                              {Same(-1), Per(-2, AxisKind::kPacked, p)});
    r.is_weight = true;
    return r;
  }
  if (auto m = Module(name, "qzeros")) {
    return Role(*m, "qweight", name, gptq ? "GPTQ zero points" : "AWQ zero points",
                {groups, Per(-2, AxisKind::kPacked, p)});
  }
  if (auto m = Module(name, "scales")) {
    return Role(*m, "qweight", name, gptq ? "GPTQ scales" : "AWQ scales",
                {groups, Same(-2)});
  }
  if (auto m = Module(name, "g_idx"); m && gptq) {
    return Role(*m, "qweight", name, "GPTQ g_idx", {Same(-1)});
  }
  return std::nullopt;
}

std::optional<QuantRole> ClassifyMxfp4(std::string_view name) {
  constexpr std::uint64_t kBlock = 32;
  for (std::string_view suffix : {std::string_view("_blocks"), std::string_view("_scales")}) {
    if (!EndsWith(name, suffix) || name.size() == suffix.size()) continue;
    std::string_view stem = name.substr(0, name.size() - suffix.size());
    if (stem.back() == '.') continue;
    QuantRole r;
    r.weight = fmt::format("{}_blocks", stem);
    r.match_name = std::string(stem);
    r.is_weight = suffix == "_blocks";
    r.what = r.is_weight ? "MXFP4 blocks" : "MXFP4 scales";
    r.axes = {Same(-2), Per(-1, AxisKind::kPacked, kBlock)};
    if (r.is_weight) r.axes.push_back(Own(16));
    return r;
  }
  return std::nullopt;
}

}  // namespace

std::string_view QuantFormatName(QuantFormat format) {
  switch (format) {
    case QuantFormat::kNone: return "none";
    case QuantFormat::kFp8Block: return "fp8 (weight_block_size)";
    case QuantFormat::kFp8: return "fp8";
    case QuantFormat::kGptq: return "gptq";
    case QuantFormat::kAwq: return "awq";
    case QuantFormat::kMxfp4: return "mxfp4";
  }
  return "?";
}

Result<Quant> ParseQuantConfig(const JsonValue& cfg, const std::string& path, bool strict) {
  if (!cfg.IsObject()) {
    return QuantError(ErrorCode::kTpPlanJson, path,
                      fmt::format("must be an object, got {}", JsonTypeName(cfg)));
  }
  if (Status s = CheckUniqueKeys(cfg, "quantization_config", ErrorCode::kTpPlanJson, path); !s) {
    return s.error();
  }
  if (strict) {
    for (const auto& m : cfg.GetObject()) {
      if (KnownKey(JsonView(m.name))) continue;
      return QuantError(ErrorCode::kTpPlanJson, path,
                        fmt::format("unknown key \"{}\" (expected quant_method, "
                                    "weight_block_size, bits, group_size, desc_act, "
                                    "version, checkpoint_format)", ClipName(JsonView(m.name))));
    }
  }
  Result<QuantFormat> format = ReadMethod(cfg, path);
  if (!format) return std::move(format).error();
  Quant q;
  q.format = *format;
  if (q.format == QuantFormat::kFp8Block) {
    if (Status s = ReadBlockSize(cfg, path, q); !s) return s.error();
  } else if (q.format == QuantFormat::kGptq || q.format == QuantFormat::kAwq) {
    if (Status s = ReadIntegerQuant(cfg, path, q); !s) return s.error();
  }
  return q;
}

std::optional<QuantRole> Classify(const Quant& q, std::string_view name,
                                  const std::vector<std::uint64_t>& shape) {
  switch (q.format) {
    case QuantFormat::kNone: return std::nullopt;
    case QuantFormat::kFp8Block:
    case QuantFormat::kFp8: return ClassifyFp8(q, name, shape);
    case QuantFormat::kGptq:
    case QuantFormat::kAwq: return ClassifyInt(q, name);
    case QuantFormat::kMxfp4: return ClassifyMxfp4(name);
  }
  return std::nullopt;
}

Result<std::vector<std::uint64_t>> LogicalShape(const Quant& q, const TensorInfo& weight,
                                                const std::string& path) {
  std::vector<std::uint64_t> s = weight.shape;
  auto fail = [&](std::string_view want) -> Error {
    return MakeError(ErrorCode::kTpShapeMismatch, path, weight.name,
                     fmt::format("{} weight of shape [{}] (dtype {}) is not {}",
                                 QuantFormatName(q.format), fmt::join(s, ", "),
                                 DTypeName(weight.dtype), want));
  };
  switch (q.format) {
    case QuantFormat::kNone:
    case QuantFormat::kFp8Block:
    case QuantFormat::kFp8:
      if (s.size() < 2) return fail("at least 2-D [..., N, K]");
      return s;
    case QuantFormat::kGptq:
    case QuantFormat::kAwq: {
      if (s.size() < 2 || weight.dtype != DType::kI32) return fail("I32 [..., rows, cols]");
      const bool gptq = q.format == QuantFormat::kGptq;
      std::uint64_t rows = s[s.size() - 2], cols = s.back();
      // Logical [..., N, K]: GPTQ qweight is [K/p, N], AWQ [K, N/p].
      std::optional<std::uint64_t> unpacked = CheckedMul(gptq ? rows : cols, q.pack());
      if (!unpacked) return fail("of a size whose unpacked count fits 64 bits");
      s[s.size() - 2] = gptq ? cols : *unpacked;
      s.back() = gptq ? *unpacked : rows;
      return s;
    }
    case QuantFormat::kMxfp4: {
      if (s.size() < 3 || s.back() != 16 || weight.dtype != DType::kU8) {
        return fail("U8 [..., rows, K/32, 16]");
      }
      s.pop_back();
      std::optional<std::uint64_t> k = CheckedMul(s.back(), 32);
      if (!k) return fail("of a size whose element count fits 64 bits");
      s.back() = *k;
      return s;
    }
  }
  return s;
}

}  // namespace shardload::tp
