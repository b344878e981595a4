// The cooperation flags and report fields (see coop_flags.h).
// Thread-compatible: reads the environment.
#include "coop_flags.h"

#include <chrono>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>

namespace shardload::cli {
namespace {

std::optional<std::string> Env(const char* name) {
  if (const char* e = std::getenv(name); e != nullptr && *e != '\0') return std::string(e);
  return std::nullopt;
}

}  // namespace

FlagSpec JobFlag() {
  return {"--job", "ID", "job id the node's ranks cooperate under (default: $TORCHELASTIC_RUN_ID)"};
}
FlagSpec NoCooperateFlag() {
  return {"--no-cooperate", "", "load alone even under LOCAL_RANK / LOCAL_WORLD_SIZE"};
}
FlagSpec PeerTimeoutFlag() {
  return {"--peer-timeout", "SECONDS", "how long a cooperating rank waits for the others (default 60)"};
}

int ReadCoopFlags(const CommandSpec& spec, const Args& args, std::uint64_t staging_bytes,
                  Cooperation& cooperate) {
  if (auto t = args.Get("--peer-timeout")) {
    auto v = ParseUint(*t);
    if (!v || *v == 0 || *v > 86400) {
      return UsageError(spec, "--peer-timeout needs a positive number of seconds");
    }
    cooperate.peer_timeout = std::chrono::seconds(*v);
  }
  if (args.Has("--staging")) cooperate.staging_bytes = staging_bytes;
  if (auto pause = Env("SHARDLOAD_COOP_TEST_PAUSE")) {
    cooperate.test_pause = CoopTestPause::Parse(*pause);
  }
  if (args.Has("--no-cooperate")) return kExitOk;
  auto local_rank = Env("LOCAL_RANK"), local_size = Env("LOCAL_WORLD_SIZE");
  auto job = args.Get("--job");
  if (!job) job = Env("TORCHELASTIC_RUN_ID");
  if (!local_rank || !local_size || !job) {
    if (args.Has("--job")) {
      return UsageError(spec, "--job needs LOCAL_RANK and LOCAL_WORLD_SIZE in the environment");
    }
    return kExitOk;
  }
  auto rank = ParseUint(*local_rank), size = ParseUint(*local_size);
  if (!size || *size == 0 || *size > 4096 || !rank || *rank >= *size) {
    return UsageError(spec, "LOCAL_RANK (" + *local_rank + ") must be below LOCAL_WORLD_SIZE (" +
                                *local_size + ")");
  }
  if (*size == 1) return kExitOk;  // alone on this node
  auto group = ConnectLocal(*job, static_cast<unsigned>(*rank), static_cast<unsigned>(*size),
                            cooperate.peer_timeout);
  if (!group) return ReportError(group.error(), args.Has("--json"));
  cooperate.group = std::move(*group);
  return kExitOk;
}

std::string CooperationText(const LoadStats& stats) {
  const CooperationStats& c = stats.cooperation;
  if (c.local_size == 0) return "";
  return fmt::format(
      "cooperation: local rank {} of {}, {}; node reads {}, this rank read {} for the node in {} "
      "waves, copied {} out of staging, read {} directly, mapped {} from the node's one copy, "
      "waited {:.3f} s\n",
      c.local_rank, c.local_size, c.how, HumanBytes(c.node_bytes), HumanBytes(c.read_for_node),
      c.waves, HumanBytes(c.bytes_staged), HumanBytes(c.bytes_direct), HumanBytes(c.bytes_shared),
      c.wait_seconds);
}

std::string CooperationJson(const LoadStats& stats) {
  const CooperationStats& c = stats.cooperation;
  if (c.local_size == 0) return "";
  return fmt::format(
      ",\"cooperation\":{{\"local_rank\":{},\"local_size\":{},\"how\":{},\"node_bytes\":{},"
      "\"read_for_node\":{},\"bytes_staged\":{},\"bytes_direct\":{},\"bytes_shared\":{},"
      "\"waves\":{},\"wait_seconds\":{:.6f}}}",
      c.local_rank, c.local_size, JsonString(c.how), c.node_bytes, c.read_for_node,
      c.bytes_staged, c.bytes_direct, c.bytes_shared, c.waves, c.wait_seconds);
}

}  // namespace shardload::cli
