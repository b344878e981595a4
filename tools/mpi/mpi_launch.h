// MPI as a launcher of `shardload load --mpi` (docs/cooperate.md, "MPI"):
// this process's rank and world from MPI_COMM_WORLD, and a Communicator over
// the node's ranks (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)) for the
// engine's cooperative load. Only the CLI links it: the engine never depends
// on MPI. Built from mpi_launch.cpp when CMake found MPI
// (SHARDLOAD_WITH_MPI), else from mpi_absent.cpp, whose MpiStart fails with
// kUnsupported.
// Thread-compatible: MpiStart and MpiFinish are called once, on the main
// thread; the Communicator is called by one thread at a time (MPI is
// initialised MPI_THREAD_SERIALIZED).
#pragma once

#include <memory>
#include <string>

#include "shardload/cooperate.h"
#include "shardload/error.h"

namespace shardload::cli {

struct MpiJob {
  unsigned rank = 0;        // in MPI_COMM_WORLD: the tensor-parallel rank
  unsigned world = 1;       // size of MPI_COMM_WORLD: the world size
  std::shared_ptr<Communicator> node;  // this node's ranks (rank(), size())
};

// The MPI library this shardload runs with, as it names itself up to the
// first comma (e.g. "Open MPI v4.1.4"); "" when built without MPI support.
// Callable before MpiStart.
std::string MpiLibraryVersion();

// MPI_Init_thread, then the job's ranks. kUnsupported when this build has no
// MPI support or the library cannot serialise calls from several threads.
Result<MpiJob> MpiStart();

// MPI_Finalize. REQUIRES: MpiStart succeeded, and every copy of its
// Communicator is gone. Only after a successful load: a failing rank exits
// without it, so that mpirun ends the job (MPI_Finalize waits for every
// rank, and a rank waiting in a rendezvous would never arrive).
void MpiFinish();

}  // namespace shardload::cli
