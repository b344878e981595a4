// Raises shardload errors in Python: a shardload::Error becomes a
// shardload.Error exception (python/shardload/_error.py) carrying code,
// code_number, path, tensor, detail and errno.
// REQUIRES (every function): the calling thread holds the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>

#include "shardload/error.h"

namespace shardload::python {

namespace py = pybind11;

// A shardload.Error instance describing ERROR, not raised (warnings).
py::object MakePyError(const Error& error);

// Sets shardload.Error for ERROR as the pending Python exception and throws
// py::error_already_set, which pybind11 turns back into that exception.
[[noreturn]] void ThrowError(const Error& error);

// The value of RESULT, or ThrowError(RESULT's error).
template <typename T>
T ValueOrThrow(Result<T>&& result) {
  if (!result) ThrowError(result.error());
  return std::move(result).value();
}

}  // namespace shardload::python
