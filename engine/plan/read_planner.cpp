// The read planner: strategies, coalescing, alignment, chunking and balance
// (see read_planner.h).
// Thread-safe: no shared state.
#include "plan/read_planner.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>

#include "util/checked.h"

namespace shardload {

const char* ReadStrategyName(ReadStrategy strategy) {
  switch (strategy) {
    case ReadStrategy::kAuto: return "auto";
    case ReadStrategy::kExact: return "exact";
    case ReadStrategy::kStaged: return "staged";
    case ReadStrategy::kMixed: return "mixed";
    case ReadStrategy::kMapped: return "mapped";
  }
  return "?";
}

namespace {

using Address = std::uintptr_t;

// A coalesced plain range: bytes [offset, offset + length) of `file` -> dst.
struct Run {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  Address dst = 0;
  std::uint32_t tag = 0;
  bool direct = false;
  Address prev_dst_end = 0;              // end of the destinations below (0: none)
  Address next_dst_begin = ~Address{0};  // start of the destination above
};

std::uint64_t AlignDown(std::uint64_t x, std::uint64_t a) { return x & ~(a - 1); }
std::uint64_t AlignUp(std::uint64_t x, std::uint64_t a) { return AlignDown(x + (a - 1), a); }
std::uint64_t CeilDiv(std::uint64_t x, std::uint64_t d) { return x / d + (x % d != 0); }

Error Invalid(std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, "", "", "read plan: " + std::move(detail));
}

Status ValidateOptions(const PlanOptions& options) {
  if (options.workers == 0) return Invalid("zero workers");
  if (options.chunk_size == 0) return Invalid("chunk_size is zero");
  if (options.staging_chunk == 0) return Invalid("staging_chunk is zero");
  if (options.map_window == 0) return Invalid("map_window is zero");
  if (!(options.max_over_read >= 1.0)) {
    return Invalid("max_over_read " + std::to_string(options.max_over_read) + " is below 1");
  }
  std::uint64_t a = options.alignment;
  if (a == 0 || (a & (a - 1)) != 0 || a > (1ULL << 20)) {
    return Invalid("alignment " + std::to_string(a) + " is not a power of two up to 1 MiB");
  }
  return {};
}

Status ValidateSegment(const Segment& s) {
  if (s.length == 0 || s.count == 0) return {};
  const std::string tag = " (tag " + std::to_string(s.tag) + ")";
  if (s.dst == nullptr) return Invalid("null destination" + tag);
  if (s.count > 1 && (s.src_stride < s.length || s.dst_stride < s.length)) {
    return Invalid("stride shorter than a run" + tag);
  }
  const std::uint64_t n = s.count - 1;
  auto src_last = CheckedMul(n, s.src_stride);
  auto dst_last = CheckedMul(n, s.dst_stride);
  auto src_span = src_last ? CheckedAdd(*src_last, s.length) : std::nullopt;
  auto dst_span = dst_last ? CheckedAdd(*dst_last, s.length) : std::nullopt;
  auto end = src_span ? CheckedAdd(s.offset, *src_span) : std::nullopt;
  // Room for alignment slack on both sides: offsets below 2^62.
  if (!end || !dst_span || *end > (1ULL << 62) ||
      reinterpret_cast<Address>(s.dst) > ~Address{0} - *dst_span) {
    return Invalid("range overflows at offset " + std::to_string(s.offset) + tag);
  }
  return {};
}

// Rows adjacent in file and memory are one plain range.
Segment Normalize(Segment s) {
  if (s.count > 1 && s.src_stride == s.length && s.dst_stride == s.length) {
    s.length *= s.count;
    s.count = 1;
  }
  if (s.count == 1) s.src_stride = s.dst_stride = 0;
  return s;
}

std::uint64_t FileSpan(const Segment& s) { return (s.count - 1) * s.src_stride + s.length; }
std::uint64_t DstSpan(const Segment& s) { return (s.count - 1) * s.dst_stride + s.length; }

// Sorts by (file, offset) and merges ranges adjacent in file and memory.
std::vector<Run> Coalesce(std::vector<Run> runs) {
  std::sort(runs.begin(), runs.end(), [](const Run& x, const Run& y) {
    if (x.file != y.file) return x.file < y.file;
    if (x.offset != y.offset) return x.offset < y.offset;
    return x.dst < y.dst;
  });
  std::vector<Run> out;
  out.reserve(runs.size());
  for (const Run& r : runs) {
    if (!out.empty()) {
      Run& last = out.back();
      if (last.file == r.file && last.direct == r.direct && last.offset + last.length == r.offset &&
          last.dst + last.length == r.dst) {
        last.length += r.length;
        continue;
      }
    }
    out.push_back(r);
  }
  return out;
}

// Rejects overlapping plain destinations and records each plain run's
// neighbours in memory; strided segments count as their whole extent there.
Status LinkNeighbours(std::vector<Run>& runs, std::span<const Segment> strided) {
  struct Item {
    Address begin, end;
    std::size_t run;  // index into runs, or npos for a strided extent
  };
  constexpr std::size_t kStrided = ~std::size_t{0};
  std::vector<Item> items;
  items.reserve(runs.size() + strided.size());
  for (std::size_t i = 0; i < runs.size(); ++i) {
    items.push_back({runs[i].dst, runs[i].dst + runs[i].length, i});
  }
  for (const Segment& s : strided) {
    Address b = reinterpret_cast<Address>(s.dst);
    items.push_back({b, b + DstSpan(s), kStrided});
  }
  std::sort(items.begin(), items.end(),
            [](const Item& x, const Item& y) { return x.begin < y.begin; });
  Address below = 0;  // highest end so far
  std::size_t last_plain = kStrided;
  for (std::size_t k = 0; k < items.size(); ++k) {
    const Item& it = items[k];
    if (it.run != kStrided) {
      Run& r = runs[it.run];
      if (last_plain != kStrided && runs[last_plain].dst + runs[last_plain].length > r.dst) {
        return Invalid("destinations overlap (tags " + std::to_string(runs[last_plain].tag) +
                       " and " + std::to_string(r.tag) + ")");
      }
      r.prev_dst_end = below;
      if (k + 1 < items.size()) r.next_dst_begin = items[k + 1].begin;
      last_plain = it.run;
    }
    below = std::max(below, it.end);
  }
  return {};
}

bool InsideWindow(std::span<const Window> sorted_windows, Address lo, Address hi) {
  auto it = std::upper_bound(sorted_windows.begin(), sorted_windows.end(), lo,
                             [](Address a, const Window& w) {
                               return a < reinterpret_cast<Address>(w.begin);
                             });
  if (it == sorted_windows.begin()) return false;
  --it;
  return reinterpret_cast<Address>(it->end) >= hi;
}

// Bytes all reads of a run pattern take when each run of `length` at
// offset + k*stride (k < count) is widened to the grid of `a`: the widened
// length depends only on the run's phase, which repeats every
// a / gcd(stride mod a, a) runs, so this loops at most `a` times.
std::uint64_t AlignedBytes(std::uint64_t offset, std::uint64_t length, std::uint64_t count,
                           std::uint64_t stride, std::uint64_t a) {
  if (a <= 1) return count * length;
  const std::uint64_t period = a / std::gcd(stride % a == 0 ? a : stride % a, a);
  std::uint64_t total = 0;
  for (std::uint64_t k = 0; k < std::min(count, period); ++k) {
    std::uint64_t run = offset + k * stride;
    std::uint64_t n = AlignUp(run + length, a) - AlignDown(run, a);
    total += n * ((count - k + period - 1) / period);
  }
  return total;
}

// What a strided segment costs read one way or the other.
struct Price {
  double cost = 0;
  std::uint64_t bytes_read = 0;
};

class Builder {
 public:
  Builder(const PlanOptions& options, std::vector<Window> windows)
      : options_(options), windows_(std::move(windows)), a_(options.alignment) {
    chunk_ = std::min(options.chunk_size, kMaxReadLength);
    direct_chunk_ = std::max(a_, AlignDown(chunk_, a_));
    staging_chunk_ = std::max(a_, AlignUp(std::min(options.staging_chunk, direct_chunk_), a_));
    buffered_staging_ = std::min(options.staging_chunk, chunk_);
    map_window_ = std::min(options.map_window, kMaxReadLength);
  }

