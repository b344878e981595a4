// The tensor-parallel splitter (see splitter.h for the rules and diagrams):
// rule lookup, per-style checks, and pieces of the split dimension turned
// into strided byte runs.
// Thread-safe: pure functions.
#include "tp/splitter.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tp/quant.h"
#include "tp/ranges.h"
#include "util/checked.h"

namespace shardload::tp {
namespace {

// Errors about one tensor under one rule (or none).
struct Context {
  const Plan& plan;
  const TensorInfo& tensor;
  const Rule* rule;

  Error Fail(ErrorCode code, std::string_view detail) const {
    std::string text = rule != nullptr ? fmt::format("{}: {}", rule->label, detail)
                                       : std::string(detail);
    return MakeError(code, plan.path, tensor.name, std::move(text));
  }
  std::string Shape() const { return fmt::format("[{}]", fmt::join(tensor.shape, ", ")); }
};

// A row-major tensor viewed as [outer, dim, inner] around its split dimension.
struct Geometry {
  std::uint64_t outer = 1;
  std::uint64_t dim = 1;
  std::uint64_t inner = 1;
  std::uint64_t row_bits = 8;  // inner * bits per element
};

// Source indices of the split dimension, concatenated in local order.
struct Selection {
  std::vector<Range> pieces;
  std::uint64_t local_dim = 0;  // >= sum of piece sizes; the rest is zero
};

// One block of the split dimension, as dealt to the ranks.
struct Block {
  std::uint64_t offset = 0;  // first index
  std::uint64_t units = 0;   // size / unit
  bool replicate_when_fewer = false;
};

LocalSlice NotLoaded(std::string rule) {
  LocalSlice s;
  s.load = false;
  s.rule = std::move(rule);
  return s;
}

// The tensor's size must be its dtype times its shape.
Status CheckTensor(const Context& ctx) {
  std::optional<std::uint64_t> bits = DTypeBits(ctx.tensor.dtype);
  for (std::uint64_t d : ctx.tensor.shape) {
    if (bits) bits = CheckedMul(*bits, d);
  }
  if (!bits) return ctx.Fail(ErrorCode::kValidationOverflow, "bit count overflows 64 bits");
  if (*bits % 8 != 0 || *bits / 8 != ctx.tensor.size) {
    return ctx.Fail(ErrorCode::kTensorInvalidInfo,
                    fmt::format("size {} does not match dtype {} and shape {}",
                                ctx.tensor.size, DTypeName(ctx.tensor.dtype),
                                ctx.Shape()));
  }
  return {};
}

// REQUIRES: CheckTensor passed (so no product below overflows).
Geometry MakeGeometry(const TensorInfo& tensor, std::size_t d) {
  Geometry g;
  for (std::size_t i = 0; i < d; ++i) g.outer *= tensor.shape[i];
  g.dim = tensor.shape[d];
  for (std::size_t i = d + 1; i < tensor.shape.size(); ++i) g.inner *= tensor.shape[i];
  g.row_bits = g.inner * DTypeBits(tensor.dtype);
  return g;
}

// The dimension a col/row rule splits; nullopt: the tensor is replicated.
Result<std::optional<std::size_t>> SplitDim(const Context& ctx) {
  const auto ndim = static_cast<std::int64_t>(ctx.tensor.shape.size());
  const Rule& rule = *ctx.rule;
  if (ndim == 0) return std::optional<std::size_t>();
  if (!rule.dim) {
    if (ndim == 1 && rule.style == Style::kRow) return std::optional<std::size_t>();
    std::int64_t d = ndim == 1 ? 0 : ndim - (rule.style == Style::kCol ? 2 : 1);
    return std::optional<std::size_t>(static_cast<std::size_t>(d));
  }
  std::int64_t d = *rule.dim < 0 ? *rule.dim + ndim : *rule.dim;
  if (d < 0 || d >= ndim) {
    return ctx.Fail(ErrorCode::kTpShapeMismatch,
                    fmt::format("dim {} is out of range for shape {}", *rule.dim,
                                ctx.Shape()));
  }
  return std::optional<std::size_t>(static_cast<std::size_t>(d));
}

// The block sizes of a dimension of N indices (dimension D, for messages).
Result<std::vector<std::uint64_t>> BlockSizes(const Context& ctx, std::size_t d,
                                              std::uint64_t n) {
  const Rule& rule = *ctx.rule;
  if (rule.block_sizes.empty()) {
    if (n % rule.block_count != 0) {
      return ctx.Fail(ErrorCode::kTpIndivisible,
                      fmt::format("dim {} of shape {} ({}) does not split into {} "
                                  "equal blocks", d, ctx.Shape(), n, rule.block_count));
    }
    return std::vector<std::uint64_t>(rule.block_count, n / rule.block_count);
  }
  std::optional<std::uint64_t> sum = 0;
  for (std::uint64_t size : rule.block_sizes) {
    if (sum) sum = CheckedAdd(*sum, size);
  }
  if (!sum || *sum != n) {
    return ctx.Fail(ErrorCode::kTpShapeMismatch,
                    fmt::format("blocks [{}] do not sum to dim {} of shape {} ({})",
                                fmt::join(rule.block_sizes, ", "), d, ctx.Shape(), n));
  }
  return rule.block_sizes;
}

// Checks one block against the unit, the world size and the Uneven rule.
Status CheckBlock(const Context& ctx, std::size_t j, std::uint64_t size,
                  const Block& b, unsigned world) {
  const Rule& rule = *ctx.rule;
  std::string what = fmt::format("block {} ({} of shape {})", j, size, ctx.Shape());
  if (size % rule.unit != 0) {
    return ctx.Fail(ErrorCode::kTpIndivisible,
                    fmt::format("{} is not a multiple of unit {}", what, rule.unit));
  }
  if (b.replicate_when_fewer && b.units < world) {
    if (b.units == 0 || world % b.units == 0) return {};
    return ctx.Fail(ErrorCode::kTpIndivisible,
                    fmt::format("replicate_when_fewer: {} has {} unit(s), fewer "
                                "than {} ranks, and {} is not a multiple of {}",
                                what, b.units, world, world, b.units));
  }
  if (rule.uneven == Uneven::kExact && b.units % world != 0) {
    return ctx.Fail(ErrorCode::kTpIndivisible,
                    fmt::format("uneven exact: {} has {} unit(s), not divisible by "
                                "{} ranks", what, b.units, world));
  }
  return {};
}

Result<std::vector<Block>> ResolveBlocks(const Context& ctx, std::size_t d,
                                         std::uint64_t n, unsigned world) {
  Result<std::vector<std::uint64_t>> sizes = BlockSizes(ctx, d, n);
  if (!sizes) return std::move(sizes).error();
  const std::vector<bool>& rwf = ctx.rule->replicate_when_fewer;
  std::vector<Block> blocks;
  std::uint64_t offset = 0;
  for (std::size_t j = 0; j < sizes->size(); ++j) {
    std::uint64_t size = (*sizes)[j];
    Block b{offset, size / ctx.rule->unit, rwf.size() == 1 ? rwf[0] : rwf[j]};
    if (Status s = CheckBlock(ctx, j, size, b, world); !s) return s.error();
    blocks.push_back(b);
    offset += size;
  }
  return blocks;
}

Selection SelectBlocks(const std::vector<Block>& blocks, const Rule& rule,
                       unsigned rank, unsigned world) {
  Selection sel;
  for (const Block& b : blocks) {
    Range units;
    if (b.replicate_when_fewer && b.units < world) {
      if (b.units == 0) continue;
      std::uint64_t k = ReplicatedUnit(b.units, rank, world);
      units = {k, k + 1};
    } else {
      units = UnitRange(rule.uneven, b.units, rank, world);
    }
    Range piece{b.offset + units.begin * rule.unit, b.offset + units.end * rule.unit};
    sel.pieces.push_back(piece);
    sel.local_dim += piece.size();
  }
  return sel;
}

// Merges pieces adjacent in the source (they are adjacent locally) and drops
// empty ones.
std::vector<Range> MergePieces(const std::vector<Range>& pieces) {
  std::vector<Range> out;
  for (const Range& p : pieces) {
    if (p.size() == 0) continue;
    if (!out.empty() && out.back().end == p.begin) {
      out.back().end = p.end;
    } else {
      out.push_back(p);
    }
  }
  return out;
}

// Whether every byte run of SEL starts and ends on a whole byte: the runs
// MakeRuns emits, in the source and in the local tensor.
bool OnWholeBytes(const Geometry& g, const Selection& sel) {
  if (g.row_bits % 8 == 0 || g.outer == 0) return true;
  // (i * row_bits) mod 8, without overflow.
  auto whole = [&](std::uint64_t i) { return (i % 8) * (g.row_bits % 8) % 8 == 0; };
  std::vector<Range> pieces = MergePieces(sel.pieces);
  if (pieces.size() == 1 && pieces[0].size() == g.dim && sel.local_dim == g.dim) {
    return true;  // one contiguous run: the whole tensor
  }
  if (!whole(sel.local_dim)) return false;
  if (!pieces.empty() && g.outer > 1 && !whole(g.dim)) return false;
  for (const Range& p : pieces) {
    if (!whole(p.begin) || !whole(p.end)) return false;
  }
  return true;  // local offsets are sums of whole piece lengths
}

// kTpMisaligned unless OnWholeBytes holds for every rank's selection, so
// that the refusal does not depend on the rank. SELECT(r) gives rank r's.
template <typename SelectFn>
Status CheckWholeBytes(const Context& ctx, std::size_t d, const Geometry& g,
                       unsigned world, const SelectFn& select) {
  if (g.row_bits % 8 == 0) return {};
  for (unsigned r = 0; r < world; ++r) {
    if (OnWholeBytes(g, select(r))) continue;
    return ctx.Fail(ErrorCode::kTpMisaligned,
                    fmt::format("{} has {}-bit elements and rank {}'s part of dim {} "
                                "of shape {} over {} ranks does not start and end on "
                                "whole bytes", DTypeName(ctx.tensor.dtype),
                                DTypeBits(ctx.tensor.dtype), r, d, ctx.Shape(), world));
  }
  return {};
}

// REQUIRES: CheckWholeBytes passed; local_dim * row_bits * outer checked.
std::vector<Run> MakeRuns(const Geometry& g, const Selection& sel) {
  std::vector<Run> out;
  if (g.outer == 0 || g.row_bits == 0) return out;  // no bytes at all
  auto bytes = [&](std::uint64_t i) { return i * g.row_bits / 8; };
  std::vector<Range> pieces = MergePieces(sel.pieces);
  std::uint64_t local = 0;
  for (const Range& p : pieces) {
    Run s{bytes(p.begin), bytes(local), bytes(p.size()), 1, 0, 0};
    bool whole_dim = p.size() == g.dim && sel.local_dim == g.dim;
    if (whole_dim) {
      s.length = g.outer * p.size() * g.row_bits / 8;  // the whole tensor
    } else if (g.outer > 1) {
      s.count = g.outer;
      s.src_stride = bytes(g.dim);
      s.dst_stride = bytes(sel.local_dim);
    }
    out.push_back(s);
    local += p.size();
  }
  return out;
}

Result<LocalSlice> BuildSlice(const Context& ctx, std::size_t d, const Geometry& g,
                              const Selection& sel) {
  std::optional<std::uint64_t> bits = CheckedMul(g.outer, sel.local_dim);
  if (bits) bits = CheckedMul(*bits, g.row_bits);
  if (!bits) return ctx.Fail(ErrorCode::kValidationOverflow, "local size overflows 64 bits");
  LocalSlice s;
  s.shape = ctx.tensor.shape;
  s.shape[d] = sel.local_dim;
  s.size = *bits / 8;
  s.runs = MakeRuns(g, sel);
  s.split_dim = static_cast<int>(d);
  std::uint64_t covered = 0;
  for (const Range& p : sel.pieces) covered += p.size();
  s.zero_fill = covered < sel.local_dim && g.outer > 0 && g.inner > 0;
  s.rule = ctx.rule->label;
  return s;
}

Result<LocalSlice> SliceColRow(const Context& ctx, unsigned rank, unsigned world) {
  Result<std::optional<std::size_t>> dim = SplitDim(ctx);
  if (!dim) return std::move(dim).error();
  if (!*dim) return WholeSlice(ctx.tensor, ctx.rule->label);
  std::size_t d = **dim;
  Geometry g = MakeGeometry(ctx.tensor, d);
  Result<std::vector<Block>> blocks = ResolveBlocks(ctx, d, g.dim, world);
  if (!blocks) return std::move(blocks).error();
  auto select = [&](unsigned r) { return SelectBlocks(*blocks, *ctx.rule, r, world); };
  if (Status s = CheckWholeBytes(ctx, d, g, world, select); !s) return s.error();
  return BuildSlice(ctx, d, g, select(rank));
}

Result<LocalSlice> SliceVocab(const Context& ctx, unsigned rank, unsigned world) {
  if (ctx.tensor.shape.empty()) return WholeSlice(ctx.tensor, ctx.rule->label);
  const Rule& rule = *ctx.rule;
  Geometry g = MakeGeometry(ctx.tensor, 0);
  const std::uint64_t n = g.dim;
  // A pad_to so large that a rank's padded rows have no 64-bit size is the
  // plan's mistake (kTpBadRule, whatever the rank), not the header's.
  std::optional<std::uint64_t> padded = CheckedAdd(n, rule.pad_to - 1);
  const std::uint64_t p = padded ? *padded / rule.pad_to * rule.pad_to : 0;
  std::optional<std::uint64_t> local_bits = CheckedMul(g.outer, p / world + (p % world != 0));
  if (local_bits) local_bits = CheckedMul(*local_bits, g.row_bits);
  if (!padded || !local_bits) {
    return ctx.Fail(ErrorCode::kTpBadRule,
                    fmt::format("vocab: pad_to {} pads {} rows past what a 64-bit size holds",
                                rule.pad_to, n));
  }
  if (rule.uneven == Uneven::kExact && p % world != 0) {
    return ctx.Fail(ErrorCode::kTpIndivisible,
                    fmt::format("vocab: {} rows padded to a multiple of {} give {}, "
                                "not divisible by {} ranks", n, rule.pad_to, p, world));
  }
  auto select = [&](unsigned r) {
    Range rows = UnitRange(rule.uneven, p, r, world);
    Selection sel;
    sel.pieces.push_back({std::min(rows.begin, n), std::min(rows.end, n)});
    sel.local_dim = rows.size();
    return sel;
  };
  if (Status s = CheckWholeBytes(ctx, 0, g, world, select); !s) return s.error();
  return BuildSlice(ctx, 0, g, select(rank));
}

Result<LocalSlice> SliceExperts(const Context& ctx, std::optional<std::uint64_t> expert,
                                unsigned rank, unsigned world) {
  const Rule& rule = *ctx.rule;
  if (!expert) {  // Parsing guarantees a `{expert}` capture; keep the check.
    return ctx.Fail(ErrorCode::kTpShapeMismatch, "no `{expert}` index in the name");
  }
  if (*expert >= rule.num_experts) {
    return ctx.Fail(ErrorCode::kTpShapeMismatch,
                    fmt::format("expert {} is out of range for num_experts {}",
                                *expert, rule.num_experts));
  }
  if (rule.uneven == Uneven::kExact && rule.num_experts % world != 0) {
    return ctx.Fail(ErrorCode::kTpIndivisible,
                    fmt::format("uneven exact: {} experts are not divisible by {} "
                                "ranks", rule.num_experts, world));
  }
  if (OwnsExpert(rule.placement, rule.uneven, *expert, rule.num_experts, rank, world)) {
    return WholeSlice(ctx.tensor, rule.label);
  }
  return NotLoaded(rule.label);
}

// ---- Quantized tensors (splitter.h, COMPANIONS) ----

std::string JoinShape(const std::vector<std::uint64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::uint64_t CeilDiv(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0); }

// The weight's logical view: a TensorInfo named like the tensor being
// sliced, with the weight's logical shape, and the rule's split of it.
struct LogicalSplit {
  TensorInfo logical;
  std::optional<std::size_t> dim;   // nullopt: the rule leaves it whole
  std::vector<Block> blocks;
};

// The logical shape of the weight ROLE follows.
Result<std::vector<std::uint64_t>> WeightShape(const Context& ctx, const QuantRole& role,
                                               const FindTensor& find) {
  const TensorInfo* weight = role.is_weight ? &ctx.tensor
                             : find        ? find(role.weight)
                                           : nullptr;
  if (weight == nullptr) {
    return ctx.Fail(ErrorCode::kTpShapeMismatch,
                    fmt::format("{} {} follows the weight {}, which is not in the "
                                "checkpoint", role.what, ctx.Shape(), role.weight));
  }
  return LogicalShape(ctx.plan.quant, *weight, ctx.plan.path);
}

// The shape ROLE implies for a tensor following a weight of logical shape L
// (0: any size).
std::vector<std::uint64_t> ExpectedShape(const QuantRole& role,
                                         const std::vector<std::uint64_t>& l) {
  std::vector<std::uint64_t> out(l.begin(), l.end() - 2);
  for (const QuantAxis& a : role.axes) {
    if (a.kind == AxisKind::kOwn) {
      out.push_back(a.size);
      continue;
    }
    out.push_back(CeilDiv(l[l.size() + a.logical], a.per));
  }
  return out;
}

Status CheckRoleShape(const Context& ctx, const QuantRole& role,
                      const std::vector<std::uint64_t>& l) {
  std::vector<std::uint64_t> want = ExpectedShape(role, l);
  bool ok = want.size() == ctx.tensor.shape.size();
  for (std::size_t i = 0; ok && i < want.size(); ++i) {
    ok = want[i] == 0 || want[i] == ctx.tensor.shape[i];
  }
  if (ok) return {};
  std::string want_text = JoinShape(want);
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0) want_text = fmt::format("{} (dim {} any)", want_text, i);
  }
  return ctx.Fail(ErrorCode::kTpShapeMismatch,
                  fmt::format("{} of shape {} does not fit the weight {} (logical "
                              "shape {} under {}): expected {}", role.what, ctx.Shape(),
                              role.weight, JoinShape(l),
                              QuantFormatName(ctx.plan.quant.format), want_text));
}

