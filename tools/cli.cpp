// Flag parsing, exit codes and output helpers for the shardload commands.
#include "cli.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace shardload::cli {

int ExitCodeFor(ErrorCode code) {
  int value = static_cast<int>(code);
  if (code == ErrorCode::kOk) return kExitOk;
  if (code == ErrorCode::kTruncated) return kExitCorruptFile;
  if (value >= 100 && value < 200) return kExitCorruptFile;
  if (value >= 200 && value < 300) return kExitBadCheckpoint;
  if (value >= 400 && value < 500) return kExitBadRequest;  // tensor-parallel plans
  switch (code) {
    case ErrorCode::kChecksumMismatch: return kExitMismatch;
    case ErrorCode::kBadManifest: return kExitBadRequest;
    case ErrorCode::kIoError: return kExitIo;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kTensorNotFound: return kExitBadRequest;
    case ErrorCode::kUnsupported:
    case ErrorCode::kResourceExhausted: return kExitUnsupported;
    default: return kExitInternal;
  }
}

std::optional<std::string> Args::Get(std::string_view flag) const {
  auto it = values_.find(std::string(flag));
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

const std::vector<std::string>& Args::GetAll(std::string_view flag) const {
  static const std::vector<std::string> kNone;
  auto it = values_.find(std::string(flag));
  return it == values_.end() ? kNone : it->second;
}

void PrintHelp(const CommandSpec& spec) {
  std::string text = fmt::format("usage: shardload {} {}\n\n{}\n", spec.name,
                                 spec.synopsis, spec.summary);
  if (!spec.flags.empty()) text += "\noptions:\n";
  for (const FlagSpec& f : spec.flags) {
    std::string left = f.value.empty() ? f.name : f.name + " " + f.value;
    text += fmt::format("  {:<24} {}\n", left, f.help);
  }
  text += fmt::format("  {:<24} {}\n", "--help", "show this help");
  std::fputs(text.c_str(), stdout);
}

int UsageError(const CommandSpec& spec, std::string_view message) {
  std::fprintf(stderr, "shardload %s: %.*s\nusage: shardload %s %s\n(try 'shardload %s --help')\n",
               spec.name.c_str(), static_cast<int>(message.size()), message.data(),
               spec.name.c_str(), spec.synopsis.c_str(), spec.name.c_str());
  return kExitUsage;
}

namespace {

const FlagSpec* FindFlag(const CommandSpec& spec, std::string_view name) {
  for (const FlagSpec& f : spec.flags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

}  // namespace

std::optional<Args> ParseArgs(const CommandSpec& spec, int argc, char** argv,
                              int* exit_code) {
  Args args;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      PrintHelp(spec);
      *exit_code = kExitOk;
      return std::nullopt;
    }
    if (arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
      args.positionals_.push_back(arg);
      continue;
    }
    std::string value;
    bool inline_value = false;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
      inline_value = true;
    }
    const FlagSpec* flag = FindFlag(spec, arg);
    if (flag == nullptr) {
      *exit_code = UsageError(spec, "unknown option " + arg);
      return std::nullopt;
    }
    if (flag->value.empty()) {
      if (inline_value) {
        *exit_code = UsageError(spec, arg + " takes no value");
        return std::nullopt;
      }
    } else if (!inline_value) {
      if (i + 1 >= argc) {
        *exit_code = UsageError(spec, arg + " needs a value " + flag->value);
        return std::nullopt;
      }
      value = argv[++i];
    }
    auto& slot = args.values_[arg];
    if (!slot.empty() && !flag->repeatable && !flag->value.empty()) {
      *exit_code = UsageError(spec, arg + " given twice");
      return std::nullopt;
    }
    slot.push_back(value);
  }
  if (args.positionals_.size() != spec.positionals.size()) {
    std::string want;
    for (const auto& p : spec.positionals) want += " " + p;
    *exit_code = UsageError(spec, args.positionals_.size() < spec.positionals.size()
                                      ? "missing" + want
                                      : "too many arguments");
    return std::nullopt;
  }
  return args;
}

