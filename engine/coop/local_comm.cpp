// ConnectLocal (shardload/cooperate.h): a Communicator over abstract unix
// sockets, a star around member 0. Member 0 binds "shardload-<euid>-<job>"
// (a second member 0 of the same job on this node finds the name taken and
// is refused), the others connect and say hello {rank, size, pid}; member 0
// checks them (sizes agree, ranks distinct) and welcomes everyone. Barrier:
// everyone tells member 0, which releases all; Broadcast: the root's bytes
// go through member 0. Member 0 relays any failure it sees (a member's EOF,
// a timeout naming exactly the members it waits for, a protocol mismatch)
// to the others as an abort message naming the member, so every member
// reports the same cause; while it waits it tells the others it is alive,
// so that they time out on their own only when member 0 itself is stalled.
// Trusts no other user: both ends check the other's credentials
// (SO_PEERCRED); member 0 refuses a process of another user (it is told
// why, the job goes on waiting for its real member), a member refuses a
// member 0 of another user (a name taken first by another user).
// Thread-compatible: one call at a time per Communicator.
#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
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
  kAlive,  // member 0 -> a member: still waiting for the others
};

const char* TypeName(std::uint32_t type) {
  switch (type) {
    case kHello: return "hello";
    case kWelcome: return "welcome";
    case kAbort: return "abort";
    case kBarrier: return "Barrier";
    case kRelease: return "release";
    case kBroadcast: return "Broadcast";
    case kAlive: return "alive";
  }
  return "an unknown message";
}

Error Failed(ErrorCode code, std::string detail) {
  return MakeError(code, "", "", std::move(detail));
}

// For a member whose member 0 never appeared: " (a job 'JOB' of another user
// (uid U) is running on this node: ...)" when /proc/net/unix lists JOB's
// name for another uid (names are per user), else "".
std::string OtherUsersJob(const std::string& job) {
  std::ifstream in("/proc/net/unix");
  const std::string prefix = "@shardload-";
  std::string line, uids;
  while (std::getline(in, line)) {
    const std::size_t at = line.rfind(' ' + prefix);
    if (at == std::string::npos) continue;
    const std::string name = line.substr(at + 2);
    const std::size_t digits = name.find_first_not_of("0123456789", prefix.size() - 1);
    const std::string uid = name.substr(prefix.size() - 1, digits - (prefix.size() - 1));
    if (uid.empty() || uid == std::to_string(::geteuid()) ||
        name != coop::AbstractName("shardload-" + uid + "-" + job) ||
        uids.find(" " + uid + ",") != std::string::npos) {
      continue;
    }
    uids += " " + uid + ",";
  }
  if (uids.empty()) return "";
  uids.pop_back();
  return " (a job '" + job + "' of another user (uid" + uids +
         ") runs on this node: it belongs to another user, and a job never takes in another "
         "user's processes)";
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
    return "shardload-" + std::to_string(::geteuid()) + "-" + job_;
  }
  Status StartRoot();
  Status StartMember();
  // Member 0 could not bind the job's name: who holds it.
  Error NameTaken() const;
  // Member 0: a connection from FD; false when it is refused (another
  // user's process: told why, noted in refused_, closed).
  bool Admit(FileDescriptor& fd);
  // Member 0 waits in slices until DEADLINE, telling every connected member
  // it is alive between them: the end of the next slice.
  coop::Clock::time_point Slice(coop::Clock::time_point deadline);
  // Member 0: why HELLO is refused ("" when it is not), with the member and
  // pid it claims.
  std::string HelloRefusal(const coop::Message& hello, unsigned& member, long& pid) const;
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
  std::string refused_;                 // member 0: the last other user's process turned away
  unsigned refused_count_ = 0;
  coop::Clock::time_point next_beat_{};
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

Error LocalCommunicator::NameTaken() const {
  const std::string at = "@" + coop::AbstractName(Name());
  auto probe = coop::Connect(Name(), coop::DeadlineIn(std::chrono::milliseconds(200)),
                             "the holder of " + at, nullptr);
  const std::string other =
      probe ? coop::OtherUser(probe->get()) : "a process that accepts no connections";
  if (other.empty()) {
    return Failed(ErrorCode::kPeerMismatch,
                  "another process on this node is already local rank 0 of job '" + job_ +
                      "' (its socket " + at +
                      " is in use): two jobs with one id, or two ranks with LOCAL_RANK 0");
  }
  return Failed(ErrorCode::kPeerMismatch,
                "the socket " + at + " of job '" + job_ + "' is held by " + other +
                    ", not by this user (uid " + std::to_string(::geteuid()) +
                    "): someone took this job's name first; its local rank 0 cannot start "
                    "here (use another job id)");
}

bool LocalCommunicator::Admit(FileDescriptor& fd) {
  const std::string other = coop::OtherUser(fd.get());
  if (other.empty()) return true;
  const std::string why = "job '" + job_ + "' on this node belongs to another user (uid " +
                          std::to_string(::geteuid()) + "): its local member 0 refused " + other;
  coop::Refuse(fd, kAbort, why, other);
  ++refused_count_;
  refused_ = other;
  return false;
}

