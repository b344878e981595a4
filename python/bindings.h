// The parts of the _shardload extension, each adding its functions and
// classes to the module (module.cpp calls them in order).
// Thread-compatible: called once, at import, with the GIL held.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "shardload/checkpoint.h"
#include "shardload/cooperate.h"
#include "shardload/loader.h"

namespace shardload::python {

namespace py = pybind11;

// A resolved checkpoint description as the Python package holds it
// (shardload.Checkpoint wraps one), and the Loader its calls share: opened
// on the first call, kept with its options (and its cached plans) for the
// next, reopened only when a call asks for other LoaderOptions. A call made
// while another one uses the kept Loader (another Python thread) gets a
// Loader of its own. The checkpoint is immutable; thread-safe.
class CheckpointHandle {
 public:
  explicit CheckpointHandle(Checkpoint checkpoint)
      : checkpoint_(std::move(checkpoint)), kept_(std::make_shared<Kept>()) {}
  const Checkpoint& checkpoint() const { return checkpoint_; }

  // Runs F(Loader&) (returning a Result or Status) on a Loader of this
  // checkpoint with OPTIONS (only threads, device and gds are set by the
  // package). REQUIRES: the GIL is NOT held.
  template <typename F>
  auto WithLoader(const LoaderOptions& options, F&& f) const
      -> decltype(f(std::declval<Loader&>())) {
    using R = decltype(f(std::declval<Loader&>()));
    std::unique_ptr<Loader> loader = Take(options);
    if (!loader) {
      Result<Loader> opened = Loader::Open(checkpoint_, options);
      if (!opened) return R(std::move(opened).error());
      loader = std::make_unique<Loader>(std::move(*opened));
    }
    R result = f(*loader);
    Keep(std::move(loader));
    return result;
  }

 private:
  struct Kept {
    std::mutex mu;
    std::unique_ptr<Loader> loader;  // guarded by mu; null while a call uses it
  };
  static bool Same(const LoaderOptions& a, const LoaderOptions& b) {
    return a.threads == b.threads && a.device == b.device && a.gds == b.gds;
  }
  std::unique_ptr<Loader> Take(const LoaderOptions& options) const {
    std::lock_guard<std::mutex> lock(kept_->mu);
    if (kept_->loader && Same(kept_->loader->options(), options)) return std::move(kept_->loader);
    return nullptr;
  }
  void Keep(std::unique_ptr<Loader> loader) const {
    std::lock_guard<std::mutex> lock(kept_->mu);
    kept_->loader = std::move(loader);  // the latest options win
  }

  Checkpoint checkpoint_;
  std::shared_ptr<Kept> kept_;
};

// Runs F with the GIL released and returns what it returns.
// REQUIRES: the GIL is held; F touches no Python object.
template <typename F>
auto WithoutGil(F&& f) {
  py::gil_scoped_release release;
  return f();
}

// The plan as _args.py passes it: KIND "" (none), "hf", "file" (PATH holds
// our plan or a config.json, told apart by its content), "json" or
// "hf_config_json" (TEXT in memory, errors naming PATH). bind_load.cpp.
Result<PlanSource> MakePlanSource(const std::string& kind, std::string path, std::string text);
// "auto", "buffered" or "direct" (_args.MODES) as LoadRequest::mode.
IoMode ParseMode(const std::string& mode);

// What load() cooperates through (shardload/_cooperate.py decides): a
// Communicator (a Python subclass of shardload.Communicator), else JOB
// non-empty: ConnectLocal(JOB, LOCAL_RANK, LOCAL_SIZE), else alone. Zeros
// keep Cooperation's defaults. Copied into the loading thread: holds no
// Python reference of its own (the caller keeps the communicator alive).
struct CoopArgs {
  std::shared_ptr<Communicator> communicator;
  std::string job;
  unsigned local_rank = 0;
  unsigned local_size = 1;
  std::uint64_t staging_bytes = 0;
  std::chrono::milliseconds peer_timeout{0};
};
// The Cooperation of ARGS; ConnectLocal's error when the node's ranks do not
// meet. REQUIRES: the GIL is NOT held (ConnectLocal waits). bind_cooperate.cpp.
Result<Cooperation> MakeCooperation(const CoopArgs& args);
// CoopArgs from the binding's arguments (COMMUNICATOR None or a
// shardload.Communicator). REQUIRES: the GIL is held.
CoopArgs MakeCoopArgs(const py::object& communicator, std::string job, unsigned local_rank,
                      unsigned local_size, std::uint64_t staging_bytes, double peer_timeout_s);
// The cooperation keyword arguments of _shardload.load and load_into, all
// defaulted: communicator, coop_job, local_rank, local_size, staging_bytes,
// peer_timeout_s (shardload/_cooperate.py, CoopArg.kwargs).
#define SHARDLOAD_COOP_PY_ARGS                                                         \
  py::arg("communicator") = py::none(), py::arg("coop_job") = std::string(),           \
      py::arg("local_rank") = 0u, py::arg("local_size") = 1u,                          \
      py::arg("staging_bytes") = std::uint64_t{0}, py::arg("peer_timeout_s") = 0.0

void BindCheckpoint(py::module_& m);  // bind_checkpoint.cpp
void BindLoad(py::module_& m);        // bind_load.cpp
void BindInto(py::module_& m);        // bind_into.cpp
void BindCooperate(py::module_& m);   // bind_cooperate.cpp
void BindSerialize(py::module_& m);   // bind_serialize.cpp

}  // namespace shardload::python
