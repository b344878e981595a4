// The pieces every load is made of (see load_items.h): plan sources, slicing,
// layout, strided segments and padding.
// Thread-safe: no shared state.
#include "loader/load_items.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "util/small_file.h"
#include "shardload/loader.h"
#include "tp/json_util.h"

namespace shardload {
namespace {

std::uint64_t AlignDown(std::uint64_t x, std::uint64_t a) { return x & ~(a - 1); }
std::uint64_t AlignUp(std::uint64_t x, std::uint64_t a) { return AlignDown(x + (a - 1), a); }

std::string DirName(const std::string& path) {
  std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Error BadRequest(std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, "", "", std::move(detail));
}

// The first byte, within the source tensor, of the slice's first run in
// file order.
std::uint64_t FirstSourceByte(const tp::LocalSlice& slice) {
  std::uint64_t first = ~std::uint64_t{0};
  for (const tp::Run& s : slice.runs) first = std::min(first, s.src_offset);
  return first == ~std::uint64_t{0} ? 0 : first;
}

// The slice is the whole source tensor, in file order.
bool IsWhole(const LoadItem& item) {
  const tp::LocalSlice& s = item.slice;
  if (s.size != item.source->size || s.zero_fill) return false;
  if (s.size == 0) return true;
  return s.runs.size() == 1 && s.runs[0].count == 1 && s.runs[0].src_offset == 0 &&
         s.runs[0].dst_offset == 0 && s.runs[0].length == s.size;
}

tp::LocalSlice Whole(const TensorInfo& tensor) {
  tp::LocalSlice s;
  s.shape = tensor.shape;
  s.size = tensor.size;
  if (tensor.size > 0) s.runs.push_back({0, 0, tensor.size, 1, 0, 0});
  return s;
}

Result<tp::Plan> ParsePlan(const Checkpoint& checkpoint, const PlanSource& source) {
  using Kind = PlanSource::Kind;
  const bool hf = source.kind == Kind::kHf || source.kind == Kind::kHfConfig ||
                  source.kind == Kind::kHfConfigJson;
  std::string path = source.kind == Kind::kHf ? HfConfigPath(checkpoint) : source.path;
  const bool from_file =
      source.kind == Kind::kFile || source.kind == Kind::kHf || source.kind == Kind::kHfConfig;
  std::string read;
  if (from_file) {
    auto text = ReadPlanText(path);
    if (!text) return std::move(text).error();
    read = std::move(*text);
  }
  const std::string& text = from_file ? read : source.text;
  return hf ? tp::PlanFromHfConfig(text, path) : tp::ParsePlanJson(text, path);
}

// True when ITEM is its whole tensor, byte for byte as in the file (a plain
// load, or a replicated tensor): its loaded bytes can be hashed in place.
bool AsInFile(const LoadItem& item) {
  const tp::LocalSlice& slice = item.slice;
  if (slice.size != item.source->size || slice.zero_fill) return false;
  if (slice.size == 0) return true;
  if (slice.runs.size() != 1) return false;
  const tp::Run& s = slice.runs.front();
  return s.src_offset == 0 && s.dst_offset == 0 && s.count * s.length == slice.size &&
         (s.count == 1 || (s.src_stride == s.length && s.dst_stride == s.length));
}

}  // namespace

// --- plans and slices ------------------------------------------------------------

Result<std::string> ReadPlanText(const std::string& path) {
  return ReadSmallFile(path, "the tensor-parallel plan", kMaxPlanFileSize,
                              ErrorCode::kTpPlanJson);
}

std::string HfConfigPath(const Checkpoint& checkpoint) {
  if (!checkpoint.index_path().empty()) return DirName(checkpoint.index_path()) + "/config.json";
  if (!checkpoint.shards().empty()) return DirName(checkpoint.shards().front().path) + "/config.json";
  return checkpoint.path() + "/config.json";
}

Result<std::shared_ptr<const tp::Plan>> LoadPlan(const Checkpoint& checkpoint,
                                                 const PlanSource& source) {
  if (source.kind == PlanSource::Kind::kNone) return std::shared_ptr<const tp::Plan>();
  auto plan = ParsePlan(checkpoint, source);
  if (!plan) return std::move(plan).error();
  return std::shared_ptr<const tp::Plan>(std::make_shared<tp::Plan>(std::move(*plan)));
}

Result<LoadContext> PlanCache::Context(const Checkpoint& checkpoint, const TensorParallel& tp) {
  if (Status s = CheckRank(tp.plan, tp.rank, tp.world); !s) return std::move(s).error();
  std::shared_ptr<const tp::Plan> found;
  bool cached = false;
  for (const auto& [key, plan] : plans_) {
    if (key == tp.plan) {
      found = plan;
      cached = true;
      break;
    }
  }
  if (!cached) {
    auto plan = LoadPlan(checkpoint, tp.plan);
    if (!plan) return std::move(plan).error();
    found = *plan;
    plans_.emplace_back(tp.plan, found);
  }
  return LoadContext{std::move(found), tp.rank, tp.world};
}

Status CheckRank(const PlanSource& source, unsigned rank, unsigned world) {
  if (world == 0) return BadRequest("tensor parallel: world size must be at least 1");
  if (rank >= world) {
    return BadRequest("tensor parallel: rank " + std::to_string(rank) +
                      " is not below the world size " + std::to_string(world));
  }
  if (source.kind == PlanSource::Kind::kNone && world > 1) {
    return BadRequest("tensor parallel: world > 1 needs a plan");
  }
  return {};
}

tp::FindTensor FindIn(const Checkpoint& checkpoint) {
  return [&checkpoint](std::string_view name) { return checkpoint.Find(name); };
}

Result<tp::LocalSlice> SliceOne(const LoadContext& context, const TensorInfo& tensor,
                                const tp::FindTensor& find) {
  if (context.plan == nullptr) return Whole(tensor);
  return tp::SliceFor(*context.plan, tensor, context.rank, context.world, find);
}

Result<std::vector<tp::TensorMatch>> MatchSelected(const LoadContext& context,
                                                   std::span<const TensorInfo* const> selected) {
  std::vector<tp::TensorMatch> matches;
  if (context.plan == nullptr) return matches;
  matches.reserve(selected.size());
  for (const TensorInfo* t : selected) {
    auto match = tp::MatchTensor(*context.plan, *t);
    if (!match) return std::move(match).error();
    matches.push_back(std::move(*match));
  }
  return matches;
}

Result<std::vector<LoadItem>> SliceSelected(const LoadContext& context,
                                          const Checkpoint& checkpoint,
                                          std::span<const TensorInfo* const> selected,
                                          std::span<const tp::TensorMatch> matches) {
  std::vector<LoadItem> items;
  items.reserve(selected.size());
  const tp::FindTensor find = FindIn(checkpoint);
  const bool matched = context.plan != nullptr && matches.size() == selected.size();
  for (std::size_t i = 0; i < selected.size(); ++i) {
    const TensorInfo* t = selected[i];
    auto slice = matched ? tp::SliceFor(*context.plan, *t, matches[i], context.rank,
                                        context.world, find)
                         : SliceOne(context, *t, find);
    if (!slice) return std::move(slice).error();
    if (!slice->load) continue;
    items.push_back(LoadItem{t, std::move(*slice)});
  }
  return items;
}

// --- layout, segments, padding ----------------------------------------------------

LoadLayout LayOut(std::span<const LoadItem> items, std::uint64_t alignment) {
  std::vector<ArenaItem> whole;
  std::vector<std::size_t> whole_index;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!IsWhole(items[i])) continue;
    const TensorInfo& t = *items[i].source;
    whole.push_back(ArenaItem{t.shard, t.offset, t.size});
    whole_index.push_back(i);
  }
  ArenaLayout mirrored = LayOutArena(whole, alignment);
  LoadLayout layout;
  layout.position.assign(items.size(), 0);
  layout.regions = std::move(mirrored.regions);
  for (std::size_t k = 0; k < whole.size(); ++k) layout.position[whole_index[k]] = mirrored.position[k];
  std::uint64_t cursor = mirrored.size;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const LoadItem& item = items[i];
    if (IsWhole(item)) continue;
    std::uint64_t begin = AlignUp(cursor, alignment);
    std::uint64_t phase = (item.source->offset + FirstSourceByte(item.slice)) % alignment;
    std::uint64_t position = begin + phase;
    std::uint64_t end = AlignUp(position + item.slice.size, alignment);
    layout.position[i] = position;
    if (item.slice.size > 0) layout.regions.push_back(ArenaLayout::Region{begin, end});
    cursor = end;
  }
  layout.size = cursor;
  return layout;
}

