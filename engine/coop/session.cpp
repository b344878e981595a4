// A member's side of a cooperative load (session.h): rendezvous, then the
// wave loop. Member i reads slot i of wave k into staging half k % 2 and
// says so (kRead); once everyone has read wave k (kAllRead) it copies its
// own segments' bytes of wave k out of staging and says so (kCopied); wave
// k + 2 reuses the half only after everyone copied wave k (kAllCopied).
// Wave k + 1 is read before wave k is copied out, so one member's reads
// overlap the others' copies. The staging is mapped once; every 64 MiB a
// member has written or copied out is dropped from its page tables
// (MADV_DONTNEED; the memfd keeps the bytes), so its RSS grows by at most
// its slot of a wave plus 64 MiB.
// Replicas (protocol.h, replicas.h): a range every member needs whole is
// filled once into the node's memfd by its filler (copied out of staging, or
// read), and once everyone has filled theirs each member maps it over its
// destination copy-on-write.
// Thread-compatible: see session.h.
#include "coop/session.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>
#include <tuple>

#include "coop/replicas.h"
#include "util/errno_error.h"

namespace shardload::coop {

namespace {

constexpr std::uint64_t kCopyWindow = 64ULL << 20;
constexpr std::size_t kNameBytes = 128;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Drops the whole pages of [P, P + N) (inside a mapping of the memfd) from
// this process's page tables: the memfd keeps the bytes, this process's RSS
// stops counting them.
void DropInterior(const std::byte* p, std::uint64_t n) {
  constexpr std::uintptr_t kPage = 4096;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t lo = (a + kPage - 1) & ~(kPage - 1);
  const std::uintptr_t hi = (a + n) & ~(kPage - 1);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

// A MAP_SHARED mapping of the node's memfd, unmapped on destruction when
// OWNED (else a view of part of one).
class Mapping {
 public:
  Mapping(void* base, std::size_t size, bool owned = true)
      : base_(static_cast<std::byte*>(base)), size_(size), owned_(owned) {}
  ~Mapping() {
    if (owned_ && base_ != nullptr) ::munmap(base_, size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  std::byte* data() const { return base_; }
  // Drops [offset, offset + n) from this process's page tables.
  void Drop(std::uint64_t offset, std::uint64_t n) const {
    const std::uint64_t page = 4096;
    const std::uint64_t lo = offset & ~(page - 1);
    const std::uint64_t hi = std::min<std::uint64_t>(size_, (offset + n + page - 1) & ~(page - 1));
    if (hi > lo) DropInterior(base_ + lo, hi - lo);
  }

 private:
  std::byte* base_;
  std::size_t size_;
  bool owned_;
};

class MemcpySink final : public CopySink {
 public:
  explicit MemcpySink(std::function<void(std::byte*, std::size_t)> before_write)
      : before_write_(std::move(before_write)) {}
  Status Attach(std::byte*, std::size_t) override { return {}; }
  Status Copy(const CopyRuns& c) override {
    if (before_write_) before_write_(c.dst, (c.rows - 1) * c.dst_stride + c.length);
    for (std::uint64_t r = 0; r < c.rows; ++r) {
      std::memcpy(c.dst + r * c.dst_stride, c.src + r * c.src_stride, c.length);
    }
    return {};
  }
  Status Flush() override { return {}; }
  void Detach() override {}
  bool drops_pages() const override { return true; }

 private:
  std::function<void(std::byte*, std::size_t)> before_write_;
};

// SEG's run parts in file range [LO, HI), grouped into batches of equal
// length at constant strides (a partial first run, the full runs, a partial
// last run), SRC: the staging byte holding file offset LO. Returns EMIT's
// first error.
template <typename Emit>
Status ForEachBatch(const Segment& seg, std::uint64_t lo, std::uint64_t hi, const std::byte* src,
                    Emit&& emit) {
  CopyRuns batch;
  batch.tag = seg.tag;
  batch.dst_stride = seg.dst_stride;
  batch.src_stride = seg.src_stride;
  std::uint64_t batch_at = 0;
  Status status;
  ForEachRunPart(seg, lo, hi, [&](std::uint64_t at, std::byte* dst, std::uint64_t n) {
    if (!status) return;
    if (batch.rows > 0 && n == batch.length && at == batch_at + batch.rows * seg.src_stride &&
        dst == batch.dst + batch.rows * seg.dst_stride) {
      ++batch.rows;
      return;
    }
    if (batch.rows > 0) status = emit(batch);
    batch.dst = dst;
    batch.src = src + (at - lo);
    batch.length = n;
    batch.rows = 1;
    batch_at = at;
  });
  if (status && batch.rows > 0) status = emit(batch);
  return status;
}

// Segment S's bytes that piece P holds, copied from staging.
struct CopyTask {
  std::size_t segment;
  std::size_t piece;
};

// For each wave, the (segment, piece) pairs whose bytes meet, by piece.
std::vector<std::vector<CopyTask>> CopyTasks(std::span<const Segment> segments,
                                             const Schedule& schedule) {
  std::vector<std::vector<CopyTask>> waves(schedule.waves);
  const std::vector<Piece>& pieces = schedule.pieces;  // in (file, offset) order
  for (std::size_t s = 0; s < segments.size(); ++s) {
    const Segment& seg = segments[s];
    if (seg.length == 0 || seg.count == 0) continue;
    const std::uint64_t begin = seg.offset;
    const std::uint64_t end = seg.offset + (seg.count - 1) * seg.src_stride + seg.length;
    auto it = std::lower_bound(pieces.begin(), pieces.end(), std::make_pair(seg.file, begin),
                               [](const Piece& p, const std::pair<std::uint32_t, std::uint64_t>& k) {
                                 return p.file < k.first ||
                                        (p.file == k.first && p.offset + p.length <= k.second);
                               });
    for (; it != pieces.end() && it->file == seg.file && it->offset < end; ++it) {
      waves[it->wave].push_back({s, static_cast<std::size_t>(it - pieces.begin())});
    }
  }
  for (auto& tasks : waves) {
    std::stable_sort(tasks.begin(), tasks.end(),
                     [](const CopyTask& a, const CopyTask& b) { return a.piece < b.piece; });
  }
  return waves;
}

}  // namespace

std::unique_ptr<CopySink> HostSink(std::function<void(std::byte*, std::size_t)> before_write) {
  return std::make_unique<MemcpySink>(std::move(before_write));
}

Session::Session(const Cooperation& options, unsigned local_rank, unsigned local_size)
    : options_(options), local_rank_(local_rank), local_size_(local_size) {
  stats_.local_rank = local_rank;
  stats_.local_size = local_size;
}

Session::~Session() {
  if (!done_) {  // left without finishing (an exception): the others must not wait
    Fail(MakeError(ErrorCode::kInternal, "", "", "left the cooperative load without finishing"));
  }
  Finish();
}

Result<std::unique_ptr<Session>> Session::Start(Communicator& group, const Cooperation& options,
                                                const Identity& identity,
                                                std::vector<std::string> shard_paths,
                                                const std::atomic<bool>* stop) {
  std::unique_ptr<Session> session(new Session(options, group.rank(), group.size()));
  session->rank_ = identity.rank;
  std::array<std::byte, kNameBytes> name{};
  Error hub_error;
  if (group.rank() == 0) {
    auto hub = Hub::Start({group.size(), options.peer_timeout, options.staging_bytes,
                           std::move(shard_paths)});
    if (hub) {
      session->hub_ = std::move(*hub);
      const std::string& n = session->hub_->name();
      std::memcpy(name.data(), n.data(), std::min(n.size(), kNameBytes - 1));
    } else {
      hub_error = std::move(hub).error();
    }
  }
  // Everyone learns the hub's name (empty: the leader could not start it);
  // the barrier after it notices a member already gone (its process exited
  // on an error before this load) at once, naming it.
  if (Status s = group.Broadcast(0, name); !s) return std::move(s).error();
  if (Status s = group.Barrier(); !s) return std::move(s).error();
  const std::string hub_name(reinterpret_cast<const char*>(name.data()));
  if (hub_name.empty()) {
    if (group.rank() == 0) return hub_error;
    return MakeError(ErrorCode::kPeerFailed, "", "",
                     "local rank 0 (the leader) could not start the cooperation hub");
  }
  const auto deadline = DeadlineIn(options.peer_timeout);
  // The rendezvous ignores STOP (it is bounded by the timeout): a member
  // cancelled now still joins, so that its failure reaches the others.
  auto link = Connect(hub_name, deadline, "the leader's hub", nullptr);
  if (!link) return std::move(link).error();
  if (std::string other = OtherUser(link->get()); !other.empty()) {
    return MakeError(ErrorCode::kPeerMismatch, "", "",
                     "the leader's hub @" + hub_name + " is " + other + ": refusing to join it");
  }
  session->link_ = std::move(*link);
  Join join{group.rank(), static_cast<long>(::getpid()), identity};
  if (Status s = session->SendToHub(kJoin, Encode(join)); !s) return std::move(s).error();
  if (Status s = session->WaitFor(kAgreed, 0); !s) return std::move(s).error();
  session->stop_ = stop;
  return session;
}

Error Session::FromHub(const Error& e) const {
  if (e.code == ErrorCode::kCancelled) return e;
  Error out = e;
  if (out.code != ErrorCode::kPeerMismatch) out.code = ErrorCode::kPeerFailed;
  if (hub_ == nullptr && out.detail.find("disconnected") != std::string::npos) {
    // The hub lives in the leader's process: its EOF is the leader's death.
    out.detail = leader_ + " left the load (died or was killed?)";
  } else if (out.detail.rfind("timed out", 0) == 0) {
    // The hub says it is alive while it waits: silence is the leader's.
    out.detail = "timed out after " + SecondsText(options_.peer_timeout) + " waiting for " +
                 leader_ + ", whose hub sent nothing (stopped or hung?)";
  }
  out.detail = "rank " + std::to_string(rank_) + " (local rank " + std::to_string(local_rank_) +
               "): " + out.detail;
  return out;
}

Error Session::Aborted(std::string_view body) const {
  Error e = DecodeError(body);
  e.detail = "rank " + std::to_string(rank_) + " (local rank " + std::to_string(local_rank_) +
             "): " + e.detail;
  return e;
}

Status Session::SendToHub(std::uint32_t type, const std::string& body) {
  Status s = Send(link_.get(), type, body, DeadlineIn(options_.peer_timeout), "the leader's hub");
  if (s) return s;
  failed_ = true;
  // The hub may have aborted and closed: its abort is the real cause.
  auto pending = Receive(link_.get(), DeadlineIn(std::chrono::milliseconds(200)),
                         "the leader's hub", nullptr);
  while (pending && pending->type != kAbort) {
    pending = Receive(link_.get(), DeadlineIn(std::chrono::milliseconds(200)), "the leader's hub",
                      nullptr);
  }
  if (pending) return Aborted(pending->body);
  return FromHub(s.error());
}

Status Session::WaitFor(std::uint32_t type, std::uint32_t wave) {
  const auto start = Clock::now();
  for (;;) {
    if (type == kAllRead && all_read_ > wave) break;
    if (type == kAllCopied && all_copied_ > wave) break;
    auto msg = Receive(link_.get(), DeadlineIn(options_.peer_timeout), "the leader's hub", stop_);
    if (!msg) {
      failed_ = msg.error().code != ErrorCode::kCancelled;
      return FromHub(msg.error());
    }
    if (msg->type == kAbort) {
      failed_ = true;
      return Aborted(msg->body);
    }
    Reader r(msg->body);
    if (msg->type == kAllRead) {
      all_read_ = r.U32() + 1;
    } else if (msg->type == kAllCopied) {
      all_copied_ = r.U32() + 1;
    } else if (msg->type == type) {  // kAgreed: {rank, pid} by local rank
      const unsigned leader_rank = r.U32();
      leader_ = "rank " + std::to_string(leader_rank) + " (local rank 0, pid " +
                std::to_string(r.U64()) + ", the leader)";
      break;
    }
  }
  stats_.wait_seconds += Since(start);
  return {};
}

void Session::Fail(const Error& error) {
  if (failed_) return;
  failed_ = true;
  if (link_.valid()) {
    (void)Send(link_.get(), kFail, Encode(error), DeadlineIn(std::chrono::seconds(2)),
               "the leader's hub");
  }
}

void Session::Finish() {
  if (hub_ != nullptr) {
    if (!link_.valid()) hub_->Stop();  // the leader never joined its hub
    hub_->Join();
    hub_.reset();
  }
}

void Session::PauseForTest(std::uint32_t wave) const {
  // The test seam Cooperation::test_pause (docs/testing.md).
  const CoopTestPause& pause = options_.test_pause;
  if (!pause.enabled || pause.rank != rank_ || pause.wave != wave) return;
  std::fprintf(stderr, "shardload: test hook: rank %u paused before wave %u\n", pause.rank,
               pause.wave);
  std::fflush(stderr);
  const auto until = Clock::now() + std::chrono::seconds(pause.seconds);
  while (pause.forever || Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<PlanMessage> Session::ExchangeNeeds(const ReadRequest& request, FileDescriptor& memfd) {
  NeedsMessage needs;
  needs.alignment = std::max<std::uint64_t>(request.alignment, 1);
  needs.buffered = request.mode == IoMode::kBuffered;
  needs.direct = request.mode == IoMode::kDirect;
  needs.file_sizes = request.file_sizes;
  needs.needs = NeedsOf(request.segments);
  if (request.share) {
    for (const Segment& s : request.segments) {
      if (s.count == 1) needs.whole.push_back({s.file, s.offset, s.length, 1, 0});
    }
  }
  if (Status s = SendToHub(kNeeds, Encode(needs)); !s) return std::move(s).error();
  auto msg = Receive(link_.get(), DeadlineIn(options_.peer_timeout), "the leader's hub", stop_);
  while (msg && msg->type == kAlive) {
    msg = Receive(link_.get(), DeadlineIn(options_.peer_timeout), "the leader's hub", stop_);
  }
  if (!msg) {
    failed_ = true;
    return FromHub(msg.error());
  }
  if (msg->type == kAbort) {
    failed_ = true;
    return Aborted(msg->body);
  }
  PlanMessage plan;
  if (msg->type != kPlan || !Decode(msg->body, plan)) {
    return MakeError(ErrorCode::kInternal, "", "", "unexpected message from the leader's hub");
  }
  memfd = std::move(msg->fd);
  return plan;
}

Result<LoadStats> Session::Run(const ReadRequest& request, const Executor& exec) {
  FileDescriptor memfd;
  auto plan = ExchangeNeeds(request, memfd);
  if (!plan) return std::move(plan).error();
  stats_.how = plan->why;
  stats_.node_bytes = plan->schedule.bytes;
  std::unique_ptr<Mapping> shared;
  if (plan->memfd_size > 0) {
    if (!memfd.valid()) return MakeError(ErrorCode::kInternal, "", "", "no staging memfd received");
    void* base =
        ::mmap(nullptr, plan->memfd_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
    if (base == MAP_FAILED) return ErrnoError("memfd shardload-staging", "mmap", errno);
    shared = std::make_unique<Mapping>(base, plan->memfd_size);
  }
  const std::uint64_t unit = std::max<std::uint64_t>(4096, request.alignment);
  ReplicaSplit split = SplitReplicas(request.segments, *plan, shared ? shared->data() : nullptr,
                                     local_rank_, unit);
  Result<LoadStats> out = LoadStats{};
  if (plan->each_reads_own) {
    out = ReadOwn(split.own, split.fills, split.fill_windows, exec);
  } else {
    std::vector<Segment> mine = split.own;
    mine.insert(mine.end(), split.fills.begin(), split.fills.end());
    out = RunStaged(request, mine, split.own.size(), exec, *plan, shared->data());
    if (out) {
      for (const Segment& f : split.fills) out->bytes -= f.length;  // not this member's
    }
  }
  if (!out) return out;
  if (!plan->replicas.empty()) {
    if (Status s = WaitForReplicas(*plan); !s) return std::move(s).error();
    auto mapped = MapReplicas(*plan, split.mapped, memfd.get(), shared->data());
    if (!mapped) return std::move(mapped).error();
    out->bytes += *mapped;
  }
  if (Status s = SendToHub(kDone, {}); !s) return std::move(s).error();
  done_ = true;
  out->cooperation = stats_;
  return out;
}

Result<LoadStats> Session::ReadOwn(std::span<const Segment> own, std::span<const Segment> fills,
                                   std::span<const Window> fill_windows, const Executor& exec) {
  Result<LoadStats> out = exec.read_own(own);
  if (out) stats_.bytes_direct = out->bytes;
  if (out && !fills.empty()) {
    auto filled = exec.read(fills, fill_windows);
    if (!filled) return filled;
    for (const Window& w : fill_windows) {
      DropInterior(w.begin, static_cast<std::uint64_t>(w.end - w.begin));
    }
    out->bytes_read += filled->bytes_read;
    out->bytes_direct += filled->bytes_direct;
    out->bytes_buffered += filled->bytes_buffered;
    out->read_ops += filled->read_ops;
  }
  return out;
}

Result<std::uint64_t> Session::MapReplicas(const PlanMessage& plan,
                                           std::span<const std::pair<Segment, Replica>> mapped,
                                           int memfd, const std::byte* shared) {
  // The staging is done with everywhere; the replicas outlive it.
  if (plan.staging_size > 0) {
    (void)::fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                      static_cast<off_t>(plan.staging_size));
  }
  const std::vector<SharedRange> ranges = SharedRanges(mapped);
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    auto done = MapShared(ranges[i], memfd, shared, i < kMaxSharedMappings);
    if (!done) return std::move(done).error();
    stats_.bytes_shared += *done;
    bytes += ranges[i].length;
  }
  return bytes;
}

Status Session::WaitForReplicas(const PlanMessage& plan) {
  if (plan.each_reads_own) {
    if (Status s = SendToHub(kRead, Writer().U32(0).body()); !s) return s;
    return WaitFor(kAllRead, 0);
  }
  return plan.schedule.waves == 0 ? Status() : WaitFor(kAllCopied, plan.schedule.waves - 1);
}

// One staged run (RunStaged): the schedule, this member's segments, the
// staging and where copies go, and what the reads added up to.
struct Session::Staged {
  const Schedule& schedule;
  std::span<const Segment> segments;
  std::size_t first_fill;
  const Executor& exec;
  const Mapping& staging;
  CopySink& sink;
  std::uint64_t alignment;
  std::vector<std::vector<CopyTask>> tasks;
  LoadStats total;          // the reader thread's
  bool first_read = true;   // the reader thread's
};

namespace {

// The part of the staging in use, which the sink sees (and a device pins).
std::uint64_t StagingInUse(const Schedule& schedule, std::uint64_t alignment,
                           std::uint64_t staging_size) {
  std::uint64_t used = 0;
  for (const Piece& p : schedule.pieces) {
    used = std::max(used, p.staging + (p.length + alignment - 1) / alignment * alignment);
  }
  return std::min<std::uint64_t>((used + 4095) / 4096 * 4096, staging_size);
}

}  // namespace

Result<LoadStats> Session::RunStaged(const ReadRequest& request, std::span<const Segment> segments,
                                     std::size_t first_fill, const Executor& exec,
                                     const PlanMessage& plan, std::byte* shared) {
  const Schedule& schedule = plan.schedule;
  const Mapping staging(shared, plan.staging_size, /*owned=*/false);
  if (exec.sink == nullptr) return MakeError(ErrorCode::kInternal, "", "", "no copy sink");
  CopySink& sink = *exec.sink;
  const std::uint64_t a = std::max<std::uint64_t>(request.alignment, 1);
  const std::uint64_t used = StagingInUse(schedule, a, plan.staging_size);
  if (Status s = sink.Attach(staging.data(), used); !s) return std::move(s).error();
  // Detaches (waits for, unpins) before the caller unmaps the staging.
  struct Detach {
    CopySink& sink;
    ~Detach() { sink.Detach(); }
  } detach{sink};
  Staged run{schedule, segments, first_fill, exec, staging, sink, a,
             CopyTasks(segments, schedule), {}, true};
  stats_.waves = schedule.waves;
  // Iteration k reads wave k on a thread of its own while this thread
  // copies wave k - 1 out (once everyone has read it).
  for (std::uint32_t k = 0; k <= schedule.waves; ++k) {
    if (Status s = StepWave(run, k); !s) return std::move(s).error();
  }
  run.total.bytes = stats_.bytes_staged;
  return run.total;
}

Status Session::StepWave(Staged& run, std::uint32_t k) {
  const std::uint32_t waves = run.schedule.waves;
  Status read_status;
  std::thread reader;
  if (k < waves) {
    if (k >= 2) {
      if (Status s = WaitFor(kAllCopied, k - 2); !s) return s;
    }
    PauseForTest(k);
    reader = std::thread([&, k] { read_status = ReadWave(run, k); });
  }
  Status copy_status;
  if (k >= 1) {
    copy_status = WaitFor(kAllRead, k - 1);
    if (copy_status) copy_status = CopyWave(run, k - 1);
  }
  if (reader.joinable()) reader.join();
  if (!read_status) return read_status;
  if (!copy_status) return copy_status;
  if (k >= 1) {
    if (Status s = SendToHub(kCopied, Writer().U32(k - 1).body()); !s) return s;
  }
  if (k < waves) return SendToHub(kRead, Writer().U32(k).body());
  return Status();
}

// Runs on the reader thread: touches only run.total, its own slots and
// stats_.read_for_node (the copy touches stats_.bytes_staged).
Status Session::ReadWave(Staged& run, std::uint32_t k) {
  const std::uint64_t a = run.alignment;
  std::vector<Segment> segs;
  std::vector<Window> windows;
  auto [lo, hi] = run.schedule.WaveRange(k);
  for (std::size_t i = lo; i < hi; ++i) {
    const Piece& p = run.schedule.pieces[i];
    if (p.slot != local_rank_) continue;
    Segment s;
    s.file = p.file;
    s.offset = p.offset;
    s.length = p.length;
    s.dst = run.staging.data() + p.staging;
    segs.push_back(s);
    windows.push_back({s.dst, s.dst + ((p.length + a - 1) / a) * a});
  }
  if (segs.empty()) return Status();
  auto r = run.exec.read(segs, windows);
  if (!r) return std::move(r).error();
  if (run.first_read) {
    run.total = *r;
    run.total.bytes = 0;
    run.first_read = false;
  } else {
    run.total.bytes_read += r->bytes_read;
    run.total.bytes_direct += r->bytes_direct;
    run.total.bytes_buffered += r->bytes_buffered;
    run.total.read_ops += r->read_ops;
    run.total.short_reads += r->short_reads;
    run.total.retries += r->retries;
  }
  for (const Segment& s : segs) {
    stats_.read_for_node += s.length;
    if (run.sink.drops_pages()) {
      run.staging.Drop(static_cast<std::uint64_t>(s.dst - run.staging.data()), s.length);
    }
  }
  return Status();
}

Status Session::CopyWave(Staged& run, std::uint32_t k) {
  const std::vector<CopyTask>& list = run.tasks[k];
  const std::uint64_t before = stats_.bytes_staged;
  for (std::size_t t = 0; t < list.size();) {
    const std::size_t piece_index = list[t].piece;
    std::size_t end = t;
    while (end < list.size() && list[end].piece == piece_index) ++end;
    if (Status s = CopyPiece(run, k, t, end); !s) return s;
    t = end;
  }
  if (Status s = run.sink.Flush(); !s) return s;
  if (run.exec.copied) run.exec.copied(stats_.bytes_staged - before);
  return Status();
}

Status Session::CopyPiece(Staged& run, std::uint32_t k, std::size_t first, std::size_t end) {
  const std::span<const CopyTask> tasks = std::span<const CopyTask>(run.tasks[k]).subspan(
      first, end - first);
  const Piece& p = run.schedule.pieces[tasks.front().piece];
  const std::byte* src = run.staging.data() + p.staging;
  for (std::uint64_t lo = p.offset; lo < p.offset + p.length; lo += kCopyWindow) {
    const std::uint64_t hi = std::min(p.offset + p.length, lo + kCopyWindow);
    for (const CopyTask& task : tasks) {
      const bool fill = task.segment >= run.first_fill;
      Status s = ForEachBatch(run.segments[task.segment], lo, hi, src + (lo - p.offset),
                              [&](const CopyRuns& runs) {
                                stats_.bytes_staged += runs.rows * runs.length;
                                Status copied = run.sink.Copy(runs);
                                // Filled for the node, not for this member: its whole
                                // pages leave this member's page tables (a fill is one run).
                                if (copied && fill) DropInterior(runs.dst, runs.length);
                                return copied;
                              });
      if (!s) return s;
    }
    if (run.sink.drops_pages()) run.staging.Drop(p.staging + (lo - p.offset), hi - lo);
  }
  return Status();
}

}  // namespace shardload::coop

namespace shardload {

CoopTestPause CoopTestPause::Parse(const std::string& text) {
  CoopTestPause pause;
  unsigned rank = 0, wave = 0, seconds = 0;
  const int n = std::sscanf(text.c_str(), "%u:%u:%u", &rank, &wave, &seconds);
  if (n < 2) return pause;
  pause.enabled = true;
  pause.rank = rank;
  pause.wave = wave;
  pause.seconds = n >= 3 ? seconds : 0;
  pause.forever = n < 3;
  return pause;
}

}  // namespace shardload