FlagSpec DirectFlag() {
  return {"--direct", "", "every read with O_DIRECT, bypassing the page cache"};
}

FlagSpec BufferedFlag() {
  return {"--buffered", "", "every read through the page cache (default: resident ranges "
                            "buffered, the rest O_DIRECT)"};
}

std::optional<IoMode> ReadModeFlags(const Args& args) {
  const bool direct = args.Has("--direct");
  const bool buffered = args.Has("--buffered");
  if (direct && buffered) return std::nullopt;
  return direct ? IoMode::kDirect : buffered ? IoMode::kBuffered : IoMode::kAuto;
}

std::optional<std::uint64_t> ParseUint(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    if (__builtin_mul_overflow(value, 10u, &value) ||
        __builtin_add_overflow(value, static_cast<unsigned>(c - '0'), &value)) {
      return std::nullopt;
    }
  }
  return value;
}

std::optional<std::uint64_t> ParseBytes(std::string_view text) {
  static const std::pair<std::string_view, double> kUnits[] = {
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
      {"TiB", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
      {"TB", 1e12}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"B", 1}};
  double scale = 1;
  for (const auto& [suffix, factor] : kUnits) {
    if (text.size() > suffix.size() && text.ends_with(suffix)) {
      text.remove_suffix(suffix.size());
      scale = factor;
      break;
    }
  }
  if (auto whole = ParseUint(text); whole && scale == 1) return whole;
  std::string number(text);
  if (number.empty() || number.find_first_not_of("0123456789.") != std::string::npos) {
    return std::nullopt;
  }
  char* end = nullptr;
  double value = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(value)) return std::nullopt;
  double bytes = std::round(value * scale);
  if (bytes < 0 || bytes >= 1.8e19) return std::nullopt;
  return static_cast<std::uint64_t>(bytes);
}

std::string HumanBytes(std::uint64_t bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 5) {
    value /= 1000;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", value, kUnits[unit]);
}

namespace {

// Length of the valid UTF-8 sequence starting text[i] (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or 0.
std::size_t Utf8SequenceAt(std::string_view text, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const unsigned b0 = at(0);
  if (b0 < 0x80) return 1;
  const std::size_t n = b0 >= 0xC2 && b0 <= 0xDF ? 2 : b0 >= 0xE0 && b0 <= 0xEF ? 3
                        : b0 >= 0xF0 && b0 <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > text.size()) return 0;
  // The second byte's range depends on the first (table 3-7).
  const unsigned lo = b0 == 0xE0 ? 0xA0 : b0 == 0xF0 ? 0x90 : 0x80;
  const unsigned hi = b0 == 0xED ? 0x9F : b0 == 0xF4 ? 0x8F : 0xBF;
  if (at(1) < lo || at(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (at(k) < 0x80 || at(k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

// Every byte sequence as JSON text (docs/cli.md, "JSON output"): valid UTF-8
// as it is, `"` `\` and control characters escaped, and each byte that is not
// part of valid UTF-8 as the lone surrogate \udcXX (PEP 383's surrogateescape:
// lossless, and never the escape of a valid character).
std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const std::size_t n = Utf8SequenceAt(text, i);
    if (n == 0) {
      out += fmt::format("\\udc{:02x}", c);
      ++i;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out.append(text.substr(i, n));
        }
    }
    i += n;
  }
  return out + "\"";
}

std::string ErrorJson(const Error& error) {
  return fmt::format(
      "{{\"code\":{},\"code_name\":{},\"path\":{},\"tensor\":{},\"detail\":{},\"message\":{}}}",
      static_cast<int>(error.code), JsonString(ErrorCodeName(error.code)),
      JsonString(error.path), JsonString(error.tensor), JsonString(error.detail),
      JsonString(error.ToString()));
}

int ReportError(const Error& error, bool json) {
  std::fprintf(stderr, "shardload: error: %s\n", error.ToString().c_str());
  if (json) std::printf("{\"error\":%s}\n", ErrorJson(error).c_str());
  return ExitCodeFor(error.code);
}

}  // namespace shardload::cli