  const IoCost& Mode(const Segment& s) const {
    if (s.direct) return options_.cost.direct;
    return s.cold ? options_.cost.cold : options_.cost.warm;
  }

  // Exact: one read per run (O_DIRECT: its aligned superset, copied).
  Price PriceExact(const Segment& s) const {
    const IoCost& m = Mode(s);
    Price p;
    p.bytes_read = s.direct ? AlignedBytes(s.offset, s.length, s.count, s.src_stride, a_)
                            : s.count * s.length;
    p.cost = static_cast<double>(s.count) * m.op_ns + static_cast<double>(p.bytes_read) * m.byte_ns;
    if (s.direct) p.cost += static_cast<double>(s.count * s.length) * options_.cost.copy_byte_ns;
    return p;
  }

  // Staged: the covering range in staging_chunk reads, runs copied out.
  Price PriceCovering(const Segment& s) const {
    const IoCost& m = Mode(s);
    std::uint64_t lo = s.offset, hi = s.offset + FileSpan(s);
    if (s.direct) lo = AlignDown(lo, a_), hi = AlignUp(hi, a_);
    Price p;
    p.bytes_read = hi - lo;
    p.cost = static_cast<double>(CeilDiv(hi - lo, StagingChunk(s.direct))) * m.op_ns +
             static_cast<double>(p.bytes_read) * m.byte_ns +
             static_cast<double>(s.count * s.length) * options_.cost.copy_byte_ns;
    return p;
  }

