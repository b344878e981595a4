// DLPack export of loaded tensors (see dlpack_export.h).
// Thread-safe: the live count is atomic; each export is owned by one consumer.
#include "dlpack_export.h"

#include <atomic>
#include <utility>
#include <vector>

#include "dlpack.h"

namespace shardload::python {
namespace {

constexpr const char* kCapsuleName = "dltensor";

std::atomic<std::int64_t> g_live_exports{0};

// What a DLManagedTensor's manager_ctx points to: the tensor's shape and
// strides arrays and the reference that keeps the memory alive.
struct ExportContext {
  DLManagedTensor managed{};
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;
  std::shared_ptr<const LoadedCheckpoint> owner;
};

// DLManagedTensor::deleter: no Python calls, any thread.
void DeleteExport(DLManagedTensor* self) {
  std::unique_ptr<ExportContext> context(static_cast<ExportContext*>(self->manager_ctx));
  g_live_exports.fetch_sub(1, std::memory_order_relaxed);
}

// The capsule's destructor: frees the export unless a consumer took it
// (renaming the capsule "used_dltensor").
void DeleteUnusedCapsule(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, kCapsuleName)) return;
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
}

}  // namespace

py::capsule ExportDlpack(std::shared_ptr<const LoadedCheckpoint> owner,
                         const LoadedTensor& tensor, DlpackType type) {
  auto context = std::make_unique<ExportContext>();
  const std::vector<ssize_t> shape = ViewShape(tensor.dtype, tensor.shape, tensor.data.size());
  const std::vector<ssize_t> strides = ContiguousStrides(shape, 1);  // in elements
  context->shape.assign(shape.begin(), shape.end());
  context->strides.assign(strides.begin(), strides.end());
  DLTensor& t = context->managed.dl_tensor;
  t.data = tensor.data.data();
  const Device where = owner->device();
  t.device = where.is_cuda() ? DLDevice{kDLCUDA, where.index} : DLDevice{kDLCPU, 0};
  t.ndim = static_cast<std::int32_t>(context->shape.size());
  t.dtype = DLDataType{static_cast<std::uint8_t>(type.code), type.bits, 1};
  t.shape = context->shape.data();
  t.strides = context->strides.data();
  t.byte_offset = 0;
  context->owner = std::move(owner);
  context->managed.manager_ctx = context.get();
  context->managed.deleter = DeleteExport;

  PyObject* capsule = PyCapsule_New(&context->managed, kCapsuleName, DeleteUnusedCapsule);
  if (capsule == nullptr) throw py::error_already_set();
  static_cast<void>(context.release());  // owned through the capsule (or its consumer) now
  g_live_exports.fetch_add(1, std::memory_order_relaxed);
  return py::reinterpret_steal<py::capsule>(capsule);
}

std::int64_t LiveDlpackExports() { return g_live_exports.load(std::memory_order_relaxed); }

}  // namespace shardload::python
