// GPUDirect Storage reads of a device load (docs/device.md, "GPUDirect
// Storage"): which bytes cuFileRead puts straight into device memory, and the
// threads that run those reads.
//
//   local tensors + marked segments --SplitForGds--> aligned GDS reads
//                                                  + the device ranges left
//                                                    to the staged path
//   GDS reads --RunGdsReads (threads, cuFileRead)--> device memory
//
// A read goes to cuFile when its segment is one contiguous run read with
// O_DIRECT from a file with a registered cuFile handle: its part from the
// first to the last alignment boundary of the file range, provided the
// device address of that part is aligned too; the head and tail, strided
// runs (rank slices split along columns), buffered (page-cache) ranges and
// tensors with padding to zero stay staged, each staged range a tensor of
// its own for RunDeviceWaves.
// Thread-safe: SplitForGds is a pure function; RunGdsReads runs on the
// calling thread plus workers of its own, joined before it returns.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "device/cufile.h"
#include "device/cuda_runtime.h"
#include "device/waves.h"
#include "plan/read_op.h"
#include "shardload/error.h"

namespace shardload {

struct GdsRead {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;  // aligned
  std::uint64_t length = 0;  // aligned, <= the chunk
  std::byte* device = nullptr;  // aligned device address
  std::uint32_t tensor = 0;     // index into the load's tensors (for errors)
};

struct GdsSplit {
  std::vector<GdsRead> reads;
  std::vector<DeviceTensor> staged;        // device ranges left to staging
  std::vector<Segment> staged_segments;    // tag = index into staged
  std::uint64_t gds_bytes = 0;
};

// Splits TENSORS (segments tagged by index, Segment::direct set) between
// cuFile and staging. HANDLES[file]: its cuFile handle (null: staged).
// ALIGNMENT: a power of two (file offset, length and device address);
// CHUNK: largest read (rounded down to ALIGNMENT, at least ALIGNMENT).
GdsSplit SplitForGds(std::span<const DeviceTensor> tensors, std::span<const Segment> segments,
                     std::span<const CuFileHandle> handles, std::uint64_t alignment,
                     std::uint64_t chunk);

// The cuFile handles of a load's files, deregistered by the destructor.
// Thread-compatible (Register); handles() may be read by many threads.
class GdsHandles {
 public:
  GdsHandles(const CuFileSession& cufile, std::size_t files)
      : cufile_(cufile), handles_(files, nullptr) {}
  GdsHandles(const GdsHandles&) = delete;
  GdsHandles& operator=(const GdsHandles&) = delete;
  ~GdsHandles();
  // cuFileHandleRegister of FD (opened with O_DIRECT) for FILE; on failure
  // the file keeps no handle and the reason is returned.
  Status Register(std::uint32_t file, int fd);
  std::span<const CuFileHandle> handles() const { return handles_; }

 private:
  const CuFileSession& cufile_;
  std::vector<CuFileHandle> handles_;
};

// A device range registered with cuFileBufRegister, deregistered by the
// destructor. Thread-compatible.
class GdsBuffer {
 public:
  explicit GdsBuffer(const CuFileSession& cufile) : cufile_(cufile) {}
  GdsBuffer(const GdsBuffer&) = delete;
  GdsBuffer& operator=(const GdsBuffer&) = delete;
  ~GdsBuffer();
  // Registers [BASE, BASE + SIZE); on failure nothing is registered and the
  // reason is returned.
  Status Register(const std::byte* base, std::size_t size);
  const std::byte* base() const { return base_; }

 private:
  const CuFileSession& cufile_;
  const std::byte* base_ = nullptr;
};

struct GdsFiles {
  std::span<const CuFileHandle> handles;  // by file index (null: none)
  std::span<const std::string> paths;     // by file index, for errors
};

struct GdsRunOptions {
  unsigned threads = 1;
  // The registered buffer every read lands in (cuFileBufRegister), else
  // null: each read then passes its own address as the base.
  const std::byte* registered_base = nullptr;
  std::atomic<bool>* stop = nullptr;               // set: no further read starts
  std::function<void(std::uint64_t)> delivered;    // bytes done, per read (thread-safe)
};

struct GdsReport {
  std::uint64_t bytes = 0;
  std::uint64_t reads = 0;        // cuFileRead calls
  std::uint64_t short_reads = 0;  // reads resumed after returning less
};

// Runs READS on options.threads threads (each makes RUNTIME's device
// current first). Errors: kIoError naming the file, the tensor (from
// TENSORS) and the offset: cuFileRead's errno (-1), its CU_FILE_* error
// (other negative values) or end of file (0 bytes); the first error stops
// the others (and sets options.stop). Returns after every thread is joined.
Result<GdsReport> RunGdsReads(const CuFileSession& cufile, const CudaRuntime& runtime,
                              std::span<const GdsRead> reads, const GdsFiles& files,
                              std::span<const DeviceTensor> tensors,
                              const GdsRunOptions& options);

}  // namespace shardload