  // Mapped: the covering range in map_window mappings, every page of it
  // mapped, runs copied out. Only buffered segments are mapped.
  Price PriceMapped(const Segment& s) const {
    const IoCost& m = options_.cost.mapped;
    Price p;
    p.bytes_read = FileSpan(s);
    p.cost = static_cast<double>(CeilDiv(p.bytes_read, map_window_)) * m.op_ns +
             static_cast<double>(p.bytes_read) * m.byte_ns +
             static_cast<double>(s.count * s.length) * options_.cost.copy_byte_ns;
    return p;
  }

  void AddPlain(const Run& run) {
    if (!run.direct) return AddBuffered(run);
    if (CanReadDirect(run)) return AddDirect(run);
    AddStaged(run);
  }

  // Exact reads of a strided segment: batches of at most chunk_size bytes.
  void AddExact(const Segment& s) {
    const std::uint64_t piece = s.direct ? AlignUp(s.length + a_ - 1, a_) : s.length;
    if (piece > (s.direct ? staging_chunk_ : chunk_)) {
      for (std::uint64_t i = 0; i < s.count; ++i) {  // few runs: each is large
        // Neighbours unknown: no slack may be written (prev_dst_end = max).
        AddPlain(Run{s.file, s.offset + i * s.src_stride, s.length,
                     reinterpret_cast<Address>(s.dst + i * s.dst_stride), s.tag, s.direct,
                     ~Address{0}});
      }
      return;
    }
    const std::uint64_t per_op = std::max<std::uint64_t>(1, chunk_ / piece);
    for (std::uint64_t first = 0; first < s.count; first += per_op) {
      const std::uint64_t n = std::min(per_op, s.count - first);
      const std::uint64_t run = s.offset + first * s.src_stride;
      ReadOp op;
      op.file = s.file;
      op.tag = s.tag;
      op.direct = s.direct;
      op.pieces = n;
      op.src_stride = s.src_stride;
      op.dst_stride = s.dst_stride;
      op.delivered = s.length;
      op.dst_extent = (n - 1) * s.dst_stride + s.length;
      std::byte* dst = s.dst + first * s.dst_stride;
      if (s.direct) {
        op.align = a_;
        op.offset = AlignDown(run, a_);
        op.length = AlignUp(run + s.length, a_) - op.offset;
        op.copy_skip = run - op.offset;
        op.copy_length = s.length;
        op.required = op.copy_skip + s.length;
        op.copy_dst = dst;
        staging_size_ = std::max(staging_size_, piece);
        bytes_read_ += AlignedBytes(run, s.length, n, s.src_stride, a_);
      } else {
        op.offset = run;
        op.length = op.required = s.length;
        op.dst = dst;
        bytes_read_ += n * s.length;
      }
      Push(op, n);
    }
  }

