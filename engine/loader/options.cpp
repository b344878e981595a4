// The public functions of shardload/options.h (PlanSource's, Select) and
// the checks of options and requests (loader_impl.h).
// Thread-safe: pure functions (FromFileContent reads the file it names).
#include "shardload/options.h"

#include <utility>

#include "convert/convert.h"
#include "device/staged_copy.h"
#include "loader/load_items.h"
#include "loader/loader_impl.h"
#include "plan/selection.h"
#include "tp/json_util.h"

namespace shardload {

Result<PlanSource> PlanSource::FromFileContent(const std::string& path) {
  auto text = ReadPlanText(path);
  if (!text) return std::move(text).error();
  // Our format has "tp_plan_version" at the top; text that does not parse
  // goes to our parser too, whose error then names PATH.
  rapidjson::Document doc;
  bool config = tp::ParseJson(*text, path, doc).ok() && doc.IsObject() &&
                tp::FindMember(doc, "tp_plan_version") == nullptr;
  if (config) return HfConfigJson(std::move(*text), path);
  return Json(std::move(*text), path);
}

std::string PlanSource::Describe() const {
  switch (kind) {
    case Kind::kNone: return "";
    case Kind::kHf: return "hf";
    default: return path;
  }
}

Result<std::vector<const TensorInfo*>> Select(const Checkpoint& checkpoint,
                                              const Selection& selection) {
  return SelectTensors(checkpoint, selection.names, selection.globs);
}

namespace {

Error Invalid(std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, "", "", std::move(detail));
}

}  // namespace

Status CheckLoaderOptions(const LoaderOptions& options) {
  if (options.queue_depth == 0) return Invalid("queue_depth must be at least 1");
  if (options.chunk_size < kMinChunkSize) return Invalid("chunk_size must be at least 4 KiB");
  if (options.device.is_cuda() && options.staging_bytes < 2 * kStagingAlignment) {
    return Invalid("staging_bytes must be at least " + std::to_string(2 * kStagingAlignment));
  }
  if (options.device.is_cuda() && options.device_streams == 0) {
    return Invalid("device_streams must be at least 1");
  }
  return {};
}

Status CheckRequest(const LoadRequest& request) {
  if (request.dtype && !IsConversionTarget(*request.dtype)) {
    return Invalid("dtype must be BF16, F16 or F32, not " +
                           std::string(DTypeName(*request.dtype)));
  }
  if (request.cooperate.group && request.cooperate.staging_bytes < (64ULL << 10)) {
    return Invalid("cooperation staging_bytes must be at least 65536");
  }
  return {};
}

}  // namespace shardload
