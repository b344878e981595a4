// `shardload verify PATH [--manifest FILE] [--json]`: validates every header,
// hashes every file (SHA-256, files in parallel) and compares the digests
// with a manifest, or prints them as `sha256sum` lines when there is none.
// Thread-compatible (the CLI is single-threaded; Verify runs its own threads).
#include <fmt/format.h>

#include <cstdio>
#include <string>

#include "commands.h"
#include "shardload/verify.h"

namespace shardload::cli {

const CommandSpec kVerifySpec = {
    "verify",
    "PATH [--manifest FILE] [--threads N] [--read-size BYTES] [--depth N] [--direct | --buffered] "
    "[--copy] [--json]",
    "Check every file's SHA-256 against a manifest (or print the digests).",
    {"PATH"},
    {{"--manifest", "FILE", "sha256sum output or a JSON object name -> hex digest"},
     {"--threads", "N", "files hashed at once (default: one per CPU)"},
     {"--read-size", "BYTES", "bytes per read (default 1MiB)"},
     {"--depth", "N", "O_DIRECT reads in flight per file (default 4; buffered reads: 1)"},
     {"--direct", "", "every read with O_DIRECT (default: files mostly in the page cache buffered, the rest O_DIRECT)"},
     {"--buffered", "", "every read through the page cache"},
     {"--copy", "", "copy files read through the page cache by read() (default: hash a mostly cached file from a mapping of it)"},
     {"--json", "", "print one JSON object on the last line of stdout"}},
};

namespace {

void PrintText(const VerifyReport& report, bool with_manifest) {
  for (const FileVerdict& v : report.files) {
    if (!with_manifest) {
      fmt::print("{}  {}\n", v.sha256, v.name);
    } else if (v.check == FileCheck::kMismatch) {
      fmt::print("{:<8} {} (expected {}, got {})\n", FileCheckName(v.check), v.name, v.expected,
                 v.sha256);
    } else {
      fmt::print("{:<8} {}\n", FileCheckName(v.check), v.name);
    }
  }
  double rate = report.seconds > 0 ? static_cast<double>(report.bytes) / report.seconds / 1e9 : 0;
  std::fprintf(stderr,
               "hashed %zu files, %s in %.3f s: %.2f GB/s [%u threads; %s with O_DIRECT, %s from "
               "a mapping]\n",
               report.files.size(), HumanBytes(report.bytes).c_str(), report.seconds, rate,
               report.threads, HumanBytes(report.bytes_direct).c_str(),
               HumanBytes(report.bytes_mapped).c_str());
}

void PrintJson(const VerifyReport& report) {
  std::string files;
  for (const FileVerdict& v : report.files) {
    files += fmt::format("{}{{\"name\":{},\"status\":\"{}\",\"bytes\":{},\"sha256\":{},\"expected\":{}}}",
                         files.empty() ? "" : ",", JsonString(v.name), FileCheckName(v.check),
                         v.bytes, JsonString(v.sha256), JsonString(v.expected));
  }
  double rate = report.seconds > 0 ? static_cast<double>(report.bytes) / report.seconds / 1e9 : 0;
  fmt::print("{{\"ok\":{},\"files\":[{}],\"bytes\":{},\"seconds\":{:.6f},\"gb_per_s\":{:.3f},"
             "\"threads\":{},\"bytes_direct\":{},\"bytes_mapped\":{}}}\n",
             report.ok() ? "true" : "false", files, report.bytes, report.seconds, rate,
             report.threads, report.bytes_direct, report.bytes_mapped);
}

}  // namespace

int RunVerify(int argc, char** argv) {
  int exit_code = kExitOk;
  auto args = ParseArgs(kVerifySpec, argc, argv, &exit_code);
  if (!args) return exit_code;
  VerifyOptions options;
  options.manifest = args->Get("--manifest").value_or("");
  if (auto text = args->Get("--threads")) {
    auto n = ParseUint(*text);
    if (!n || *n == 0 || *n > 1024) {
      return UsageError(kVerifySpec, "--threads needs a positive integer (at most 1024)");
    }
    options.threads = static_cast<unsigned>(*n);
  }
  if (auto text = args->Get("--read-size")) {
    auto n = ParseBytes(*text);
    if (!n || *n == 0 || *n > (1ULL << 30)) {
      return UsageError(kVerifySpec, "--read-size needs a byte count from 1 to 1GiB");
    }
    options.read_size = *n;
  }
  if (auto text = args->Get("--depth")) {
    auto n = ParseUint(*text);
    if (!n || *n == 0 || *n > 256) {
      return UsageError(kVerifySpec, "--depth needs a positive integer (at most 256)");
    }
    options.depth = static_cast<unsigned>(*n);
  }
  auto mode = ReadModeFlags(*args);
  if (!mode) return UsageError(kVerifySpec, "--direct and --buffered exclude each other");
  options.mode = *mode;
  if (args->Has("--copy")) options.cached = CachedRead::kCopied;
  bool json = args->Has("--json");
  auto report = Verify(args->Positional(0), options);
  if (!report) return ReportError(report.error(), json);
  json ? PrintJson(*report) : PrintText(*report, !options.manifest.empty());
  return report->ok() ? kExitOk : kExitMismatch;
}

}  // namespace shardload::cli
