// The parts of the _shardload extension, each adding its functions and
// classes to the module (module.cpp calls them in order).
// Thread-compatible: called once, at import, with the GIL held.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>

#include <string>

#include "shardload/checkpoint.h"
#include "shardload/loader.h"

namespace shardload::python {

namespace py = pybind11;

// A resolved checkpoint description as the Python package holds it
// (shardload.Checkpoint wraps one). Immutable.
class CheckpointHandle {
 public:
  explicit CheckpointHandle(Checkpoint checkpoint) : checkpoint_(std::move(checkpoint)) {}
  const Checkpoint& checkpoint() const { return checkpoint_; }

 private:
  Checkpoint checkpoint_;
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
// "auto", "buffered" or "direct" (_args.MODES) as LoadOptions::mode.
IoMode ParseMode(const std::string& mode);

void BindCheckpoint(py::module_& m);  // bind_checkpoint.cpp
void BindLoad(py::module_& m);        // bind_load.cpp
void BindInto(py::module_& m);        // bind_into.cpp

}  // namespace shardload::python
