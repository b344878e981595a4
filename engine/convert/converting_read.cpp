// ReadConverted: segments are cut into pieces of at most chunk_size file
// bytes (consecutive runs read in one pread when the gaps between them are
// no larger than the runs; a long run split at element boundaries); threads
// take pieces in order, pread each into their staging buffer and convert.
#include "convert/converting_read.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <new>
#include <optional>
#include <system_error>
#include <vector>

#include "convert/convert.h"
#include "util/errno_error.h"
#include "util/parallel.h"

namespace shardload {
namespace {

// Runs [run_begin, run_end) of a segment, bytes [skip, skip + length) of each.
struct Piece {
  std::size_t segment = 0;
  std::uint64_t run_begin = 0;
  std::uint64_t run_end = 0;
  std::uint64_t skip = 0;
  std::uint64_t length = 0;
};

std::uint64_t ElementBytes(DType d) { return std::max(1u, DTypeBits(d) / 8); }

void CutSegment(const ConvertSegment& s, std::size_t index, std::uint64_t chunk,
                std::vector<Piece>& out) {
  if (s.length == 0) return;
  if (s.length > chunk) {  // each run on its own, split
    std::uint64_t step = std::max<std::uint64_t>(chunk / 8 * 8, 8);
    for (std::uint64_t r = 0; r < s.count; ++r) {
      for (std::uint64_t at = 0; at < s.length; at += step) {
        out.push_back(Piece{index, r, r + 1, at, std::min(step, s.length - at)});
      }
    }
    return;
  }
  bool read_gaps = s.count > 1 && s.src_stride - s.length <= s.length;
  std::uint64_t per_piece = 1;
  if (read_gaps) per_piece = std::max<std::uint64_t>(1, (chunk - s.length) / s.src_stride + 1);
  for (std::uint64_t r = 0; r < s.count; r += per_piece) {
    out.push_back(Piece{index, r, std::min(s.count, r + per_piece), 0, s.length});
  }
}

class Worker {
 public:
  Worker(std::span<const ConvertSegment> segments, const ConvertReadOptions& options)
      : segments_(segments), options_(options) {}

  Status Run(const Piece& p) {
    const ConvertSegment& s = segments_[p.segment];
    std::uint64_t first = s.offset + p.run_begin * s.src_stride + p.skip;
    std::uint64_t span = (p.run_end - p.run_begin - 1) * s.src_stride + p.length;
    if (staging_.size() < span) staging_.resize(span);
    if (Status st = ReadFully(s, first, span); !st) return st;
    std::uint64_t in = ElementBytes(s.from), out = ElementBytes(s.to);
    if (options_.before_write) {
      std::byte* begin = s.dst + p.run_begin * s.dst_stride + p.skip / in * out;
      std::byte* end = s.dst + (p.run_end - 1) * s.dst_stride + (p.skip + p.length) / in * out;
      options_.before_write(begin, static_cast<std::size_t>(end - begin));
    }
    for (std::uint64_t r = p.run_begin; r < p.run_end; ++r) {
      const std::byte* src = staging_.data() + (r - p.run_begin) * s.src_stride;
      std::byte* dst = s.dst + r * s.dst_stride + p.skip / in * out;
      ConvertElements(s.from, s.to, src, dst, p.length / in);
    }
    const std::uint64_t written = (p.run_end - p.run_begin) * (p.length / in * out);
    stats.bytes_written += written;
    if (options_.after_write) options_.after_write(written);
    return {};
  }

  ConvertReadStats stats;

 private:
  Status ReadFully(const ConvertSegment& s, std::uint64_t offset, std::uint64_t length) {
    const std::string& path = options_.paths[s.file];
    std::uint64_t done = 0;
    while (done < length) {
      ssize_t n = ::pread(options_.fds[s.file], staging_.data() + done, length - done,
                          static_cast<off_t>(offset + done));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) {
        return ErrnoError(path, "pread at offset " + std::to_string(offset + done), errno,
                          Tag(s));
      }
      if (n == 0) {
        return MakeError(ErrorCode::kTruncated, path, Tag(s),
                         "the file ended at byte " + std::to_string(offset + done) +
                             ", before the end of the tensor's bytes");
      }
      done += static_cast<std::uint64_t>(n);
      ++stats.read_ops;
    }
    stats.bytes_read += length;
    return {};
  }

  std::string Tag(const ConvertSegment& s) const {
    return s.tag < options_.tag_names.size() ? options_.tag_names[s.tag] : std::string();
  }

  std::span<const ConvertSegment> segments_;
  const ConvertReadOptions& options_;
  std::vector<std::byte> staging_;
};

}  // namespace

Result<ConvertReadStats> ReadConverted(std::span<const ConvertSegment> segments,
                                       const ConvertReadOptions& options) {
  try {
    std::uint64_t chunk = std::max<std::uint64_t>(options.chunk_size, 64);
    std::vector<Piece> pieces;
    for (std::size_t i = 0; i < segments.size(); ++i) CutSegment(segments[i], i, chunk, pieces);
    unsigned threads = std::max(1u, options.threads);
    std::vector<std::unique_ptr<Worker>> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.push_back(std::make_unique<Worker>(segments, options));
    }
    std::vector<std::optional<Error>> errors(pieces.size());
    std::atomic<bool> stop{false};
    ForEachParallelWorker(pieces.size(), threads, [&](unsigned w, std::size_t i) {
      if (stop.load(std::memory_order_relaxed)) return;
      try {
        if (Status s = workers[w]->Run(pieces[i]); !s) {
          errors[i] = std::move(s).error();
          stop.store(true, std::memory_order_relaxed);
        }
      } catch (const std::bad_alloc&) {
        errors[i] = MakeError(ErrorCode::kResourceExhausted, "", "", "out of memory");
        stop.store(true, std::memory_order_relaxed);
      }
    });
    for (auto& e : errors) {
      if (e) return std::move(*e);
    }
    ConvertReadStats total;
    for (const auto& w : workers) {
      total.bytes_read += w->stats.bytes_read;
      total.bytes_written += w->stats.bytes_written;
      total.read_ops += w->stats.read_ops;
    }
    return total;
  } catch (const std::bad_alloc&) {
    return MakeError(ErrorCode::kResourceExhausted, "", "", "out of memory");
  } catch (const std::system_error& e) {
    return MakeError(ErrorCode::kResourceExhausted, "", "",
                     std::string("cannot start a conversion thread: ") + e.what());
  }
}

}  // namespace shardload