  // Staged reads (or, with `mapped`, mappings) of the covering range of
  // `group` (segments of one tag, one file and one mode whose covering ranges
  // overlap, sorted by offset), cut on a grid of staging_chunk (map_window).
  void AddCovering(std::span<const Segment> group, std::vector<Segment>& scatter,
                   bool mapped = false) {
    const Segment& head = group.front();
    std::uint64_t lo = head.offset, hi = 0;
    for (const Segment& s : group) hi = std::max(hi, s.offset + FileSpan(s));
    const auto begin = static_cast<std::uint32_t>(scatter.size());
    scatter.insert(scatter.end(), group.begin(), group.end());
    const auto count = static_cast<std::uint32_t>(group.size());
    const std::uint64_t a = head.direct ? a_ : 1;
    const std::uint64_t step = mapped ? map_window_ : StagingChunk(head.direct);
    for (std::uint64_t grid = AlignDown(lo, a); grid < hi; grid += step) {
      std::uint64_t p = std::max(lo, grid);
      std::uint64_t q = std::min(hi, grid + step);
      ReadOp op;
      op.file = head.file;
      op.tag = head.tag;
      op.direct = head.direct;
      op.offset = AlignDown(p, a);
      op.length = AlignUp(q, a) - op.offset;
      op.copy_skip = p - op.offset;
      op.copy_length = q - p;
      op.required = op.copy_skip + op.copy_length;
      op.scatter_begin = begin;
      op.scatter_count = count;
      Address first = ~Address{0}, last = 0;
      for (const Segment& s : group) {
        const RunRange r = RunsOverlapping(s, p, q);
        if (r.first == r.end) continue;
        const std::uint64_t run_first = s.offset + r.first * s.src_stride;
        const std::uint64_t run_last = s.offset + (r.end - 1) * s.src_stride;
        const Address d = reinterpret_cast<Address>(s.dst);
        first = std::min(first, d + r.first * s.dst_stride + (std::max(p, run_first) - run_first));
        last = std::max(last, d + (r.end - 1) * s.dst_stride +
                                  (std::min(q, run_last + s.length) - run_last));
        op.delivered += RunBytes(s, r, p, q);
      }
      if (op.delivered == 0) continue;  // a grid piece inside a gap
      op.copy_dst = reinterpret_cast<std::byte*>(first);
      op.dst_extent = last - first;
      op.mapped = mapped;
      if (!mapped) staging_size_ = std::max(staging_size_, op.length);
      bytes_read_ += op.length;
      Push(op, 1);
    }
  }

  std::vector<ReadOp>& ops() { return ops_; }
  std::uint64_t staging_size() const { return staging_size_; }
  std::uint64_t bytes_read() const { return bytes_read_; }
  std::uint64_t reads() const { return reads_; }

 private:
  std::uint64_t StagingChunk(bool direct) const { return direct ? staging_chunk_ : buffered_staging_; }

  // Bytes of runs [r.first, r.end) of s inside [p, q): whole runs plus the
  // cut parts of the first and last.
  static std::uint64_t RunBytes(const Segment& s, RunRange r, std::uint64_t p, std::uint64_t q) {
    auto part = [&](std::uint64_t i) {
      std::uint64_t run = s.offset + i * s.src_stride;
      return std::min(q, run + s.length) - std::max(p, run);
    };
    if (r.end - r.first == 1) return part(r.first);
    return part(r.first) + part(r.end - 1) + (r.end - r.first - 2) * s.length;
  }

  void Push(const ReadOp& op, std::uint64_t pieces) {
    ops_.push_back(op);
    reads_ += pieces;
  }

  void AddBuffered(const Run& r) {
    for (std::uint64_t done = 0; done < r.length; done += chunk_) {
      std::uint64_t n = std::min(chunk_, r.length - done);
      ReadOp op;
      op.file = r.file;
      op.offset = r.offset + done;
      op.length = op.required = op.delivered = op.dst_extent = n;
      op.dst = reinterpret_cast<std::byte*>(r.dst + done);
      op.tag = r.tag;
      bytes_read_ += n;
      Push(op, 1);
    }
  }

  // dst ≡ offset (mod A), and the slack on both sides is ours to overwrite.
  bool CanReadDirect(const Run& r) const {
    if ((r.dst - r.offset) % a_ != 0) return false;
    std::uint64_t head = r.offset - AlignDown(r.offset, a_);
    std::uint64_t tail = AlignUp(r.offset + r.length, a_) - (r.offset + r.length);
    if (head == 0 && tail == 0) return true;
    if (r.dst < head) return false;
    Address lo = r.dst - head;
    Address hi = r.dst + r.length + tail;
    if (hi < r.dst) return false;
    return r.prev_dst_end <= lo && r.next_dst_begin >= hi && InsideWindow(windows_, lo, hi);
  }

