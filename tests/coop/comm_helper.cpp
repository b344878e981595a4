// A process of a ConnectLocal test (comm_test.cpp starts several): connects
// as local member RANK of SIZE in job JOB, then acts out ACTION, and prints
// one line: "OK <what it received>" or "ERR <code name> <error text>".
//   ok      Barrier, Broadcast of 16 bytes from member SIZE-1, Barrier,
//           Broadcast from member 0; prints both payloads.
//   die     connects, then kills itself with SIGKILL (a member that dies).
//   barrier connects, then Barrier only.
// Single-threaded.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

#include "shardload/cooperate.h"

namespace {

int Report(const shardload::Error& e) {
  std::printf("ERR %s %s\n", std::string(shardload::ErrorCodeName(e.code)).c_str(),
              e.ToString().c_str());
  return 1;
}

std::string Payload(unsigned root) {
  std::string s = "from member " + std::to_string(root);
  s.resize(16, '.');
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: comm_helper JOB RANK SIZE TIMEOUT_MS ACTION\n");
    return 2;
  }
  const std::string job = argv[1], action = argv[5];
  const unsigned rank = static_cast<unsigned>(std::atoi(argv[2]));
  const unsigned size = static_cast<unsigned>(std::atoi(argv[3]));
  auto comm = shardload::ConnectLocal(job, rank, size, std::chrono::milliseconds(std::atoi(argv[4])));
  if (!comm) return Report(comm.error());
  shardload::Communicator& c = **comm;
  if (action == "die") ::raise(SIGKILL);
  if (shardload::Status s = c.Barrier(); !s) return Report(s.error());
  if (action == "barrier") {
    std::printf("OK barrier\n");
    return 0;
  }
  std::string got;
  for (unsigned root : {size - 1, 0u}) {
    std::string bytes = rank == root ? Payload(root) : std::string(16, '?');
    if (shardload::Status s = c.Broadcast(root, std::as_writable_bytes(std::span(bytes))); !s) {
      return Report(s.error());
    }
    got += bytes + ";";
    if (shardload::Status s = c.Barrier(); !s) return Report(s.error());
  }
  std::printf("OK %s\n", got.c_str());
  return 0;
}
