// A process of a ConnectLocal test (comm_test.cpp starts several): connects
// as local member RANK of SIZE in job JOB, then acts out ACTION, and prints
// one line: "OK <what it received>" or "ERR <code name> <error text>".
//   ok      Barrier, Broadcast of 16 bytes from member SIZE-1, Barrier,
//           Broadcast from member 0; prints both payloads.
//   die     connects, then kills itself with SIGKILL (a member that dies).
//   barrier connects, then Barrier only.
//   stop    connects, stops itself (SIGSTOP: a stalled member), then after
//           SIGCONT acts as `barrier`.
// A hand-made client that does not use the library (another user's process
// probing a job: comm_test runs it under setpriv), where JOB is the raw
// abstract socket name:
//   intrude   connects to JOB, says hello as local member RANK of SIZE (the
//             ConnectLocal frame), prints "REFUSED <text>" for an abort,
//             "ANSWERED <type>" for anything else, "EOF" if closed.
//   join-hub  connects to JOB (a hub), asks to join as local rank RANK (the
//             hub protocol's join frame) and prints the same.
//   squat     binds and listens on JOB, prints "READY", stays TIMEOUT_MS.
// Single-threaded.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>

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

void Put32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

std::uint32_t Get32(const std::string& in, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[at + i]);
  return v;
}

int AbstractSocket(const std::string& name, bool listen) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  const int rc = listen ? ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len)
                        : ::connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
  if (rc != 0 || (listen && ::listen(fd, 16) != 0)) {
    std::printf("ERR socket %s: %s\n", name.c_str(), std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

// Sends one frame {type, length, body} on a fresh connection to NAME and
// prints what comes back (the first frame, within 10 s).
int Intrude(const std::string& name, std::uint32_t type, const std::string& body,
            std::uint32_t abort_type, bool error_body) {
  const int fd = AbstractSocket(name, false);
  std::string frame;
  Put32(frame, type);
  Put32(frame, static_cast<std::uint32_t>(body.size()));
  frame += body;
  if (::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
    std::printf("EOF\n");
    return 0;
  }
  std::string got;
  pollfd p{fd, POLLIN, 0};
  char buf[4096];
  while (::poll(&p, 1, 10000) == 1) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  if (got.size() < 8) {
    std::printf("EOF\n");
    return 0;
  }
  const std::uint32_t got_type = Get32(got, 0);
  if (got_type != abort_type) {
    std::printf("ANSWERED %u\n", got_type);
    return 0;
  }
  std::string text = got.substr(8);
  if (error_body) {  // {u32 code, path, tensor, detail, ...}: the detail
    std::size_t at = 4;
    for (int i = 0; i < 2 && at + 4 <= text.size(); ++i) at += 4 + Get32(text, at);
    text = at + 4 <= text.size() ? text.substr(at + 4, Get32(text, at)) : "";
  }
  std::printf("REFUSED %s\n", text.c_str());
  return 0;
}

int Stranger(const std::string& name, unsigned rank, unsigned size, int timeout_ms,
             const std::string& action) {
  std::string body;
  const auto pid = static_cast<std::uint32_t>(::getpid());
  if (action == "intrude") {  // ConnectLocal's hello: {rank, size, u64 pid}
    Put32(body, rank);
    Put32(body, size);
    Put32(body, pid);
    Put32(body, 0);
    return Intrude(name, 0x10, body, 0x12, false);
  }
  if (action == "join-hub") {  // the hub's join: {local rank, u64 pid, rank, world, no fields}
    Put32(body, rank);
    Put32(body, pid);
    Put32(body, 0);
    Put32(body, rank);
    Put32(body, size);
    Put32(body, 0);
    return Intrude(name, 0x100, body, 0x10a, true);
  }
  const int fd = AbstractSocket(name, true);
  std::printf("READY\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
  ::close(fd);
  return 0;
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
  if (action == "intrude" || action == "join-hub" || action == "squat") {
    return Stranger(job, rank, size, std::atoi(argv[4]), action);
  }
  auto comm = shardload::ConnectLocal(job, rank, size, std::chrono::milliseconds(std::atoi(argv[4])));
  if (!comm) return Report(comm.error());
  shardload::Communicator& c = **comm;
  if (action == "die") ::raise(SIGKILL);
  if (action == "stop") ::raise(SIGSTOP);
  if (shardload::Status s = c.Barrier(); !s) return Report(s.error());
  if (action == "barrier" || action == "stop") {
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
