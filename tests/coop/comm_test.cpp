// ConnectLocal (shardload/cooperate.h): members in separate processes
// (comm_helper, exec'd) meet, barrier and broadcast; a member that dies, one
// that never comes, a second member 0 and a size mismatch fail everyone
// with an error naming the member, without hanging.
#include <unistd.h>

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "coop/spawn.h"
#include "shardload/cooperate.h"
#include "support/test_util.h"

namespace shardload::test {
namespace {

std::string UniqueJob(const char* what) {
  static int counter = 0;
  return std::string("comm-test-") + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++);
}

// Starts SIZE members of JOB; member m acts ACTIONS[m] (default "ok") and
// has local size SIZES[m] (default SIZE).
std::vector<Finished> RunMembers(const TempDir& dir, const std::string& job, unsigned size,
                                 int timeout_ms, std::vector<std::string> actions = {},
                                 std::vector<unsigned> sizes = {}, std::vector<unsigned> ranks = {}) {
  std::vector<Spawned> procs;
  const unsigned n = ranks.empty() ? size : static_cast<unsigned>(ranks.size());
  for (unsigned i = 0; i < n; ++i) {
    const unsigned rank = ranks.empty() ? i : ranks[i];
    const std::string action = i < actions.size() ? actions[i] : "ok";
    const unsigned local_size = i < sizes.size() ? sizes[i] : size;
    procs.push_back(Spawn({COMM_HELPER, job, std::to_string(rank), std::to_string(local_size),
                           std::to_string(timeout_ms), action},
                          {}, dir / ("member-" + std::to_string(i) + ".out")));
  }
  return WaitAll(procs, 60);
}

TEST_CASE("ConnectLocal: members barrier and broadcast from any root") {
  TempDir dir;
  for (unsigned size : {2u, 4u, 8u}) {
    auto done = RunMembers(dir, UniqueJob("ok"), size, 30000);
    for (unsigned m = 0; m < size; ++m) {
      INFO("member " << m << " of " << size << ": " << done[m].output);
      std::string last = "from member " + std::to_string(size - 1);
      last.resize(16, '.');
      std::string first = "from member 0";
      first.resize(16, '.');
      CHECK(done[m].exit_code == 0);
      CHECK(done[m].output == "OK " + last + ";" + first + ";\n");
    }
  }
}

TEST_CASE("ConnectLocal: a member killed after connecting fails the others, naming it") {
  TempDir dir;
  auto done = RunMembers(dir, UniqueJob("die"), 4, 30000, {"ok", "ok", "die", "ok"});
  CHECK(done[2].signal == 9);
  for (unsigned m : {0u, 1u, 3u}) {
    INFO("member " << m << ": " << done[m].output);
    CHECK(done[m].exit_code == 1);
    CHECK(done[m].output.find("ERR peer_failed") == 0);
    CHECK(done[m].output.find("local member 2") != std::string::npos);
    CHECK(done[m].output.find("disconnected") != std::string::npos);
    CHECK(done[m].seconds < 10);  // noticed at once, not after the 30 s timeout
  }
}

TEST_CASE("ConnectLocal: a member that never comes times out, named") {
  TempDir dir;
  auto done = RunMembers(dir, UniqueJob("missing"), 3, 500, {}, {}, {0, 1});
  INFO(done[0].output << done[1].output);
  CHECK(done[0].output.find("ERR peer_failed") == 0);
  CHECK(done[0].output.find("local member(s) 2 of 3") != std::string::npos);
  CHECK(done[0].output.find("never connected") != std::string::npos);
  CHECK(done[1].output.find("ERR peer_failed") == 0);
}

TEST_CASE("ConnectLocal: nobody listening times out naming member 0") {
  TempDir dir;
  auto done = RunMembers(dir, UniqueJob("nobody"), 2, 300, {}, {}, {1});
  INFO(done[0].output);
  CHECK(done[0].output.find("ERR peer_failed") == 0);
  CHECK(done[0].output.find("local member 0 of job") != std::string::npos);
}

TEST_CASE("ConnectLocal: a second member 0 of the same job is refused") {
  const std::string job = UniqueJob("two-roots");
  // This process is member 0 of a job of 2 whose other member never comes;
  // a helper claiming member 0 of the same job meanwhile is refused.
  TempDir dir;
  auto helper = Spawn({COMM_HELPER, job, "0", "2", "3000", "ok"}, {}, dir / "second.out");
  auto first = ConnectLocal(job, 0, 2, std::chrono::milliseconds(1500));
  auto done = WaitAll({helper}, 30);
  // Whichever bound first, the other was refused as a second member 0.
  const bool helper_refused = done[0].output.find("already local rank 0") != std::string::npos;
  const bool we_refused =
      !first && first.error().detail.find("already local rank 0") != std::string::npos;
  INFO(done[0].output << (first ? "" : first.error().ToString()));
  CHECK(helper_refused != we_refused);
  if (helper_refused) CHECK(done[0].output.find("ERR peer_mismatch") == 0);
  if (we_refused) CHECK(first.error().code == ErrorCode::kPeerMismatch);
}

TEST_CASE("ConnectLocal: members that disagree on the size are refused") {
  TempDir dir;
  auto done = RunMembers(dir, UniqueJob("size"), 3, 5000, {}, {3, 3, 4});
  for (unsigned m = 0; m < 3; ++m) {
    INFO("member " << m << ": " << done[m].output);
    CHECK(done[m].exit_code == 1);
  }
  CHECK(done[0].output.find("ERR peer_mismatch") == 0);
  CHECK(done[0].output.find("local size 4, local member 0 has 3") != std::string::npos);
}

TEST_CASE("ConnectLocal: one member alone, and bad arguments") {
  auto alone = ConnectLocal(UniqueJob("alone"), 0, 1);
  REQUIRE(alone);
  CHECK((*alone)->size() == 1);
  CHECK((*alone)->Barrier().ok());
  std::byte b[4]{};
  CHECK((*alone)->Broadcast(0, b).ok());
  CHECK(ConnectLocal("", 0, 2).error().code == ErrorCode::kInvalidArgument);
  CHECK(ConnectLocal("x", 2, 2).error().code == ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace shardload::test
