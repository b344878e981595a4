// What a load reports (LoadStats), with the two choices it reports on: the
// I/O backend (Backend) and the read mode (IoMode). Shared by the loader's
// public API (shardload/loader.h) and the stages that fill it in (engine/io,
// engine/device); it belongs to engine/plan, the lowest stage below both.
// Thread-compatible value types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shardload {

enum class Backend { kAuto, kIoUring, kPread };
// "auto", "io_uring" or "pread" (the CLI's --backend spelling).
std::string_view BackendName(Backend backend);

// Buffered or O_DIRECT reads (LoadOptions::mode).
enum class IoMode { kAuto, kBuffered, kDirect };
// "auto", "buffered", "direct".
const char* IoModeName(IoMode mode);

// What a cooperative load did (LoadOptions::cooperate, docs/cooperate.md).
struct CooperationStats {
  unsigned local_rank = 0;
  unsigned local_size = 0;           // 0: the load did not cooperate
  std::string how;                   // the leader's choice, in words: "staged: ..."
                                     // or "each rank reads its own: ..." (page cache)
  std::uint64_t node_bytes = 0;      // bytes the node reads (union of the ranks' reads)
  std::uint64_t read_for_node = 0;   // of those, read by this member into staging
  std::uint64_t bytes_staged = 0;    // this member's bytes copied out of staging
  std::uint64_t bytes_direct = 0;    // this member's bytes read directly
  std::uint64_t bytes_shared = 0;    // this member's bytes mapped (copy-on-write,
                                     // whole pages) from the node's one copy of
                                     // what every member needs whole
                                     // (replicated tensors)
  unsigned waves = 0;
  double wait_seconds = 0;           // waiting for the other members
};

struct LoadStats {
  std::uint64_t tensors = 0;
  std::uint64_t bytes = 0;        // bytes delivered into destinations
  std::uint64_t bytes_read = 0;   // bytes read from storage
  std::uint64_t read_ops = 0;     // reads submitted, resubmissions excluded
  std::uint64_t short_reads = 0;  // reads resumed after returning less
  std::uint64_t retries = 0;      // EAGAIN / EINTR resubmissions
  double seconds = 0;             // wall time of the load call
  Backend backend = Backend::kPread;  // kIoUring or kPread (BackendName)
  std::string backend_reason;     // why this backend, in words
  unsigned threads = 0;
  IoMode mode = IoMode::kAuto;        // LoadOptions::mode
  std::uint64_t bytes_direct = 0;     // of bytes_read, read with O_DIRECT
  std::uint64_t bytes_buffered = 0;   // of bytes_read, read through the page cache
  std::string mode_note;              // e.g. files read buffered as their file
                                      // system refuses O_DIRECT ("" if none)
  std::string memory;             // how the destination memory was backed, and why
  std::string device = "cpu";     // where the tensors landed: "cpu" or "cuda:N"
  std::string transfer;           // device loads: waves, staging and streams used,
                                  // cuFile reads (--gds), or why GDS was not used
  std::string verified;           // LoadOptions::verify: what was checked, in words
  CooperationStats cooperation;   // LoadOptions::cooperate
};

}  // namespace shardload
