// shardload_baselines: the loaders a user would write without shardload, for
// perf/bench_load.py to compare `shardload load` against. Each copies the data
// region of every shard of a safetensors checkpoint into one buffer and is
// timed from start (shard list, headers) to the last byte in place, fresh
// memory and its page faults included:
//   mmap   mmap each shard read-only, memcpy into one malloc'd buffer (1 thread)
//   pread  pread 4 MiB chunks into one malloc'd buffer (1 thread)
//   pool2  two threads pread 4 MiB chunks into a 2 MiB-aligned MADV_HUGEPAGE arena
// Independent of the shardload library: C++ std lib, POSIX and RapidJSON only.
#include <fcntl.h>
#include <rapidjson/document.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kChunkSize = 4ULL << 20;
constexpr std::uint64_t kHugePageSize = 2ULL << 20;
constexpr std::uint64_t kTouchStride = 4096;
constexpr std::uint64_t kMaxHeaderSize = 100ULL << 20;
constexpr int kPoolThreads = 2;
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kUsage =
    "usage: shardload_baselines --mode mmap|pread|pool2 PATH [--json]\n"
    "PATH: a checkpoint directory, its model.safetensors.index.json, or one .safetensors file\n";

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "shardload_baselines: %s\n", message.c_str());
  std::exit(1);
}

[[noreturn]] void DieErrno(const std::string& what) { Die(what + ": " + std::strerror(errno)); }

// One shard file, open, and where its tensor data lies: [data_begin, data_end).
struct Shard {
  std::string path;
  int fd = -1;
  std::uint64_t data_begin = 0;
  std::uint64_t data_end = 0;
  std::uint64_t Size() const { return data_end - data_begin; }
};

// The destination of one load: `data` holds `size` bytes.
struct Buffer {
  std::byte* data = nullptr;
  std::uint64_t size = 0;
  void* mapping = nullptr;  // set when the buffer is an anonymous mapping
  std::uint64_t mapping_size = 0;
};

struct Flags {
  std::string mode;
  std::string path;
  bool json = false;
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--mode" && i + 1 < argc) {
      flags.mode = argv[++i];
    } else if (arg == "--json") {
      flags.json = true;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (flags.path.empty() && !arg.starts_with("--")) {
      flags.path = arg;
    } else {
      std::fputs(kUsage, stderr);
      Die("unexpected argument: " + arg);
    }
  }
  if (flags.path.empty() ||
      (flags.mode != "mmap" && flags.mode != "pread" && flags.mode != "pool2")) {
    std::fputs(kUsage, stderr);
    std::exit(2);
  }
  return flags;
}

std::string ReadTextFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot open " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The distinct shard files named by an index's weight_map, in name order.
std::vector<std::string> ShardsFromIndex(const fs::path& index_path) {
  std::string text = ReadTextFile(index_path);
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  if (doc.HasParseError() || !doc.IsObject()) Die(index_path.string() + ": not a JSON object");
  const rapidjson::Document& cdoc = doc;
  auto weight_map = cdoc.FindMember("weight_map");
  if (weight_map == cdoc.MemberEnd() || !weight_map->value.IsObject()) {
    Die(index_path.string() + ": no weight_map object");
  }
  std::set<std::string> files;
  for (const auto& entry : weight_map->value.GetObject()) {
    if (!entry.value.IsString()) Die(index_path.string() + ": weight_map value is not a string");
    files.insert(entry.value.GetString());
  }
  std::vector<std::string> paths;
  for (const std::string& file : files) paths.push_back((index_path.parent_path() / file).string());
  return paths;
}

std::vector<std::string> ShardPaths(const std::string& path) {
  fs::path p(path);
  if (fs::is_directory(p)) {
    if (fs::exists(p / kIndexName)) return ShardsFromIndex(p / kIndexName);
    if (fs::exists(p / "model.safetensors")) return {(p / "model.safetensors").string()};
    Die(path + ": no " + kIndexName + " or model.safetensors");
  }
  if (p.extension() == ".json") return ShardsFromIndex(p);
  return {path};
}

