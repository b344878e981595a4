// ReadSmallFile (small_file.h).
// Thread-safe: no shared state.
#include "util/small_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "util/errno_error.h"
#include "util/fd.h"

namespace shardload {

Result<std::string> ReadSmallFile(const std::string& path, std::string_view what,
                                  std::uint64_t max_size, ErrorCode too_large) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return ErrnoError(path, "open", errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(path, "fstat", errno);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kNotRegularFile, path, {},
                     std::string(what) + " is not a regular file");
  }
  auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_size) {
    return MakeError(too_large, path, {},
                     std::string(what) + " is " + std::to_string(size) +
                         " bytes; the limit is " + std::to_string(max_size));
  }
  std::string text(size, '\0');
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::pread(fd.get(), text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(path, "pread", errno);
    if (n == 0) break;  // the file shrank; parse what is there
    done += static_cast<std::size_t>(n);
  }
  text.resize(done);
  return text;
}

}  // namespace shardload
