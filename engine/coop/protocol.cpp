// Encoding of the hub protocol's bodies (protocol.h).
// Thread-safe: pure functions.
#include "coop/protocol.h"

namespace shardload::coop {

std::string Encode(const Join& m) {
  Writer w;
  w.U32(m.local_rank).U64(static_cast<std::uint64_t>(m.pid));
  w.U32(m.identity.rank).U32(m.identity.world).U32(static_cast<std::uint32_t>(m.identity.fields.size()));
  for (const auto& [k, v] : m.identity.fields) w.Str(k).Str(v);
  return std::move(w.body());
}

bool Decode(std::string_view body, Join& m) {
  Reader r(body);
  m.local_rank = r.U32();
  m.pid = static_cast<long>(r.U64());
  m.identity.rank = r.U32();
  m.identity.world = r.U32();
  const std::uint32_t n = r.U32();
  for (std::uint32_t i = 0; i < n && !r.failed(); ++i) {
    std::string k = r.Str();
    m.identity.fields.emplace_back(std::move(k), r.Str());
  }
  return !r.failed() && r.done();
}

std::string Encode(const NeedsMessage& m) {
  Writer w;
  w.U64(m.alignment).U32(m.buffered ? 1 : 0).U32(m.direct ? 1 : 0);
  w.U32(static_cast<std::uint32_t>(m.file_sizes.size()));
  for (std::uint64_t s : m.file_sizes) w.U64(s);
  for (const std::vector<Need>* list : {&m.needs, &m.whole}) {
    w.U64(list->size());
    for (const Need& n : *list) w.U32(n.file).U64(n.offset).U64(n.length).U64(n.count).U64(n.stride);
  }
  return std::move(w.body());
}

bool Decode(std::string_view body, NeedsMessage& m) {
  Reader r(body);
  m.alignment = r.U64();
  m.buffered = r.U32() != 0;
  m.direct = r.U32() != 0;
  const std::uint32_t files = r.U32();
  for (std::uint32_t i = 0; i < files && !r.failed(); ++i) m.file_sizes.push_back(r.U64());
  for (std::vector<Need>* list : {&m.needs, &m.whole}) {
    const std::uint64_t n = r.U64();
    for (std::uint64_t i = 0; i < n && !r.failed(); ++i) {
      Need x;
      x.file = r.U32();
      x.offset = r.U64();
      x.length = r.U64();
      x.count = r.U64();
      x.stride = r.U64();
      list->push_back(x);
    }
  }
  return !r.failed() && r.done();
}

std::string Encode(const PlanMessage& m) {
  Writer w;
  const Schedule& s = m.schedule;
  w.U32(m.each_reads_own ? 1 : 0).Str(m.why).U64(m.staging_size);
  w.U32(s.waves).U64(s.half).U64(s.bytes).U64(s.bytes_needed).U64(s.bytes_gaps);
  w.U64(s.pieces.size());
  for (const Piece& p : s.pieces) {
    w.U32(p.file).U64(p.offset).U64(p.length).U64(p.staging).U32(p.wave).U32(p.slot);
  }
  w.U64(m.memfd_size).U64(m.replicas.size());
  for (const Replica& x : m.replicas) w.U32(x.file).U64(x.offset).U64(x.length).U64(x.at).U32(x.filler);
  return std::move(w.body());
}

bool Decode(std::string_view body, PlanMessage& m) {
  Reader r(body);
  Schedule& s = m.schedule;
  m.each_reads_own = r.U32() != 0;
  m.why = r.Str();
  m.staging_size = r.U64();
  s.waves = r.U32();
  s.half = r.U64();
  s.bytes = r.U64();
  s.bytes_needed = r.U64();
  s.bytes_gaps = r.U64();
  const std::uint64_t n = r.U64();
  for (std::uint64_t i = 0; i < n && !r.failed(); ++i) {
    Piece p;
    p.file = r.U32();
    p.offset = r.U64();
    p.length = r.U64();
    p.staging = r.U64();
    p.wave = r.U32();
    p.slot = r.U32();
    s.pieces.push_back(p);
  }
  m.memfd_size = r.U64();
  const std::uint64_t replicas = r.U64();
  for (std::uint64_t i = 0; i < replicas && !r.failed(); ++i) {
    Replica x;
    x.file = r.U32();
    x.offset = r.U64();
    x.length = r.U64();
    x.at = r.U64();
    x.filler = r.U32();
    m.replicas.push_back(x);
  }
  return !r.failed() && r.done();
}

std::string Encode(const Error& e) {
  Writer w;
  w.U32(static_cast<std::uint32_t>(e.code)).Str(e.path).Str(e.tensor).Str(e.detail);
  w.U32(static_cast<std::uint32_t>(e.sys_errno));
  return std::move(w.body());
}

Error DecodeError(std::string_view body) {
  Reader r(body);
  Error e;
  e.code = static_cast<ErrorCode>(r.U32());
  e.path = r.Str();
  e.tensor = r.Str();
  e.detail = r.Str();
  e.sys_errno = static_cast<int>(r.U32());
  if (r.failed()) return MakeError(ErrorCode::kPeerFailed, "", "", "garbled message from a peer");
  return e;
}

}  // namespace shardload::coop
