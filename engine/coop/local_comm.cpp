// ConnectLocal (shardload/cooperate.h): a Communicator over abstract unix
// sockets, a star around member 0. Member 0 binds "shardload-<uid>-<job>"
// (a second member 0 of the same job on this node finds the name taken and
// is refused), the others connect and say hello {rank, size, pid}; member 0
// checks them (sizes agree, ranks distinct) and welcomes everyone. Barrier:
// everyone tells member 0, which releases all; Broadcast: the root's bytes
// go through member 0. Member 0 relays any failure it sees (a member's EOF,
// a timeout, a protocol mismatch) to the others as an abort message naming
// the member, so every member reports the same cause.
// Thread-compatible: one call at a time per Communicator.
#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coop/wire.h"
#include "shardload/cooperate.h"

namespace shardload {

namespace {

using coop::Clock;

enum Type : std::uint32_t {
  kHello = 0x10,
  kWelcome,
  kAbort,
  kBarrier,
  kRelease,
  kBroadcast,
};

const char* TypeName(std::uint32_t type) {
  switch (type) {
    case kHello: return "hello";
    case kWelcome: return "welcome";
    case kAbort: return "abort";
    case kBarrier: return "Barrier";
    case kRelease: return "release";
    case kBroadcast: return "Broadcast";
  }
  return "an unknown message";
}

Error Failed(ErrorCode code, std::string detail) {
  return MakeError(code, "", "", std::move(detail));
}

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(std::string job, unsigned rank, unsigned size,
                    std::chrono::milliseconds timeout)
      : job_(std::move(job)), rank_(rank), size_(size), timeout_(timeout) {}

  unsigned rank() const override { return rank_; }
  unsigned size() const override { return size_; }
  Status Barrier() override;
  Status Broadcast(unsigned root, std::span<std::byte> bytes) override;

  Status Start();

 private:
  std::string Who(unsigned member) const {
    std::string who = "local member " + std::to_string(member);
    if (member < pids_.size() && pids_[member] > 0) who += " (pid " + std::to_string(pids_[member]) + ")";
    return who + " of job '" + job_ + "'";
  }
  std::string Name() const {
    return "shardload-" + std::to_string(::getuid()) + "-" + job_;
  }
  Status StartRoot();
  Status StartMember();
  // Member 0: one message of TYPE from every member in FROM (their bodies
  // into BODIES by member), watching every other member for EOF.
  Status GatherAtRoot(std::uint32_t type, const std::vector<unsigned>& from,
                      std::vector<std::string>& bodies);
  // A member: the next message from member 0, which must be TYPE.
  Result<std::string> FromRoot(std::uint32_t type);
  // Member 0: sends TYPE + BODY to every member except SKIP (to all that
  // can still hear it; the first failure is returned).
  Status ToAll(std::uint32_t type, std::string_view body, unsigned skip);
  // Records ERROR as this communicator's failure (member 0 relays it).
  Error Fail(Error error);
  // A member: sends TYPE to member 0; when that fails because member 0 has
  // aborted and gone, its abort (already received) is the error.
  Status SendToRoot(std::uint32_t type, std::string_view body);

