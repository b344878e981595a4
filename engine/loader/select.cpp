// shardload::Select (loader.h) over the plan stage's SelectTensors.
// Thread-safe: a pure function over an immutable Checkpoint.
#include "plan/selection.h"
#include "shardload/loader.h"

namespace shardload {

Result<std::vector<const TensorInfo*>> Select(const Checkpoint& checkpoint,
                                              const Selection& selection) {
  return SelectTensors(checkpoint, selection.names, selection.globs);
}

}  // namespace shardload