// The tensor's dimension holding logical dimension D of a rank-M weight, and
// how; nullopt: the tensor has none (it is replicated).
std::optional<std::pair<std::size_t, QuantAxis>> MapDim(const QuantRole& role,
                                                        std::size_t ndim, std::size_t d,
                                                        std::size_t m) {
  const std::size_t lead = m - 2;
  if (d < lead) return std::make_pair(d, QuantAxis{});
  const int code = static_cast<int>(d) - static_cast<int>(m);
  for (std::size_t i = 0; i < role.axes.size(); ++i) {
    const QuantAxis& a = role.axes[i];
    if (a.kind != AxisKind::kOwn && a.logical == code) {
      return std::make_pair(ndim - role.axes.size() + i, a);
    }
  }
  return std::nullopt;
}

struct Mapped {
  std::vector<LocalSlice::QuantPiece> pieces;
  bool straddles = false;
};

std::string_view AxisName(int logical) { return logical == -1 ? "in" : "out"; }

// Rank R's logical pieces mapped onto the tensor's dimension PD (axis A;
// N logical indices); kTpMisaligned when a piece cuts a packed element or
// a group.
Result<Mapped> MapPieces(const Context& ctx, const QuantRole& role, const LogicalSplit& ls,
                         std::size_t pd, const QuantAxis& a, unsigned r, unsigned world) {
  const std::uint64_t n = ls.logical.shape[*ls.dim];
  Mapped out;
  for (const Range& p : SelectBlocks(ls.blocks, *ctx.rule, r, world).pieces) {
    const bool cut_start = p.begin % a.per != 0;
    const bool cut_end = p.end % a.per != 0 && p.end != n;
    if (p.size() > 0 && (cut_start || cut_end) &&
        (a.kind == AxisKind::kPacked || a.kind == AxisKind::kGroup)) {
      const bool packed = a.kind == AxisKind::kPacked;
      return ctx.Fail(
          ErrorCode::kTpMisaligned,
          fmt::format("{} {}: rank {} of {} gets {} indices [{}, {}) of dim {} of the "
                      "weight {} (logical shape {}), but {} {} ({} per index of dim {}) "
                      "cannot be {}: {} is not a multiple of {}",
                      role.what, ctx.Shape(), r, world, AxisName(a.logical), p.begin,
                      p.end, *ls.dim, role.weight, JoinShape(ls.logical.shape),
                      packed ? "packed elements" : "groups", packed ? "" : "of input rows",
                      a.per, pd, packed ? "cut" : "shared between ranks (a row split "
                                                  "must fall on group bounds)",
                      cut_start ? p.begin : p.end, a.per));
    }
    Range own{p.begin / a.per, p.size() == 0 ? p.begin / a.per : CeilDiv(p.end, a.per)};
    out.straddles = out.straddles || (p.size() > 0 && (cut_start || cut_end));
    out.pieces.push_back({p, own});
  }
  return out;
}

