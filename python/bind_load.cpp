// _shardload.load and _shardload.plan: a Loader over a CheckpointHandle's
// checkpoint, run with the GIL released. A Python progress callback is
// called from the loader's worker threads with the GIL re-acquired.
// Thread-safe: each call makes its own Loader; the checkpoint is immutable.
#include <atomic>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "bindings.h"
#include "convert.h"
#include "dlpack_export.h"
#include "memory.h"
#include "py_error.h"
#include "shardload/loader.h"

namespace shardload::python {
namespace {

// Calls a Python progress callback (bytes_done, bytes_total) from worker
// threads. The GIL serializes the calls. The first exception the callback
// raises is kept, the callback is not called again, and RethrowIfFailed
// raises it once the load has returned.
class ProgressBridge {
 public:
  explicit ProgressBridge(py::object callback) : callback_(std::move(callback)) {}

  // For LoadOptions::progress. REQUIRES: this outlives the load.
  std::function<void(std::uint64_t, std::uint64_t)> Function() {
    return [this](std::uint64_t done, std::uint64_t total) { Call(done, total); };
  }

  // REQUIRES: the GIL is held and the load has returned.
  void RethrowIfFailed() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void Call(std::uint64_t done, std::uint64_t total) noexcept {
    if (failed_.load(std::memory_order_acquire)) return;
    py::gil_scoped_acquire gil;
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      callback_(done, total);
    } catch (...) {
      error_ = std::current_exception();
      failed_.store(true, std::memory_order_release);
    }
  }

  py::object callback_;
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;  // guarded by the GIL
};

// What the Python package passes for a load or a plan (shardload/_args.py
// has checked it).
struct Request {
  std::vector<std::string> globs;
  unsigned threads = 0;
  bool direct = false;
  unsigned world = 1;
  std::string plan;
  std::string verify;  // manifest path, "" for none
  std::string dtype;   // "F32", "F16", "BF16", "" for none
};

LoadOptions Options(const Request& request) {
  LoadOptions options;
  options.threads = request.threads;
  options.direct = request.direct;
  options.verify = request.verify;
  if (!request.dtype.empty()) options.dtype = ParseDType(request.dtype);
  return options;
}

Selection MakeSelection(const Request& request) {
  Selection selection;
  selection.globs = request.globs;
  return selection;
}

py::object Load(const CheckpointHandle& handle, const Request& request, unsigned rank,
                const py::object& progress) {
  LoadOptions options = Options(request);
  std::optional<ProgressBridge> bridge;
  if (!progress.is_none()) options.progress = bridge.emplace(progress).Function();
  const Selection selection = MakeSelection(request);
  const TensorParallel tp{rank, request.world, request.plan};
  Result<LoadedCheckpoint> loaded = WithoutGil([&]() -> Result<LoadedCheckpoint> {
    Result<Loader> loader = Loader::Open(handle.checkpoint(), std::move(options));
    if (!loader) return std::move(loader).error();
    return loader->Load(selection, tp);
  });
  if (bridge) bridge->RethrowIfFailed();
  return py::cast(LoadedMemory(ValueOrThrow(std::move(loaded))));
}

// The fields of shardload.RankPlan (tensors: those of shardload.PlannedTensor).
py::dict RankPlanDict(const RankPlan& plan) {
  py::list tensors;
  for (const PlannedTensor& t : plan.tensors) {
    py::dict d;
    d["name"] = py::str(t.name);
    d["dtype"] = py::str(std::string(DTypeName(t.dtype)));
    d["shape"] = ShapeTuple(t.shape);
    d["nbytes"] = t.bytes;
    d["rule"] = py::str(t.rule);
    tensors.append(std::move(d));
  }
  py::dict out;
  out["rank"] = plan.rank;
  out["world"] = plan.world;
  out["tensors"] = std::move(tensors);
  out["bytes"] = plan.bytes;
  out["local_bytes"] = plan.local_bytes;
  out["bytes_read"] = plan.bytes_read;
  out["read_ops"] = plan.read_ops;
  return out;
}

py::list Plan(const CheckpointHandle& handle, const Request& request,
              const std::vector<unsigned>& ranks) {
  const Selection selection = MakeSelection(request);
  Result<std::vector<RankPlan>> plans = WithoutGil([&]() -> Result<std::vector<RankPlan>> {
    Result<Loader> loader = Loader::Open(handle.checkpoint(), Options(request));
    if (!loader) return std::move(loader).error();
    std::vector<RankPlan> out;
    for (unsigned rank : ranks) {
      Result<RankPlan> plan = loader->Plan(selection, {rank, request.world, request.plan});
      if (!plan) return std::move(plan).error();
      out.push_back(std::move(*plan));
    }
    return out;
  });
  py::list out;
  for (const RankPlan& plan : ValueOrThrow(std::move(plans))) out.append(RankPlanDict(plan));
  return out;
}

}  // namespace

void BindLoad(py::module_& m) {
  m.def(
      "load",
      [](const CheckpointHandle& handle, std::vector<std::string> globs, unsigned threads,
         bool direct, unsigned rank, unsigned world, std::string plan,
         const py::object& progress, std::string verify, std::string dtype) {
        return Load(handle,
                    {std::move(globs), threads, direct, world, std::move(plan), std::move(verify),
                     std::move(dtype)},
                    rank, progress);
      },
      py::arg("checkpoint"), py::kw_only(), py::arg("globs"), py::arg("threads"),
      py::arg("direct"), py::arg("rank"), py::arg("world"), py::arg("plan"), py::arg("progress"),
      py::arg("verify") = std::string(), py::arg("dtype") = std::string(),
      "Loads into a fresh LoadedMemory; the GIL is released while reading.");
  m.def(
      "plan",
      [](const CheckpointHandle& handle, std::vector<std::string> globs, unsigned threads,
         bool direct, const std::vector<unsigned>& ranks, unsigned world, std::string plan) {
        return Plan(handle, {std::move(globs), threads, direct, world, std::move(plan), {}, {}}, ranks);
      },
      py::arg("checkpoint"), py::kw_only(), py::arg("globs"), py::arg("threads"),
      py::arg("direct"), py::arg("ranks"), py::arg("world"), py::arg("plan"),
      "One RankPlan dict per rank of RANKS, without reading tensor data.");
  m.def("_live_dlpack_exports", &LiveDlpackExports);
}

}  // namespace shardload::python
