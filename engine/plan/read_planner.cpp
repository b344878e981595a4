// The read planner: coalesce, align, split and balance (see read_planner.h).
// Thread-safe: no shared state.
#include "plan/read_planner.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "util/checked.h"

namespace shardload {
namespace {

using Address = std::uintptr_t;

// A coalesced range: bytes [offset, offset + length) of `file` -> dst.
struct Run {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  Address dst = 0;
  std::uint32_t tag = 0;
  bool direct = false;               // O_DIRECT (options.direct or Segment::direct)
  Address prev_dst_end = 0;          // end of the run below in memory (0: none)
  Address next_dst_begin = ~Address{0};  // start of the run above in memory
};

std::uint64_t AlignDown(std::uint64_t x, std::uint64_t a) { return x & ~(a - 1); }
std::uint64_t AlignUp(std::uint64_t x, std::uint64_t a) { return AlignDown(x + (a - 1), a); }

Error Invalid(std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, "", "", "read plan: " + std::move(detail));
}

// Interim (until per-segment planning lands from i11-read): a segment is read
// with O_DIRECT when options.direct is set or the segment asks for it.
bool AnyDirect(const PlanOptions& options, std::span<const Segment> segments) {
  if (options.direct) return true;
  return std::any_of(segments.begin(), segments.end(),
                     [](const Segment& s) { return s.direct && s.length > 0; });
}

Status ValidateOptions(const PlanOptions& options, std::span<const Segment> segments) {
  if (options.workers == 0) return Invalid("zero workers");
  if (options.chunk_size == 0) return Invalid("chunk_size is zero");
  if (AnyDirect(options, segments)) {
    std::uint64_t a = options.alignment;
    if (a == 0 || (a & (a - 1)) != 0 || a > (1ULL << 20)) {
      return Invalid("alignment " + std::to_string(a) + " is not a power of two up to 1 MiB");
    }
  }
  return {};
}

Status ValidateSegment(const Segment& s) {
  if (s.length == 0) return {};
  auto end = CheckedAdd(s.offset, s.length);
  if (s.dst == nullptr) return Invalid("null destination for tag " + std::to_string(s.tag));
  // Room for alignment slack on both sides: offsets below 2^62.
  if (!end || *end > (1ULL << 62) ||
      reinterpret_cast<Address>(s.dst) > ~Address{0} - s.length) {
    return Invalid("range overflows at offset " + std::to_string(s.offset));
  }
  return {};
}

// Sorts by (file, offset) and merges ranges adjacent in file and memory.
std::vector<Run> Coalesce(std::span<const Segment> segments, bool all_direct) {
  std::vector<Run> runs;
  runs.reserve(segments.size());
  for (const Segment& s : segments) {
    if (s.length == 0) continue;
    runs.push_back(Run{s.file, s.offset, s.length, reinterpret_cast<Address>(s.dst), s.tag,
                       all_direct || s.direct});
  }
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

// Rejects overlapping destinations and records each run's neighbours in memory.
Status LinkNeighbours(std::vector<Run>& runs) {
  std::vector<std::size_t> order(runs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t x, std::size_t y) { return runs[x].dst < runs[y].dst; });
  for (std::size_t k = 1; k < order.size(); ++k) {
    Run& lo = runs[order[k - 1]];
    Run& hi = runs[order[k]];
    if (lo.dst + lo.length > hi.dst) {
      return Invalid("destinations overlap (tags " + std::to_string(lo.tag) + " and " +
                     std::to_string(hi.tag) + ")");
    }
    lo.next_dst_begin = hi.dst;
    hi.prev_dst_end = lo.dst + lo.length;
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

class Builder {
 public:
  Builder(const PlanOptions& options, std::vector<Window> windows)
      : options_(options), windows_(std::move(windows)) {
    std::uint64_t chunk = std::min(options.chunk_size, kMaxReadLength);
    std::uint64_t a = options.alignment;
    chunk_ = chunk;
    direct_chunk_ = std::max(a, AlignDown(chunk, a));
    staging_chunk_ = std::max(a, AlignUp(std::min(options.staging_chunk, direct_chunk_), a));
  }

  void Add(const Run& run) {
    if (!run.direct) return AddBuffered(run);
    if (CanReadDirect(run)) return AddDirect(run);
    AddStaged(run);
  }

  std::vector<ReadOp>& ops() { return ops_; }
  std::uint64_t staging_size() const { return staging_size_; }

 private:
  void AddBuffered(const Run& r) {
    for (std::uint64_t done = 0; done < r.length; done += chunk_) {
      std::uint64_t n = std::min(chunk_, r.length - done);
      ReadOp op;
      op.file = r.file;
      op.offset = r.offset + done;
      op.length = op.required = op.delivered = n;
      op.dst = reinterpret_cast<std::byte*>(r.dst + done);
      op.tag = r.tag;
      ops_.push_back(op);
    }
  }

  // dst ≡ offset (mod A), and the slack on both sides is ours to overwrite.
  bool CanReadDirect(const Run& r) const {
    std::uint64_t a = options_.alignment;
    if ((r.dst - r.offset) % a != 0) return false;
    std::uint64_t head = r.offset - AlignDown(r.offset, a);
    std::uint64_t tail = AlignUp(r.offset + r.length, a) - (r.offset + r.length);
    if (head == 0 && tail == 0) return true;
    if (r.dst < head) return false;
    Address lo = r.dst - head;
    Address hi = r.dst + r.length + tail;
    if (hi < r.dst) return false;
    return r.prev_dst_end <= lo && r.next_dst_begin >= hi && InsideWindow(windows_, lo, hi);
  }

  void AddDirect(const Run& r) {
    std::uint64_t a = options_.alignment;
    std::uint64_t begin = AlignDown(r.offset, a);
    std::uint64_t end = r.offset + r.length;
    std::uint64_t aligned_end = AlignUp(end, a);
    Address base = r.dst - (r.offset - begin);
    for (std::uint64_t cs = begin; cs < aligned_end; cs += direct_chunk_) {
      std::uint64_t ce = std::min(cs + direct_chunk_, aligned_end);
      ReadOp op;
      op.file = r.file;
      op.offset = cs;
      op.length = ce - cs;
      op.required = std::min(end, ce) - cs;
      op.delivered = std::min(end, ce) - std::max(r.offset, cs);
      op.dst = reinterpret_cast<std::byte*>(base + (cs - begin));
      op.tag = r.tag;
      op.direct = true;
      ops_.push_back(op);
    }
  }

  // Pieces cut on the grid AlignDown(offset) + k * staging_chunk, so each
  // aligned read fits in one staging buffer.
  void AddStaged(const Run& r) {
    std::uint64_t a = options_.alignment;
    std::uint64_t end = r.offset + r.length;
    for (std::uint64_t grid = AlignDown(r.offset, a); grid < end; grid += staging_chunk_) {
      std::uint64_t p = std::max(r.offset, grid);
      std::uint64_t q = std::min(end, grid + staging_chunk_);
      ReadOp op;
      op.file = r.file;
      op.offset = AlignDown(p, a);
      op.length = AlignUp(q, a) - op.offset;
      op.copy_skip = p - op.offset;
      op.copy_length = op.delivered = q - p;
      op.required = op.copy_skip + op.copy_length;
      op.copy_dst = reinterpret_cast<std::byte*>(r.dst + (p - r.offset));
      op.tag = r.tag;
      op.direct = true;
      staging_size_ = std::max(staging_size_, op.length);
      ops_.push_back(op);
    }
  }

  const PlanOptions& options_;
  std::vector<Window> windows_;  // sorted by begin
  std::uint64_t chunk_ = 0;         // buffered reads
  std::uint64_t direct_chunk_ = 0;  // O_DIRECT reads (aligned)
  std::uint64_t staging_chunk_ = 0;
  std::uint64_t staging_size_ = 0;
  std::vector<ReadOp> ops_;
};

// Cuts the ordered list into contiguous shares of about total / workers
// bytes: an op goes to the worker whose share holds the op's midpoint.
void Balance(std::vector<ReadOp> ops, ReadPlan& plan, unsigned workers) {
  long double total = 0;
  for (const ReadOp& op : ops) total += static_cast<long double>(op.length);
  std::vector<std::size_t> count(workers, 0);
  long double before = 0;
  for (const ReadOp& op : ops) {
    long double mid = before + static_cast<long double>(op.length) / 2;
    auto w = static_cast<unsigned>(mid * workers / total);
    ++count[std::min(w, workers - 1)];
    before += static_cast<long double>(op.length);
    plan.bytes_requested += op.length;
    plan.bytes_delivered += op.delivered;
  }
  plan.bounds.assign(1, 0);
  for (std::size_t c : count) plan.bounds.push_back(plan.bounds.back() + c);
  plan.ops = std::move(ops);
}

}  // namespace

Result<ReadPlan> PlanReads(std::span<const Segment> segments, const PlanOptions& options) {
  if (Status s = ValidateOptions(options, segments); !s) return std::move(s).error();
  for (const Segment& seg : segments) {
    if (Status s = ValidateSegment(seg); !s) return std::move(s).error();
  }
  // Interim: strided segments are expanded into one range per run here
  // (issue 11 replaces this with strided planning).
  std::vector<Segment> expanded;
  for (const Segment& seg : segments) {
    for (std::uint64_t i = 0; i < seg.count; ++i) {
      Segment run = seg;
      run.count = 1;
      run.offset = seg.offset + i * seg.src_stride;
      run.dst = seg.dst + i * seg.dst_stride;
      expanded.push_back(run);
    }
  }
  std::vector<Run> runs = Coalesce(expanded, options.direct);
  if (Status s = LinkNeighbours(runs); !s) return std::move(s).error();

  std::vector<Window> windows(options.windows.begin(), options.windows.end());
  std::sort(windows.begin(), windows.end(),
            [](const Window& x, const Window& y) { return x.begin < y.begin; });
  Builder builder(options, std::move(windows));
  for (const Run& r : runs) builder.Add(r);

  if (builder.ops().size() >= kMaxPlanOps) {
    return MakeError(ErrorCode::kResourceExhausted, "", "",
                     "read plan: " + std::to_string(builder.ops().size()) +
                         " reads, more than one load can schedule");
  }
  ReadPlan plan;
  plan.staging_size = builder.staging_size();
  for (const ReadOp& op : builder.ops()) {  // interim: an op counts for its first tag
    if (op.tag >= plan.tags.size()) plan.tags.resize(op.tag + 1);
    plan.tags[op.tag].bytes_read += op.length;
    plan.tags[op.tag].read_ops += 1;
  }
  Balance(std::move(builder.ops()), plan, options.workers);
  return plan;
}

}  // namespace shardload
