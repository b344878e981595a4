// The tensor-parallel splitter: (plan, tensor, rank, world) -> the local
// shape of the rank's slice and the strided byte runs (Run) to copy from the source
// tensor into it. Pure computation, no I/O.
// Thread-safe: pure functions over immutable inputs.
//
// MATCHING. A rule's pattern is tried against the tensor name and against
// the name without its last component (so a module pattern covers .weight
// and .bias); the plan's MatchOrder says which candidate goes first. A
// tensor no rule matches is replicated, or refused with kTpUnmatched.
//
// UNEVEN RULES. u units over W ranks (here u = 10, W = 4):
//
//   unit      0   1   2 | 3   4   5 | 6   7   8 | 9
//   chunk     [---r0----|----r1-----|----r2-----|r3]   c = ceil(u/W) = 3;
//                                                       tail short or empty
//   unit      0   1   2 | 3   4   5 | 6   7 | 8   9
//   balanced  [---r0----|----r1-----|--r2---|--r3--]   first u mod W ranks +1
//   exact     refused: W = 4 does not divide u = 10
//
// UNITS. With `unit` k, index i belongs to unit i / k; ranks get whole units
// (attention heads: unit = head_dim).
//
// BLOCKS. Each block is dealt on its own and the rank's pieces are
// concatenated in block order (fused gate_up, blocks 2, W = 2):
//
//   source dim     |  G0  |  G1  |  U0  |  U1  |
//   rank 0 local   |  G0  |  U0  |
//   rank 1 local   |  G1  |  U1  |
//
// REPLICATE_WHEN_FEWER. A block of u < W units gives rank r unit r / (W/u),
// refused unless u divides W (GQA kv heads, Hkv = 2, W = 4):
//
//   kv head        |    k0     |    k1     |
//   ranks          |  r0   r1  |  r2   r3  |
//
// VOCAB. n rows padded to P = roundup(n, pad_to) and dealt by the rule's
// Uneven (default exact: P/W rows each); local rows past n are zero
// (n = 10, pad_to = 4, W = 3):
//
//   row    0 1 2 3 | 4 5 6 7 | 8 9 - -
//          rank 0  | rank 1  | rank 2: rows 8, 9 read, 2 zero rows
//
// EXPERTS. Owners of the captured `{expert}` index load the whole tensor,
// the other ranks do not load it (LocalSlice::load == false).
//
// BYTES. A split of dim d of a row-major tensor viewed as [outer, n, inner]
// (outer = prod(shape[:d]), inner = prod(shape[d+1:]), b bits per element):
// piece [s, e) placed at local index L is ONE strided Run of `outer`
// runs:
//
//   source row  |<-- s*inner*b -->|### (e-s)*inner*b ###|.........|
//               |<------------------ n*inner*b ------------------>|  = src_stride
//   local row   |<-- L*inner*b -->|### (e-s)*inner*b ###|...|
//               |<------------- local_n*inner*b ------------->|      = dst_stride
//
// For d = 0 (outer = 1), or a single piece that is the whole dimension, the
// Run is one contiguous run (count 1). Adjacent pieces are merged. Gaps
// are never read: merging nearby runs into bigger reads is the read
// planner's choice, not the splitter's.
//
// COMPANIONS (quant.h). Under a plan's quantization format, a companion
// (FP8 block scales, GPTQ/AWQ qzeros/scales/g_idx, MXFP4 scales) is matched
// under its weight's name and follows the weight's split: the rule is applied
// to the weight's LOGICAL shape [..., out, in] (GPTQ qweight [K/8, N] is
// [N, K]), giving rank r logical pieces [s, e) of dimension d; each piece
// maps onto the companion's dimension holding d with `per` logical indices
// per element as [floor(s/per), ceil(e/per)) (FP8 block 128, W = 8, o_proj
// [7168, 16384] row, rank 3):
//
//   weight cols   | ... |6144 ............ 8191| ... |     [6144, 8192)
//   scale blocks  | ... | 48 | 49 | ... | 63   | ... |     [48, 64)
//
// A block that holds the end of one rank's piece and the start of the
// next's goes to both (LocalSlice::straddles). Packed elements (8 int4 in an
// I32, 32 FP4 values of an MXFP4 block) and GPTQ/AWQ groups along `in` must
// not be cut: else kTpMisaligned, for every rank alike. A companion whose
// weight is absent, or whose shape is not the one the weight implies, is
// kTpShapeMismatch; a vocab split of a quantized tensor kTpQuantUnsupported.
// Companions with no dimension holding d (per-channel scales under a row
// split, scalars, g_idx under a col split) are replicated.
//
// SUB-BYTE DTYPES (F4, F6). Every boundary (each rank's piece starts and
// ends, local and source row lengths) must fall on a whole byte, for every
// rank, else kTpMisaligned. Replication is always fine.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/error.h"
#include "tp/ranges.h"
#include "tp/tp_plan.h"

