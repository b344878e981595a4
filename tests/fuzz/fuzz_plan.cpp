// libFuzzer target for the tensor-parallel plan parsers: every input is read
// as our plan JSON (tp::ParsePlanJson) and as a Hugging Face config.json
// (tp::PlanFromHfConfig, both plan kinds). An accepted plan is then applied
// to a few fixed tensors on every rank of worlds 1 to 4: every segment of an
// accepted slice must stay inside the source tensor and the local slice.
// A crash, a sanitizer report or a broken invariant is a finding.
// Thread-compatible: libFuzzer calls it from one thread.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tp/splitter.h"
#include "tp/tp_plan.h"

namespace shardload::tp {
namespace {

const std::string kPath = "fuzz.plan.json";
constexpr unsigned kMaxWorld = 4;

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_plan invariant broken: %s\n", what);
  std::abort();
}

void CheckRefusal(const Error& error) {
  Require(error.code != ErrorCode::kInternal && error.code != ErrorCode::kOk, "a real code");
  Require(!error.detail.empty(), "the error says why");
}

TensorInfo Tensor(std::string name, DType dtype, std::vector<std::uint64_t> shape) {
  TensorInfo t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.size = t.NumElements() * DTypeBits(dtype) / 8;
  return t;
}

const std::vector<TensorInfo>& Tensors() {
  static const std::vector<TensorInfo> tensors = {
      Tensor("model.embed_tokens.weight", DType::kBF16, {10, 8}),
      Tensor("model.layers.0.self_attn.q_proj.weight", DType::kBF16, {16, 8}),
      Tensor("model.layers.0.self_attn.k_proj.weight", DType::kF32, {4, 8}),
      Tensor("model.layers.1.mlp.down_proj.weight", DType::kF4, {8, 12}),
      Tensor("model.layers.1.mlp.experts.3.up_proj.weight", DType::kU8, {6, 5, 3}),
      Tensor("model.layers.1.input_layernorm.weight", DType::kF16, {7}),
      Tensor("model.layers.2.mlp.gate.e_score_correction_bias", DType::kF32, {}),
      Tensor("lm_head.weight", DType::kF6E2M3, {12, 4}),
      // Quantized weights and companions (a plan's quantization_config).
      Tensor("model.layers.3.self_attn.o_proj.weight", DType::kF8E4M3, {12, 20}),
      Tensor("model.layers.3.self_attn.o_proj.weight_scale_inv", DType::kF32, {2, 3}),
      Tensor("model.layers.3.self_attn.o_proj.weight_scale", DType::kF32, {12, 1}),
      Tensor("model.layers.3.mlp.up_proj.qweight", DType::kI32, {2, 16}),
      Tensor("model.layers.3.mlp.up_proj.qzeros", DType::kI32, {1, 2}),
      Tensor("model.layers.3.mlp.up_proj.scales", DType::kF16, {1, 16}),
      Tensor("model.layers.3.mlp.up_proj.g_idx", DType::kI32, {16}),
      Tensor("model.layers.3.mlp.experts.down_proj_blocks", DType::kU8, {2, 4, 3, 16}),
      Tensor("model.layers.3.mlp.experts.down_proj_scales", DType::kU8, {2, 4, 3}),
  };
  return tensors;
}

const TensorInfo* FindTensorNamed(std::string_view name) {
  for (const TensorInfo& t : Tensors()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// Run i of a segment covers [offset + i*stride, +length).
bool Inside(std::uint64_t offset, std::uint64_t stride, const Run& s, std::uint64_t size) {
  if (s.count == 0 || s.length == 0) return false;
  unsigned __int128 last = static_cast<unsigned __int128>(s.count - 1) * stride;
  return offset + last + s.length <= size;
}

// Segments stay inside both tensors and, unless the slice has zero padding,
// cover the whole slice.
void CheckSlice(const LocalSlice& slice, const TensorInfo& tensor) {
  if (!slice.load) return;
  unsigned __int128 covered = 0;
  for (const Run& s : slice.runs) {
    Require(Inside(s.src_offset, s.src_stride, s, tensor.size), "segment inside the source");
    Require(Inside(s.dst_offset, s.dst_stride, s, slice.size), "segment inside the slice");
    covered += static_cast<unsigned __int128>(s.count) * s.length;
  }
  Require(covered <= slice.size, "segments copy at most the slice's bytes");
  Require(slice.zero_fill || covered == slice.size, "segments cover the slice");
}

void Apply(const Plan& plan) {
  for (const TensorInfo& tensor : Tensors()) {
    Result<RuleMatch> match = FindRule(plan, tensor.name);
    if (!match.has_value()) CheckRefusal(match.error());
    for (unsigned world = 1; world <= kMaxWorld; ++world) {
      for (unsigned rank = 0; rank < world; ++rank) {
        Result<LocalSlice> slice = SliceFor(plan, tensor, rank, world, FindTensorNamed);
        if (slice.has_value()) {
          CheckSlice(*slice, tensor);
        } else {
          CheckRefusal(slice.error());
        }
      }
    }
  }
}

void Check(const Result<Plan>& plan) {
  if (!plan.has_value()) {
    CheckRefusal(plan.error());
    Require(plan.error().path == kPath, "the error names the plan");
    return;
  }
  Apply(*plan);
}

}  // namespace
}  // namespace shardload::tp

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shardload::tp;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Check(ParsePlanJson(text, kPath));
  Check(PlanFromHfConfig(text, kPath, HfPlanKind::kTensorParallel));
  Check(PlanFromHfConfig(text, kPath, HfPlanKind::kExpertParallel));
  return 0;
}
