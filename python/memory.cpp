// LoadedMemory (see memory.h): numpy views, dtypes, stats and DLPack exports
// of one load.
// Thread-compatible; requires the GIL.
#include "memory.h"

#include <pybind11/numpy.h>

#include <array>
#include <optional>
#include <string>
#include <utility>

#include "convert.h"
#include "dlpack_export.h"
#include "dtypes.h"

namespace shardload::python {
namespace {

// One numpy view over TENSOR's bytes, kept alive by BASE.
py::array MakeView(const LoadedTensor& tensor, const py::dtype& dtype, py::handle base) {
  const std::vector<ssize_t> shape = ViewShape(tensor.dtype, tensor.shape, tensor.data.size());
  const std::vector<ssize_t> strides =
      ContiguousStrides(shape, static_cast<ssize_t>(ViewItemSize(tensor.dtype)));
  // With a base (not an array), pybind11 makes the view writeable; numpy
  // works out its alignment flag from the address.
  return py::array(dtype, shape, strides, tensor.data.data(), base);
}

}  // namespace

LoadedMemory::LoadedMemory(LoadedCheckpoint loaded)
    : loaded_(std::make_shared<const LoadedCheckpoint>(std::move(loaded))) {}

py::dict LoadedMemory::Arrays(py::object self) {
  const LoadedMemory& memory = self.cast<const LoadedMemory&>();
  if (memory.loaded().device().is_cuda()) {
    throw py::value_error("the tensors are on " + DeviceName(memory.loaded().device()) +
                          ": numpy arrays need host memory (use framework=\"torch\")");
  }
  std::array<std::optional<py::dtype>, kNumDTypes> dtypes;  // made once per dtype
  py::dict out;
  for (const LoadedTensor& t : memory.loaded().tensors()) {
    std::optional<py::dtype>& dtype = dtypes[static_cast<std::size_t>(t.dtype)];
    if (!dtype) dtype = py::dtype::from_args(py::str(std::string(NumpyTypeString(t.dtype))));
    out[py::str(t.name)] = MakeView(t, *dtype, self);
  }
  return out;
}

py::dict LoadedMemory::DTypes() const {
  py::dict out;
  for (const LoadedTensor& t : loaded().tensors()) {
    out[py::str(t.name)] = py::str(std::string(DTypeName(t.dtype)));
  }
  return out;
}

py::dict LoadedMemory::Stats() const { return StatsDict(loaded().stats()); }

namespace {

// A cooperative load's part of the stats, as `load --json`'s "cooperation".
py::dict CooperationDict(const CooperationStats& c) {
  py::dict out;
  out["local_rank"] = c.local_rank;
  out["local_size"] = c.local_size;
  out["how"] = FsText(c.how);
  out["node_bytes"] = c.node_bytes;
  out["read_for_node"] = c.read_for_node;
  out["bytes_staged"] = c.bytes_staged;
  out["bytes_direct"] = c.bytes_direct;
  out["bytes_shared"] = c.bytes_shared;
  out["waves"] = c.waves;
  out["wait_seconds"] = c.wait_seconds;
  return out;
}

}  // namespace

py::dict StatsDict(const LoadStats& s) {
  py::dict out;
  out["tensors"] = s.tensors;
  out["bytes"] = s.bytes;
  out["bytes_read"] = s.bytes_read;
  out["seconds"] = s.seconds;
  out["gb_per_s"] = s.seconds > 0 ? static_cast<double>(s.bytes) / s.seconds / 1e9 : 0.0;
  out["backend"] = std::string(BackendName(s.backend));
  out["backend_reason"] = FsText(s.backend_reason);
  out["threads"] = s.threads;
  out["direct"] = s.bytes_direct > 0;
  out["mode"] = std::string(IoModeName(s.mode));
  out["bytes_direct"] = s.bytes_direct;
  out["bytes_buffered"] = s.bytes_buffered;
  out["mode_note"] = FsText(s.mode_note);
  out["read_ops"] = s.read_ops;
  out["short_reads"] = s.short_reads;
  out["retries"] = s.retries;
  out["memory"] = FsText(s.memory);
  out["device"] = s.device;
  out["transfer"] = s.transfer;
  if (!s.verified.empty()) out["verified"] = FsText(s.verified);
  if (s.cooperation.local_size > 0) out["cooperation"] = CooperationDict(s.cooperation);
  return out;
}

std::uint64_t LoadedMemory::NBytes() const {
  std::uint64_t n = 0;
  for (const LoadedTensor& t : loaded().tensors()) n += t.data.size();
  return n;
}

py::capsule LoadedMemory::Dlpack(const std::string& name, bool integer) const {
  const LoadedTensor* t = loaded().Find(name);
  if (t == nullptr) throw py::key_error(name);
  return ExportDlpack(loaded_, *t, integer ? IntegerDlpackType(t->dtype)
                                           : NaturalDlpackType(t->dtype));
}

void BindMemory(py::module_& module) {
  py::class_<LoadedMemory>(module, "LoadedMemory",
                           "The library-owned memory of one load: the `.base` of every "
                           "numpy array it returned. Freed when the last array, DLPack "
                           "tensor and reference to it are gone.")
      .def("arrays", &LoadedMemory::Arrays)
      .def("dtypes", &LoadedMemory::DTypes)
      .def("stats", &LoadedMemory::Stats)
      .def("dlpack", &LoadedMemory::Dlpack, py::arg("name"), py::arg("integer") = false)
      .def_property_readonly("nbytes", &LoadedMemory::NBytes)
      .def("__len__", [](const LoadedMemory& self) { return self.loaded().tensors().size(); })
      .def("__repr__", [](const LoadedMemory& self) {
        return "<shardload.LoadedMemory: " + std::to_string(self.loaded().tensors().size()) +
               " tensors, " + std::to_string(self.NBytes()) + " bytes>";
      });
}

}  // namespace shardload::python