std::uint64_t LittleEndian64(const unsigned char* b) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}

void ReadFully(int fd, std::byte* dst, std::uint64_t length, std::uint64_t offset,
               const std::string& path) {
  while (length > 0) {
    ssize_t n = ::pread(fd, dst, length, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) DieErrno("pread " + path);
    if (n == 0) Die("pread " + path + ": unexpected end of file");
    dst += n;
    offset += static_cast<std::uint64_t>(n);
    length -= static_cast<std::uint64_t>(n);
  }
}

// Opens a shard and finds its data region from the 8-byte header length.
Shard OpenShard(const std::string& path) {
  Shard shard;
  shard.path = path;
  shard.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (shard.fd < 0) DieErrno("open " + path);
  struct stat st {};
  if (::fstat(shard.fd, &st) != 0) DieErrno("fstat " + path);
  unsigned char prefix[8];
  ReadFully(shard.fd, reinterpret_cast<std::byte*>(prefix), sizeof prefix, 0, path);
  std::uint64_t header_size = LittleEndian64(prefix);
  auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (header_size > kMaxHeaderSize || 8 + header_size > file_size) {
    Die(path + ": bad safetensors header length");
  }
  shard.data_begin = 8 + header_size;
  shard.data_end = file_size;
  return shard;
}

std::vector<Shard> OpenShards(const std::string& path) {
  std::vector<Shard> shards;
  for (const std::string& p : ShardPaths(path)) shards.push_back(OpenShard(p));
  return shards;
}

std::uint64_t TotalSize(const std::vector<Shard>& shards) {
  std::uint64_t total = 0;
  for (const Shard& s : shards) total += s.Size();
  return total;
}

Buffer MallocBuffer(std::uint64_t size) {
  Buffer buffer;
  buffer.size = size;
  buffer.data = static_cast<std::byte*>(std::malloc(size ? size : 1));
  if (buffer.data == nullptr) Die("malloc failed");
  return buffer;
}

// A 2 MiB-aligned anonymous arena advised for transparent huge pages.
Buffer HugePageArena(std::uint64_t size) {
  std::uint64_t rounded = (size + kHugePageSize - 1) / kHugePageSize * kHugePageSize;
  Buffer buffer;
  buffer.size = size;
  buffer.mapping_size = rounded + kHugePageSize;
  buffer.mapping = ::mmap(nullptr, buffer.mapping_size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buffer.mapping == MAP_FAILED) DieErrno("mmap arena");
  auto address = reinterpret_cast<std::uintptr_t>(buffer.mapping);
  address = (address + kHugePageSize - 1) / kHugePageSize * kHugePageSize;
  buffer.data = reinterpret_cast<std::byte*>(address);
  if (rounded > 0 && ::madvise(buffer.data, rounded, MADV_HUGEPAGE) != 0) DieErrno("madvise");
  return buffer;
}

void FreeBuffer(Buffer& buffer) {
  if (buffer.mapping != nullptr) {
    ::munmap(buffer.mapping, buffer.mapping_size);
  } else {
    std::free(buffer.data);
  }
  buffer = Buffer{};
}

// The safetensors pattern: map each shard, copy its data region out, unmap.
Buffer LoadMmap(const std::vector<Shard>& shards) {
  Buffer buffer = MallocBuffer(TotalSize(shards));
  std::uint64_t offset = 0;
  for (const Shard& s : shards) {
    if (s.Size() == 0) continue;
    void* map = ::mmap(nullptr, s.data_end, PROT_READ, MAP_PRIVATE, s.fd, 0);
    if (map == MAP_FAILED) DieErrno("mmap " + s.path);
    std::memcpy(buffer.data + offset, static_cast<const std::byte*>(map) + s.data_begin, s.Size());
    ::munmap(map, s.data_end);
    offset += s.Size();
  }
  return buffer;
}