  std::string job_;
  unsigned rank_;
  unsigned size_;
  std::chrono::milliseconds timeout_;
  FileDescriptor listener_;             // member 0: keeps the name taken
  std::vector<FileDescriptor> peers_;   // member 0: by member; else [0] = member 0
  std::vector<long> pids_;              // by member, when known
  std::optional<Error> failed_;
};

Error LocalCommunicator::Fail(Error error) {
  if (failed_) return *failed_;
  if (error.code != ErrorCode::kPeerFailed && error.code != ErrorCode::kPeerMismatch) {
    error.detail = "local communicator of job '" + job_ + "': " + error.detail;
  }
  if (rank_ == 0) (void)ToAll(kAbort, error.detail, rank_);
  failed_ = error;
  peers_.clear();  // later calls fail at once; members see EOF
  return error;
}

Status LocalCommunicator::Start() {
  pids_.assign(size_, 0);
  pids_[rank_] = ::getpid();
  peers_.resize(rank_ == 0 ? size_ : 1);
  return rank_ == 0 ? StartRoot() : StartMember();
}

Status LocalCommunicator::StartRoot() {
  auto listener = coop::Listen(Name());
  if (!listener) {
    Error e = std::move(listener).error();
    if (e.sys_errno == EADDRINUSE) {
      return Failed(ErrorCode::kPeerMismatch,
                    "another process on this node is already local rank 0 of job '" + job_ +
                        "' (its socket @" + coop::AbstractName(Name()) +
                        " is in use): two jobs with one id, or two ranks with LOCAL_RANK 0");
    }
    return e;
  }
  listener_ = std::move(*listener);
  const auto deadline = coop::DeadlineIn(timeout_);
  unsigned joined = 1;
  while (joined < size_) {
    auto fd = coop::Accept(listener_.get(), deadline, nullptr);
    if (!fd) return Fail(std::move(fd).error());
    if (!fd->valid()) {
      std::string missing;
      for (unsigned m = 1; m < size_; ++m) {
        if (!peers_[m].valid()) missing += (missing.empty() ? "" : ", ") + std::to_string(m);
      }
      return Fail(Failed(ErrorCode::kPeerFailed,
                         "timed out after " + coop::SecondsText(timeout_) + ": local member(s) " +
                             missing + " of " + std::to_string(size_) + " of job '" + job_ +
                             "' never connected"));
    }
    auto hello = coop::Receive(fd->get(), deadline, "a connecting process", nullptr);
    if (!hello) continue;  // it went away before saying who it is
    coop::Reader r(hello->body);
    const unsigned member = r.U32(), size = r.U32();
    const long pid = static_cast<long>(r.U64());
    std::string refusal;
    if (hello->type != kHello || r.failed()) {
      refusal = "a process that is not a shardload member connected to job '" + job_ + "'";
    } else if (size != size_) {
      refusal = "local member " + std::to_string(member) + " (pid " + std::to_string(pid) +
                ") has local size " + std::to_string(size) + ", local member 0 has " +
                std::to_string(size_);
    } else if (member == 0 || member >= size_) {
      refusal = "a process (pid " + std::to_string(pid) + ") claims local rank " +
                std::to_string(member) + " of " + std::to_string(size_);
    } else if (peers_[member].valid()) {
      refusal = "local rank " + std::to_string(member) + " of job '" + job_ +
                "' claimed twice (pids " + std::to_string(pids_[member]) + " and " +
                std::to_string(pid) + ")";
    }
    if (!refusal.empty()) {
      (void)coop::Send(fd->get(), kAbort, refusal, coop::DeadlineIn(timeout_), "a member");
      return Fail(Failed(ErrorCode::kPeerMismatch, refusal));
    }
    pids_[member] = pid;
    peers_[member] = std::move(*fd);
    ++joined;
  }
  coop::Writer pids;
  for (long pid : pids_) pids.U64(static_cast<std::uint64_t>(pid));
  if (Status s = ToAll(kWelcome, pids.body(), 0); !s) return Fail(std::move(s).error());
  return {};
}

Status LocalCommunicator::StartMember() {
  const auto deadline = coop::DeadlineIn(timeout_);
  auto fd = coop::Connect(Name(), deadline,
                          "local member 0 of job '" + job_ + "' (after " +
                              coop::SecondsText(timeout_) + ")",
                          nullptr);
  if (!fd) return Fail(std::move(fd).error());
  peers_[0] = std::move(*fd);
  coop::Writer hello;
  hello.U32(rank_).U32(size_).U64(static_cast<std::uint64_t>(::getpid()));
  if (Status s = coop::Send(peers_[0].get(), kHello, hello.body(), deadline, Who(0)); !s) {
    return Fail(std::move(s).error());
  }
  auto welcome = FromRoot(kWelcome);
  if (!welcome) return std::move(welcome).error();
  coop::Reader r(*welcome);
  for (unsigned m = 0; m < size_; ++m) pids_[m] = static_cast<long>(r.U64());
  return {};
}

Status LocalCommunicator::ToAll(std::uint32_t type, std::string_view body, unsigned skip) {
  const auto deadline = coop::DeadlineIn(timeout_);
  Status first;
  for (unsigned m = 1; m < peers_.size(); ++m) {
    if (m == skip || !peers_[m].valid()) continue;
    Status s = coop::Send(peers_[m].get(), type, body, deadline, Who(m));
    if (!s && first.ok()) first = std::move(s);  // the others still hear it
  }
  return first;
}

Status LocalCommunicator::GatherAtRoot(std::uint32_t type, const std::vector<unsigned>& from,
                                       std::vector<std::string>& bodies) {
  const auto deadline = coop::DeadlineIn(timeout_);
  std::vector<bool> pending(size_, false);
  for (unsigned m : from) pending[m] = true;
  unsigned left = static_cast<unsigned>(from.size());
  while (left > 0) {
    std::vector<int> fds;
    std::vector<unsigned> members;
    for (unsigned m = 1; m < size_; ++m) {
      fds.push_back(peers_[m].get());
      members.push_back(m);
    }
    int i = coop::WaitReadable(fds, deadline, nullptr);
    if (i < 0) {
      std::string missing;
      for (unsigned m = 0; m < size_; ++m) {
        if (pending[m]) missing += (missing.empty() ? "" : ", ") + std::to_string(m);
      }
      return Fail(Failed(ErrorCode::kPeerFailed,
                         "timed out after " + coop::SecondsText(timeout_) +
                             " waiting for local member(s) " + missing + " of job '" + job_ +
                             "' (" + TypeName(type) + ")"));
    }
    const unsigned m = members[static_cast<unsigned>(i)];
    auto msg = coop::Receive(peers_[m].get(), deadline, Who(m), nullptr);
    if (!msg) return Fail(std::move(msg).error());
    if (!pending[m] || msg->type != type) {
      return Fail(Failed(ErrorCode::kPeerMismatch,
                         Who(m) + " called " + TypeName(msg->type) + " while local member 0 " +
                             (pending[m] ? "called " : "waited in ") + TypeName(type)));
    }
    pending[m] = false;
    bodies[m] = std::move(msg->body);
    --left;
  }
  return {};
}

Status LocalCommunicator::SendToRoot(std::uint32_t type, std::string_view body) {
  Status s = coop::Send(peers_[0].get(), type, body, coop::DeadlineIn(timeout_), Who(0));
  if (s) return s;
  auto pending = coop::Receive(peers_[0].get(), coop::DeadlineIn(std::chrono::milliseconds(200)),
                               Who(0), nullptr);
  if (pending && pending->type == kAbort) {
    return Fail(Failed(ErrorCode::kPeerFailed, pending->body));
  }
  return Fail(std::move(s).error());
}

Result<std::string> LocalCommunicator::FromRoot(std::uint32_t type) {
  auto msg = coop::Receive(peers_[0].get(), coop::DeadlineIn(timeout_), Who(0), nullptr);
  if (!msg) return Fail(std::move(msg).error());
  if (msg->type == kAbort) return Fail(Failed(ErrorCode::kPeerFailed, msg->body));
  if (msg->type != type) {
    return Fail(Failed(ErrorCode::kPeerMismatch, "local member 0 sent " +
                                                     std::string(TypeName(msg->type)) +
                                                     " while " + Who(rank_) + " expected " +
                                                     TypeName(type)));
  }
  return std::move(msg->body);
}

Status LocalCommunicator::Barrier() {
  if (failed_) return *failed_;
  if (size_ == 1) return {};
  if (rank_ != 0) {
    if (Status s = SendToRoot(kBarrier, {}); !s) return s;
    auto release = FromRoot(kRelease);
    if (!release) return std::move(release).error();
    return {};
  }
  std::vector<unsigned> all;
  for (unsigned m = 1; m < size_; ++m) all.push_back(m);
  std::vector<std::string> bodies(size_);
  if (Status s = GatherAtRoot(kBarrier, all, bodies); !s) return s;
  if (Status s = ToAll(kRelease, {}, 0); !s) return Fail(std::move(s).error());
  return {};
}

Status LocalCommunicator::Broadcast(unsigned root, std::span<std::byte> bytes) {
  if (failed_) return *failed_;
  if (root >= size_) {
    return Failed(ErrorCode::kInvalidArgument, "Broadcast root " + std::to_string(root) +
                                                   " of " + std::to_string(size_) + " members");
  }
  if (bytes.size() > (64u << 10)) {
    return Failed(ErrorCode::kInvalidArgument, "Broadcast of more than 64 KiB");
  }
  if (size_ == 1) return {};
  std::string_view mine(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::string body;
  if (rank_ == root) body = std::string(mine);
  if (rank_ != 0 && rank_ == root) {
    return SendToRoot(kBroadcast, body);
  }
  if (rank_ != 0) {
    auto got = FromRoot(kBroadcast);
    if (!got) return std::move(got).error();
    body = std::move(*got);
  } else if (root != 0) {
    std::vector<std::string> bodies(size_);
    if (Status s = GatherAtRoot(kBroadcast, {root}, bodies); !s) return s;
    body = std::move(bodies[root]);
  }
  if (body.size() != bytes.size()) {
    return Fail(Failed(ErrorCode::kPeerMismatch,
                       "Broadcast of " + std::to_string(body.size()) + " bytes from local member " +
                           std::to_string(root) + ", " + Who(rank_) + " expected " +
                           std::to_string(bytes.size())));
  }
  if (rank_ == 0) {
    if (Status s = ToAll(kBroadcast, body, root); !s) return Fail(std::move(s).error());
  }
  if (rank_ != root) std::copy(body.begin(), body.end(), reinterpret_cast<char*>(bytes.data()));
  return {};
}

}  // namespace

Result<std::unique_ptr<Communicator>> ConnectLocal(const std::string& job, unsigned local_rank,
                                                   unsigned local_size,
                                                   std::chrono::milliseconds timeout) {
  if (job.empty()) return Failed(ErrorCode::kInvalidArgument, "ConnectLocal: empty job id");
  if (local_size == 0 || local_rank >= local_size) {
    return Failed(ErrorCode::kInvalidArgument,
                  "ConnectLocal: local rank " + std::to_string(local_rank) + " of " +
                      std::to_string(local_size));
  }
  auto comm = std::make_unique<LocalCommunicator>(job, local_rank, local_size, timeout);
  if (local_size > 1) {
    if (Status s = comm->Start(); !s) return std::move(s).error();
  }
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace shardload