namespace shardload::tp {

// `count` runs of `length` bytes: run i copies source bytes
// [src_offset + i*src_stride, +length) to local bytes
// [dst_offset + i*dst_stride, +length). Strides are 0 when count == 1.
struct Run {
  std::uint64_t src_offset = 0;  // from the first byte of the source tensor
  std::uint64_t dst_offset = 0;  // from the first byte of the local tensor
  std::uint64_t length = 0;      // > 0
  std::uint64_t count = 1;       // >= 1
  std::uint64_t src_stride = 0;
  std::uint64_t dst_stride = 0;

  bool operator==(const Run&) const = default;
};

// What one rank gets of one tensor.
struct LocalSlice {
  bool load = true;                    // false: skipped, or expert not owned
  std::vector<std::uint64_t> shape;    // local shape (empty when !load)
  std::uint64_t size = 0;              // local bytes (0 when !load)
  // Cover every non-padding byte of the local tensor exactly once; sorted by
  // the dst_offset of their first run.
  std::vector<Run> runs;
  int split_dim = -1;                  // the dimension split; -1: whole or none
  bool zero_fill = false;              // bytes no run covers must be zero
  std::string rule;                    // e.g. `rules[3] "..." (col)`

  // Quantized tensors split on split_dim (see COMPANIONS).
  struct QuantPiece {
    Range weight;  // the weight's logical indices on its split dimension
    Range own;     // this tensor's indices on split_dim
  };
  std::string follows;                  // the weight followed; empty: not a companion
  std::vector<QuantPiece> quant_pieces; // one per piece, in local order
  std::uint64_t per = 0;                // logical indices per index of split_dim
  bool straddles = false;               // a block also goes to another rank
};

// Looks up another tensor of the checkpoint (the weight a companion
// follows); nullptr when absent.
using FindTensor = std::function<const TensorInfo*(std::string_view name)>;

struct RuleMatch {
  const Rule* rule = nullptr;              // nullptr: no rule matches
  std::optional<std::uint64_t> expert;     // the `{expert}` capture
};

// The first rule matching NAME (see MATCHING). Errors: kTpBadPattern when a
// regex gives up on the name.
Result<RuleMatch> FindRule(const Plan& plan, std::string_view name);

// What SliceFor decides about TENSOR before the rank matters: its quantized
// role (if any) and the rule it matches. Computed once per tensor, it slices
// every rank (the SliceFor overload below); planning W ranks then matches
// each name once instead of W times.
struct TensorMatch {
  std::optional<QuantRole> role;
  RuleMatch match;
};
Result<TensorMatch> MatchTensor(const Plan& plan, const TensorInfo& tensor);

// TENSOR loaded whole (one run of all its bytes), labelled RULE.
LocalSlice WholeSlice(const TensorInfo& tensor, std::string rule);

// Rank RANK of WORLD's slice of TENSOR. TENSOR's size must match its dtype
// and shape (kTensorInvalidInfo otherwise). Errors never depend on RANK:
// a plan refused for one rank is refused for all of them, so every rank
// fails alike. Errors name plan.path, the tensor and the rule:
// kInvalidArgument (world == 0 or rank >= world), kTpUnmatched,
// kTpShapeMismatch, kTpIndivisible, kTpMisaligned, kValidationOverflow.
// FIND gives the weights companions follow (without it, a companion's
// weight is absent).
Result<LocalSlice> SliceFor(const Plan& plan, const TensorInfo& tensor,
                            unsigned rank, unsigned world,
                            const FindTensor& find = nullptr);
// The same with TENSOR's MATCH (MatchTensor) already made.
Result<LocalSlice> SliceFor(const Plan& plan, const TensorInfo& tensor, const TensorMatch& match,
                            unsigned rank, unsigned world, const FindTensor& find = nullptr);

// Refuses the plan for this world size before any I/O: the first error
// SliceFor would return for any of TENSORS (in order) and any rank. FIND as
// for SliceFor; without it, the weights are looked up among TENSORS.
Status ValidatePlan(const Plan& plan, std::span<const TensorInfo> tensors,
                    unsigned world, const FindTensor& find = nullptr);

}  // namespace shardload::tp
