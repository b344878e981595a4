// Frames over abstract unix stream sockets (wire.h).
// Thread-compatible: see wire.h.
#include "coop/wire.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "util/errno_error.h"

namespace shardload::coop {

namespace {

constexpr std::uint32_t kMaxBody = 1u << 30;
constexpr std::size_t kMaxAbstract = sizeof(sockaddr_un{}.sun_path) - 1;

Error PeerFailed(std::string detail) {
  return MakeError(ErrorCode::kPeerFailed, "", "", std::move(detail));
}

Error Stopped() { return MakeError(ErrorCode::kCancelled, "", "", "cancelled"); }

socklen_t Address(const std::string& name, sockaddr_un& addr) {
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  const std::string abstract = AbstractName(name);
  std::memcpy(addr.sun_path + 1, abstract.data(), abstract.size());  // sun_path[0] = 0
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract.size());
}

int MillisUntil(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 50));
}

bool Stop(const std::atomic<bool>* stop) {
  return stop != nullptr && stop->load(std::memory_order_relaxed);
}

// Waits until FD is ready for EVENTS: 1 ready, 0 deadline, -1 stop.
int WaitFor(int fd, short events, Clock::time_point deadline, const std::atomic<bool>* stop) {
  for (;;) {
    if (Stop(stop)) return -1;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, MillisUntil(deadline));
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return 1;  // let the read or write report it
    if (Clock::now() >= deadline) return 0;
  }
}

// Reads exactly N bytes into OUT; the first read may take a passed descriptor.
Status ReadFull(int fd, char* out, std::size_t n, FileDescriptor* passed,
                Clock::time_point deadline, const std::string& who,
                const std::atomic<bool>* stop) {
  std::size_t done = 0;
  while (done < n) {
    int w = WaitFor(fd, POLLIN, deadline, stop);
    if (w < 0) return Stopped();
    if (w == 0) return PeerFailed("timed out waiting for " + who);
    iovec iov{out + done, n - done};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (passed != nullptr) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
    }
    ssize_t got = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == ECONNRESET) return PeerFailed(who + " disconnected (connection reset)");
      return ErrnoError("", "receive from " + who, errno);
    }
    if (got == 0) return PeerFailed(who + " disconnected");
    if (passed != nullptr) {
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
          int received;
          std::memcpy(&received, CMSG_DATA(c), sizeof received);
          passed->Reset(received);
        }
      }
      passed = nullptr;
    }
    done += static_cast<std::size_t>(got);
  }
  return {};
}

Status WriteFull(int fd, const char* data, std::size_t n, int pass_fd,
                 Clock::time_point deadline, const std::string& who) {
  std::size_t done = 0;
  while (done < n) {
    int w = WaitFor(fd, POLLOUT, deadline, nullptr);
    if (w == 0) return PeerFailed("timed out sending to " + who + " (not reading)");
    iovec iov{const_cast<char*>(data + done), n - done};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (pass_fd >= 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &pass_fd, sizeof pass_fd);
    }
    ssize_t sent = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return PeerFailed(who + " disconnected");
      return ErrnoError("", "send to " + who, errno);
    }
    pass_fd = -1;
    done += static_cast<std::size_t>(sent);
  }
  return {};
}

// FNV-1a, for shortening long socket names.
std::uint64_t Fnv(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return h;
}

}  // namespace

Writer& Writer::U32(std::uint32_t v) {
  for (int i = 0; i < 4; ++i) body_.push_back(static_cast<char>(v >> (8 * i)));
  return *this;
}

Writer& Writer::U64(std::uint64_t v) {
  for (int i = 0; i < 8; ++i) body_.push_back(static_cast<char>(v >> (8 * i)));
  return *this;
}

Writer& Writer::Str(std::string_view s) {
  U32(static_cast<std::uint32_t>(s.size()));
  body_.append(s);
  return *this;
}

bool Reader::Take(void* out, std::size_t n) {
  if (failed_ || rest_.size() < n) {
    failed_ = true;
    std::memset(out, 0, n);
    return false;
  }
  std::memcpy(out, rest_.data(), n);
  rest_.remove_prefix(n);
  return true;
}

std::uint32_t Reader::U32() {
  unsigned char b[4];
  if (!Take(b, 4)) return 0;
  return b[0] | (b[1] << 8) | (b[2] << 16) | (std::uint32_t{b[3]} << 24);
}

std::uint64_t Reader::U64() {
  std::uint64_t lo = U32();
  return lo | (std::uint64_t{U32()} << 32);
}

std::string Reader::Str() {
  std::uint32_t n = U32();
  if (failed_ || rest_.size() < n) {
    failed_ = true;
    return {};
  }
  std::string s(rest_.substr(0, n));
  rest_.remove_prefix(n);
  return s;
}

std::string AbstractName(std::string_view name) {
  if (name.size() <= kMaxAbstract) return std::string(name);
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(Fnv(name)));
  return std::string(name.substr(0, kMaxAbstract - 17)) + "#" + hash;
}

