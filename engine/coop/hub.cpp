// The leader's hub (hub.h): join and agreement, the schedule and the
// staging memfd, then wave relay until every member is done. Only processes
// of this user join (SO_PEERCRED; another user's is told why and turned
// away). While it waits it tells every member it is alive (kAlive), and
// when it times out it names the members the others wait for: those that
// have not sent their needs, or that hold back the next kAllRead or
// kAllCopied while another member is past it.
// Thread-safe: runs on its own thread; touches only its own state.
#include "coop/hub.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "coop/protocol.h"
#include "coop/wire.h"
#include "io/residency.h"
#include "util/errno_error.h"

namespace shardload::coop {

namespace {

// A union at least this resident is read by each member from the page cache.
constexpr double kResidentEnough = 0.9;
// Ranges every member needs whole are shared from one copy from this size
// on (smaller ones are copied: a mapping has per-page and per-range costs).
constexpr std::uint64_t kMinReplica = 64ULL << 10;

std::uint64_t RoundUp(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

std::string RandomName() {
  std::random_device rd;
  char buf[40];
  std::snprintf(buf, sizeof buf, "shardload-hub-%d-%08x%08x", static_cast<int>(::getpid()), rd(),
                rd());
  return buf;
}

struct Member {
  FileDescriptor fd;
  Join join;
  bool joined = false;
  bool done = false;
  std::uint32_t reads = 0;
  std::uint32_t copies = 0;
  NeedsMessage needs;
  bool has_needs = false;
};

class Server {
 public:
  Server(const Hub::Options& options, int listener, const std::atomic<bool>* stop)
      : options_(options), listener_(listener), stop_(stop) {
    members_.resize(options.members);
  }
  void Run();

 private:
  std::string Who(unsigned m) const {
    const Join& j = members_[m].join;
    return "rank " + std::to_string(j.identity.rank) + " (local rank " + std::to_string(m) +
           ", pid " + std::to_string(j.pid) + ")";
  }
  Clock::time_point Deadline() const { return DeadlineIn(options_.timeout); }
  // Sends an abort to every member except EXCEPT (best effort).
  void Abort(const Error& error, int except = -1);
  // Tells every member still loading that the hub is alive, when it is time
  // to; returns the end of the next wait slice (at most DEADLINE).
  Clock::time_point Slice(Clock::time_point deadline);
  // The members the others wait for (see above); every member not done
  // when none is behind.
  std::vector<unsigned> Awaited() const;
  // FD, just accepted, runs as another user: told why, closed.
  bool Refused(FileDescriptor& fd);
  bool AcceptAll();
  bool Agree();
  // The next message from a member not yet done (into FROM); false after
  // an abort (EOF, failure, silence).
  bool Next(Message& msg, unsigned& from);
  bool GatherNeeds();
  bool SendPlan();
  void Relay();
  PlanMessage MakePlan() const;
  // The ranges every member needs whole, laid out after the staging
  // (sets plan.replicas and plan.memfd_size).
  void PlaceReplicas(PlanMessage& plan, std::uint64_t alignment) const;
  void SendAll(std::uint32_t type, const std::string& body, int pass_fd = -1);

  const Hub::Options& options_;
  int listener_;
  const std::atomic<bool>* stop_;
  std::vector<Member> members_;
  FileDescriptor memfd_;
  std::uint32_t all_read_ = 0;    // kAllRead sent for the waves before
  std::uint32_t all_copied_ = 0;  // kAllCopied ...
  Clock::time_point next_beat_{};
  unsigned refused_ = 0;          // other users' connections turned away
};

Clock::time_point Server::Slice(Clock::time_point deadline) {
  const auto now = Clock::now();
  if (now >= next_beat_) {
    for (unsigned m = 0; m < members_.size(); ++m) {
      // Best effort, never waiting: a member that stopped reading misses it.
      if (!members_[m].done && members_[m].fd.valid()) {
        (void)Send(members_[m].fd.get(), kAlive, {}, now, Who(m));
      }
    }
    next_beat_ = now + BeatInterval(options_.timeout);
  }
  return std::min(deadline, next_beat_);
}

std::vector<unsigned> Server::Awaited() const {
  std::vector<unsigned> out, loading;
  bool read_ahead = false, copy_ahead = false;
  for (unsigned m = 0; m < members_.size(); ++m) {
    const Member& x = members_[m];
    if (x.done) continue;
    loading.push_back(m);
    if (!x.has_needs) out.push_back(m);
    read_ahead = read_ahead || x.reads > all_read_;
    copy_ahead = copy_ahead || x.copies > all_copied_;
  }
  if (!out.empty()) return out;  // the plan waits for their needs
  for (unsigned m : loading) {
    const Member& x = members_[m];
    if ((read_ahead && x.reads == all_read_) || (copy_ahead && x.copies == all_copied_)) {
      out.push_back(m);
    }
  }
  return out.empty() ? loading : out;
}

bool Server::Refused(FileDescriptor& fd) {
  const std::string other = OtherUser(fd.get());
  if (other.empty()) return false;
  const Error why = MakeError(ErrorCode::kPeerMismatch, "", "",
                              "this cooperative load belongs to another user (uid " +
                                  std::to_string(::geteuid()) + "): its hub refused " + other);
  Refuse(fd, kAbort, Encode(why), other);
  ++refused_;
  return true;
}

void Server::Abort(const Error& error, int except) {
  const std::string body = Encode(error);
  for (unsigned m = 0; m < members_.size(); ++m) {
    if (static_cast<int>(m) == except || !members_[m].fd.valid()) continue;
    (void)Send(members_[m].fd.get(), kAbort, body, DeadlineIn(std::chrono::seconds(1)), Who(m));
  }
}

void Server::SendAll(std::uint32_t type, const std::string& body, int pass_fd) {
  for (unsigned m = 0; m < members_.size(); ++m) {
    if (members_[m].done || !members_[m].fd.valid()) continue;
    (void)Send(members_[m].fd.get(), type, body, Deadline(), Who(m), pass_fd);  // EOF shows later
  }
}

bool Server::AcceptAll() {
  const auto deadline = Deadline();
  unsigned joined = 0;
  while (joined < members_.size()) {
    auto fd = Accept(listener_, Slice(deadline), stop_);
    if (fd && !fd->valid() && Clock::now() < deadline) continue;  // time to say "alive"
    std::string problem;
    if (!fd && fd.error().code == ErrorCode::kCancelled) {
      Abort(MakeError(ErrorCode::kPeerFailed, "", "", "the leader (local rank 0) failed"));
      return false;
    }
    if (!fd) problem = fd.error().ToString();
    else if (!fd->valid()) problem = "timed out after " + SecondsText(options_.timeout);
    if (!problem.empty()) {
      std::string missing;
      for (unsigned m = 0; m < members_.size(); ++m) {
        if (!members_[m].joined) missing += (missing.empty() ? "" : ", ") + std::to_string(m);
      }
      const std::string refused =
          refused_ == 0 ? ""
                        : " (" + std::to_string(refused_) + " connection(s) of other users refused)";
      Abort(MakeError(ErrorCode::kPeerFailed, "", "",
                      problem + ": local rank(s) " + missing + " never joined the load" + refused));
      return false;
    }
    if (Refused(*fd)) continue;
    auto msg = Receive(fd->get(), deadline, "a joining member", nullptr);
    Join join;
    if (!msg || msg->type != kJoin || !Decode(msg->body, join) ||
        join.local_rank >= members_.size() || members_[join.local_rank].joined) {
      continue;  // not one of ours, or gone before it said who it is
    }
    Member& m = members_[join.local_rank];
    m.fd = std::move(*fd);
    m.join = std::move(join);
    m.joined = true;
    ++joined;
  }
  return true;
}

bool Server::Agree() {
  const Identity& lead = members_[0].join.identity;
  for (unsigned m = 1; m < members_.size(); ++m) {
    const Identity& id = members_[m].join.identity;
    std::string what;
    for (std::size_t f = 0; f < std::max(id.fields.size(), lead.fields.size()) && what.empty(); ++f) {
      const auto none = std::pair<std::string, std::string>{"?", "(nothing)"};
      const auto& mine = f < id.fields.size() ? id.fields[f] : none;
      const auto& theirs = f < lead.fields.size() ? lead.fields[f] : none;
      if (mine != theirs) {
        what = Who(m) + " has " + mine.first + " '" + mine.second + "', " + Who(0) + " has " +
               (mine.first == theirs.first ? "" : theirs.first + " ") + "'" + theirs.second + "'";
      }
    }
    if (what.empty() && lead.world > 1) {
      for (unsigned o = 0; o < m && what.empty(); ++o) {
        if (members_[o].join.identity.rank == id.rank) {
          what = Who(o) + " and " + Who(m) + " both load rank " + std::to_string(id.rank) +
                 " of " + std::to_string(id.world);
        }
      }
    }
    if (!what.empty()) {
      Abort(MakeError(ErrorCode::kPeerMismatch, "", "", "the cooperating ranks disagree: " + what));
      return false;
    }
  }
  Writer ranks;
  for (const Member& m : members_) {
    ranks.U32(m.join.identity.rank).U64(static_cast<std::uint64_t>(m.join.pid));
  }
  SendAll(kAgreed, ranks.body());
  return true;
}

bool Server::Next(Message& msg, unsigned& from) {
  std::vector<int> fds;
  std::vector<unsigned> who;
  for (unsigned m = 0; m < members_.size(); ++m) {
    if (members_[m].done) continue;
    fds.push_back(members_[m].fd.get());
    who.push_back(m);
  }
  const auto deadline = Deadline();
  int i = -1;
  do {
    i = WaitReadable(fds, Slice(deadline), nullptr);
  } while (i < 0 && Clock::now() < deadline);
  if (i < 0) {
    std::string silent;
    for (unsigned m : Awaited()) silent += (silent.empty() ? "" : ", ") + Who(m);
    Abort(MakeError(ErrorCode::kPeerFailed, "", "",
                    "timed out after " + SecondsText(options_.timeout) + " waiting for " + silent +
                        ", which sent nothing (stopped or hung?)"));
    return false;
  }
  from = who[static_cast<unsigned>(i)];
  auto got = Receive(members_[from].fd.get(), Deadline(), Who(from), nullptr);
  if (!got) {
    Error e = std::move(got).error();
    const bool eof = e.detail.find("disconnected") != std::string::npos;
    Abort(MakeError(ErrorCode::kPeerFailed, "", "",
                    Who(from) + " left the load (died or was killed?)" +
                        (eof ? "" : ": " + e.detail)),
          static_cast<int>(from));
    return false;
  }
  if (got->type == kFail) {
    Error e = DecodeError(got->body);
    Abort(MakeError(ErrorCode::kPeerFailed, "", "", Who(from) + " failed: " + e.ToString()),
          static_cast<int>(from));
    return false;
  }
  msg = std::move(*got);
  return true;
}

bool Server::GatherNeeds() {
  unsigned left = static_cast<unsigned>(members_.size());
  while (left > 0) {
    Message msg;
    unsigned m = 0;
    if (!Next(msg, m)) return false;
    if (msg.type != kNeeds || members_[m].has_needs || !Decode(msg.body, members_[m].needs)) {
      Abort(MakeError(ErrorCode::kPeerMismatch, "", "", Who(m) + " sent an unexpected message"));
      return false;
    }
    members_[m].has_needs = true;
    --left;
  }
  return true;
}

PlanMessage Server::MakePlan() const {
  ScheduleOptions so;
  so.staging = options_.staging;
  so.members = static_cast<unsigned>(members_.size());
  std::vector<Need> all;
  bool any_forced = false;
  for (const Member& m : members_) {
    so.alignment = std::max(so.alignment, m.needs.alignment);
    if (so.file_sizes.size() < m.needs.file_sizes.size()) so.file_sizes = m.needs.file_sizes;
    all.insert(all.end(), m.needs.needs.begin(), m.needs.needs.end());
    any_forced = any_forced || m.needs.buffered || m.needs.direct;
  }
  PlanMessage plan;
  plan.schedule = MakeSchedule(std::move(all), so);
  plan.staging_size = 2 * plan.schedule.half;
  if (any_forced) {
    plan.why = "staged (read mode forced)";
    PlaceReplicas(plan, so.alignment);
    return plan;
  }
  // Auto mode: a union in the page cache already is a node-shared copy;
  // staging it would copy it twice.
  std::uint64_t cached = 0, pages = 0;
  ResidencyProbe probe;
  for (std::uint32_t f = 0; f < options_.shard_paths.size(); ++f) {
    FileDescriptor fd(::open(options_.shard_paths[f].c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) continue;
    for (const Piece& p : plan.schedule.pieces) {
      if (p.file != f) continue;
      auto count = probe.Sample(fd.get(), options_.shard_paths[f], p.offset, p.length);
      if (!count) continue;
      cached += count->cached;
      pages += count->pages;
    }
  }
  const double resident = pages == 0 ? 1.0 : static_cast<double>(cached) / static_cast<double>(pages);
  char why[96];
  std::snprintf(why, sizeof why, "%.0f%% of the node's bytes in the page cache", 100 * resident);
  plan.each_reads_own = resident >= kResidentEnough;
  plan.why = std::string(plan.each_reads_own ? "each rank reads its own: " : "staged: ") + why;
  if (plan.each_reads_own) plan.staging_size = 0;
  PlaceReplicas(plan, so.alignment);
  return plan;
}

void Server::PlaceReplicas(PlanMessage& plan, std::uint64_t alignment) const {
  plan.memfd_size = plan.staging_size;
  if (members_.size() < 2) return;
  // Ranges named by every member (each member's list counted once).
  std::map<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t>, unsigned> named;
  for (const Member& m : members_) {
    std::set<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t>> mine;
    for (const Need& w : m.needs.whole) {
      if (w.count == 1 && w.length >= kMinReplica) mine.emplace(w.file, w.offset, w.length);
    }
    for (const auto& key : mine) ++named[key];
  }
  // Each at the same offset modulo the unit as in its file, so that O_DIRECT
  // reads land in place and members map whole pages; ranges adjacent in
  // their file stay adjacent (members map a run of them at once); fillers
  // balanced by bytes.
  const std::uint64_t unit = std::max<std::uint64_t>(4096, alignment);
  std::uint64_t cursor = RoundUp(plan.staging_size, unit);
  std::vector<std::uint64_t> filled(members_.size(), 0);
  for (const auto& [key, count] : named) {  // by file, then offset
    if (count != members_.size()) continue;
    const auto [file, offset, length] = key;
    const Replica* prev = plan.replicas.empty() ? nullptr : &plan.replicas.back();
    const bool adjacent = prev != nullptr && prev->file == file && prev->offset + prev->length == offset;
    Replica r{file, offset, length, adjacent ? prev->at + prev->length : cursor + offset % unit, 0};
    r.filler = static_cast<std::uint32_t>(std::min_element(filled.begin(), filled.end()) -
                                          filled.begin());
    filled[r.filler] += length;
    cursor = RoundUp(r.at + length, unit);
    plan.replicas.push_back(r);
  }
  plan.memfd_size = cursor;
}

bool Server::SendPlan() {
  PlanMessage plan = MakePlan();
  if (plan.memfd_size > 0) {
    memfd_.Reset(::memfd_create("shardload-staging", MFD_CLOEXEC));
    if (!memfd_.valid() || ::ftruncate(memfd_.get(), static_cast<off_t>(plan.memfd_size)) != 0) {
      Abort(ErrnoError("memfd shardload-staging", "create the node's staging", errno));
      return false;
    }
  }
  SendAll(kPlan, Encode(plan), memfd_.valid() ? memfd_.get() : -1);
  memfd_.Reset();  // the members hold it now
  return true;
}

void Server::Relay() {
  unsigned left = static_cast<unsigned>(members_.size());
  while (left > 0) {
    Message msg;
    unsigned m = 0;
    if (!Next(msg, m)) return;
    Member& member = members_[m];
    Reader r(msg.body);
    const std::uint32_t wave = r.U32();
    if (msg.type == kRead && wave == member.reads) {
      ++member.reads;
    } else if (msg.type == kCopied && wave == member.copies) {
      ++member.copies;
    } else if (msg.type == kDone) {
      member.done = true;
      --left;
    } else {
      Abort(MakeError(ErrorCode::kPeerMismatch, "", "", Who(m) + " sent an unexpected message"));
      return;
    }
    std::uint32_t min_read = UINT32_MAX, min_copied = UINT32_MAX;
    for (const Member& x : members_) {
      if (x.done) continue;
      min_read = std::min(min_read, x.reads);
      min_copied = std::min(min_copied, x.copies);
    }
    if (left == 0) break;
    for (; all_read_ < min_read; ++all_read_) SendAll(kAllRead, Writer().U32(all_read_).body());
    for (; all_copied_ < min_copied; ++all_copied_) {
      SendAll(kAllCopied, Writer().U32(all_copied_).body());
    }
  }
}

void Server::Run() {
  if (!AcceptAll() || !Agree() || !GatherNeeds() || !SendPlan()) return;
  Relay();
}

}  // namespace

Result<std::unique_ptr<Hub>> Hub::Start(Options options) {
  std::string name = RandomName();
  auto listener = Listen(name);
  if (!listener) return std::move(listener).error();
  std::unique_ptr<Hub> hub(new Hub(std::move(options), std::move(name), std::move(*listener)));
  hub->thread_ = std::thread([h = hub.get()] { h->Serve(); });
  return hub;
}

Hub::Hub(Options options, std::string name, FileDescriptor listener)
    : options_(std::move(options)), name_(std::move(name)), listener_(std::move(listener)) {}

Hub::~Hub() { Join(); }

void Hub::Join() {
  if (thread_.joinable()) thread_.join();
}

void Hub::Serve() {
  Server server(options_, listener_.get(), &stop_);
  server.Run();
  listener_.Reset();
}

}  // namespace shardload::coop
