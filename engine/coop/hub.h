// The leader's hub of a cooperative load (docs/cooperate.md): a thread in
// local member 0 that every member (the leader too) connects to over an
// abstract unix socket with a random name. It checks that the members agree
// on the job (kPeerMismatch naming the field and both members' values),
// computes the node's schedule from everyone's needs (schedule.h), decides
// whether the union is in the page cache already (then each member reads
// its own bytes), creates the staging memory (memfd: no name, nothing in
// /dev/shm, gone with the last descriptor on every exit path) and hands it
// out (SCM_RIGHTS), then relays wave progress. A member's failure or EOF
// is relayed to all others as an abort naming it (rank, local rank, pid);
// so is silence longer than the timeout, naming exactly the members the
// others wait for (the hub tells every member it is alive meanwhile). Only
// processes of this user may join (SO_PEERCRED).
// Thread-safe: Start, then Join once (the destructor joins too).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "shardload/error.h"
#include "util/fd.h"

namespace shardload::coop {

class Hub {
 public:
  struct Options {
    unsigned members = 1;
    std::chrono::milliseconds timeout{60000};
    std::uint64_t staging = 1ULL << 30;
    std::vector<std::string> shard_paths;  // for the residency probe
  };
  // Listens on a fresh random name and starts serving.
  static Result<std::unique_ptr<Hub>> Start(Options options);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  const std::string& name() const { return name_; }
  // Waits until the hub has finished (every member done, or an abort).
  void Join();
  // Makes the hub abort everyone and finish (the leader failed before it
  // could join its own hub).
  void Stop() { stop_.store(true); }

 private:
  Hub(Options options, std::string name, FileDescriptor listener);
  void Serve();

  Options options_;
  std::string name_;
  FileDescriptor listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace shardload::coop
