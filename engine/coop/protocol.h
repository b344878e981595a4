// The engine's own channel between the members of a cooperative load and
// the leader's hub (hub.h): message types and the bodies both sides encode.
//   member -> hub: kJoin {local rank, rank, world, pid, fields}, then
//                  kNeeds {alignment, file sizes, needs, whole ranges} or
//                  kFail {error}, then kRead {wave}, kCopied {wave}, kDone;
//                  kFail at any time.
//   hub -> member: kAgreed {ranks by local rank}, kPlan {schedule, replicas}
//                  with the node's memfd (staging, then replicas),
//                  kAllRead {wave}, kAllCopied {wave}; kAbort {error} at any
//                  time (then the hub is gone); kAlive {} while the hub
//                  waits (a member times out only when the hub is silent:
//                  a stalled member is named by the hub, which knows whom it
//                  waits for; a stalled leader by the members).
// With replicas, every member waits for kAllCopied of the last wave (staged)
// or kAllRead of wave 0 (each reads its own) before it maps them.
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
  kAlive,
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
  // Contiguous ranges (count 1) the member could map from a node-wide copy
  // instead of holding its own (whole tensors in its own memory).
  std::vector<Need> whole;
};

// File bytes [offset, offset + length) every member needs whole: read once
// into the node's memfd at `at` (at % 4096 == offset % 4096) by member
// `filler`, then mapped copy-on-write into every member's memory.
struct Replica {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint64_t at = 0;
  std::uint32_t filler = 0;
};

struct PlanMessage {
  bool each_reads_own = false;  // resident: every member reads its own bytes
  std::string why;              // the leader's decision, in words
  Schedule schedule;
  std::uint64_t staging_size = 0;  // the memfd's first bytes (0: none)
  std::vector<Replica> replicas;
  std::uint64_t memfd_size = 0;    // staging, then the replicas
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
