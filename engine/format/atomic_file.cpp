// Temporary file + fsync + rename + directory fsync, with a write() loop that
// handles short writes and EINTR.
#include "format/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "util/errno_error.h"

namespace shardload::format {
namespace {

// Largest single write() request; Linux caps one call at about 2 GiB.
constexpr std::size_t kMaxWriteCall = std::size_t{1} << 30;
constexpr int kCreateAttempts = 100;

std::string DirectoryOf(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseNameOf(const std::string& path) {
  std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Six random characters from [A-Za-z0-9], as mkstemp uses.
std::string RandomSuffix() {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   (static_cast<std::uint64_t>(::getpid()) << 32)};
  std::string out(6, 'X');
  for (char& c : out) c = kChars[rng() % (sizeof(kChars) - 1)];
  return out;
}

int RetryOnEintr(int (*call)(int), int fd) {
  int rc;
  do {
    rc = call(fd);
  } while (rc < 0 && errno == EINTR);
  return rc;
}

}  // namespace

AtomicFile::AtomicFile(std::string path, std::size_t buffer_size)
    : path_(std::move(path)),
      dir_(DirectoryOf(path_)),
      buffer_(std::max<std::size_t>(buffer_size, 1)) {}

AtomicFile::~AtomicFile() {
  fd_.Reset();
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Status AtomicFile::Open() {
  std::string base = BaseNameOf(path_);
  if (base.empty() || base == "." || base == "..") {
    return MakeError(ErrorCode::kInvalidArgument, path_, "", "the path does not name a file");
  }
  std::string prefix = (dir_ == "/" ? "/" : dir_ + "/") + "." + base + ".tmp.";
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    std::string candidate = prefix + RandomSuffix();
    int fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      fd_.Reset(fd);
      temp_path_ = std::move(candidate);
      return {};
    }
    if (errno != EEXIST && errno != EINTR) {
      return ErrnoError(path_, "create temporary file " + candidate, errno);
    }
  }
  return ErrnoError(path_, "create temporary file " + prefix + "XXXXXX", EEXIST);
}

Status AtomicFile::WriteAll(const std::byte* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd_.get(), data, std::min(size, kMaxWriteCall));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(path_, "write " + temp_path_, errno);
    if (n == 0) return ErrnoError(path_, "write " + temp_path_ + " (no progress)", EIO);
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return {};
}

Status AtomicFile::Flush() {
  Status status = WriteAll(buffer_.data(), used_);
  used_ = 0;
  return status;
}

Status AtomicFile::Append(std::span<const std::byte> bytes) {
  if (used_ + bytes.size() <= buffer_.size()) {
    if (!bytes.empty()) std::memcpy(buffer_.data() + used_, bytes.data(), bytes.size());
    used_ += bytes.size();
    return {};
  }
  if (Status s = Flush(); !s.ok()) return s;
  if (bytes.size() >= buffer_.size()) return WriteAll(bytes.data(), bytes.size());
  std::memcpy(buffer_.data(), bytes.data(), bytes.size());
  used_ = bytes.size();
  return {};
}

Status AtomicFile::AppendGenerated(std::uint64_t size, const Generator& generate) {
  std::uint64_t done = 0;
  while (done < size) {
    if (used_ == buffer_.size()) {
      if (Status s = Flush(); !s.ok()) return s;
    }
    std::size_t chunk =
        static_cast<std::size_t>(std::min<std::uint64_t>(size - done, buffer_.size() - used_));
    generate(done, std::span<std::byte>(buffer_.data() + used_, chunk));
    used_ += chunk;
    done += chunk;
  }
  return {};
}

Status AtomicFile::SyncDirectory() {
  int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(path_, "open directory " + dir_ + " to fsync it", errno);
  FileDescriptor dir_fd(fd);
  // Some file systems cannot fsync a directory (EINVAL); nothing more to do.
  if (RetryOnEintr(::fsync, dir_fd.get()) < 0 && errno != EINVAL) {
    return ErrnoError(path_, "fsync directory " + dir_, errno);
  }
  return {};
}

Status AtomicFile::Commit() {
  if (Status s = Flush(); !s.ok()) return s;
  if (RetryOnEintr(::fsync, fd_.get()) < 0) {
    return ErrnoError(path_, "fsync " + temp_path_, errno);
  }
  if (::close(fd_.Release()) < 0 && errno != EINTR) {
    return ErrnoError(path_, "close " + temp_path_, errno);
  }
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return ErrnoError(path_, "rename " + temp_path_ + " over the target", errno);
  }
  committed_ = true;
  return SyncDirectory();
}

Status WriteFileAtomically(const std::string& path, std::string_view text) {
  AtomicFile file(path, text.size());
  if (Status s = file.Open(); !s.ok()) return s;
  if (Status s = file.Append(std::as_bytes(std::span(text.data(), text.size()))); !s.ok()) {
    return s;
  }
  return file.Commit();
}

}  // namespace shardload::format
