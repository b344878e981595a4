// _shardload.open_checkpoint and CheckpointHandle: the checkpoint
// description (tensors, shards, metadata, warnings) as plain Python values
// (dicts, tuples, str), which shardload/_checkpoint.py turns into its
// dataclasses. Only headers are read.
// Thread-compatible; every function requires the GIL.
#include <string>

#include "bindings.h"
#include "convert.h"
#include "py_error.h"

namespace shardload::python {
namespace {

py::dict MetadataDict(const Metadata& metadata) {
  py::dict out;
  for (const auto& [key, value] : metadata) out[py::str(key)] = py::str(value);
  return out;
}

// The fields of shardload.TensorInfo.
py::dict TensorDict(const Checkpoint& checkpoint, const TensorInfo& t) {
  const ShardInfo& shard = checkpoint.shards()[t.shard];
  py::dict out;
  out["name"] = py::str(t.name);
  out["dtype"] = py::str(std::string(DTypeName(t.dtype)));
  out["shape"] = ShapeTuple(t.shape);
  out["shard"] = FsText(shard.name);
  out["offset"] = t.offset;
  out["nbytes"] = t.size;
  return out;
}

// The fields of shardload.ShardInfo.
py::dict ShardDict(const ShardInfo& s) {
  py::dict out;
  out["name"] = FsText(s.name);
  out["path"] = FsText(s.path);
  out["file_size"] = s.file_size;
  out["header_size"] = s.header_size;
  out["data_offset"] = s.data_offset;
  out["metadata"] = s.metadata ? py::object(MetadataDict(*s.metadata)) : py::object(py::none());
  out["num_tensors"] = s.num_tensors;
  return out;
}

CheckpointHandle Open(const std::string& path) {
  Result<Checkpoint> checkpoint = WithoutGil([&] { return Checkpoint::Open(path); });
  return CheckpointHandle(ValueOrThrow(std::move(checkpoint)));
}

py::list Names(const CheckpointHandle& h) {
  py::list out;
  for (const TensorInfo& t : h.checkpoint().tensors()) out.append(py::str(t.name));
  return out;
}

py::object Find(const CheckpointHandle& h, const std::string& name) {
  const TensorInfo* t = h.checkpoint().Find(name);
  if (t == nullptr) return py::none();
  return TensorDict(h.checkpoint(), *t);
}

py::list Shards(const CheckpointHandle& h) {
  py::list out;
  for (const ShardInfo& s : h.checkpoint().shards()) out.append(ShardDict(s));
  return out;
}

py::list Warnings(const CheckpointHandle& h) {
  py::list out;
  for (const Warning& w : h.checkpoint().warnings()) out.append(MakePyError(w));
  return out;
}

}  // namespace

void BindCheckpoint(py::module_& m) {
  py::class_<CheckpointHandle>(m, "CheckpointHandle")
      .def_property_readonly(
          "path", [](const CheckpointHandle& h) { return FsText(h.checkpoint().path()); })
      .def_property_readonly(
          "index_path",
          [](const CheckpointHandle& h) { return FsText(h.checkpoint().index_path()); })
      .def_property_readonly("total_bytes",
                             [](const CheckpointHandle& h) { return h.checkpoint().TotalBytes(); })
      .def("__len__", [](const CheckpointHandle& h) { return h.checkpoint().tensors().size(); })
      .def("names", &Names)
      .def("find", &Find, py::arg("name"))
      .def("shards", &Shards)
      .def("warnings", &Warnings)
      .def("index_metadata",
           [](const CheckpointHandle& h) { return MetadataDict(h.checkpoint().index_metadata()); });
  m.def("open_checkpoint", &Open, py::arg("path"),
        "Resolves and validates PATH (bytes, as os.fsencode gives); the GIL is released.");
}

}  // namespace shardload::python