Result<FileDescriptor> Listen(const std::string& name) {
  FileDescriptor fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("", "socket", errno);
  sockaddr_un addr;
  socklen_t len = Address(name, addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return ErrnoError("@" + AbstractName(name), "bind", errno);
  }
  if (::listen(fd.get(), 512) != 0) return ErrnoError("@" + AbstractName(name), "listen", errno);
  return fd;
}

Result<FileDescriptor> Connect(const std::string& name, Clock::time_point deadline,
                               const std::string& who, const std::atomic<bool>* stop) {
  sockaddr_un addr;
  socklen_t len = Address(name, addr);
  for (;;) {
    FileDescriptor fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return ErrnoError("", "socket", errno);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0) return fd;
    const int err = errno;
    if (err != ECONNREFUSED && err != ENOENT && err != EAGAIN && err != EINTR) {
      return ErrnoError("@" + AbstractName(name), "connect", err);
    }
    if (Stop(stop)) return Stopped();
    if (Clock::now() >= deadline) return PeerFailed("timed out: " + who + " never appeared");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<FileDescriptor> Accept(int listener, Clock::time_point deadline,
                              const std::atomic<bool>* stop) {
  for (;;) {
    int w = WaitFor(listener, POLLIN, deadline, stop);
    if (w < 0) return Stopped();
    if (w == 0) return FileDescriptor();
    int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return FileDescriptor(fd);
    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
      return ErrnoError("", "accept", errno);
    }
  }
}

Result<PeerCredentials> PeerOf(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoError("", "read a peer's credentials (SO_PEERCRED)", errno);
  }
  return PeerCredentials{static_cast<long>(cred.pid), static_cast<unsigned>(cred.uid),
                         cred.uid == ::geteuid()};
}

std::string OtherUser(int fd) {
  auto peer = PeerOf(fd);
  if (!peer) return "a process whose credentials cannot be read (" + peer.error().detail + ")";
  if (peer->same_user) return "";
  return "a process of another user (uid " + std::to_string(peer->uid) + ", pid " +
         std::to_string(peer->pid) + ")";
}

void Refuse(FileDescriptor& fd, std::uint32_t type, std::string_view body, const std::string& who) {
  (void)Send(fd.get(), type, body, DeadlineIn(std::chrono::milliseconds(200)), who);
  ::shutdown(fd.get(), SHUT_WR);
  const auto deadline = DeadlineIn(std::chrono::milliseconds(100));
  char scratch[4096];
  while (WaitFor(fd.get(), POLLIN, deadline, nullptr) == 1) {
    const ssize_t n = ::recv(fd.get(), scratch, sizeof scratch, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;  // its EOF, or gone
  }
  fd.Reset();
}

Status Send(int fd, std::uint32_t type, std::string_view body, Clock::time_point deadline,
            const std::string& who, int pass_fd) {
  Writer head;
  head.U32(type).U32(static_cast<std::uint32_t>(body.size()));
  std::string frame = std::move(head.body());
  frame.append(body);
  return WriteFull(fd, frame.data(), frame.size(), pass_fd, deadline, who);
}

Result<Message> Receive(int fd, Clock::time_point deadline, const std::string& who,
                        const std::atomic<bool>* stop) {
  Message m;
  char head[8];
  if (Status s = ReadFull(fd, head, 8, &m.fd, deadline, who, stop); !s) {
    return std::move(s).error();
  }
  Reader r(std::string_view(head, 8));
  m.type = r.U32();
  std::uint32_t length = r.U32();
  if (length > kMaxBody) {
    return MakeError(ErrorCode::kPeerMismatch, "", "",
                     who + " sent a message of " + std::to_string(length) +
                         " bytes (not a shardload peer?)");
  }
  m.body.resize(length);
  if (Status s = ReadFull(fd, m.body.data(), length, nullptr, deadline, who, stop); !s) {
    return std::move(s).error();
  }
  return m;
}

int WaitReadable(const std::vector<int>& fds, Clock::time_point deadline,
                 const std::atomic<bool>* stop) {
  std::vector<pollfd> p(fds.size());
  for (;;) {
    if (Stop(stop)) return -2;
    for (std::size_t i = 0; i < fds.size(); ++i) p[i] = pollfd{fds[i], POLLIN, 0};
    int n = ::poll(p.data(), p.size(), MillisUntil(deadline));
    if (n > 0) {
      for (std::size_t i = 0; i < p.size(); ++i) {
        if (p[i].revents != 0) return static_cast<int>(i);
      }
    }
    if (Clock::now() >= deadline) return -1;
  }
}

Clock::time_point DeadlineIn(std::chrono::milliseconds timeout) {
  const auto now = Clock::now();
  if (timeout >= std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return now + timeout;
}

std::chrono::milliseconds BeatInterval(std::chrono::milliseconds timeout) {
  return std::clamp(timeout / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(2000));
}

std::string SecondsText(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

}  // namespace shardload::coop
