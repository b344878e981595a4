// The _shardload extension module: the compiled core of the `shardload`
// Python package (python/shardload/). The package checks arguments and
// shapes results; this module resolves, plans and loads through the public
// C++ API (include/shardload/), releasing the GIL while it reads.
// Thread-safe to import once; see each part for its contract.
#include <pybind11/pybind11.h>

#include "bindings.h"
#include "memory.h"

PYBIND11_MODULE(_shardload, m) {
  m.doc() = "Compiled core of the shardload package (docs/python.md); use `import shardload`.";
  m.attr("__version__") = SHARDLOAD_VERSION;
  shardload::python::BindCheckpoint(m);
  shardload::python::BindMemory(m);
  shardload::python::BindCooperate(m);
  shardload::python::BindLoad(m);
  shardload::python::BindInto(m);
  shardload::python::BindSerialize(m);
}