// The rule's split of the weight's logical shape.
Result<LogicalSplit> SplitLogical(const Context& ctx, std::vector<std::uint64_t> shape,
                                  unsigned world) {
  LogicalSplit ls;
  ls.logical.name = ctx.tensor.name;
  ls.logical.dtype = ctx.tensor.dtype;
  ls.logical.shape = std::move(shape);
  Context lctx{ctx.plan, ls.logical, ctx.rule};
  Result<std::optional<std::size_t>> dim = SplitDim(lctx);
  if (!dim) return std::move(dim).error();
  ls.dim = *dim;
  if (!ls.dim) return ls;
  Result<std::vector<Block>> blocks =
      ResolveBlocks(lctx, *ls.dim, ls.logical.shape[*ls.dim], world);
  if (!blocks) return std::move(blocks).error();
  ls.blocks = std::move(*blocks);
  return ls;
}

// Says that the shape in an error found on the weight's logical view is
// the weight's.
Error OnWeight(Error e, const QuantRole& role) {
  e.detail += fmt::format(" (the shape is the logical shape of the weight {}, "
                          "whose split {} follows)", role.weight, role.what);
  return e;
}

Result<LocalSlice> SliceQuantColRow(const Context& ctx, const QuantRole& role,
                                    unsigned rank, unsigned world, const FindTensor& find) {
  auto whole = [&] {
    LocalSlice out = WholeSlice(ctx.tensor, ctx.rule->label);
    if (!role.is_weight) out.follows = role.weight;
    return out;
  };
  if (role.whole) return whole();
  Result<std::vector<std::uint64_t>> l = WeightShape(ctx, role, find);
  if (!l) return std::move(l).error();
  if (Status s = CheckRoleShape(ctx, role, *l); !s) return s.error();
  Result<LogicalSplit> ls = SplitLogical(ctx, *l, world);
  if (!ls) return OnWeight(std::move(ls).error(), role);
  if (!ls->dim) return whole();
  auto mapped_dim = MapDim(role, ctx.tensor.shape.size(), *ls->dim, l->size());
  if (!mapped_dim) return whole();
  // Plain names, not a structured binding: clang 14 (the fuzz build) cannot
  // capture bindings in the lambda below.
  const std::size_t pd = mapped_dim->first;
  const QuantAxis axis = mapped_dim->second;
  std::optional<Mapped> mine;
  for (unsigned r = 0; r < world; ++r) {  // refusals do not depend on the rank
    Result<Mapped> m = MapPieces(ctx, role, *ls, pd, axis, r, world);
    if (!m) return std::move(m).error();
    if (r == rank) mine = std::move(*m);
  }
  Geometry g = MakeGeometry(ctx.tensor, pd);
  auto select = [&](unsigned r) {
    Result<Mapped> m = r == rank ? Result<Mapped>(*mine)
                                 : MapPieces(ctx, role, *ls, pd, axis, r, world);
    Selection sel;
    for (const auto& piece : m->pieces) {
      sel.pieces.push_back(piece.own);
      sel.local_dim += piece.own.size();
    }
    return sel;
  };
  if (Status s = CheckWholeBytes(ctx, pd, g, world, select); !s) return s.error();
  Result<LocalSlice> out = BuildSlice(ctx, pd, g, select(rank));
  if (!out) return out;
  out->follows = role.is_weight ? std::string() : role.weight;
  out->quant_pieces = std::move(mine->pieces);
  out->per = axis.per;
  out->straddles = mine->straddles;
  return out;
}

