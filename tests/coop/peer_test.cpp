// The node's channels trust no other user and name whoever stalls them.
// Another user (uid 65534 through setpriv; skipped unless this test runs as
// root with setpriv) probes a job with a hand-made client (comm_helper's
// intrude / join-hub) and is refused while the job goes on with its real
// member; a job name taken first by another user (squat) fails the leader
// and the members at once, naming it. A member stopped with SIGSTOP (or
// member 0 itself) is named exactly, with its pid, by every other member
// after the timeout; nothing of the job stays behind.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "coop/hub.h"
#include "coop/protocol.h"
#include "coop/spawn.h"
#include "coop/wire.h"
#include "support/coop_members.h"
#include "support/test_util.h"

namespace shardload::test {
namespace {

constexpr const char* kSetpriv = "/usr/bin/setpriv";

// Why another user's process cannot be started here ("" when it can).
std::string NoOtherUser() {
  if (::geteuid() != 0) return "not root: cannot run a process as another user";
  if (::access(kSetpriv, X_OK) != 0) return "setpriv missing: cannot run a process as another user";
  return "";
}

#define SKIP_WITHOUT_OTHER_USER()                    \
  if (std::string why = NoOtherUser(); !why.empty()) { \
    MESSAGE("skipped: " << why);                     \
    return;                                          \
  }

// ARGV run as uid/gid 65534 (nobody), without supplementary groups.
std::vector<std::string> AsNobody(std::vector<std::string> argv) {
  argv.insert(argv.begin(), {kSetpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"});
  return argv;
}

std::string LocalName(const std::string& job) {
  return "shardload-" + std::to_string(::geteuid()) + "-" + job;
}

// Whether /proc/net/unix lists the abstract NAME.
bool Listed(const std::string& name) {
  std::ifstream in("/proc/net/unix");
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > name.size() + 1 &&
        line.compare(line.size() - name.size() - 1, std::string::npos, "@" + name) == 0) {
      return true;
    }
  }
  return false;
}

// Waits until PREDICATE holds (10 s at most).
template <typename Predicate>
bool WaitUntil(Predicate&& predicate) {
  for (int i = 0; i < 2000; ++i) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

Spawned Member(const TempDir& dir, const std::string& job, unsigned rank, unsigned size,
               int timeout_ms, const std::string& action) {
  return Spawn({COMM_HELPER, job, std::to_string(rank), std::to_string(size),
                std::to_string(timeout_ms), action},
               {}, dir / ("member-" + std::to_string(rank) + ".out"));
}

std::string Payload(unsigned root) {
  std::string s = "from member " + std::to_string(root);
  s.resize(16, '.');
  return s;
}

TEST_CASE("ConnectLocal: another user's process is refused and the job waits for its member") {
  SKIP_WITHOUT_OTHER_USER();
  TempDir dir;
  const std::string job = UniqueJob("peer-intruder");
  auto leader = Member(dir, job, 0, 2, 30000, "ok");
  REQUIRE(WaitUntil([&] { return Listed(LocalName(job)); }));
  // Claims local member 1 on the leader's socket, as a modified client would.
  auto intruder = Spawn(AsNobody({COMM_HELPER, LocalName(job), "1", "2", "5000", "intrude"}), {},
                        dir / "intruder.out");
  auto refused = WaitAll({intruder}, 30);
  INFO(refused[0].output);
  CHECK(refused[0].output.find("REFUSED job '" + job +
                               "' on this node belongs to another user (uid 0)") == 0);
  CHECK(refused[0].output.find("a process of another user (uid 65534, pid " +
                               std::to_string(intruder.pid) + ")") != std::string::npos);
  // The real member 1 still joins; both see each other's bytes.
  auto member = Member(dir, job, 1, 2, 30000, "ok");
  auto done = WaitAll({leader, member}, 60);
  for (unsigned m = 0; m < 2; ++m) {
    INFO("member " << m << ": " << done[m].output);
    CHECK(done[m].exit_code == 0);
    CHECK(done[m].output == "OK " + Payload(1) + ";" + Payload(0) + ";\n");
  }
}

TEST_CASE("ConnectLocal: a job name another user took first fails the leader and members at once") {
  SKIP_WITHOUT_OTHER_USER();
  TempDir dir;
  const std::string job = UniqueJob("peer-squat");
  auto squatter = Spawn(AsNobody({COMM_HELPER, LocalName(job), "0", "2", "20000", "squat"}), {},
                        dir / "squatter.out");
  REQUIRE(WaitUntil([&] { return ReadFile(squatter.output_path) == "READY\n"; }));
  auto leader = Member(dir, job, 0, 2, 20000, "ok");
  auto member = Member(dir, job, 1, 2, 20000, "ok");
  auto done = WaitAll({leader, member}, 30);
  const std::string who = "a process of another user (uid 65534, pid " +
                          std::to_string(squatter.pid) + ")";
  INFO(done[0].output << done[1].output);
  CHECK(done[0].output.find("ERR peer_mismatch") == 0);
  CHECK(done[0].output.find("is held by " + who + ", not by this user (uid 0)") !=
        std::string::npos);
  CHECK(done[1].output.find("ERR peer_mismatch") == 0);
  CHECK(done[1].output.find("is " + who + ": the job belongs to another user") !=
        std::string::npos);
  CHECK(done[0].seconds < 10);  // at once, not after the 20 s timeout
  CHECK(done[1].seconds < 10);
  ::kill(squatter.pid, SIGKILL);
  WaitAll({squatter}, 30);
}

TEST_CASE("Hub: another user's process cannot join a cooperative load") {
  SKIP_WITHOUT_OTHER_USER();
  TempDir dir;
  auto hub = coop::Hub::Start({1, std::chrono::milliseconds(20000), 1 << 20, {}});
  REQUIRE(hub);
  // The intruder asks for the only slot first.
  auto intruder = Spawn(AsNobody({COMM_HELPER, (*hub)->name(), "0", "1", "5000", "join-hub"}), {},
                        dir / "intruder.out");
  auto refused = WaitAll({intruder}, 30);
  INFO(refused[0].output);
  CHECK(refused[0].output.find("REFUSED this cooperative load belongs to another user (uid 0)") ==
        0);
  // The real member still gets it.
  auto link = coop::Connect((*hub)->name(), coop::DeadlineIn(std::chrono::seconds(5)), "the hub",
                            nullptr);
  REQUIRE(link);
  coop::Join join{0, static_cast<long>(::getpid()), {}};
  REQUIRE(coop::Send(link->get(), coop::kJoin, coop::Encode(join),
                     coop::DeadlineIn(std::chrono::seconds(5)), "the hub"));
  auto reply = coop::Receive(link->get(), coop::DeadlineIn(std::chrono::seconds(5)), "the hub",
                             nullptr);
  while (reply && reply->type == coop::kAlive) {
    reply = coop::Receive(link->get(), coop::DeadlineIn(std::chrono::seconds(5)), "the hub",
                          nullptr);
  }
  REQUIRE(reply);
  CHECK(reply->type == coop::kAgreed);
  const Error done = MakeError(ErrorCode::kCancelled, "", "", "test over");
  CHECK(coop::Send(link->get(), coop::kFail, coop::Encode(done),
                   coop::DeadlineIn(std::chrono::seconds(5)), "the hub"));
  (*hub)->Join();
}

TEST_CASE("ConnectLocal: a stopped member is named, with its pid, by every other member") {
  TempDir dir;
  const std::string job = UniqueJob("peer-stop");
  auto m0 = Member(dir, job, 0, 4, 3000, "barrier");
  auto m1 = Member(dir, job, 1, 4, 3000, "barrier");
  auto m2 = Member(dir, job, 2, 4, 3000, "stop");
  auto m3 = Member(dir, job, 3, 4, 3000, "barrier");
  auto done = WaitAll({m0, m1, m3}, 30);
  const std::string named = "waiting for local member 2 (pid " + std::to_string(m2.pid) + ")";
  for (const Finished& f : done) {
    INFO(f.output);
    CHECK(f.output.find("ERR peer_failed") == 0);
    CHECK(f.output.find(named) != std::string::npos);
    CHECK(f.output.find("stopped or hung") != std::string::npos);
    CHECK(f.output.find("local member 1 (pid") == std::string::npos);
    CHECK(f.output.find("local member 3 (pid") == std::string::npos);
    CHECK(f.seconds < 10);
  }
  ::kill(m2.pid, SIGCONT);
  auto last = WaitAll({m2}, 30);
  INFO(last[0].output);
  CHECK(last[0].exit_code == 1);  // its job is gone
  CHECK(!Listed(LocalName(job)));
}

TEST_CASE("ConnectLocal: a stopped member 0 is named, with its pid, by the others") {
  TempDir dir;
  const std::string job = UniqueJob("peer-stop0");
  auto m0 = Member(dir, job, 0, 3, 3000, "stop");
  auto m1 = Member(dir, job, 1, 3, 3000, "barrier");
  auto m2 = Member(dir, job, 2, 3, 3000, "barrier");
  auto done = WaitAll({m1, m2}, 30);
  for (const Finished& f : done) {
    INFO(f.output);
    CHECK(f.output.find("ERR peer_failed") == 0);
    CHECK(f.output.find("waiting for local member 0 (pid " + std::to_string(m0.pid) + ")") !=
          std::string::npos);
    CHECK(f.output.find("stopped or hung") != std::string::npos);
    CHECK(f.seconds < 10);
  }
  ::kill(m0.pid, SIGCONT);
  auto last = WaitAll({m0}, 30);
  INFO(last[0].output);
  CHECK(last[0].exit_code == 1);
  CHECK(!Listed(LocalName(job)));
}

}  // namespace
}  // namespace shardload::test