void AppendItemSegments(const LoadItem& item, std::byte* dst, std::uint32_t tag,
                      std::vector<Segment>& out) {
  const TensorInfo& t = *item.source;
  for (const tp::Run& s : item.slice.runs) {
    Segment seg;
    seg.file = t.shard;
    seg.offset = t.offset + s.src_offset;
    seg.length = s.length;
    seg.dst = dst + s.dst_offset;
    seg.tag = tag;
    seg.count = s.count;
    seg.src_stride = s.count > 1 ? s.src_stride : 0;
    seg.dst_stride = s.count > 1 ? s.dst_stride : 0;
    out.push_back(seg);
  }
}

std::vector<Segment> MakeSegments(std::span<const LoadItem> items,
                                  std::span<std::byte* const> data) {
  std::vector<Segment> segments;
  segments.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    AppendItemSegments(items[i], data[i], static_cast<std::uint32_t>(i), segments);
  }
  return segments;
}

std::vector<std::byte*> Place(std::span<const LoadItem> items, const LoadLayout& layout,
                              std::byte* base, std::vector<Window>& windows) {
  std::vector<std::byte*> data(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    data[i] = items[i].slice.size > 0 ? base + layout.position[i] : base;
  }
  windows.reserve(windows.size() + layout.regions.size());
  for (const ArenaLayout::Region& r : layout.regions) {
    windows.push_back(Window{base + r.begin, base + r.end});
  }
  return data;
}

