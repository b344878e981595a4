// _shardload.load and _shardload.plan: a LoadRequest run on the
// CheckpointHandle's Loader (kept across calls with its LoaderOptions), with
// the GIL released; a load runs interruptibly (run_load.h: Ctrl-C cancels
// it). A Python progress callback is called from the loader's worker
// threads with the GIL re-acquired.
// Thread-safe: CheckpointHandle::WithLoader hands each call a Loader of its
// own use; the checkpoint is immutable.
#include <memory>
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
#include "run_load.h"
#include "shardload/device.h"
#include "shardload/loader.h"

namespace shardload::python {
// The plan as _args.py passes it: KIND "" (none), "hf", "file" (PATH holds
// our plan or a config.json, told apart by its content), "json" or
// "hf_config_json" (TEXT in memory, errors naming PATH).
Result<PlanSource> MakePlanSource(const std::string& kind, std::string path, std::string text) {
  if (kind.empty()) return PlanSource::None();
  if (kind == "hf") return PlanSource::Hf();
  if (kind == "file") return PlanSource::FromFileContent(path);
  if (kind == "json") return PlanSource::Json(std::move(text), std::move(path));
  if (kind == "hf_config_json") return PlanSource::HfConfigJson(std::move(text), std::move(path));
  return MakeError(ErrorCode::kInvalidArgument, "", "", "unknown plan kind " + kind);
}

IoMode ParseMode(const std::string& mode) {
  return mode == "direct" ? IoMode::kDirect : mode == "buffered" ? IoMode::kBuffered : IoMode::kAuto;
}

namespace {

// One of _args.READ_STRATEGIES (checked there); anything else is auto.
ReadStrategy ParseReadStrategy(const std::string& name) {
  for (ReadStrategy s : {ReadStrategy::kExact, ReadStrategy::kStaged, ReadStrategy::kMixed,
                         ReadStrategy::kMapped}) {
    if (name == ReadStrategyName(s)) return s;
  }
  return ReadStrategy::kAuto;
}

// What the Python package passes for a load or a plan (shardload/_args.py
// has checked it).
struct Request {
  std::vector<std::string> globs;
  unsigned threads = 0;
  std::string mode = "auto";  // "auto", "buffered" or "direct"
  unsigned world = 1;
  PlanSource plan;
  double max_over_read = 0;  // 0: LoadRequest's default
  std::string read_strategy = "auto";  // _args.READ_STRATEGIES
  std::string verify;        // manifest path, "" for none
  std::string dtype;         // "F32", "F16", "BF16", "" for none
};

// The LoadRequest of REQUEST for RANK (no progress, cancel or cooperation).
LoadRequest MakeLoadRequest(const Request& request, unsigned rank) {
  LoadRequest out;
  out.selection.globs = request.globs;
  out.tp = TensorParallel{rank, request.world, request.plan};
  out.mode = ParseMode(request.mode);
  if (request.max_over_read > 0) out.max_over_read = request.max_over_read;
  out.read_strategy = ParseReadStrategy(request.read_strategy);
  out.verify = request.verify;
  if (!request.dtype.empty()) out.dtype = ParseDType(request.dtype);
  return out;
}

py::object Load(const CheckpointHandle& handle, const Request& request, unsigned rank,
                const py::object& progress, const std::string& device, bool gds,
                const CoopArgs& coop) {
  LoaderOptions options;
  options.threads = request.threads;
  options.gds = gds;
  options.device = ValueOrThrow(ParseDevice(device));
  LoadRequest load = MakeLoadRequest(request, rank);
  auto token = std::make_shared<CancelToken>();
  load.cancel = token;
  std::optional<ProgressBridge> bridge;
  if (!progress.is_none()) load.progress = bridge.emplace(progress, *token).Function();
  Result<LoadedCheckpoint> loaded = RunInterruptible(*token, [&]() -> Result<LoadedCheckpoint> {
    Result<Cooperation> cooperation = MakeCooperation(coop);
    if (!cooperation) return std::move(cooperation).error();
    load.cooperate = std::move(*cooperation);
    return handle.WithLoader(options, [&](Loader& loader) { return loader.Load(load); });
  });
  if (bridge) bridge->RethrowIfFailed();
  return py::cast(LoadedMemory(ValueOrThrow(std::move(loaded))));
}

// The fields of shardload.QuantSplit for a quantized tensor, else None.
py::object QuantDict(const PlannedTensor& t) {
  if (t.follows.empty() && t.per == 0) return py::none();
  py::list ranges;
  for (const QuantRange& r : t.ranges) {
    ranges.append(py::make_tuple(py::make_tuple(r.weight_begin, r.weight_end),
                                 py::make_tuple(r.begin, r.end)));
  }
  py::dict d;
  d["follows"] = t.follows.empty() ? py::object(py::none()) : py::object(py::str(t.follows));
  d["split_dim"] = t.split_dim;
  d["per"] = t.per;
  d["ranges"] = py::tuple(std::move(ranges));
  d["straddles"] = t.straddles;
  return d;
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
    d["strategy"] = py::str(t.strategy);
    d["bytes_read"] = t.bytes_read;
    d["read_ops"] = t.read_ops;
    d["quant"] = QuantDict(t);
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

// RANKS empty: every rank, from one resolution of the plan (PlanRanks).
py::list Plan(const CheckpointHandle& handle, const Request& request,
              const std::vector<unsigned>& ranks) {
  LoaderOptions options;
  options.threads = request.threads;
  Result<std::vector<RankPlan>> plans = WithoutGil([&]() -> Result<std::vector<RankPlan>> {
    return handle.WithLoader(options, [&](Loader& loader) -> Result<std::vector<RankPlan>> {
      if (ranks.empty()) return loader.PlanRanks(MakeLoadRequest(request, 0));
      std::vector<RankPlan> out;
      for (unsigned rank : ranks) {
        Result<RankPlan> plan = loader.Plan(MakeLoadRequest(request, rank));
        if (!plan) return std::move(plan).error();
        out.push_back(std::move(*plan));
      }
      return out;
    });
  });
  py::list out;
  for (const RankPlan& plan : ValueOrThrow(std::move(plans))) out.append(RankPlanDict(plan));
  return out;
}

// A Request from the binding's arguments (reads a "file" plan, GIL released).
Request MakeRequest(std::vector<std::string> globs, unsigned threads, std::string mode,
                    unsigned world, const std::string& plan_kind, std::string plan_path,
                    std::string plan_text, double max_over_read, std::string read_strategy) {
  Result<PlanSource> plan = WithoutGil([&] {
    return MakePlanSource(plan_kind, std::move(plan_path), std::move(plan_text));
  });
  return Request{std::move(globs), threads, std::move(mode), world,
                 ValueOrThrow(std::move(plan)), max_over_read, std::move(read_strategy), {}, {}};
}

}  // namespace

void BindLoad(py::module_& m) {
  m.def(
      "load",
      [](const CheckpointHandle& handle, std::vector<std::string> globs, unsigned threads,
         std::string mode, unsigned rank, unsigned world, const std::string& plan_kind,
         std::string plan_path, std::string plan_text, const py::object& progress,
         double max_over_read, std::string read_strategy, const std::string& device, std::string verify,
         std::string dtype, bool gds, const py::object& communicator, std::string coop_job,
         unsigned local_rank, unsigned local_size, std::uint64_t staging_bytes,
         double peer_timeout_s) {
        const CoopArgs coop = MakeCoopArgs(communicator, std::move(coop_job), local_rank,
                                           local_size, staging_bytes, peer_timeout_s);
        Request request = MakeRequest(std::move(globs), threads, std::move(mode), world,
                                      plan_kind, std::move(plan_path), std::move(plan_text),
                                      max_over_read, std::move(read_strategy));
        request.verify = std::move(verify);
        request.dtype = std::move(dtype);
        return Load(handle, request, rank, progress, device, gds, coop);
      },
      py::arg("checkpoint"), py::kw_only(), py::arg("globs"), py::arg("threads"),
      py::arg("mode"), py::arg("rank"), py::arg("world"), py::arg("plan_kind"),
      py::arg("plan_path"), py::arg("plan_text"), py::arg("progress"),
      py::arg("max_over_read") = 0.0, py::arg("read_strategy") = "auto",
      py::arg("device") = "cpu",
      py::arg("verify") = std::string(), py::arg("dtype") = std::string(),
      py::arg("gds") = false,
      SHARDLOAD_COOP_PY_ARGS,
      "Loads into a fresh LoadedMemory; the GIL is released while reading. Cooperates with "
      "the node's ranks through COMMUNICATOR (a shardload.Communicator), else through "
      "ConnectLocal(COOP_JOB, LOCAL_RANK, LOCAL_SIZE) when COOP_JOB is set.");
  m.def(
      "plan",
      [](const CheckpointHandle& handle, std::vector<std::string> globs, unsigned threads,
         std::string mode, const std::vector<unsigned>& ranks, unsigned world,
         const std::string& plan_kind, std::string plan_path, std::string plan_text,
         double max_over_read, std::string read_strategy) {
        return Plan(handle,
                    MakeRequest(std::move(globs), threads, std::move(mode), world, plan_kind,
                                std::move(plan_path), std::move(plan_text), max_over_read,
                                std::move(read_strategy)),
                    ranks);
      },
      py::arg("checkpoint"), py::kw_only(), py::arg("globs"), py::arg("threads"),
      py::arg("mode"), py::arg("ranks"), py::arg("world"), py::arg("plan_kind"),
      py::arg("plan_path"), py::arg("plan_text"), py::arg("max_over_read") = 0.0,
      py::arg("read_strategy") = "auto",
      "One RankPlan dict per rank of RANKS (all of them when empty), without reading "
      "tensor data.");
  m.def("_live_dlpack_exports", &LiveDlpackExports);
}

}  // namespace shardload::python