Result<LocalSlice> SliceMatched(const Context& ctx, const RuleMatch& m,
                                unsigned rank, unsigned world) {
  switch (ctx.rule->style) {
    case Style::kReplicate: return WholeSlice(ctx.tensor, ctx.rule->label);
    case Style::kSkip: return NotLoaded(ctx.rule->label);
    case Style::kCol:
    case Style::kRow: return SliceColRow(ctx, rank, world);
    case Style::kVocab: return SliceVocab(ctx, rank, world);
    case Style::kExperts: return SliceExperts(ctx, m.expert, rank, world);
  }
  return ctx.Fail(ErrorCode::kInternal, "unknown style");
}

Result<LocalSlice> SliceQuantized(const Context& ctx, const RuleMatch& m,
                                  const QuantRole& role, unsigned rank, unsigned world,
                                  const FindTensor& find) {
  switch (ctx.rule->style) {
    case Style::kCol:
    case Style::kRow: return SliceQuantColRow(ctx, role, rank, world, find);
    case Style::kVocab:
      return ctx.Fail(ErrorCode::kTpQuantUnsupported,
                      fmt::format("a vocab split of {} {} ({}) is not supported",
                                  role.what, ctx.Shape(),
                                  QuantFormatName(ctx.plan.quant.format)));
    default: {
      Result<LocalSlice> out = SliceMatched(ctx, m, rank, world);
      if (out && !role.is_weight) out->follows = role.weight;
      return out;
    }
  }
}