std::vector<const TensorInfo*> Sources(std::span<const LoadItem> items) {
  std::vector<const TensorInfo*> sources;
  sources.reserve(items.size());
  for (const LoadItem& item : items) sources.push_back(item.source);
  return sources;
}

Result<FileTable> OpenShards(const Checkpoint& checkpoint,
                             std::span<const TensorInfo* const> tensors, IoMode mode) {
  const std::vector<ShardInfo>& shards = checkpoint.shards();
  auto needed = std::make_unique<bool[]>(shards.size());
  for (const TensorInfo* t : tensors) {
    if (t->size > 0) needed[t->shard] = true;
  }
  return FileTable::Open(checkpoint, std::span<const bool>(needed.get(), shards.size()), mode);
}

// A segment whose runs tile its extent (dst_stride == length, or one run)
// covers [dst_offset, + extent) in one interval; only other strided
// segments are walked run by run.
void ZeroPadding(const tp::LocalSlice& slice, std::byte* dst) {
  if (!slice.zero_fill || slice.size == 0) return;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> covered;
  for (const tp::Run& s : slice.runs) {
    if (s.count == 1 || s.dst_stride == s.length) {
      covered.emplace_back(s.dst_offset, s.count * s.length);
      continue;
    }
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

PlannedTensor DescribeItem(const LoadItem& item) {
  PlannedTensor t;
  t.name = item.source->name;
  t.dtype = item.source->dtype;
  t.shape = item.slice.shape;
  t.bytes = item.slice.size;
  t.rule = item.slice.rule;
  t.follows = item.slice.follows;
  t.split_dim = item.slice.split_dim;
  t.per = item.slice.per;
  for (const auto& p : item.slice.quant_pieces) {
    t.ranges.push_back({p.weight.begin, p.weight.end, p.own.begin, p.own.end});
  }
  t.straddles = item.slice.straddles;
  return t;
}

std::vector<LoadedBytes> HashSources(std::span<const LoadItem> items,
                                     std::span<std::byte* const> data) {
  std::vector<LoadedBytes> loaded;
  loaded.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    const bool whole = !data.empty() && AsInFile(items[i]);
    loaded.push_back({items[i].source, whole ? data[i] : nullptr});
  }
  return loaded;
}

RankPlan DescribePlan(const LoadContext& context, std::span<const LoadItem> items,
                      const ReadPlan& plan) {
  RankPlan out;
  out.rank = context.rank;
  out.world = context.world;
  out.bytes = plan.bytes_delivered;
  out.bytes_read = plan.bytes_requested;
  out.read_ops = plan.reads;
  out.tensors.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    // A tensor whose bytes ride in another tensor's coalesced read has no
    // reads of its own (its TagReads, or none at all, count zero).
    const TagReads reads = i < plan.tags.size() ? plan.tags[i] : TagReads{};
    PlannedTensor t = DescribeItem(items[i]);
    t.strategy = ReadStrategyName(reads.strategy);
    t.bytes_read = reads.bytes_read;
    t.read_ops = reads.read_ops;
    out.local_bytes += t.bytes;
    out.tensors.push_back(std::move(t));
  }
  return out;
}

}  // namespace shardload
