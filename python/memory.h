// LoadedMemory: the Python owner of one load's library-owned memory (a
// LoadedCheckpoint). Every numpy array of the load is a view with this
// object as its `.base`, and every DLPack export holds a reference to the
// same LoadedCheckpoint, so the memory lives until the last array, tensor
// and LoadedMemory are gone.
// Thread-compatible; the loaded bytes may be read from any thread.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>

#include "shardload/loader.h"

namespace shardload::python {

namespace py = pybind11;

class LoadedMemory {
 public:
  explicit LoadedMemory(LoadedCheckpoint loaded);

  const LoadedCheckpoint& loaded() const { return *loaded_; }
  std::shared_ptr<const LoadedCheckpoint> shared() const { return loaded_; }

  // name -> numpy view whose base is SELF (this object, as Python sees it).
  static py::dict Arrays(py::object self);
  // name -> safetensors dtype name ("BF16").
  py::dict DTypes() const;
  // The LoadStats fields, as `shardload load --json` names them.
  py::dict Stats() const;
  // Tensor NAME as a DLPack capsule: its natural type, or with INTEGER a
  // plain integer of the same width (dtypes.h). KeyError when absent.
  py::capsule Dlpack(const std::string& name, bool integer) const;
  // Bytes of all the tensors.
  std::uint64_t NBytes() const;

 private:
  std::shared_ptr<const LoadedCheckpoint> loaded_;
};

// The LoadStats fields, as `shardload load --json` names them.
py::dict StatsDict(const LoadStats& stats);

void BindMemory(py::module_& module);

}  // namespace shardload::python