  void AddDirect(const Run& r) {
    std::uint64_t begin = AlignDown(r.offset, a_);
    std::uint64_t end = r.offset + r.length;
    std::uint64_t aligned_end = AlignUp(end, a_);
    Address base = r.dst - (r.offset - begin);
    for (std::uint64_t cs = begin; cs < aligned_end; cs += direct_chunk_) {
      std::uint64_t ce = std::min(cs + direct_chunk_, aligned_end);
      ReadOp op;
      op.file = r.file;
      op.offset = cs;
      op.length = op.dst_extent = ce - cs;
      op.required = std::min(end, ce) - cs;
      op.delivered = std::min(end, ce) - std::max(r.offset, cs);
      op.dst = reinterpret_cast<std::byte*>(base + (cs - begin));
      op.tag = r.tag;
      op.direct = true;
      bytes_read_ += op.length;
      Push(op, 1);
    }
  }

  // Pieces cut on the grid AlignDown(offset) + k * staging_chunk, so each
  // aligned read fits in one staging buffer.
  void AddStaged(const Run& r) {
    std::uint64_t end = r.offset + r.length;
    for (std::uint64_t grid = AlignDown(r.offset, a_); grid < end; grid += staging_chunk_) {
      std::uint64_t p = std::max(r.offset, grid);
      std::uint64_t q = std::min(end, grid + staging_chunk_);
      ReadOp op;
      op.file = r.file;
      op.offset = AlignDown(p, a_);
      op.length = AlignUp(q, a_) - op.offset;
      op.copy_skip = p - op.offset;
      op.copy_length = op.delivered = op.dst_extent = q - p;
      op.required = op.copy_skip + op.copy_length;
      op.copy_dst = reinterpret_cast<std::byte*>(r.dst + (p - r.offset));
      op.tag = r.tag;
      op.direct = true;
      staging_size_ = std::max(staging_size_, op.length);
      bytes_read_ += op.length;
      Push(op, 1);
    }
  }

  const PlanOptions& options_;
  std::vector<Window> windows_;  // sorted by begin
  std::uint64_t a_ = 1;
  std::uint64_t chunk_ = 0;
  std::uint64_t direct_chunk_ = 0;
  std::uint64_t staging_chunk_ = 0;     // O_DIRECT staged reads (aligned)
  std::uint64_t buffered_staging_ = 0;  // buffered staged reads
  std::uint64_t map_window_ = 0;        // largest mapping
  std::uint64_t staging_size_ = 0;
  std::uint64_t bytes_read_ = 0;
  std::uint64_t reads_ = 0;
  std::vector<ReadOp> ops_;
};

// The strided segments of one tag, sorted by (file, offset).
struct TagGroup {
  std::span<const Segment> segments;
  std::uint64_t received = 0;  // bytes the tag receives (plain parts included)
};

// Groups of segments whose covering ranges overlap (same file and mode).
template <typename Fn>
void ForEachCoveringGroup(std::span<const Segment> segs, Fn&& fn) {
  std::size_t start = 0;
  std::uint64_t hi = 0;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const Segment& s = segs[i];
    if (i > start && (s.file != segs[start].file || s.direct != segs[start].direct ||
                      s.offset >= hi)) {
      fn(segs.subspan(start, i - start));
      start = i;
    }
    if (i == start) hi = 0;
    hi = std::max(hi, s.offset + FileSpan(s));
  }
  if (start < segs.size()) fn(segs.subspan(start));
}

// What each strategy costs for one tag's strided segments, and per segment
// whether mixed covers it (else reads it exactly).
struct TagPrices {
  double exact = 0, staged = 0, mixed = 0, mapped = 0;
  std::uint64_t exact_bytes = 0, staged_bytes = 0, mixed_bytes = 0, mapped_bytes = 0;
  std::vector<bool> mixed_covers;
  bool any_mapped = false;  // some segment is buffered: kMapped maps it
  bool any_cold = false;    // some buffered segment is expected to miss the cache
};

