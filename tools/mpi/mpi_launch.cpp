// The MPI launcher (see mpi_launch.h): MPI_COMM_WORLD gives the rank and the
// world, the node's communicator the Communicator the engine rendezvous over.
// Thread-compatible: see mpi_launch.h.
#include "mpi_launch.h"

#include <mpi.h>

#include <climits>
#include <string>

namespace shardload::cli {
namespace {

std::string MpiErrorText(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, static_cast<std::size_t>(len));
}

Status MpiStatus(int rc, const char* call, ErrorCode code = ErrorCode::kPeerFailed) {
  if (rc == MPI_SUCCESS) return {};
  return MakeError(code, "", "", std::string(call) + " failed: " + MpiErrorText(rc));
}

// The node's ranks over an MPI communicator of their own (freed with it).
class MpiNodeCommunicator final : public Communicator {
 public:
  MpiNodeCommunicator(MPI_Comm comm, unsigned rank, unsigned size)
      : comm_(comm), rank_(rank), size_(size) {}
  ~MpiNodeCommunicator() override { MPI_Comm_free(&comm_); }
  MpiNodeCommunicator(const MpiNodeCommunicator&) = delete;
  MpiNodeCommunicator& operator=(const MpiNodeCommunicator&) = delete;

  unsigned rank() const override { return rank_; }
  unsigned size() const override { return size_; }
  Status Barrier() override { return MpiStatus(MPI_Barrier(comm_), "MPI_Barrier"); }
  Status Broadcast(unsigned root, std::span<std::byte> bytes) override {
    if (root >= size_ || bytes.size() > INT_MAX) {
      return MakeError(ErrorCode::kInvalidArgument, "", "",
                       "MPI_Bcast: root " + std::to_string(root) + " of " +
                           std::to_string(size_) + ", " + std::to_string(bytes.size()) + " bytes");
    }
    return MpiStatus(MPI_Bcast(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE,
                               static_cast<int>(root), comm_),
                     "MPI_Bcast");
  }

 private:
  MPI_Comm comm_;
  unsigned rank_;
  unsigned size_;
};

// Rank and size of COMM.
Status RankAndSize(MPI_Comm comm, unsigned& rank, unsigned& size) {
  int r = 0, s = 0;
  if (Status st = MpiStatus(MPI_Comm_rank(comm, &r), "MPI_Comm_rank"); !st) return st;
  if (Status st = MpiStatus(MPI_Comm_size(comm, &s), "MPI_Comm_size"); !st) return st;
  rank = static_cast<unsigned>(r);
  size = static_cast<unsigned>(s);
  return {};
}

}  // namespace

std::string MpiLibraryVersion() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(text, &len) != MPI_SUCCESS) return "MPI (unknown version)";
  std::string version(text, static_cast<std::size_t>(len));
  return version.substr(0, version.find(','));
}

Result<MpiJob> MpiStart() {
  int provided = 0;
  if (Status st = MpiStatus(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided),
                            "MPI_Init_thread", ErrorCode::kUnsupported);
      !st) {
    return st.error();
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    return MakeError(ErrorCode::kUnsupported, "", "",
                     "--mpi: " + MpiLibraryVersion() +
                         " does not allow calls from several threads (MPI_THREAD_SERIALIZED)");
  }
  // Errors come back as return codes (and so as shardload errors), not as an abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MpiJob job;
  if (Status st = RankAndSize(MPI_COMM_WORLD, job.rank, job.world); !st) return st.error();
  MPI_Comm node = MPI_COMM_NULL;
  if (Status st = MpiStatus(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED,
                                                static_cast<int>(job.rank), MPI_INFO_NULL, &node),
                            "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
      !st) {
    return st.error();
  }
  MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
  unsigned local_rank = 0, local_size = 1;
  if (Status st = RankAndSize(node, local_rank, local_size); !st) {
    MPI_Comm_free(&node);
    return st.error();
  }
  job.node = std::make_shared<MpiNodeCommunicator>(node, local_rank, local_size);
  return job;
}

void MpiFinish() { MPI_Finalize(); }

}  // namespace shardload::cli
