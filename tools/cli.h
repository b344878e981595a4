// Command-line plumbing shared by the shardload commands: flag parsing,
// exit codes, error printing, JSON output and human-readable sizes.
// Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/error.h"
#include "shardload/loader.h"

namespace shardload::cli {

// Exit codes (docs/cli.md). Stable: scripts rely on them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInternal = 1;
inline constexpr int kExitMismatch = 1;       // verify / load --verify: a file's digest differs
inline constexpr int kExitUsage = 2;
inline constexpr int kExitCorruptFile = 3;    // a safetensors file breaks the format
inline constexpr int kExitBadCheckpoint = 4;  // index / layout / shard set is wrong
inline constexpr int kExitIo = 5;             // a system call failed
inline constexpr int kExitBadRequest = 6;     // the request does not fit the checkpoint
inline constexpr int kExitUnsupported = 7;    // not possible on this system / out of memory

int ExitCodeFor(ErrorCode code);

struct FlagSpec {
  std::string name;      // "--tensors"
  std::string value;     // "" for a switch, else the value's name, e.g. "N"
  std::string help;
  bool repeatable = false;
};

struct CommandSpec {
  std::string name;      // "inspect"
  std::string synopsis;  // "PATH [--tensors] [--json]"
  std::string summary;   // one line
  std::vector<std::string> positionals;  // names of required positionals
  std::vector<FlagSpec> flags;
};

class Args {
 public:
  bool Has(std::string_view flag) const { return values_.count(std::string(flag)) > 0; }
  // Last value of a flag, or nullopt.
  std::optional<std::string> Get(std::string_view flag) const;
  const std::vector<std::string>& GetAll(std::string_view flag) const;
  const std::string& Positional(std::size_t i) const { return positionals_[i]; }

  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positionals_;
};

// Parses argv after the command name. On --help prints help and returns
// nullopt with *exit_code = 0; on misuse prints the problem and returns
// nullopt with *exit_code = kExitUsage.
std::optional<Args> ParseArgs(const CommandSpec& spec, int argc, char** argv,
                              int* exit_code);
void PrintHelp(const CommandSpec& spec);

// Parses "123", "4KiB", "64MiB", "5GB", "1.5GB" (decimal K/M/G/T, binary
// Ki/Mi/Gi/Ti). nullopt on bad input.
std::optional<std::uint64_t> ParseBytes(std::string_view text);
std::optional<std::uint64_t> ParseUint(std::string_view text);

// The read-mode switches shared by load, split and plan.
FlagSpec DirectFlag();    // --direct
FlagSpec BufferedFlag();  // --buffered
// --direct -> kDirect, --buffered -> kBuffered, neither -> kAuto; nullopt
// when both are given.
std::optional<IoMode> ReadModeFlags(const Args& args);

// Usage error for `flag`; returns kExitUsage.
int UsageError(const CommandSpec& spec, std::string_view message);
// Prints the error on stderr (and as {"error": ...} on stdout when json);
// returns its exit code.
int ReportError(const Error& error, bool json);

// "1.23 GB"-style decimal sizes.
std::string HumanBytes(std::uint64_t bytes);

// Minimal JSON text building: TEXT as a JSON string, any bytes (invalid
// UTF-8 bytes as \udcXX, docs/cli.md "JSON output").
std::string JsonString(std::string_view text);
std::string ErrorJson(const Error& error);

}  // namespace shardload::cli
