// Property tests of the splitter over random small tensors (1-4 dims, F4,
// F6 and 1..8-byte dtypes), world sizes 1..8 and every style and uneven
// rule. The independent slicer of slice_oracle.h says what each rank must
// hold; each rank's segments are applied with memcpy and compared with it.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "support/test_util.h"
#include "tp/slice_oracle.h"
#include "tp/tp_test_util.h"

namespace shardload::tp {
namespace {

using test::Bytes;
using test::Case;
using test::Element;
using test::Expected;
using test::NumElements;
using test::Ravel;
using test::Shape;
using test::Unravel;

// ---- Random cases ----------------------------------------------------------

struct Rng {
  std::mt19937_64 gen;
  std::uint64_t Below(std::uint64_t n) {
    return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(gen);
  }
  bool Chance(unsigned percent) { return Below(100) < percent; }
};

DType RandomDType(Rng& rng) {
  const DType kTypes[] = {DType::kU8, DType::kBF16, DType::kF32, DType::kF64,
                          DType::kI16, DType::kF4, DType::kF6E3M2};
  return kTypes[rng.Below(7)];
}

void RandomBlocks(Rng& rng, Case& c, std::uint64_t& dim_size) {
  c.unit = rng.Chance(50) ? 1 : 1 + rng.Below(3);
  std::uint64_t kind = rng.Below(4);
  if (kind == 1) c.block_k = 2 + rng.Below(2);
  if (kind == 2) {
    for (std::uint64_t j = 0, n = 2 + rng.Below(2); j < n; ++j) {
      c.block_sizes.push_back(c.unit * (1 + rng.Below(3)));
    }
  }
  std::uint64_t blocks = c.block_sizes.empty() ? c.block_k : c.block_sizes.size();
  if (rng.Chance(30)) c.rwf = {rng.Chance(50)};
  if (rng.Chance(20)) {
    c.rwf.clear();
    for (std::uint64_t j = 0; j < blocks; ++j) c.rwf.push_back(rng.Chance(50));
  }
  if (rng.Chance(80)) {  // usually make the dimension fit
    dim_size = 0;
    for (std::uint64_t s : c.block_sizes) dim_size += s;
    if (c.block_sizes.empty()) dim_size = c.block_k * c.unit * rng.Below(4);
  }
}

// Sub-byte tensors must hold whole bytes; fall back to U8 otherwise.
void FixDType(Case& c) {
  if (NumElements(c.tensor.shape) * DTypeBits(c.tensor.dtype) % 8 != 0) c.tensor.dtype = DType::kU8;
}

Case RandomSplitCase(Rng& rng) {
  Case c;
  const Style kStyles[] = {Style::kCol, Style::kRow, Style::kVocab, Style::kReplicate};
  c.style = kStyles[rng.Below(4)];
  const Uneven kUnevens[] = {Uneven::kChunk, Uneven::kBalanced, Uneven::kExact};
  c.uneven = kUnevens[rng.Below(3)];
  Shape shape(rng.Chance(5) ? 0 : 1 + rng.Below(4));
  for (auto& d : shape) d = rng.Chance(5) ? 0 : 1 + rng.Below(6);
  if (c.style == Style::kCol || c.style == Style::kRow) {
    if (rng.Chance(30)) c.dim = static_cast<std::int64_t>(rng.Below(2 * shape.size() + 2)) -
                                static_cast<std::int64_t>(shape.size()) - 1;
    c.tensor.shape = shape;
    std::optional<std::size_t> d = test::OracleDim(c);
    std::uint64_t ignored = 0;
    bool in_range = d && *d < shape.size();
    RandomBlocks(rng, c, in_range ? shape[*d] : ignored);
  }
  if (c.style == Style::kVocab) c.pad_to = 1 + rng.Below(8);
  c.tensor = test::MakeTensor("t.weight", DType::kU8, shape);
  c.tensor.dtype = RandomDType(rng);
  FixDType(c);
  c.tensor.size = NumElements(shape) * DTypeBits(c.tensor.dtype) / 8;
  return c;
}

std::string RuleJson(const Case& c) {
  std::string rule = fmt::format(R"({{"match": "t", "split": "{}", "uneven": "{}")",
                                 StyleName(c.style), UnevenName(c.uneven));
  if (c.style == Style::kReplicate) {
    rule = R"({"match": "t", "split": "replicate")";
  } else if (c.style == Style::kVocab) {
    rule += fmt::format(R"(, "pad_to": {})", c.pad_to);
  } else {
    if (c.dim) rule += fmt::format(R"(, "dim": {})", *c.dim);
    rule += fmt::format(R"(, "unit": {})", c.unit);
    if (!c.block_sizes.empty()) {
      rule += fmt::format(R"(, "blocks": [{}])", fmt::join(c.block_sizes, ", "));
    } else if (c.block_k != 1) {
      rule += fmt::format(R"(, "blocks": {})", c.block_k);
    }
    std::vector<std::string_view> flags;
    for (bool f : c.rwf) flags.push_back(f ? "true" : "false");
    rule += c.rwf.size() == 1
                ? fmt::format(R"(, "replicate_when_fewer": {})", flags[0])
                : fmt::format(R"(, "replicate_when_fewer": [{}])", fmt::join(flags, ", "));
  }
  return R"({"tp_plan_version": 1, "rules": [)" + rule + "}]}";
}

// ---- Checks ---------------------------------------------------------------

Bytes RandomBytes(Rng& rng, std::uint64_t n) {
  Bytes out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(rng.Below(256));
  return out;
}

// Rank R's local tensor holds exactly the oracle's elements; padding is zero.
void CheckLocal(const Case& c, const Expected& e, unsigned r, const LocalSlice& s,
                const Bytes& src, const Bytes& local, const std::vector<int>& cover) {
  const unsigned bits = DTypeBits(c.tensor.dtype);
  Shape shape = c.tensor.shape;
  const auto d = static_cast<std::size_t>(e.d);
  shape[d] = e.map[r].size();
  REQUIRE(s.shape == shape);
  REQUIRE(s.split_dim == e.d);
  bool padded = false;
  for (std::uint64_t i = 0; i < NumElements(shape); ++i) {
    std::vector<std::uint64_t> idx = Unravel(i, shape);
    std::int64_t from = e.map[r][idx[d]];
    padded = padded || from < 0;
    if (from < 0) {
      REQUIRE(Element(local, i, bits) == 0);
      continue;
    }
    idx[d] = static_cast<std::uint64_t>(from);
    REQUIRE(Element(local, i, bits) == Element(src, Ravel(idx, c.tensor.shape), bits));
  }
  for (int n : cover) REQUIRE(n <= 1);
  if (!padded) {
    for (int n : cover) REQUIRE(n == 1);
  }
  CHECK(s.zero_fill == (padded && s.size > 0));
}

// Concatenating, block by block, every rank's piece along d gives back SRC.
void CheckConcatenation(const Case& c, const Expected& e, const std::vector<Bytes>& locals,
                        const Bytes& src) {
  const unsigned bits = DTypeBits(c.tensor.dtype);
  const auto d = static_cast<std::size_t>(e.d);
  const std::size_t blocks = e.block_len[0].size();
  for (std::uint64_t i = 0; i < NumElements(c.tensor.shape); ++i) {
    std::vector<std::uint64_t> idx = Unravel(i, c.tensor.shape);
    // Walk blocks and ranks in concatenation order to find who holds idx[d].
    std::uint64_t pos = 0;
    bool found = false;
    for (std::size_t j = 0; j < blocks && !found; ++j) {
      for (std::size_t r = 0; r < locals.size() && !found; ++r) {
        std::uint64_t len = e.block_len[r][j];
        if (idx[d] < pos + len) {
          std::uint64_t local_at = idx[d] - pos;
          for (std::size_t k = 0; k < j; ++k) local_at += e.block_len[r][k];
          Shape shape = c.tensor.shape;
          shape[d] = e.map[r].size();
          std::vector<std::uint64_t> lidx = idx;
          lidx[d] = local_at;
          REQUIRE(Element(locals[r], Ravel(lidx, shape), bits) == Element(src, i, bits));
          found = true;
        }
        pos += len;
      }
    }
    REQUIRE(found);
  }
}

// How many cases exercised what, so a reader can see the coverage.
struct Stats {
  int refused = 0, misaligned = 0, checked = 0, sub_byte = 0, padded = 0, rwf = 0,
      concatenated = 0, replicated = 0;
};

void CheckSplitCase(const Case& c, unsigned w, Rng& rng, Stats& stats) {
  Plan plan = test::MustParse(RuleJson(c));
  Expected e = test::Oracle(c, w);
  Bytes src = RandomBytes(rng, c.tensor.size);
  std::vector<Bytes> locals;
  for (unsigned r = 0; r < w; ++r) {
    Result<LocalSlice> s = SliceFor(plan, c.tensor, r, w);
    if (e.refused) {
      REQUIRE_FALSE(s.has_value());
      REQUIRE(s.error().code == *e.refused);
      continue;
    }
    if (!s) FAIL(s.error().ToString());
    std::vector<int> cover;
    Bytes local = test::Apply(*s, src, &cover);
    if (e.d < 0) {  // replicated
      REQUIRE(s->shape == c.tensor.shape);
      REQUIRE(local == src);
    } else {
      CheckLocal(c, e, r, *s, src, local, cover);
    }
    locals.push_back(std::move(local));
  }
  bool splits = c.style == Style::kCol || c.style == Style::kRow;
  if (!e.refused && e.d >= 0 && splits && !e.rwf_used) {
    CheckConcatenation(c, e, locals, src);
    ++stats.concatenated;
  }
  if (e.refused) {
    ++stats.refused;
    stats.misaligned += *e.refused == ErrorCode::kTpMisaligned;
    return;
  }
  ++stats.checked;
  stats.sub_byte += DTypeBits(c.tensor.dtype) % 8 != 0;
  stats.rwf += e.rwf_used;
  stats.replicated += e.d < 0;
  for (const auto& map : e.map) {
    bool pad = std::find(map.begin(), map.end(), -1) != map.end();
    stats.padded += pad && NumElements(c.tensor.shape) > 0;
    if (pad) break;
  }
}

TEST_CASE("property: col, row, vocab and replicate match an index-arithmetic slicer") {
  Rng rng{std::mt19937_64(shardload::test::Seed() ^ 0x7470u)};
  Stats stats;
  for (int iteration = 0; iteration < 1500; ++iteration) {
    Case c = RandomSplitCase(rng);
    unsigned w = 1 + static_cast<unsigned>(rng.Below(8));
    CAPTURE(iteration);
    CAPTURE(RuleJson(c));
    CAPTURE(fmt::format("{} [{}] W={}", DTypeName(c.tensor.dtype),
                        fmt::join(c.tensor.shape, ", "), w));
    CheckSplitCase(c, w, rng, stats);
  }
  MESSAGE("checked " << stats.checked << " (sub-byte " << stats.sub_byte << ", padded "
          << stats.padded << ", replicate_when_fewer " << stats.rwf << ", concatenated "
          << stats.concatenated << ", replicated " << stats.replicated << "), refused "
          << stats.refused << " (misaligned " << stats.misaligned << ")");
  CHECK(stats.checked > 500);
  CHECK(stats.refused > 50);
  CHECK(stats.sub_byte > 20);
  CHECK(stats.misaligned > 5);
  CHECK(stats.padded > 20);
  CHECK(stats.rwf > 20);
  CHECK(stats.concatenated > 200);
}

TEST_CASE("property: skip loads nothing and experts are owned exactly once") {
  Rng rng{std::mt19937_64(shardload::test::Seed() ^ 0x6570u)};
  Plan skip = test::MustParse(
      R"({"tp_plan_version": 1, "rules": [{"match": "t", "split": "skip"}]})");
  TensorInfo skipped = test::MakeTensor("t.weight", DType::kF32, {3, 2});
  for (unsigned w = 1; w <= 8; ++w) {
    for (unsigned r = 0; r < w; ++r) {
      CHECK_FALSE(test::MustSlice(skip, skipped, r, w).load);
    }
  }
  for (int iteration = 0; iteration < 200; ++iteration) {
    std::uint64_t experts = 1 + rng.Below(12);
    unsigned w = 1 + static_cast<unsigned>(rng.Below(8));
    bool rr = rng.Chance(50);
    constexpr std::string_view kUnevens[] = {"chunk", "balanced", "exact"};
    std::string_view uneven = rr ? kUnevens[1 + rng.Below(2)] : kUnevens[rng.Below(3)];
    std::string json = fmt::format(
        R"({{"tp_plan_version": 1, "rules": [{{"match": "m.layers.*.experts.{{expert}}",
            "split": "experts", "num_experts": {}, "placement": "{}", "uneven": "{}"}}]}})",
        experts, rr ? "round_robin" : "linear", uneven);
    CAPTURE(json);
    CAPTURE(w);
    Plan plan = test::MustParse(json);
    bool exact_refused = uneven == "exact" && experts % w != 0;
    for (std::uint64_t e = 0; e <= experts; ++e) {
      TensorInfo t = test::MakeTensor(fmt::format("m.layers.0.experts.{}.weight", e),
                                      DType::kBF16, {2, 3});
      int owners = 0;
      for (unsigned r = 0; r < w; ++r) {
        Result<LocalSlice> s = SliceFor(plan, t, r, w);
        if (e == experts || exact_refused) {
          REQUIRE_FALSE(s.has_value());
          CHECK(s.error().code == (e == experts ? ErrorCode::kTpShapeMismatch
                                                : ErrorCode::kTpIndivisible));
          continue;
        }
        REQUIRE(s.has_value());
        if (!s->load) continue;
        ++owners;
        CHECK(s->shape == Shape{2, 3});
        CHECK(s->runs == std::vector<Run>{{0, 0, 12, 1, 0, 0}});
        if (rr) CHECK(e % w == r);
      }
      if (e < experts && !exact_refused) CHECK(owners == 1);
    }
  }
}

}  // namespace
}  // namespace shardload::tp
