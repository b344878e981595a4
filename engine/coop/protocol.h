// The engine's own channel between the members of a cooperative load and
// the leader's hub (hub.h): message types and the bodies both sides encode.
//   member -> hub: kJoin {local rank, rank, world, pid, fields}, then
//                  kNeeds {alignment, file sizes, needs} or kFail {error},
//                  then kRead {wave}, kCopied {wave}, kDone; kFail at any time.
//   hub -> member: kAgreed {ranks by local rank}, kPlan {schedule} with the
//                  staging memfd, kAllRead {wave}, kAllCopied {wave};
//                  kAbort {error} at any time (then the hub is gone).
// Thread-safe: values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "coop/schedule.h"
#include "coop/wire.h"
#include "shardload/error.h"

namespace shardload::coop {

enum MessageType : std::uint32_t {
  kJoin = 0x100,
  kAgreed,
  kNeeds,
  kPlan,
  kRead,
  kAllRead,
  kCopied,
  kAllCopied,
  kDone,
  kFail,
  kAbort,
};

// What a member says about its job: these must agree on every member.
struct Identity {
  unsigned rank = 0;   // global rank (tensor-parallel rank)
  unsigned world = 1;
  // (what, value) pairs every member must have equal, in one order:
  // checkpoint, shards, plan, world, selection, read options...
  std::vector<std::pair<std::string, std::string>> fields;
};

struct Join {
  unsigned local_rank = 0;
  long pid = 0;
  Identity identity;
};

struct NeedsMessage {
  std::uint64_t alignment = 1;
  bool buffered = false;  // the member reads with IoMode::kBuffered
  bool direct = false;    // ... with IoMode::kDirect
  std::vector<std::uint64_t> file_sizes;
  std::vector<Need> needs;
};

struct PlanMessage {
  bool each_reads_own = false;  // resident: every member reads its own bytes
  std::string why;              // the leader's decision, in words
  Schedule schedule;
  std::uint64_t staging_size = 0;
};

std::string Encode(const Join& m);
bool Decode(std::string_view body, Join& m);
std::string Encode(const NeedsMessage& m);
bool Decode(std::string_view body, NeedsMessage& m);
std::string Encode(const PlanMessage& m);
bool Decode(std::string_view body, PlanMessage& m);
std::string Encode(const Error& e);
Error DecodeError(std::string_view body);

}  // namespace shardload::coop
