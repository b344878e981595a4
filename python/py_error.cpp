// shardload::Error -> shardload.Error, or the subclass _error.error_class
// picks (see py_error.h).
// Requires the GIL.
#include "py_error.h"

#include <string>

#include "convert.h"

namespace shardload::python {

py::object MakePyError(const Error& error) {
  std::string code(ErrorCodeName(error.code));
  py::object error_class =
      py::module_::import("shardload._error").attr("error_class")(code, error.sys_errno);
  return error_class(FsText(error.ToString()),
                     py::arg("code") = code,
                     py::arg("code_number") = static_cast<int>(error.code),
                     py::arg("path") = FsText(error.path),
                     py::arg("tensor") = FsText(error.tensor),
                     py::arg("detail") = FsText(error.detail),
                     py::arg("errno") = error.sys_errno);
}

void ThrowError(const Error& error) {
  py::object exception = MakePyError(error);
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception.ptr())), exception.ptr());
  throw py::error_already_set();
}

}  // namespace shardload::python
