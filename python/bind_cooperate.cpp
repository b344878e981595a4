// Cooperation from Python (docs/python.md, "Cooperating ranks"): the
// shardload.Communicator base class, a pybind11 trampoline whose Barrier and
// Broadcast call the Python subclass's barrier() and broadcast() (the
// package's torch.distributed one is in shardload/_cooperate.py), and
// MakeCooperation, which turns what load() was given into a Cooperation.
// Thread-safety: the engine calls a Communicator from the thread that runs
// the load (the GIL released); Barrier and Broadcast take the GIL for the
// Python call. MakeCooperation runs without the GIL (ConnectLocal waits for
// the other ranks) and touches no Python object.
#include <pybind11/pybind11.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "bindings.h"

namespace shardload::python {
namespace {

// The trampoline: rank and size are fixed when the Python object is made
// (Communicator.__init__(rank, size)), so only the two collective calls go
// to Python. A Python exception becomes a kPeerFailed error quoting it.
class PyCommunicator final : public Communicator {
 public:
  PyCommunicator(unsigned rank, unsigned size) : rank_(rank), size_(size) {}

  unsigned rank() const override { return rank_; }
  unsigned size() const override { return size_; }

  Status Barrier() override {
    py::gil_scoped_acquire gil;
    return CallPython("barrier", [](const py::function& f) { f(); });
  }

  Status Broadcast(unsigned root, std::span<std::byte> bytes) override {
    py::gil_scoped_acquire gil;
    return CallPython("broadcast", [&](const py::function& f) {
      py::bytes sent(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      std::string got = f(root, sent).cast<std::string>();  // bytes -> std::string
      if (got.size() != bytes.size()) {
        throw py::value_error("broadcast() returned " + std::to_string(got.size()) +
                              " bytes, expected " + std::to_string(bytes.size()));
      }
      if (!got.empty()) std::memcpy(bytes.data(), got.data(), got.size());
    });
  }

 private:
  // REQUIRES: the GIL is held.
  template <typename F>
  Status CallPython(const char* name, F&& call) {
    try {
      py::function method = py::get_override(static_cast<const Communicator*>(this), name);
      if (!method) {
        return MakeError(ErrorCode::kInvalidArgument, "", "",
                         std::string("shardload.Communicator subclass has no ") + name + "()");
      }
      call(method);
      return {};
    } catch (py::error_already_set& e) {
      return MakeError(ErrorCode::kPeerFailed, "", "",
                       std::string("member ") + std::to_string(rank_) + " of " +
                           std::to_string(size_) + ": communicator " + name + "() raised " +
                           e.what());
    } catch (const std::exception& e) {  // py::cast_error, py::value_error
      return MakeError(ErrorCode::kPeerFailed, "", "",
                       std::string("communicator ") + name + "(): " + e.what());
    }
  }

  const unsigned rank_;
  const unsigned size_;
};

}  // namespace

Result<Cooperation> MakeCooperation(const CoopArgs& args) {
  Cooperation coop;
  if (args.staging_bytes > 0) coop.staging_bytes = args.staging_bytes;
  if (args.peer_timeout.count() > 0) coop.peer_timeout = args.peer_timeout;
  if (const char* pause = std::getenv("SHARDLOAD_COOP_TEST_PAUSE")) {  // docs/testing.md
    coop.test_pause = CoopTestPause::Parse(pause);
  }
  if (args.communicator) {
    coop.group = args.communicator;
  } else if (!args.job.empty()) {
    Result<std::unique_ptr<Communicator>> local =
        ConnectLocal(args.job, args.local_rank, args.local_size, coop.peer_timeout);
    if (!local) return std::move(local).error();
    coop.group = std::move(*local);
  }
  return coop;
}

CoopArgs MakeCoopArgs(const py::object& communicator, std::string job, unsigned local_rank,
                      unsigned local_size, std::uint64_t staging_bytes, double peer_timeout_s) {
  CoopArgs args{nullptr, std::move(job), local_rank, local_size, staging_bytes,
                std::chrono::milliseconds(static_cast<std::int64_t>(peer_timeout_s * 1000))};
  if (!communicator.is_none()) args.communicator = communicator.cast<std::shared_ptr<Communicator>>();
  return args;
}

void BindCooperate(py::module_& m) {
  py::class_<Communicator, PyCommunicator, std::shared_ptr<Communicator>>(
      m, "Communicator",
      "The processes of one node that load together (docs/python.md). Subclass it with "
      "barrier() and broadcast(root, data: bytes) -> bytes (root's data on every member); "
      "__init__ takes this member's rank and the member count.")
      .def(py::init<unsigned, unsigned>(), py::arg("rank"), py::arg("size"))
      .def_property_readonly("rank", &Communicator::rank)
      .def_property_readonly("size", &Communicator::size);
}

}  // namespace shardload::python
