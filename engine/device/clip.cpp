// ClipSegment (clip.h). Thread-safe: pure arithmetic.
#include "device/clip.h"

#include <algorithm>

namespace shardload {
namespace {

std::uintptr_t RunStart(const Segment& s, std::uint64_t i) {
  return reinterpret_cast<std::uintptr_t>(s.dst) + i * s.dst_stride;
}

// Run I of S cut to [lo, hi), which it must overlap.
Segment PartialRun(const Segment& s, std::uint64_t i, std::uintptr_t lo, std::uintptr_t hi) {
  const std::uintptr_t begin = RunStart(s, i);
  const std::uintptr_t cut_begin = std::max(begin, lo);
  const std::uintptr_t cut_end = std::min<std::uintptr_t>(begin + s.length, hi);
  Segment out = s;
  out.offset = s.offset + i * s.src_stride + (cut_begin - begin);
  out.length = cut_end - cut_begin;
  out.dst = reinterpret_cast<std::byte*>(cut_begin);
  out.count = 1;
  out.src_stride = out.dst_stride = 0;
  return out;
}

bool Whole(const Segment& s, std::uint64_t i, std::uintptr_t lo, std::uintptr_t hi) {
  return RunStart(s, i) >= lo && RunStart(s, i) + s.length <= hi;
}

}  // namespace

void ClipSegment(const Segment& s, std::uintptr_t lo, std::uintptr_t hi,
                 std::vector<Segment>& out) {
  if (s.length == 0 || s.count == 0 || lo >= hi) return;
  const std::uintptr_t d = reinterpret_cast<std::uintptr_t>(s.dst);
  // Runs overlapping [lo, hi) are first..last: run i ends after lo and
  // starts before hi.
  std::uint64_t first = 0;
  if (d + s.length <= lo) {
    if (s.count == 1 || s.dst_stride == 0) return;
    first = (lo - (d + s.length)) / s.dst_stride + 1;
  }
  if (d >= hi) return;
  std::uint64_t last = 0;
  if (s.count > 1 && s.dst_stride > 0) last = std::min(s.count - 1, (hi - 1 - d) / s.dst_stride);
  if (first > last) return;
  if (!Whole(s, first, lo, hi)) out.push_back(PartialRun(s, first++, lo, hi));
  if (first > last) return;
  const bool last_whole = Whole(s, last, lo, hi);
  const std::uint64_t whole_end = last_whole ? last + 1 : last;  // runs [first, whole_end)
  if (whole_end > first) {
    Segment mid = s;
    mid.offset = s.offset + first * s.src_stride;
    mid.dst = reinterpret_cast<std::byte*>(RunStart(s, first));
    mid.count = whole_end - first;
    if (mid.count == 1) mid.src_stride = mid.dst_stride = 0;
    out.push_back(mid);
  }
  if (!last_whole) out.push_back(PartialRun(s, last, lo, hi));
}

}  // namespace shardload
