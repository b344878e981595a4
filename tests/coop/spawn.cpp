// Process spawning for cooperation tests (spawn.h).
// Thread-compatible.
#include "coop/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>

#include "support/test_util.h"

extern char** environ;

namespace shardload::test {

namespace {

using Clock = std::chrono::steady_clock;
std::map<pid_t, Clock::time_point>& Started() {
  static std::map<pid_t, Clock::time_point> started;
  return started;
}

}  // namespace

Spawned Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
              const std::string& output_path) {
  std::vector<std::string> merged;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string var = *e;
    bool overridden = false;
    for (const std::string& x : env) {
      if (var.compare(0, x.find('=') + 1, x, 0, x.find('=') + 1) == 0) overridden = true;
    }
    if (!overridden) merged.push_back(var);
  }
  merged.insert(merged.end(), env.begin(), env.end());
  std::vector<char*> args, envp;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const std::string& e : merged) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, output_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
  Started()[pid] = Clock::now();
  return Spawned{pid, output_path};
}

std::vector<Finished> WaitAll(const std::vector<Spawned>& procs, double timeout_s) {
  std::vector<Finished> out(procs.size());
  std::vector<bool> done(procs.size(), false);
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  std::size_t left = procs.size();
  bool timed_out = false;
  while (left > 0) {
    for (std::size_t i = 0; i < procs.size(); ++i) {
      if (done[i]) continue;
      int status = 0;
      pid_t r = ::waitpid(procs[i].pid, &status, WNOHANG);
      if (r == 0) continue;
      done[i] = true;
      --left;
      out[i].seconds = std::chrono::duration<double>(Clock::now() - Started()[procs[i].pid]).count();
      if (WIFEXITED(status)) out[i].exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) out[i].signal = WTERMSIG(status);
      out[i].output = ReadFile(procs[i].output_path);
    }
    if (left == 0) break;
    if (Clock::now() > deadline && !timed_out) {
      timed_out = true;
      for (std::size_t i = 0; i < procs.size(); ++i) {
        if (!done[i]) ::kill(procs[i].pid, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (timed_out) throw std::runtime_error("a spawned process hung past the test's timeout");
  return out;
}

}  // namespace shardload::test
