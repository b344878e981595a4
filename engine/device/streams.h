// CopyStreams: the CUDA streams a load copies to its device on, and, per
// half of a staging ring, one event per stream marking the end of that
// half's copies. Destruction waits for every stream first, so staging is
// never released under a copy. Used by the wave loop (waves.h) and the
// copier of a cooperative load's staging (staged_copy.h).
// Thread-compatible: one thread drives a CopyStreams.
#pragma once

#include <string>
#include <vector>

#include "device/cuda_runtime.h"
#include "shardload/error.h"

namespace shardload {

class CopyStreams {
 public:
  explicit CopyStreams(const CudaRuntime& rt) : rt_(rt) {}
  CopyStreams(const CopyStreams&) = delete;
  CopyStreams& operator=(const CopyStreams&) = delete;
  ~CopyStreams() {
    for (CudaStream s : streams_) (void)rt_.stream_synchronize(s);
    for (CudaEvent e : events_) (void)rt_.event_destroy(e);
    for (CudaStream s : streams_) (void)rt_.stream_destroy(s);
    (void)rt_.get_last_error();
  }

  Status Create(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      CudaStream s = nullptr;
      if (CudaStatus st = rt_.stream_create(&s); st != kCudaSuccess) {
        return CudaError(rt_, ErrorCode::kResourceExhausted, "", "cudaStreamCreate", st);
      }
      streams_.push_back(s);
    }
    for (unsigned i = 0; i < 2 * n; ++i) {
      CudaEvent e = nullptr;
      CudaStatus st = rt_.event_create_with_flags(&e, kCudaEventDisableTiming);
      if (st != kCudaSuccess) {
        return CudaError(rt_, ErrorCode::kResourceExhausted, "", "cudaEventCreate", st);
      }
      events_.push_back(e);
    }
    return {};
  }

  unsigned size() const { return static_cast<unsigned>(streams_.size()); }
  CudaStream stream(std::size_t i) const { return streams_[i % streams_.size()]; }

  // Marks the end of the copies issued so far for HALF.
  Status Record(unsigned half) {
    for (unsigned i = 0; i < size(); ++i) {
      CudaStatus st = rt_.event_record(events_[half * size() + i], streams_[i]);
      if (st != kCudaSuccess) return Failed("cudaEventRecord", st);
    }
    recorded_[half] = true;
    return {};
  }

  // Waits for HALF's copies (none yet recorded: returns at once).
  Status Wait(unsigned half, const std::string& what) {
    if (!recorded_[half]) return {};
    // Every event is waited for, even after an error: the caller may free
    // the staging next.
    CudaStatus first = kCudaSuccess;
    for (unsigned i = 0; i < size(); ++i) {
      CudaStatus st = rt_.event_synchronize(events_[half * size() + i]);
      if (first == kCudaSuccess) first = st;
    }
    recorded_[half] = false;
    if (first != kCudaSuccess) return Failed("cudaEventSynchronize (" + what + ")", first);
    return {};
  }

  // Waits for every copy issued so far (WHAT names them in an error).
  Status Finish(const std::string& what = "the last copies") {
    CudaStatus first = kCudaSuccess;  // every stream waited for, as in Wait
    for (CudaStream s : streams_) {
      CudaStatus st = rt_.stream_synchronize(s);
      if (first == kCudaSuccess) first = st;
    }
    if (first != kCudaSuccess) return Failed("cudaStreamSynchronize (" + what + ")", first);
    return {};
  }

 private:
  Error Failed(const std::string& what, CudaStatus st) const {
    return CudaError(rt_, ErrorCode::kIoError, "", what, st);
  }

  const CudaRuntime& rt_;
  std::vector<CudaStream> streams_;
  std::vector<CudaEvent> events_;
  bool recorded_[2] = {false, false};
};

}  // namespace shardload
