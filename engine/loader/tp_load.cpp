// The tensor-parallel part of a load (see tp_load.h): plan resolution,
// slicing, layout, segment expansion and padding.
// Thread-safe: no shared state.
#include "loader/tp_load.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

namespace shardload {
namespace {

std::uint64_t AlignDown(std::uint64_t x, std::uint64_t a) { return x & ~(a - 1); }
std::uint64_t AlignUp(std::uint64_t x, std::uint64_t a) { return AlignDown(x + (a - 1), a); }

std::string DirName(const std::string& path) {
  std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

Result<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return Error{ErrorCode::kIoError, path, "", "cannot open the tensor-parallel plan: " +
                                                    std::string(std::strerror(err)), err, std::nullopt};
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return MakeError(ErrorCode::kIoError, path, "", "cannot read the tensor-parallel plan");
  }
  return std::move(text).str();
}

Error BadRequest(std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, "", "", std::move(detail));
}

// The first byte, within the source tensor, of the slice's first run in
// file order.
std::uint64_t FirstSourceByte(const tp::LocalSlice& slice) {
  std::uint64_t first = ~std::uint64_t{0};
  for (const tp::Segment& s : slice.segments) first = std::min(first, s.src_offset);
  return first == ~std::uint64_t{0} ? 0 : first;
}

}  // namespace

std::string HfConfigPath(const Checkpoint& checkpoint) {
  if (!checkpoint.index_path().empty()) return DirName(checkpoint.index_path()) + "/config.json";
  if (!checkpoint.shards().empty()) return DirName(checkpoint.shards().front().path) + "/config.json";
  return checkpoint.path() + "/config.json";
}

Result<TpContext> ResolveTp(const Checkpoint& checkpoint, const TensorParallel& tp) {
  if (tp.world == 0) return BadRequest("tensor parallel: world size must be at least 1");
  if (tp.rank >= tp.world) {
    return BadRequest("tensor parallel: rank " + std::to_string(tp.rank) +
                      " is not below the world size " + std::to_string(tp.world));
  }
  TpContext context;
  context.rank = tp.rank;
  context.world = tp.world;
  if (tp.plan.empty()) {
    if (tp.world > 1) return BadRequest("tensor parallel: world > 1 needs a plan");
    context.plan.path = "(no plan)";
    return context;
  }
  const bool hf = tp.plan == "hf" || EndsWith(tp.plan, "config.json");
  const std::string path = tp.plan == "hf" ? HfConfigPath(checkpoint) : tp.plan;
  auto text = ReadText(path);
  if (!text) return std::move(text).error();
  auto plan = hf ? tp::PlanFromHfConfig(*text, path) : tp::ParsePlanJson(*text, path);
  if (!plan) return std::move(plan).error();
  context.plan = std::move(*plan);
  return context;
}

Status ValidateTp(const TpContext& context, std::span<const TensorInfo* const> tensors) {
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  for (const TensorInfo* t : tensors) infos.push_back(*t);
  return tp::ValidatePlan(context.plan, infos, context.world);
}

Result<std::vector<TpItem>> SliceSelected(const TpContext& context,
                                          std::span<const TensorInfo* const> selected) {
  if (Status s = ValidateTp(context, selected); !s) return std::move(s).error();
  std::vector<TpItem> items;
  items.reserve(selected.size());
  for (const TensorInfo* t : selected) {
    auto slice = tp::SliceFor(context.plan, *t, context.rank, context.world);
    if (!slice) return std::move(slice).error();
    if (!slice->load) continue;
    items.push_back(TpItem{t, std::move(*slice)});
  }
  return items;
}

TpLayout LayOutTp(std::span<const TpItem> items, std::uint64_t alignment) {
  TpLayout layout;
  layout.position.reserve(items.size());
  std::uint64_t cursor = 0;
  for (const TpItem& item : items) {
    std::uint64_t begin = AlignUp(cursor, alignment);
    std::uint64_t phase = (item.source->offset + FirstSourceByte(item.slice)) % alignment;
    std::uint64_t position = begin + phase;
    std::uint64_t end = AlignUp(position + item.slice.size, alignment);
    layout.position.push_back(position);
    if (item.slice.size > 0) {
      layout.regions.push_back(ArenaLayout::Region{begin, end});
    }
    cursor = end;
  }
  layout.size = cursor;
  return layout;
}

void AppendTpSegments(const TpItem& item, std::byte* dst, std::uint32_t tag,
                      std::vector<Segment>& out) {
  const TensorInfo& t = *item.source;
  for (const tp::Segment& s : item.slice.segments) {
    for (std::uint64_t i = 0; i < s.count; ++i) {
      out.push_back(Segment{t.shard, t.offset + s.src_offset + i * s.src_stride, s.length,
                            dst + s.dst_offset + i * s.dst_stride, tag});
    }
  }
}

void ZeroPadding(const tp::LocalSlice& slice, std::byte* dst) {
  if (!slice.zero_fill || slice.size == 0) return;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> covered;
  for (const tp::Segment& s : slice.segments) {
    for (std::uint64_t i = 0; i < s.count; ++i) {
      covered.emplace_back(s.dst_offset + i * s.dst_stride, s.length);
    }
  }
  std::sort(covered.begin(), covered.end());
  std::uint64_t cursor = 0;
  for (const auto& [begin, length] : covered) {
    if (begin > cursor) std::memset(dst + cursor, 0, begin - cursor);
    cursor = std::max(cursor, begin + length);
  }
  if (cursor < slice.size) std::memset(dst + cursor, 0, slice.size - cursor);
}

PlannedTensor DescribeTp(const TpItem& item) {
  return PlannedTensor{item.source->name, item.source->dtype, item.slice.shape,
                       item.slice.size, item.slice.rule};
}

}  // namespace shardload
