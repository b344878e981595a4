// Exports one loaded tensor as a DLPack `dltensor` capsule for zero-copy
// consumers (torch.utils.dlpack.from_dlpack). The capsule's
// DLManagedTensor owns a reference to the loaded memory, so a consumer's
// tensor keeps it alive without the Python object that made it; its deleter
// touches no Python state (it may run on any thread, without the GIL).
// Thread-safe; Export requires the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>

#include "dtypes.h"
#include "shardload/loader.h"

namespace shardload::python {

namespace py = pybind11;

// A capsule named "dltensor" holding TENSOR (which OWNER holds) as TYPE,
// over the shape of its view (dtypes.h: ViewShape). An unconsumed capsule
// frees its DLManagedTensor when collected; a consumer renames it
// "used_dltensor" and calls the deleter when done.
// REQUIRES: TYPE has the view's element width; the GIL is held.
py::capsule ExportDlpack(std::shared_ptr<const LoadedCheckpoint> owner,
                         const LoadedTensor& tensor, DlpackType type);

// DLManagedTensors made and not yet deleted (tests check for leaks).
std::int64_t LiveDlpackExports();

}  // namespace shardload::python
