// Verify: resolve the checkpoint, decide which files to hash, hash them on
// `threads` plain threads (each takes the next largest file), compare.
// Thread-safe: no shared state outside one call.
#include "shardload/verify.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_set>

#include "index/checkpoint_access.h"
#include "integrity/file_hasher.h"
#include "integrity/manifest.h"
#include "util/parallel.h"
#include "integrity/paths.h"
#include "shardload/checkpoint.h"

namespace shardload {
namespace {

struct Job {
  std::size_t verdict;                         // index into report.files
  std::optional<std::uint64_t> expected_size;  // shards only
  std::shared_ptr<const internal::ShardFile> shard = {};  // shards: read through it
};

// Shards, plus manifest entries that are not shards (MISSING when absent).
std::vector<Job> ChooseFiles(const Checkpoint& checkpoint, const Manifest* manifest,
                             VerifyReport& report) {
  std::string base = CheckpointDir(checkpoint);
  std::vector<Job> jobs;
  for (std::uint32_t i = 0; i < checkpoint.shards().size(); ++i) {
    const ShardInfo& s = checkpoint.shards()[i];
    FileVerdict v{ShardKey(s), s.path, s.file_size, "", "", FileCheck::kListed};
    if (manifest != nullptr) {
      const std::string* expected = manifest->Find(v.name);
      v.expected = expected ? *expected : "";
      v.check = expected ? FileCheck::kOk : FileCheck::kExtra;
    }
    jobs.push_back(Job{report.files.size(), s.file_size,
                       internal::CheckpointAccess::SharedFile(checkpoint, i)});
    report.files.push_back(std::move(v));
  }
  if (manifest == nullptr) return jobs;
  // Shard names, looked up once per manifest entry: linear in the manifest.
  std::unordered_set<std::string> shards;
  for (const FileVerdict& v : report.files) shards.insert(v.name);
  for (const auto& [name, digest] : manifest->entries) {
    if (shards.contains(name)) continue;
    FileVerdict v{name, "", 0, "", digest, FileCheck::kMissing};
    std::error_code ec;
    std::string path = base + "/" + name;
    if (SafeRelativeName(name) && std::filesystem::is_regular_file(path, ec)) {
      v.path = path;
      v.check = FileCheck::kOk;
      jobs.push_back(Job{report.files.size(), std::nullopt});
    }
    report.files.push_back(std::move(v));
  }
  return jobs;
}

// Hashes the jobs, largest first, on `threads` threads; the first error wins.
Status HashAll(std::vector<Job>& jobs, const VerifyOptions& options, unsigned threads,
               VerifyReport& report) {
  std::sort(jobs.begin(), jobs.end(), [&](const Job& a, const Job& b) {
    return report.files[a.verdict].bytes > report.files[b.verdict].bytes;
  });
  std::vector<std::optional<Error>> errors(jobs.size());
  ForEachParallel(jobs.size(), threads, [&](std::size_t i) {
    FileVerdict& v = report.files[jobs[i].verdict];
    HashOptions ho{options.read_size, options.depth, jobs[i].expected_size, options.mode};
    ho.cached = options.cached;
    ho.shard = jobs[i].shard;
    auto hash = HashFile(v.path, ho);
    if (!hash) {
      errors[i] = std::move(hash).error();
      return;
    }
    v.sha256 = hash->sha256;
    v.bytes = hash->bytes;
    v.bytes_direct = hash->bytes_direct;
    v.bytes_mapped = hash->mapped ? hash->bytes : 0;
    if (v.check == FileCheck::kOk && v.sha256 != v.expected) v.check = FileCheck::kMismatch;
  });
  for (auto& e : errors) {
    if (e) return std::move(*e);
  }
  return {};
}

}  // namespace

const char* FileCheckName(FileCheck check) {
  switch (check) {
    case FileCheck::kListed: return "LISTED";
    case FileCheck::kOk: return "OK";
    case FileCheck::kMismatch: return "MISMATCH";
    case FileCheck::kMissing: return "MISSING";
    case FileCheck::kExtra: return "EXTRA";
  }
  return "?";
}

bool VerifyReport::ok() const {
  return std::all_of(files.begin(), files.end(), [](const FileVerdict& v) {
    return v.check == FileCheck::kOk || v.check == FileCheck::kListed;
  });
}

Result<VerifyReport> Verify(const std::string& path, const VerifyOptions& options) {
  try {
    std::optional<Manifest> manifest;
    if (!options.manifest.empty()) {
      auto m = ReadManifest(options.manifest);
      if (!m) return std::move(m).error();
      manifest = std::move(*m);
    }
    auto checkpoint = Checkpoint::Open(path);
    if (!checkpoint) return std::move(checkpoint).error();
    VerifyReport report;
    std::vector<Job> jobs = ChooseFiles(*checkpoint, manifest ? &*manifest : nullptr, report);
    long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    report.threads = options.threads > 0 ? options.threads : static_cast<unsigned>(std::max(1L, cpus));
    auto start = std::chrono::steady_clock::now();
    if (Status s = HashAll(jobs, options, report.threads, report); !s) return std::move(s).error();
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const Job& j : jobs) {
      report.bytes += report.files[j.verdict].bytes;
      report.bytes_direct += report.files[j.verdict].bytes_direct;
      report.bytes_mapped += report.files[j.verdict].bytes_mapped;
    }
    std::sort(report.files.begin(), report.files.end(),
              [](const FileVerdict& a, const FileVerdict& b) { return a.name < b.name; });
    return report;
  } catch (const std::bad_alloc&) {
    return MakeError(ErrorCode::kResourceExhausted, path, "", "out of memory");
  } catch (const std::system_error& e) {
    return MakeError(ErrorCode::kResourceExhausted, path, "",
                     std::string("cannot start a hashing thread: ") + e.what());
  }
}

}  // namespace shardload
