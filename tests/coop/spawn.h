// Starting and reaping the processes of a cooperation test: each is exec'd
// (posix_spawn, no fork-without-exec, so sanitizers stay sound) with extra
// environment variables, its stdout and stderr captured in a file.
// Thread-compatible.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace shardload::test {

struct Spawned {
  pid_t pid = -1;
  std::string output_path;  // stdout and stderr
};

struct Finished {
  int exit_code = -1;   // -1 when killed by a signal
  int signal = 0;
  double seconds = 0;   // from Spawn until it was reaped
  std::string output;
};

// Starts ARGV[0] with ARGV, the environment plus ENV ("NAME=value" each;
// they override), output into OUTPUT_PATH.
Spawned Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
              const std::string& output_path);

// Waits for each process (killing any still running after TIMEOUT_S with
// SIGKILL, then failing the test) and returns how each ended.
std::vector<Finished> WaitAll(const std::vector<Spawned>& procs, double timeout_s);

}  // namespace shardload::test