coop::Clock::time_point LocalCommunicator::Slice(coop::Clock::time_point deadline) {
  const auto now = coop::Clock::now();
  if (now >= next_beat_) {
    for (unsigned m = 1; m < peers_.size(); ++m) {
      // Best effort, never waiting: a member that stopped reading misses it.
      if (peers_[m].valid()) (void)coop::Send(peers_[m].get(), kAlive, {}, now, Who(m));
    }
    next_beat_ = now + coop::BeatInterval(timeout_);
  }
  return std::min(deadline, next_beat_);
}

std::string LocalCommunicator::HelloRefusal(const coop::Message& hello, unsigned& member,
                                            long& pid) const {
  coop::Reader r(hello.body);
  member = r.U32();
  const unsigned size = r.U32();
  pid = static_cast<long>(r.U64());
  if (hello.type != kHello || r.failed()) {
    return "a process that is not a shardload member connected to job '" + job_ + "'";
  }
  if (size != size_) {
    return "local member " + std::to_string(member) + " (pid " + std::to_string(pid) +
           ") has local size " + std::to_string(size) + ", local member 0 has " +
           std::to_string(size_);
  }
  if (member == 0 || member >= size_) {
    return "a process (pid " + std::to_string(pid) + ") claims local rank " +
           std::to_string(member) + " of " + std::to_string(size_);
  }
  if (peers_[member].valid()) {
    return "local rank " + std::to_string(member) + " of job '" + job_ + "' claimed twice (pids " +
           std::to_string(pids_[member]) + " and " + std::to_string(pid) + ")";
  }
  return "";
}

Status LocalCommunicator::StartRoot() {
  auto listener = coop::Listen(Name());
  if (!listener) {
    Error e = std::move(listener).error();
    return e.sys_errno == EADDRINUSE ? NameTaken() : e;
  }
  listener_ = std::move(*listener);
  const auto deadline = coop::DeadlineIn(timeout_);
  unsigned joined = 1;
  while (joined < size_) {
    auto fd = coop::Accept(listener_.get(), Slice(deadline), nullptr);
    if (!fd) return Fail(std::move(fd).error());
    if (!fd->valid() && coop::Clock::now() < deadline) continue;  // time to say "alive"
    if (!fd->valid()) {
      std::string missing;
      for (unsigned m = 1; m < size_; ++m) {
        if (!peers_[m].valid()) missing += (missing.empty() ? "" : ", ") + std::to_string(m);
      }
      const std::string refused =
          refused_count_ == 0 ? ""
                              : " (refused " + std::to_string(refused_count_) +
                                    " connection(s) of other users, the last from " + refused_ + ")";
      return Fail(Failed(ErrorCode::kPeerFailed,
                         "timed out after " + coop::SecondsText(timeout_) + ": local member(s) " +
                             missing + " of " + std::to_string(size_) + " of job '" + job_ +
                             "' never connected" + refused));
    }
    if (!Admit(*fd)) continue;
    auto hello = coop::Receive(fd->get(), deadline, "a connecting process", nullptr);
    if (!hello) continue;  // it went away before saying who it is
    unsigned member = 0;
    long pid = 0;
    if (std::string refusal = HelloRefusal(*hello, member, pid); !refusal.empty()) {
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
  if (!fd) {
    Error e = std::move(fd).error();
    e.detail += OtherUsersJob(job_);
    return Fail(std::move(e));
  }
  if (std::string other = coop::OtherUser(fd->get()); !other.empty()) {
    return Fail(Failed(ErrorCode::kPeerMismatch,
                       "local member 0 of job '" + job_ + "' (socket @" +
                           coop::AbstractName(Name()) + ") is " + other +
                           ": the job belongs to another user, or another user took its name "
                           "first; refusing to join it"));
  }
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
    int i = coop::WaitReadable(fds, Slice(deadline), nullptr);
    if (i < 0 && coop::Clock::now() < deadline) continue;  // time to say "alive"
    if (i < 0) {
      std::string missing;
      for (unsigned m = 0; m < size_; ++m) {
        if (pending[m]) missing += (missing.empty() ? "" : ", ") + Who(m);
      }
      return Fail(Failed(ErrorCode::kPeerFailed,
                         "timed out after " + coop::SecondsText(timeout_) + " waiting for " +
                             missing + " (" + TypeName(type) + "; stopped or hung?)"));
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
  while (pending && pending->type == kAlive) {
    pending = coop::Receive(peers_[0].get(), coop::DeadlineIn(std::chrono::milliseconds(200)),
                            Who(0), nullptr);
  }
  if (pending && pending->type == kAbort) {
    return Fail(Failed(ErrorCode::kPeerFailed, pending->body));
  }
  return Fail(std::move(s).error());
}

Result<std::string> LocalCommunicator::FromRoot(std::uint32_t type) {
  // Member 0 says it is alive while it waits for the others: a member times
  // out only when member 0 itself went silent.
  auto msg = coop::Receive(peers_[0].get(), coop::DeadlineIn(timeout_), Who(0), nullptr);
  while (msg && msg->type == kAlive) {
    msg = coop::Receive(peers_[0].get(), coop::DeadlineIn(timeout_), Who(0), nullptr);
  }
  if (!msg && msg.error().detail.rfind("timed out", 0) == 0) {
    return Fail(Failed(ErrorCode::kPeerFailed, "timed out after " + coop::SecondsText(timeout_) +
                                                   " waiting for " + Who(0) +
                                                   ": it sent nothing (stopped or hung?)"));
  }
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
