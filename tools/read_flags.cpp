// --max-over-read and --read-strategy (see read_flags.h).
// Thread-compatible.
#include "read_flags.h"

#include <cmath>
#include <cstdlib>
#include <string>

namespace shardload::cli {

FlagSpec MaxOverReadFlag() {
  return {"--max-over-read", "R",
          "per tensor, bytes read / bytes received at most R (>= 1; 1: exact reads; default 8)"};
}

FlagSpec ReadStrategyFlag() {
  return {"--read-strategy", "S",
          "how slices' rows are read: auto (default, cost model), exact, staged, mixed or mapped"};
}

int ReadReadFlags(const CommandSpec& spec, const Args& args, LoadRequest& request) {
  if (auto text = args.Get("--max-over-read")) {
    char* end = nullptr;
    double r = std::strtod(text->c_str(), &end);
    if (text->empty() || end != text->c_str() + text->size() || !std::isfinite(r) || r < 1.0) {
      return UsageError(spec, "--max-over-read needs a number >= 1");
    }
    request.max_over_read = r;
  }
  if (auto text = args.Get("--read-strategy")) {
    if (*text == "auto") request.read_strategy = ReadStrategy::kAuto;
    else if (*text == "exact") request.read_strategy = ReadStrategy::kExact;
    else if (*text == "staged") request.read_strategy = ReadStrategy::kStaged;
    else if (*text == "mixed") request.read_strategy = ReadStrategy::kMixed;
    else if (*text == "mapped") request.read_strategy = ReadStrategy::kMapped;
    else return UsageError(spec, "--read-strategy must be auto, exact, staged, mixed or mapped");
  }
  return kExitOk;
}

}  // namespace shardload::cli
