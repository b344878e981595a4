// A job's layout (issue 23): mesh coordinates against hand-worked ranks,
// the defaults, vLLM's pipeline remainder rule, explicit stage counts,
// expert owners both ways, and every refusal with its numbers.
// Thread-compatible (doctest runs cases one at a time).
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "support/test_util.h"
#include "tp/layout.h"

namespace shardload::tp {
namespace {

using Counts = std::vector<std::uint64_t>;

Mesh MustResolve(const Layout& layout, unsigned world) {
  Result<Mesh> mesh = ResolveMesh(layout, world);
  REQUIRE_MESSAGE(mesh.has_value(), shardload::test::ErrorText(mesh));
  return *mesh;
}

Counts StageCounts(const Mesh& mesh, std::uint64_t layers) {
  Result<std::vector<Range>> stages = StageLayers(mesh, layers);
  REQUIRE_MESSAGE(stages.has_value(), shardload::test::ErrorText(stages));
  Counts out;
  std::uint64_t next = 0;
  for (const Range& r : *stages) {
    CHECK(r.begin == next);  // consecutive, from layer 0
    next = r.end;
    out.push_back(r.size());
  }
  CHECK(next == layers);
  return out;
}

// The refusal's detail; REQUIREs kInvalidArgument.
std::string Refusal(const Layout& layout, unsigned world) {
  Result<Mesh> mesh = ResolveMesh(layout, world);
  REQUIRE_FALSE(mesh.has_value());
  CHECK(mesh.error().code == ErrorCode::kInvalidArgument);
  return mesh.error().detail;
}

bool Has(const std::string& text, std::string_view needle) {
  return text.find(needle) != std::string::npos;
}

TEST_CASE("layout: defaults are today's W-way tensor parallelism") {
  Mesh m = MustResolve({}, 8);
  CHECK(m.tp == 8);
  CHECK(m.pp == 1);
  CHECK(m.dp == 1);
  CHECK_FALSE(m.ep);
  MeshCoords c = CoordsOf(m, 5);
  CHECK(c.tp_rank == 5);
  CHECK(c.dp_rank == 0);
  CHECK(c.pp_rank == 0);
  CHECK_FALSE(c.ep_rank.has_value());
}

TEST_CASE("layout: --pp alone gives TP = W / PP; --pp-layers alone gives PP") {
  Mesh m = MustResolve({.pp = 2}, 16);
  CHECK(m.tp == 8);
  CHECK(m.dp == 1);
  Mesh n = MustResolve({.pp_layers = {3, 3, 2}}, 6);
  CHECK(n.pp == 3);
  CHECK(n.tp == 2);
}

TEST_CASE("layout: two nodes of TP 8 with two DP replicas (the issue's example)") {
  Mesh m = MustResolve({.tp = 8}, 16);
  CHECK(m.dp == 2);
  CHECK(m.pp == 1);
  // rank = (pp * DP + dp) * TP + tp: rank 13 = (0 * 2 + 1) * 8 + 5.
  MeshCoords c = CoordsOf(m, 13);
  CHECK(c.tp_rank == 5);
  CHECK(c.dp_rank == 1);
  CHECK(c.pp_rank == 0);
}

TEST_CASE("layout: W = 16, TP 2, PP 2, DP 4, with ep (hand-worked ranks)") {
  Mesh m = MustResolve({.tp = 2, .pp = 2, .ep = true}, 16);
  CHECK(m.dp == 4);
  CHECK(m.ep_size() == 8);
  // 11 = (1 * 4 + 1) * 2 + 1; ep = 1 * 2 + 1.
  MeshCoords c = CoordsOf(m, 11);
  CHECK(c.tp_rank == 1);
  CHECK(c.dp_rank == 1);
  CHECK(c.pp_rank == 1);
  REQUIRE(c.ep_rank.has_value());
  CHECK(*c.ep_rank == 3);
  // 6 = (0 * 4 + 3) * 2 + 0; ep = 3 * 2 + 0.
  c = CoordsOf(m, 6);
  CHECK(c.tp_rank == 0);
  CHECK(c.dp_rank == 3);
  CHECK(c.pp_rank == 0);
  CHECK(*c.ep_rank == 6);
}

TEST_CASE("layout: coordinates are a bijection, TP fastest then DP then PP") {
  for (unsigned w = 1; w <= 16; ++w) {
    for (unsigned tp = 1; tp <= w; ++tp) {
      for (unsigned pp = 1; tp * pp <= w; ++pp) {
        if (w % (tp * pp) != 0) continue;
        Mesh m = MustResolve({.tp = tp, .pp = pp, .ep = true}, w);
        std::set<std::vector<unsigned>> seen;
        for (unsigned r = 0; r < w; ++r) {
          MeshCoords c = CoordsOf(m, r);
          CHECK(WorldRank(m, c.tp_rank, c.dp_rank, c.pp_rank) == r);
          CHECK(c.tp_rank < tp);
          CHECK(c.pp_rank < pp);
          CHECK(*c.ep_rank < m.ep_size());
          seen.insert({c.tp_rank, c.dp_rank, c.pp_rank});
          if (r + 1 < w && (r + 1) % tp != 0) CHECK(CoordsOf(m, r + 1).tp_rank == c.tp_rank + 1);
        }
        CHECK(seen.size() == w);
      }
    }
  }
}

TEST_CASE("layout: a world not divisible is refused naming W, TP and PP") {
  std::string e = Refusal({.tp = 5}, 12);
  CHECK(Has(e, "W = 12"));
  CHECK(Has(e, "TP x PP = 5 x 1 = 5"));
  e = Refusal({.tp = 4, .pp = 3}, 16);
  CHECK(Has(e, "W = 16"));
  CHECK(Has(e, "4 x 3 = 12"));
  e = Refusal({.pp = 4}, 10);
  CHECK(Has(e, "W = 10"));
  CHECK(Has(e, "PP = 4"));
  CHECK(Has(Refusal({}, 0), "W = 0"));
  e = Refusal({.tp = 16}, 8);
  CHECK(Has(e, "W = 8"));
  CHECK(Has(e, "16 x 1"));
}

TEST_CASE("layout: --pp-layers must have one count per stage") {
  std::string e = Refusal({.pp = 2, .pp_layers = {4, 4, 4}}, 4);
  CHECK(Has(e, "3 stage(s) (4,4,4)"));
  CHECK(Has(e, "--pp is 2"));
}

TEST_CASE("stages: vLLM's rule, the remainder from the second-to-last stage backwards") {
  auto counts = [](unsigned pp, std::uint64_t layers) {
    return StageCounts(MustResolve({.pp = pp}, pp), layers);
  };
  // DeepSeek-V3: 61 layers, 8 stages: 7 each, 5 left for stages 6, 5, 4, 3, 2.
  CHECK(counts(8, 61) == Counts{7, 7, 8, 8, 8, 8, 8, 7});
  CHECK(counts(4, 10) == Counts{2, 3, 3, 2});
  CHECK(counts(4, 11) == Counts{3, 3, 3, 2});   // 3 left: stages 2, 1, 0
  CHECK(counts(4, 12) == Counts{3, 3, 3, 3});
  CHECK(counts(2, 3) == Counts{2, 1});
  CHECK(counts(1, 7) == Counts{7});
  CHECK(counts(5, 5) == Counts{1, 1, 1, 1, 1});
  CHECK(counts(3, 32) == Counts{11, 11, 10});
}

TEST_CASE("stages: vLLM's rule for every L <= 40 and P <= L") {
  for (unsigned p = 1; p <= 12; ++p) {
    for (std::uint64_t l = p; l <= 40; ++l) {
      Counts c = StageCounts(MustResolve({.pp = p}, p), l);
      REQUIRE(c.size() == p);
      const std::uint64_t base = l / p, rest = l % p;
      for (unsigned s = 0; s < p; ++s) {
        // Stage s gets one more when it is one of P-2, ..., P-1-rest.
        const bool extra = s + 1 < p && s + 1 + rest >= p;
        CHECK(c[s] == base + (extra ? 1 : 0));
      }
    }
  }
}

TEST_CASE("stages: explicit counts, and their refusals naming the numbers") {
  CHECK(StageCounts(MustResolve({.pp_layers = {3, 3, 4}}, 3), 10) == Counts{3, 3, 4});
  CHECK(StageCounts(MustResolve({.pp_layers = {9, 1}}, 2), 10) == Counts{9, 1});
  auto refuse = [](const Layout& layout, std::uint64_t layers) {
    Result<std::vector<Range>> s = StageLayers(MustResolve(layout, layout.pp_layers.size()),
                                               layers);
    REQUIRE_FALSE(s.has_value());
    CHECK(s.error().code == ErrorCode::kInvalidArgument);
    return s.error().detail;
  };
  std::string e = refuse({.pp_layers = {3, 3, 3}}, 10);
  CHECK(Has(e, "--pp-layers 3,3,3"));
  CHECK(Has(e, "model's 10 layers"));
  CHECK(Has(e, "sum to 9"));
  e = refuse({.pp_layers = {0, 5, 5}}, 10);
  CHECK(Has(e, "0,5,5"));
  CHECK(Has(e, "at least one layer"));
  e = refuse({.pp_layers = {~std::uint64_t{0}, 2}}, 10);
  CHECK(Has(e, "more than 2^64"));
}

TEST_CASE("stages: more stages than layers is refused naming both") {
  Result<std::vector<Range>> s = StageLayers(MustResolve({.pp = 5}, 5), 4);
  REQUIRE_FALSE(s.has_value());
  CHECK(s.error().code == ErrorCode::kInvalidArgument);
  CHECK(Has(s.error().detail, "PP = 5"));
  CHECK(Has(s.error().detail, "4 layer(s)"));
  CHECK(Has(s.error().detail, "more stages than layers"));
}

TEST_CASE("experts: linear e * EP / E and round_robin e % EP") {
  std::vector<unsigned> linear, rr;
  for (std::uint64_t e = 0; e < 10; ++e) {
    linear.push_back(ExpertOwner(Placement::kLinear, e, 10, 4));
    rr.push_back(ExpertOwner(Placement::kRoundRobin, e, 10, 4));
  }
  CHECK(linear == std::vector<unsigned>{0, 0, 0, 1, 1, 2, 2, 2, 3, 3});
  CHECK(rr == std::vector<unsigned>{0, 1, 2, 3, 0, 1, 2, 3, 0, 1});
  // DeepSeek-V3, EP 64: four consecutive experts each.
  CHECK(ExpertOwner(Placement::kLinear, 255, 256, 64) == 63);
  CHECK(ExpertOwner(Placement::kLinear, 4, 256, 64) == 1);
  // E = 128 over 6: 128 * 6 does not divide; e = 21 -> 126 / 128 = 0, e = 22 -> 1.
  CHECK(ExpertOwner(Placement::kLinear, 21, 128, 6) == 0);
  CHECK(ExpertOwner(Placement::kLinear, 22, 128, 6) == 1);
  CHECK(ExpertOwner(Placement::kRoundRobin, 122, 128, 6) == 2);
  // Fewer experts than ranks: ranks without one.
  CHECK(ExpertOwner(Placement::kLinear, 1, 2, 8) == 4);
  // No overflow near 2^64.
  const std::uint64_t big = ~std::uint64_t{0};
  CHECK(ExpertOwner(Placement::kLinear, big - 1, big, 1000) == 999);
}

}  // namespace
}  // namespace shardload::tp