// Whether RULE matches CANDIDATE; errors name the tensor NAME.
Result<bool> TryRule(const Plan& plan, const Rule& rule, std::string_view candidate,
                     std::string_view name, RuleMatch* out) {
  std::optional<std::uint64_t> expert;
  Result<bool> hit = rule.pattern.Match(candidate, &expert);
  if (!hit) {
    return MakeError(ErrorCode::kTpBadPattern, plan.path, std::string(name),
                     fmt::format("{}: {}", rule.label, hit.error().detail));
  }
  if (*hit) *out = RuleMatch{&rule, expert};
  return *hit;
}

}  // namespace

LocalSlice WholeSlice(const TensorInfo& tensor, std::string rule) {
  LocalSlice s;
  s.shape = tensor.shape;
  s.size = tensor.size;
  if (tensor.size > 0) s.runs.push_back({0, 0, tensor.size, 1, 0, 0});
  s.rule = std::move(rule);
  return s;
}

Result<RuleMatch> FindRule(const Plan& plan, std::string_view name) {
  std::vector<std::string_view> candidates = {name};
  if (std::size_t dot = name.rfind('.'); dot != std::string_view::npos) {
    candidates.push_back(name.substr(0, dot));
  }
  RuleMatch out;
  const bool name_first = plan.order == MatchOrder::kNameFirst;
  const std::size_t outer_n = name_first ? candidates.size() : plan.rules.size();
  const std::size_t inner_n = name_first ? plan.rules.size() : candidates.size();
  for (std::size_t i = 0; i < outer_n; ++i) {
    for (std::size_t j = 0; j < inner_n; ++j) {
      const Rule& rule = plan.rules[name_first ? j : i];
      std::string_view candidate = candidates[name_first ? i : j];
      Result<bool> hit = TryRule(plan, rule, candidate, name, &out);
      if (!hit) return std::move(hit).error();
      if (*hit) return out;
    }
  }
  return out;
}

