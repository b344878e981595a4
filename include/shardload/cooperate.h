// Cooperation between the processes of one node that load the same
// checkpoint (the local ranks of a tensor-parallel job): the small interface
// front ends implement (Communicator) and the options a cooperative load
// takes (Cooperation, in LoadRequest::cooperate). docs/cooperate.md.
//
// A Communicator is only the rendezvous: the engine uses it a few times per
// load to agree on a job (who is local rank 0, what everyone loads) and to
// hand out the address of its own channel (unix sockets between the node's
// ranks, over which waves are synchronised and a dead or failing peer is
// noticed within milliseconds). So torchrun environments, MPI, torch
// process groups and others plug in without the engine depending on them.
// Thread-compatible: one call at a time per Communicator.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "shardload/error.h"

namespace shardload {

// The processes of ONE node that load together (they must share memory):
// members 0..size()-1. Every member calls the same methods in the same order.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual unsigned rank() const = 0;  // this process's member number
  virtual unsigned size() const = 0;  // members on this node (>= 1)
  // Returns once every member has called it, or an error (a member died,
  // a timeout) naming which member when known.
  virtual Status Barrier() = 0;
  // Member `root`'s `bytes` are copied into every other member's `bytes`
  // (the same size on every member; at most 64 KiB).
  virtual Status Broadcast(unsigned root, std::span<std::byte> bytes) = 0;
};

// A Communicator for processes launched with a node-local rank and size
// (torchrun's LOCAL_RANK / LOCAL_WORLD_SIZE): member 0 listens on an
// abstract unix socket named after `job` (nothing on disk to leave behind),
// the others connect to it. Gives up with kPeerFailed after `timeout`
// when a member never shows up, and names a member that disconnects.
Result<std::unique_ptr<Communicator>> ConnectLocal(
    const std::string& job, unsigned local_rank, unsigned local_size,
    std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A test seam (docs/testing.md), never set in production: member `rank`
// stops before reading wave `wave`, after saying so on stderr, for
// `seconds`, or until it is killed (`forever`). Front ends set it from
// $SHARDLOAD_COOP_TEST_PAUSE=RANK:WAVE[:SECONDS] (Parse); the engine reads
// no environment for it.
struct CoopTestPause {
  bool enabled = false;
  unsigned rank = 0;
  unsigned wave = 0;
  unsigned seconds = 0;
  bool forever = false;
  // "RANK:WAVE[:SECONDS]"; anything else: not enabled.
  static CoopTestPause Parse(const std::string& text);
};

// LoadRequest::cooperate.
struct Cooperation {
  // The node's members loading together; null: load alone.
  std::shared_ptr<Communicator> group;
  // Shared staging for the whole node (memfd shared memory, gone when the
  // last member exits on any path), in two halves so that the next wave is
  // read while the last is copied out. Default: 1 GiB.
  std::uint64_t staging_bytes = 1ULL << 30;
  // How long a member waits for the others at any step before failing with
  // kPeerFailed (a dead member is noticed at once; this catches a stuck one).
  std::chrono::milliseconds peer_timeout = std::chrono::seconds(60);
  // Tests only (CoopTestPause). Default: off.
  CoopTestPause test_pause;
};

}  // namespace shardload
