// _shardload.load_into and _shardload.read_ranges: loads into memory the
// caller owns (torch tensors, numpy arrays), given as raw addresses by the
// Python package, which has checked names, shapes, dtypes, contiguity and
// overlap and keeps the buffers alive for the call.
//   load_into:   whole tensors (or a tensor-parallel rank's slices) into
//                one buffer each (Loader::LoadInto).
//   read_ranges: byte ranges of one shard, back to back into one buffer
//                (safe_open's get_slice): a Checkpoint that describes each
//                range as a U8 tensor, loaded with LoadInto, so the ranges
//                are read in parallel and nothing else is read.
// Both run interruptibly (run_load.h). Thread-safe: load_into runs on the
// CheckpointHandle's Loader (WithLoader), read_ranges on a Loader of its own
// over the ranges; the checkpoint is immutable.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "bindings.h"
#include "dtypes.h"
#include "memory.h"
#include "py_error.h"
#include "run_load.h"
#include "shardload/device.h"
#include "shardload/loader.h"

namespace shardload::python {
namespace {

constexpr std::uint64_t kBytesPerRangeWorker = 8ULL << 20;

void* Address(std::uintptr_t address) { return reinterpret_cast<void*>(address); }

// Runs LOAD ((Loader&, const LoadRequest&) -> Result<LoadStats>) with
// REQUEST on a Loader from WITH_LOADER (which takes a function of Loader&),
// interruptibly, with PROGRESS bridged; returns the stats as a dict.
// Cooperates with the node's ranks as COOP says (MakeCooperation).
template <typename WithLoader, typename F>
py::dict RunLoadInto(WithLoader&& with_loader, LoadRequest request, const py::object& progress,
                     const CoopArgs& coop, F&& load) {
  auto token = std::make_shared<CancelToken>();
  request.cancel = token;
  std::optional<ProgressBridge> bridge;
  if (!progress.is_none()) request.progress = bridge.emplace(progress, *token).Function();
  Result<LoadStats> stats = RunInterruptible(*token, [&]() -> Result<LoadStats> {
    Result<Cooperation> cooperation = MakeCooperation(coop);
    if (!cooperation) return std::move(cooperation).error();
    request.cooperate = std::move(*cooperation);
    return with_loader([&](Loader& loader) { return load(loader, request); });
  });
  if (bridge) bridge->RethrowIfFailed();
  return StatsDict(ValueOrThrow(std::move(stats)));
}

py::dict LoadInto(const CheckpointHandle& handle, const std::vector<std::string>& names,
                  const std::vector<std::uintptr_t>& addresses,
                  const std::vector<std::uint64_t>& sizes, unsigned threads,
                  const std::string& mode, unsigned rank, unsigned world,
                  const std::string& plan_kind, std::string plan_path, std::string plan_text,
                  const py::object& progress, const std::string& device,
                  const py::object& communicator, std::string coop_job, unsigned local_rank,
                  unsigned local_size, std::uint64_t staging_bytes, double peer_timeout_s) {
  if (names.size() != addresses.size() || names.size() != sizes.size()) {
    throw py::value_error("load_into: names, addresses and sizes differ in length");
  }
  std::vector<Destination> destinations;
  for (std::size_t i = 0; i < names.size(); ++i) {
    destinations.push_back({names[i], Address(addresses[i]), sizes[i]});
  }
  LoaderOptions options;
  options.threads = threads;
  options.device = ValueOrThrow(ParseDevice(device));
  Result<PlanSource> plan = WithoutGil([&] {
    return MakePlanSource(plan_kind, std::move(plan_path), std::move(plan_text));
  });
  LoadRequest request;
  request.mode = ParseMode(mode);
  request.tp = TensorParallel{rank, world, ValueOrThrow(std::move(plan))};
  const CoopArgs coop = MakeCoopArgs(communicator, std::move(coop_job), local_rank, local_size,
                                     staging_bytes, peer_timeout_s);
  auto with_loader = [&](auto&& f) { return handle.WithLoader(options, f); };
  return RunLoadInto(with_loader, std::move(request), progress, coop,
                     [&](Loader& loader, const LoadRequest& r) {
                       return loader.LoadInto(destinations, r);
                     });
}

py::dict ReadRanges(const CheckpointHandle& handle, std::uint32_t shard,
                    const std::vector<std::uint64_t>& offsets,
                    const std::vector<std::uint64_t>& lengths, std::uintptr_t address,
                    const std::string& mode) {
  if (offsets.size() != lengths.size()) {
    throw py::value_error("read_ranges: offsets and lengths differ in length");
  }
  Checkpoint ranges = ValueOrThrow(handle.checkpoint().ByteRanges(shard, offsets, lengths));
  std::vector<Destination> destinations;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    destinations.push_back({std::to_string(i), static_cast<std::byte*>(Address(address)) + total,
                            lengths[i]});
    total += lengths[i];
  }
  LoaderOptions options;  // small slices: fewer workers than CPUs
  const long cpus = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  options.threads = static_cast<unsigned>(
      std::clamp<std::uint64_t>(total / kBytesPerRangeWorker, 1, static_cast<std::uint64_t>(cpus)));
  auto with_loader = [&](auto&& f) -> Result<LoadStats> {  // a Loader of the ranges
    Result<Loader> loader = Loader::Open(ranges, options);
    if (!loader) return std::move(loader).error();
    return f(*loader);
  };
  LoadRequest request;
  request.mode = ParseMode(mode);
  return RunLoadInto(with_loader, request, py::none(), CoopArgs{},
                     [&](Loader& loader, const LoadRequest& r) {
                       return loader.LoadInto(destinations, r);
                     });
}

// How numpy views a tensor of DTYPE (a safetensors name), SHAPE and NBYTES
// bytes: (numpy type string, view shape, bits per element).
py::tuple NumpyView(const std::string& dtype, const std::vector<std::uint64_t>& shape,
                    std::uint64_t nbytes) {
  std::optional<DType> parsed = ParseDType(dtype);
  if (!parsed) throw py::value_error("unknown dtype " + dtype);
  py::tuple view_shape = py::cast(ViewShape(*parsed, shape, nbytes));
  return py::make_tuple(py::str(std::string(NumpyTypeString(*parsed))), view_shape,
                        DTypeBits(*parsed));
}

}  // namespace

void BindInto(py::module_& m) {
  m.def("load_into", &LoadInto, py::arg("checkpoint"), py::kw_only(), py::arg("names"),
        py::arg("addresses"), py::arg("sizes"), py::arg("threads"), py::arg("mode"),
        py::arg("rank"), py::arg("world"), py::arg("plan_kind"), py::arg("plan_path"),
        py::arg("plan_text"), py::arg("progress"), py::arg("device") = "cpu",
        SHARDLOAD_COOP_PY_ARGS,
        "Loads each named tensor into the buffer at addresses[i] of sizes[i] bytes (device "
        "pointers on DEVICE when it is cuda:N) "
        "(checked by the caller); returns the stats. Interruptible. Cooperates as load() does.");
  m.def("read_ranges", &ReadRanges, py::arg("checkpoint"), py::kw_only(), py::arg("shard"),
        py::arg("offsets"), py::arg("lengths"), py::arg("address"), py::arg("mode") = "auto",
        "Reads byte ranges of one shard back to back into the buffer at ADDRESS "
        "(sum(lengths) bytes, checked by the caller); returns the stats. Interruptible.");
  m.def("numpy_view", &NumpyView, py::arg("dtype"), py::arg("shape"), py::arg("nbytes"),
        "(numpy type string, view shape, bits per element) of a tensor, as load() views it.");
}

}  // namespace shardload::python
