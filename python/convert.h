// Small conversions from library values to Python values.
// Paths, and messages that quote them, may hold bytes that are not UTF-8
// (Linux file names are bytes): FsText decodes them as os.fsdecode() does
// (UTF-8, undecodable bytes as surrogate escapes), so that os.fsencode()
// gives the original bytes back.
// REQUIRES (every function): the GIL is held.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace shardload::python {

namespace py = pybind11;

inline py::str FsText(std::string_view text) {
  PyObject* str = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()),
                                       "surrogateescape");
  if (str == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(str);
}

// A shape as a tuple of ints.
inline py::tuple ShapeTuple(const std::vector<std::uint64_t>& shape) {
  py::tuple out(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) out[i] = shape[i];
  return out;
}

}  // namespace shardload::python