Buffer LoadPread(const std::vector<Shard>& shards) {
  Buffer buffer = MallocBuffer(TotalSize(shards));
  std::uint64_t offset = 0;
  for (const Shard& s : shards) {
    for (std::uint64_t pos = s.data_begin; pos < s.data_end; pos += kChunkSize) {
      std::uint64_t length = std::min(kChunkSize, s.data_end - pos);
      ReadFully(s.fd, buffer.data + offset, length, pos, s.path);
      offset += length;
    }
  }
  return buffer;
}

// One 4 MiB (or shorter, at a shard's end) read of the pool.
struct Chunk {
  const Shard* shard;
  std::uint64_t file_offset;
  std::uint64_t length;
  std::uint64_t buffer_offset;
};

std::vector<Chunk> SplitIntoChunks(const std::vector<Shard>& shards) {
  std::vector<Chunk> chunks;
  std::uint64_t offset = 0;
  for (const Shard& s : shards) {
    for (std::uint64_t pos = s.data_begin; pos < s.data_end; pos += kChunkSize) {
      std::uint64_t length = std::min(kChunkSize, s.data_end - pos);
      chunks.push_back(Chunk{&s, pos, length, offset});
      offset += length;
    }
  }
  return chunks;
}

// Two threads take 4 MiB chunks from a shared counter (about half each).
Buffer LoadPool2(const std::vector<Shard>& shards) {
  Buffer buffer = HugePageArena(TotalSize(shards));
  std::vector<Chunk> chunks = SplitIntoChunks(shards);
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i = next.fetch_add(1); i < chunks.size(); i = next.fetch_add(1)) {
      const Chunk& c = chunks[i];
      ReadFully(c.shard->fd, buffer.data + c.buffer_offset, c.length, c.file_offset, c.shard->path);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kPoolThreads; ++t) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  return buffer;
}

Buffer Load(const std::string& mode, const std::vector<Shard>& shards) {
  if (mode == "mmap") return LoadMmap(shards);
  if (mode == "pread") return LoadPread(shards);
  return LoadPool2(shards);
}

// Reads one byte per 4 KiB (and the last) so the copies cannot be elided.
std::uint64_t Checksum(const Buffer& buffer) {
  std::uint64_t sum = 1469598103934665603ULL;
  auto fold = [&sum](std::byte b) {
    sum = (sum ^ std::to_integer<std::uint64_t>(b)) * 1099511628211ULL;
  };
  for (std::uint64_t i = 0; i < buffer.size; i += kTouchStride) fold(buffer.data[i]);
  if (buffer.size > 0) fold(buffer.data[buffer.size - 1]);
  return sum;
}

void CloseShards(std::vector<Shard>& shards) {
  for (Shard& s : shards) ::close(s.fd);
  shards.clear();
}

void PrintResult(const Flags& flags, std::uint64_t bytes, std::size_t shard_count, double seconds,
                 std::uint64_t checksum) {
  double gb_per_s = seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0;
  if (flags.json) {
    std::printf("{\"mode\":\"%s\",\"bytes\":%" PRIu64 ",\"shards\":%zu,\"seconds\":%.6f,"
                "\"gb_per_s\":%.3f,\"checksum\":%" PRIu64 "}\n",
                flags.mode.c_str(), bytes, shard_count, seconds, gb_per_s, checksum);
  } else {
    std::printf("%s: %" PRIu64 " bytes from %zu shard(s) in %.3f s: %.2f GB/s (checksum %" PRIu64
                ")\n",
                flags.mode.c_str(), bytes, shard_count, seconds, gb_per_s, checksum);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = ParseFlags(argc, argv);
  Clock::time_point start = Clock::now();
  std::vector<Shard> shards = OpenShards(flags.path);
  Buffer buffer = Load(flags.mode, shards);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::uint64_t checksum = Checksum(buffer);
  std::size_t shard_count = shards.size();
  CloseShards(shards);
  PrintResult(flags, buffer.size, shard_count, seconds, checksum);
  FreeBuffer(buffer);
  return 0;
}
