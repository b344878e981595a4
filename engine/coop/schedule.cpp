// The union of the members' reads, in waves and slots (schedule.h).
// Thread-safe: pure functions.
#include "coop/schedule.h"

#include <algorithm>
#include <tuple>

namespace shardload::coop {

namespace {

struct Extent {
  std::uint32_t file;
  std::uint64_t begin;
  std::uint64_t end;
};

std::uint64_t AlignDown(std::uint64_t v, std::uint64_t a) { return v & ~(a - 1); }
std::uint64_t AlignUp(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }

// Merges strided needs of equal (file, count, stride) that sit side by side
// (one member's rows right after another's within each row period).
std::vector<Need> MergePatterns(std::vector<Need> needs) {
  std::sort(needs.begin(), needs.end(), [](const Need& a, const Need& b) {
    return std::tie(a.file, a.count, a.stride, a.offset, a.length) <
           std::tie(b.file, b.count, b.stride, b.offset, b.length);
  });
  std::vector<Need> out;
  for (const Need& n : needs) {
    if (!out.empty()) {
      Need& last = out.back();
      const bool same = last.file == n.file && last.count == n.count && last.stride == n.stride;
      if (same && n.count > 1 && n.offset <= last.offset + last.length &&
          n.offset + n.length <= last.offset + last.stride) {
        last.length = std::max(last.length, n.offset + n.length - last.offset);
        continue;
      }
    }
    out.push_back(n);
  }
  return out;
}

// Sorted, with overlapping or touching extents merged.
std::vector<Extent> Union(std::vector<Extent> extents) {
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    return std::tie(a.file, a.begin) < std::tie(b.file, b.begin);
  });
  std::vector<Extent> out;
  for (const Extent& e : extents) {
    if (!out.empty() && out.back().file == e.file && e.begin <= out.back().end) {
      out.back().end = std::max(out.back().end, e.end);
    } else {
      out.push_back(e);
    }
  }
  return out;
}

std::uint64_t Bytes(const std::vector<Extent>& extents) {
  std::uint64_t n = 0;
  for (const Extent& e : extents) n += e.end - e.begin;
  return n;
}

}  // namespace

std::vector<Need> NeedsOf(std::span<const Segment> segments) {
  std::vector<Need> needs;
  needs.reserve(segments.size());
  for (const Segment& s : segments) {
    if (s.length == 0 || s.count == 0) continue;
    const bool rows = s.count > 1 && s.src_stride != s.length;
    if (rows) {
      needs.push_back(Need{s.file, s.offset, s.length, s.count, s.src_stride});
    } else {
      needs.push_back(Need{s.file, s.offset, s.length * s.count, 1, 0});
    }
  }
  return needs;
}

std::pair<std::size_t, std::size_t> Schedule::WaveRange(std::uint32_t w) const {
  auto lo = std::lower_bound(pieces.begin(), pieces.end(), w,
                             [](const Piece& p, std::uint32_t v) { return p.wave < v; });
  auto hi = std::upper_bound(lo, pieces.end(), w,
                             [](std::uint32_t v, const Piece& p) { return v < p.wave; });
  return {static_cast<std::size_t>(lo - pieces.begin()),
          static_cast<std::size_t>(hi - pieces.begin())};
}

Schedule MakeSchedule(std::vector<Need> needs, const ScheduleOptions& options) {
  const std::uint64_t a = options.alignment;
  Schedule out;
  out.half = AlignDown(options.staging / 2, a);
  std::vector<Extent> covering, aligned;
  std::uint64_t rows_bytes = 0;
  for (const Need& n : MergePatterns(std::move(needs))) {
    covering.push_back({n.file, n.offset, n.end()});
    rows_bytes += n.count * n.length;
  }
  covering = Union(std::move(covering));
  out.bytes_needed = Bytes(covering);
  // Gaps: covering bytes minus the rows in them (overlapping rows of
  // different tensors cannot happen: tensors do not overlap in a file).
  out.bytes_gaps = out.bytes_needed > rows_bytes ? out.bytes_needed - rows_bytes : 0;
  for (const Extent& e : covering) {
    const std::uint64_t size =
        e.file < options.file_sizes.size() ? options.file_sizes[e.file] : e.end;
    aligned.push_back({e.file, AlignDown(e.begin, a), std::min(AlignUp(e.end, a), std::max(size, e.end))});
  }
  aligned = Union(std::move(aligned));
  out.bytes = Bytes(aligned);

  // Waves: fill each half in file order; an extent is cut at aligned offsets.
  struct Cut {
    std::uint32_t file;
    std::uint64_t offset, length, staging;
  };
  std::vector<std::vector<Cut>> waves;
  std::uint64_t used = out.half;  // forces a first wave
  for (const Extent& e : aligned) {
    std::uint64_t at = e.begin;
    while (at < e.end) {
      if (used >= out.half) {
        waves.emplace_back();
        used = 0;
      }
      const std::uint64_t take = std::min(e.end - at, out.half - used);
      const std::uint64_t base = (waves.size() - 1) % 2 * out.half;
      waves.back().push_back({e.file, at, take, base + used});
      used += AlignUp(take, a);
      at += take;
    }
  }
  out.waves = static_cast<std::uint32_t>(waves.size());
  // Slots: each wave's bytes in `members` contiguous shares of about equal
  // bytes, cut on the alignment grid.
  const unsigned members = std::max(1u, options.members);
  for (std::uint32_t w = 0; w < waves.size(); ++w) {
    std::uint64_t total = 0;  // in alignment units, as slots fill (a short
                              // piece at a file's end takes a whole unit)
    for (const Cut& c : waves[w]) total += AlignUp(c.length, a);
    const std::uint64_t share = std::max(a, AlignUp((total + members - 1) / members, a));
    std::uint32_t slot = 0;
    std::uint64_t in_slot = 0;
    for (const Cut& c : waves[w]) {
      std::uint64_t done = 0;
      while (done < c.length) {
        if (in_slot >= share && slot + 1 < members) {
          ++slot;
          in_slot = 0;
        }
        const std::uint64_t room = slot + 1 < members ? share - in_slot : c.length - done;
        const std::uint64_t take = std::min(c.length - done, room);
        out.pieces.push_back({c.file, c.offset + done, take, c.staging + done, w, slot});
        in_slot += AlignUp(take, a);
        done += take;
      }
    }
  }
  return out;
}

}  // namespace shardload::coop
