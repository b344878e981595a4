// Messages between the cooperating processes of one node: a frame is
// {u32 type, u32 length, length bytes}, optionally carrying one file
// descriptor (SCM_RIGHTS) with its first byte; the bodies are built and read
// with Writer / Reader (little-endian integers, length-prefixed strings).
// Sockets are AF_UNIX SOCK_STREAM in the abstract namespace (no file on
// disk, gone with the process). Every wait is bounded by a deadline and
// stops early when `stop` is set.
// Thread-compatible: one sender and one receiver per socket at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/error.h"
#include "util/fd.h"

namespace shardload::coop {

using Clock = std::chrono::steady_clock;

// Appends integers and strings to a body.
class Writer {
 public:
  Writer& U32(std::uint32_t v);
  Writer& U64(std::uint64_t v);
  Writer& Str(std::string_view s);
  std::string& body() { return body_; }

 private:
  std::string body_;
};

// Reads a body written by Writer; a short body sets failed() and yields 0 / "".
class Reader {
 public:
  explicit Reader(std::string_view body) : rest_(body) {}
  std::uint32_t U32();
  std::uint64_t U64();
  std::string Str();
  bool failed() const { return failed_; }
  bool done() const { return rest_.empty(); }

 private:
  bool Take(void* out, std::size_t n);
  std::string_view rest_;
  bool failed_ = false;
};

struct Message {
  std::uint32_t type = 0;
  std::string body;
  FileDescriptor fd;  // passed with the message, if any
};

// The socket name for `name` in the abstract namespace (at most 107 bytes:
// longer names are shortened with a hash of the rest).
std::string AbstractName(std::string_view name);

// A listening socket bound to the abstract NAME. EADDRINUSE (another live
// process holds the name) is returned as kIoError with errno EADDRINUSE.
Result<FileDescriptor> Listen(const std::string& name);
// Connects to the abstract NAME, retrying while nobody listens yet, until
// DEADLINE (then kPeerFailed saying WHO never appeared).
Result<FileDescriptor> Connect(const std::string& name, Clock::time_point deadline,
                               const std::string& who, const std::atomic<bool>* stop);
// Accepts one connection on LISTENER before DEADLINE; null when it passed.
Result<FileDescriptor> Accept(int listener, Clock::time_point deadline,
                              const std::atomic<bool>* stop);

// Who is at the other end of unix socket FD (SO_PEERCRED: the process that
// connected, or for the connecting side the one that called listen(2)), and
// whether it runs as this process's effective user.
struct PeerCredentials {
  long pid = 0;
  unsigned uid = 0;
  bool same_user = false;
};
Result<PeerCredentials> PeerOf(int fd);
// "" when FD's peer runs as this process's effective user; else, for an
// error text, "a process of another user (uid U, pid P)" (or why its
// credentials could not be read).
std::string OtherUser(int fd);

// Turns away the process at the other end of FD: sends it one frame of TYPE
// + BODY (best effort, within 200 ms), stops writing, discards what it sent
// for at most 100 ms (so that closing does not reset the connection before
// it reads the frame) and closes FD. Never parses what it sent.
void Refuse(FileDescriptor& fd, std::uint32_t type, std::string_view body, const std::string& who);

// Sends one frame (with PASS_FD unless -1). A peer that is gone or stops
// reading until DEADLINE fails it with kPeerFailed naming WHO.
Status Send(int fd, std::uint32_t type, std::string_view body, Clock::time_point deadline,
            const std::string& who, int pass_fd = -1);
// Receives one frame before DEADLINE. EOF: kPeerFailed "WHO disconnected";
// the deadline: kPeerFailed "timed out ... WHO"; STOP set: kCancelled.
Result<Message> Receive(int fd, Clock::time_point deadline, const std::string& who,
                        const std::atomic<bool>* stop);
// The index in FDS of one that has data or was closed by its peer, -1 at
// DEADLINE, -2 when STOP was set. Polls in slices of at most 50 ms.
int WaitReadable(const std::vector<int>& fds, Clock::time_point deadline,
                 const std::atomic<bool>* stop);

// The deadline `timeout` from now (saturating).
Clock::time_point DeadlineIn(std::chrono::milliseconds timeout);
// How often a process that others wait on tells them it is alive while it
// waits itself (a quarter of TIMEOUT, at most 2 s): they time out on their
// own only when it goes silent.
std::chrono::milliseconds BeatInterval(std::chrono::milliseconds timeout);
// "12.5 s"
std::string SecondsText(std::chrono::milliseconds d);

}  // namespace shardload::coop