namespace {

Status CheckRank(const Plan& plan, const TensorInfo& tensor, unsigned rank, unsigned world) {
  if (world == 0 || rank >= world) {
    return MakeError(ErrorCode::kInvalidArgument, plan.path, tensor.name,
                     fmt::format("rank {} of world size {} is not a valid rank",
                                 rank, world));
  }
  return {};
}

}  // namespace

Result<TensorMatch> MatchTensor(const Plan& plan, const TensorInfo& tensor) {
  TensorMatch out;
  out.role = Classify(plan.quant, tensor.name, tensor.shape);
  Result<RuleMatch> m = FindRule(plan, out.role ? out.role->match_name : tensor.name);
  if (!m) return std::move(m).error();
  out.match = *m;
  return out;
}

Result<LocalSlice> SliceFor(const Plan& plan, const TensorInfo& tensor, const TensorMatch& match,
                            unsigned rank, unsigned world, const FindTensor& find) {
  if (Status s = CheckRank(plan, tensor, rank, world); !s) return s.error();
  const RuleMatch& m = match.match;
  Context ctx{plan, tensor, m.rule};
  if (Status s = CheckTensor(ctx); !s) return s.error();
  if (m.rule != nullptr && match.role) {
    return SliceQuantized(ctx, m, *match.role, rank, world, find);
  }
  if (m.rule != nullptr) return SliceMatched(ctx, m, rank, world);
  if (plan.unmatched == Unmatched::kError) {
    return ctx.Fail(ErrorCode::kTpUnmatched,
                    "matches no rule and the plan says \"unmatched\": \"error\"");
  }
  return WholeSlice(tensor, "unmatched (replicate)");
}

Result<LocalSlice> SliceFor(const Plan& plan, const TensorInfo& tensor,
                            unsigned rank, unsigned world, const FindTensor& find) {
  if (Status s = CheckRank(plan, tensor, rank, world); !s) return s.error();
  Result<TensorMatch> match = MatchTensor(plan, tensor);
  if (!match) return std::move(match).error();
  return SliceFor(plan, tensor, *match, rank, world, find);
}

Status ValidatePlan(const Plan& plan, std::span<const TensorInfo> tensors,
                    unsigned world, const FindTensor& find) {
  std::unordered_map<std::string_view, const TensorInfo*> by_name;
  if (!find && plan.quant.format != QuantFormat::kNone) {
    for (const TensorInfo& t : tensors) by_name.emplace(t.name, &t);
  }
  FindTensor among = [&](std::string_view name) -> const TensorInfo* {
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  };
  for (const TensorInfo& tensor : tensors) {
    Result<LocalSlice> slice = SliceFor(plan, tensor, 0, world, find ? find : among);
    if (!slice) return std::move(slice).error();
  }
  return {};
}

}  // namespace shardload::tp