TagPrices PriceTag(std::span<const Segment> segments, const Builder& builder) {
  TagPrices t;
  t.mixed_covers.resize(segments.size());
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const Segment& s = segments[i];
    Price e = builder.PriceExact(s);
    Price c = builder.PriceCovering(s);
    t.exact += e.cost, t.exact_bytes += e.bytes_read;
    t.staged += c.cost, t.staged_bytes += c.bytes_read;
    t.mixed_covers[i] = c.cost < e.cost;
    const Price& cheaper = t.mixed_covers[i] ? c : e;
    t.mixed += cheaper.cost, t.mixed_bytes += cheaper.bytes_read;
    // kMapped maps buffered segments and reads O_DIRECT ones as mixed does.
    const Price m = s.direct ? cheaper : builder.PriceMapped(s);
    t.mapped += m.cost, t.mapped_bytes += m.bytes_read;
    t.any_mapped = t.any_mapped || !s.direct;
    t.any_cold = t.any_cold || (!s.direct && s.cold);
  }
  return t;
}

// kAuto: the cheapest strategy whose bytes stay within `cap`.
ReadStrategy Cheapest(const TagPrices& t, double cap) {
  ReadStrategy strategy = ReadStrategy::kExact;
  double best = t.exact;
  auto consider = [&](ReadStrategy s, double cost, std::uint64_t bytes) {
    if (static_cast<double>(bytes) <= cap && cost < best) strategy = s, best = cost;
  };
  consider(ReadStrategy::kMixed, t.mixed, t.mixed_bytes);
  consider(ReadStrategy::kStaged, t.staged, t.staged_bytes);
  // Mapping pages that are not cached faults them in one by one: never chosen.
  if (t.any_mapped && !t.any_cold) consider(ReadStrategy::kMapped, t.mapped, t.mapped_bytes);
  return strategy;
}

// kAuto's mixed that covers everything, or nothing, is one of the others.
ReadStrategy Reduce(ReadStrategy strategy, const TagPrices& t) {
  if (strategy != ReadStrategy::kMixed) return strategy;
  const auto& c = t.mixed_covers;
  if (std::none_of(c.begin(), c.end(), [](bool b) { return b; })) return ReadStrategy::kExact;
  if (std::all_of(c.begin(), c.end(), [](bool b) { return b; })) return ReadStrategy::kStaged;
  return strategy;
}

// Chooses and plans the strategy for one tag's strided segments; returns the
// strategy its reads follow (kMapped with nothing buffered to map is kMixed).
ReadStrategy PlanTag(const TagGroup& tag, const PlanOptions& options, Builder& builder,
                     std::vector<Segment>& scatter) {
  const TagPrices prices = PriceTag(tag.segments, builder);
  const double cap = options.max_over_read * static_cast<double>(tag.received);
  ReadStrategy strategy = options.strategy;
  if (strategy == ReadStrategy::kAuto) strategy = Reduce(Cheapest(prices, cap), prices);
  if (strategy == ReadStrategy::kMapped && !prices.any_mapped) strategy = ReadStrategy::kMixed;
  auto mixed = [&](std::size_t i) {
    if (prices.mixed_covers[i]) builder.AddCovering(tag.segments.subspan(i, 1), scatter);
    else builder.AddExact(tag.segments[i]);
  };
  switch (strategy) {
    case ReadStrategy::kExact:
      for (const Segment& s : tag.segments) builder.AddExact(s);
      break;
    case ReadStrategy::kStaged:
      ForEachCoveringGroup(tag.segments, [&](std::span<const Segment> g) {
        builder.AddCovering(g, scatter);
      });
      break;
    case ReadStrategy::kMapped:
      ForEachCoveringGroup(tag.segments, [&](std::span<const Segment> g) {
        if (!g.front().direct) return builder.AddCovering(g, scatter, /*mapped=*/true);
        const auto first = static_cast<std::size_t>(g.data() - tag.segments.data());
        for (std::size_t i = first; i < first + g.size(); ++i) mixed(i);
      });
      break;
    default:  // kMixed
      for (std::size_t i = 0; i < tag.segments.size(); ++i) mixed(i);
      break;
  }
  return strategy;
}

