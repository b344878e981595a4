// _shardload.parse_buffer, serialize and write_file: safetensors files in
// memory and the writer (shardload/in_memory.h, shardload/writer.h), for
// shardload/_serialize.py. Tensor bytes are passed as (address, length) of
// memory the caller keeps alive for the call (numpy arrays, torch tensors,
// TensorSpec); nothing is copied on the way in, and the GIL is released
// while bytes are parsed, copied or written.
// Thread-compatible; every function requires the GIL on entry.
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bindings.h"
#include "convert.h"
#include "py_error.h"
#include "shardload/in_memory.h"
#include "shardload/writer.h"

namespace shardload::python {
namespace {

// (name, dtype code, shape, address, length), as _serialize.py passes them.
using TensorTuple = std::tuple<std::string, std::string, std::vector<std::uint64_t>,
                               std::uintptr_t, std::uint64_t>;
using MetadataPairs = std::optional<std::vector<std::pair<std::string, std::string>>>;

std::vector<TensorData> ToTensorData(const std::vector<TensorTuple>& tensors) {
  std::vector<TensorData> out;
  out.reserve(tensors.size());
  for (const auto& [name, dtype, shape, address, length] : tensors) {
    std::optional<DType> parsed = ParseDType(dtype);
    if (!parsed) throw py::value_error("unknown safetensors dtype " + dtype);
    const auto* bytes = reinterpret_cast<const std::byte*>(address);
    out.push_back({name, *parsed, shape, {bytes, static_cast<std::size_t>(length)}, {}});
  }
  return out;
}

std::optional<Metadata> ToMetadata(const MetadataPairs& metadata) {
  if (!metadata) return std::nullopt;
  return Metadata(metadata->begin(), metadata->end());
}

// The file's bytes as a new bytes object (one copy of each tensor).
py::bytes Serialize(const std::vector<TensorTuple>& tensors, const MetadataPairs& metadata) {
  std::vector<TensorData> data = ToTensorData(tensors);
  std::optional<Metadata> meta = ToMetadata(metadata);
  SerializedLayout layout =
      ValueOrThrow(WithoutGil([&] { return LayOutSafetensorsBuffer(data, meta, "<bytes>"); }));
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(layout.total_size));
  if (raw == nullptr) throw py::error_already_set();
  py::bytes out = py::reinterpret_steal<py::bytes>(raw);
  std::span<std::byte> dest(reinterpret_cast<std::byte*>(PyBytes_AS_STRING(raw)),
                            static_cast<std::size_t>(layout.total_size));
  Status s = WithoutGil([&] { return SerializeSafetensorsInto(data, layout, dest, "<bytes>"); });
  if (!s.ok()) ThrowError(s.error());
  return out;
}

void WriteFile(const std::string& path, const std::vector<TensorTuple>& tensors,
               const MetadataPairs& metadata) {
  std::vector<TensorData> data = ToTensorData(tensors);
  std::optional<Metadata> meta = ToMetadata(metadata);
  Status s = WithoutGil([&] { return WriteSafetensors(path, data, meta); });
  if (!s.ok()) ThrowError(s.error());
}

py::tuple TensorTupleOf(const BufferTensor& t) {
  return py::make_tuple(py::str(t.name), py::str(std::string(DTypeName(t.dtype))),
                        ShapeTuple(t.shape), t.offset, t.size);
}

// (metadata dict or None, [(name, dtype, shape, offset, nbytes)] in file
// order) of the safetensors file held in DATA (any C-contiguous buffer).
py::tuple ParseBuffer(const py::buffer& data, const std::string& name) {
  Py_buffer view;
  if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  std::span<const std::byte> bytes(static_cast<const std::byte*>(view.buf),
                                   static_cast<std::size_t>(view.len));
  Result<BufferHeader> header = WithoutGil([&] { return ParseSafetensorsBuffer(bytes, name); });
  PyBuffer_Release(&view);
  BufferHeader parsed = ValueOrThrow(std::move(header));
  py::object metadata = py::none();
  if (parsed.metadata) {
    py::dict dict;
    for (const auto& [key, value] : *parsed.metadata) dict[py::str(key)] = py::str(value);
    metadata = dict;
  }
  py::list tensors;
  for (const BufferTensor& t : parsed.tensors) tensors.append(TensorTupleOf(t));
  return py::make_tuple(metadata, tensors);
}

}  // namespace

void BindSerialize(py::module_& m) {
  m.def("parse_buffer", &ParseBuffer, py::arg("data"), py::arg("name") = "<bytes>",
        "Validates the safetensors file held in DATA; (metadata, tensors in file order).");
  m.def("serialize", &Serialize, py::arg("tensors"), py::arg("metadata") = py::none(),
        "The safetensors file of TENSORS [(name, dtype, shape, address, length)] as bytes.");
  m.def("write_file", &WriteFile, py::arg("path"), py::arg("tensors"),
        py::arg("metadata") = py::none(),
        "Writes TENSORS to PATH (bytes) atomically, as the C++ writer does.");
}

}  // namespace shardload::python
