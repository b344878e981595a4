// Temporary directories and small file helpers for tests.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "support/test_util.h"

namespace shardload::test {

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/shardload-test-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string SharedDir() {
  if (const char* s = std::getenv("SHARDLOAD_SHARED_DIR"); s && *s) return s;
  return SHARDLOAD_SHARED_DIR;
}

namespace {
int skipped_cases = 0;
}  // namespace

bool SkipWithoutShared() {
  std::string research = SharedDir() + "/research";
  std::error_code ec;
  if (std::filesystem::is_directory(research, ec)) return false;
  std::fprintf(stderr, "skipped: the shared fixtures %s are absent (set SHARDLOAD_SHARED_DIR)\n",
               research.c_str());
  ++skipped_cases;
  return true;
}

int SkippedCases() { return skipped_cases; }

void WriteFile(const std::string& path, std::string_view bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Sha256sum(const std::string& path) {
  const std::string command = "sha256sum '" + path + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + command);
  char digest[65] = {};
  const std::size_t got = std::fread(digest, 1, 64, pipe);
  ::pclose(pipe);
  if (got != 64) throw std::runtime_error(command + " printed no digest");
  return digest;
}

std::vector<std::uint8_t> PreadBytes(const std::string& path, std::uint64_t offset,
                                     std::uint64_t size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  std::vector<std::uint8_t> out(size);
  std::uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  if (done != size) throw std::runtime_error("short read of " + path);
  return out;
}

std::string RawSafetensors(std::string_view json, std::string_view data) {
  std::string out(8, '\0');
  std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  out.append(json);
  out.append(data);
  return out;
}

}  // namespace shardload::test