std::uint64_t OpBytes(const ReadOp& op) {
  if (op.pieces == 1) return op.length;
  if (op.align > 1) {
    return AlignedBytes(op.offset + op.copy_skip, op.copy_length, op.pieces, op.src_stride,
                        op.align);
  }
  return op.pieces * op.length;
}

// Cuts the ordered list into contiguous shares of about total / workers
// bytes: an op goes to the worker whose share holds the op's midpoint.
void Balance(std::vector<ReadOp> ops, ReadPlan& plan, unsigned workers) {
  std::stable_sort(ops.begin(), ops.end(), [](const ReadOp& x, const ReadOp& y) {
    return x.file != y.file ? x.file < y.file : x.offset < y.offset;
  });
  long double total = 0;
  std::vector<std::uint64_t> bytes(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) {
    bytes[i] = OpBytes(ops[i]);
    total += static_cast<long double>(bytes[i]);
  }
  std::vector<std::size_t> count(workers, 0);
  long double before = 0;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    long double mid = before + static_cast<long double>(bytes[i]) / 2;
    auto w = static_cast<unsigned>(mid * workers / total);
    ++count[std::min(w, workers - 1)];
    before += static_cast<long double>(bytes[i]);
    plan.bytes_requested += bytes[i];
    plan.bytes_delivered += ops[i].delivered * ops[i].pieces;
    plan.reads += ops[i].pieces;
    TagReads& t = plan.tags[ops[i].tag];
    t.bytes_read += bytes[i];
    t.read_ops += ops[i].pieces;
  }
  plan.bounds.assign(1, 0);
  for (std::size_t c : count) plan.bounds.push_back(plan.bounds.back() + c);
  plan.ops = std::move(ops);
}

}  // namespace

Result<ReadPlan> PlanReads(std::span<const Segment> segments, const PlanOptions& options) {
  if (Status s = ValidateOptions(options); !s) return std::move(s).error();
  ReadPlan plan;
  std::vector<Run> plain;
  std::vector<Segment> strided;
  std::uint32_t max_tag = 0;
  for (const Segment& seg : segments) {
    if (Status s = ValidateSegment(seg); !s) return std::move(s).error();
    if (seg.length == 0 || seg.count == 0) continue;
    Segment s = Normalize(seg);
    s.direct = s.direct || options.direct;
    max_tag = std::max(max_tag, s.tag);
    if (s.count == 1) {
      plain.push_back(Run{s.file, s.offset, s.length, reinterpret_cast<Address>(s.dst), s.tag,
                          s.direct});
    } else {
      strided.push_back(s);
    }
  }
  if (!plain.empty() || !strided.empty()) plan.tags.resize(std::size_t{max_tag} + 1);
  for (const Run& r : plain) plan.tags[r.tag].bytes += r.length;
  for (const Segment& s : strided) plan.tags[s.tag].bytes += s.count * s.length;

  std::vector<Run> runs = Coalesce(std::move(plain));
  if (Status s = LinkNeighbours(runs, strided); !s) return std::move(s).error();

  std::vector<Window> windows(options.windows.begin(), options.windows.end());
  std::sort(windows.begin(), windows.end(),
            [](const Window& x, const Window& y) { return x.begin < y.begin; });
  Builder builder(options, std::move(windows));
  for (const Run& r : runs) builder.AddPlain(r);

  std::sort(strided.begin(), strided.end(), [](const Segment& x, const Segment& y) {
    if (x.tag != y.tag) return x.tag < y.tag;
    if (x.file != y.file) return x.file < y.file;
    return x.offset < y.offset;
  });
  std::span<const Segment> all(strided);
  for (std::size_t i = 0; i < all.size();) {
    std::size_t j = i;
    while (j < all.size() && all[j].tag == all[i].tag) ++j;
    TagGroup tag{all.subspan(i, j - i), plan.tags[all[i].tag].bytes};
    plan.tags[all[i].tag].strategy = PlanTag(tag, options, builder, plan.scatter);
    i = j;
  }

  if (builder.ops().size() >= kMaxPlanOps || plan.scatter.size() >= kMaxPlanOps) {
    return MakeError(ErrorCode::kResourceExhausted, "", "",
                     "read plan: " + std::to_string(builder.ops().size()) +
                         " reads, more than one load can schedule");
  }
  plan.staging_size = builder.staging_size();
  Balance(std::move(builder.ops()), plan, options.workers);
  return plan;
}

}  // namespace shardload
