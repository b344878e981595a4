// MpiStart without MPI support (this build found no MPI; see mpi_launch.h).
// Thread-safe: touches no state.
#include "mpi_launch.h"

namespace shardload::cli {

std::string MpiLibraryVersion() { return ""; }

Result<MpiJob> MpiStart() {
  return MakeError(ErrorCode::kUnsupported, "", "",
                   "--mpi: this shardload was built without MPI support (install "
                   "libopenmpi-dev and rebuild; `shardload --version` says which MPI a build has)");
}

void MpiFinish() {}

}  // namespace shardload::cli
