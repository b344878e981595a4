// The C ABI of include/shardload/shardload.h over the public C++ API: each
// entry point converts its arguments, calls the C++ API inside Guard() (so no
// exception crosses into C) and hands errors out as shardload_error handles.
// Thread-safety: as the C++ objects behind the handles (one thread at a time
// per handle); the functions keep no shared state.
#include "shardload/shardload.h"

#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/dtype.h"
#include "shardload/error.h"
#include "shardload/loader.h"

// A Loader and the request part of the options it was opened with (the read
// mode); each call adds its selection and rank.
struct shardload_checkpoint {
  shardload::Loader loader;
  shardload::LoadRequest request;

  // REQUEST with SELECTION and, when given, TP (else rank 0 of 1, no plan).
  shardload::LoadRequest For(const shardload::Selection& selection,
                             const shardload::TensorParallel* tp) const {
    shardload::LoadRequest out = request;
    out.selection = selection;
    out.tp = tp != nullptr ? *tp : shardload::TensorParallel{};
    return out;
  }
};

struct shardload_loaded {
  shardload::LoadedCheckpoint loaded;
};

struct shardload_rank_plan {
  shardload::RankPlan plan;
};

struct shardload_error {
  shardload::Error error;
  std::string message;  // error.ToString(), kept for shardload_error_message
};

namespace {

using shardload::Error;
using shardload::ErrorCode;

int Code(const Error& e) { return static_cast<int>(e.code); }

// Hands `e` to the caller (when it asked for errors) and returns its code.
int Fail(Error e, shardload_error** err) {
  const int code = Code(e);
  if (err != nullptr) {
    *err = nullptr;
    auto* out = new (std::nothrow) shardload_error;
    if (out != nullptr) {
      out->message = e.ToString();
      out->error = std::move(e);
      *err = out;
    }
  }
  return code;
}

int Invalid(const char* what, shardload_error** err) {
  return Fail(shardload::MakeError(ErrorCode::kInvalidArgument, "", "", what), err);
}

// Runs `body` (returning an error code), turning any exception into an error.
template <typename Body>
int Guard(shardload_error** err, Body&& body) {
  if (err != nullptr) *err = nullptr;
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(shardload::MakeError(ErrorCode::kResourceExhausted, "", "", "out of memory"), err);
  } catch (const std::exception& e) {
    return Fail(shardload::MakeError(ErrorCode::kInternal, "", "", e.what()), err);
  } catch (...) {
    return Fail(shardload::MakeError(ErrorCode::kInternal, "", "", "unknown exception"), err);
  }
}

// shardload_options holds the loader's options and one of a request's (the
// read mode): split here.
shardload::LoaderOptions ToLoaderOptions(const shardload_options* o) {
  shardload::LoaderOptions out;
  if (o == nullptr) return out;
  out.threads = o->threads;
  out.queue_depth = o->queue_depth;
  out.chunk_size = o->chunk_size;
  out.backend = static_cast<shardload::Backend>(o->backend);
  out.huge_pages = o->huge_pages != 0;
  out.prefault = o->prefault != 0;
  return out;
}

shardload::LoadRequest ToRequest(const shardload_options* o) {
  shardload::LoadRequest out;
  if (o != nullptr) out.mode = static_cast<shardload::IoMode>(o->mode);
  return out;
}

std::optional<Error> CheckOptions(const shardload_options* o) {
  if (o == nullptr) return std::nullopt;
  if (o->struct_size != sizeof(shardload_options)) {
    return shardload::MakeError(ErrorCode::kInvalidArgument, "", "",
                                "shardload_options.struct_size is not sizeof(shardload_options): "
                                "call shardload_options_init first");
  }
  if (o->backend < SHARDLOAD_BACKEND_AUTO || o->backend > SHARDLOAD_BACKEND_PREAD) {
    return shardload::MakeError(ErrorCode::kInvalidArgument, "", "",
                                "shardload_options.backend is not a SHARDLOAD_BACKEND_* value");
  }
  if (o->mode < SHARDLOAD_MODE_AUTO || o->mode > SHARDLOAD_MODE_DIRECT) {
    return shardload::MakeError(ErrorCode::kInvalidArgument, "", "",
                                "shardload_options.mode is not a SHARDLOAD_MODE_* value");
  }
  return std::nullopt;
}

std::vector<std::string> Strings(const char* const* items, std::size_t count) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < count; ++i) out.emplace_back(items[i] ? items[i] : "");
  return out;
}

shardload::Selection ToSelection(const shardload_selection* s) {
  shardload::Selection out;
  if (s == nullptr) return out;
  if (s->names != nullptr) out.names = Strings(s->names, s->num_names);
  if (s->globs != nullptr) out.globs = Strings(s->globs, s->num_globs);
  return out;
}

// The one place that maps the C plan (kind, text) onto TensorParallel::plan:
// SHARDLOAD_PLAN_NONE, _HF (the checkpoint's config.json), _HF_CONFIG (the
// path of a Hugging Face config.json), _FILE (the path of a plan JSON file)
// or _JSON (the plan JSON itself).
shardload::Result<shardload::TensorParallel> ToTensorParallel(const shardload_tp& tp) {
  shardload::TensorParallel out;
  out.rank = tp.rank;
  out.world = tp.world;
  const std::string text = tp.plan_text ? tp.plan_text : "";
  auto refuse = [](std::string detail) {
    return shardload::MakeError(ErrorCode::kInvalidArgument, "", "", std::move(detail));
  };
  switch (tp.plan_kind) {
    case SHARDLOAD_PLAN_NONE:
      return out;
    case SHARDLOAD_PLAN_HF:
      out.plan = shardload::PlanSource::Hf();
      return out;
    case SHARDLOAD_PLAN_HF_CONFIG:
      if (text.empty()) return refuse("SHARDLOAD_PLAN_HF_CONFIG needs the config.json's path");
      out.plan = shardload::PlanSource::HfConfig(text);
      return out;
    case SHARDLOAD_PLAN_FILE:
      if (text.empty()) return refuse("SHARDLOAD_PLAN_FILE needs the plan file's path");
      out.plan = shardload::PlanSource::File(text);
      return out;
    case SHARDLOAD_PLAN_JSON:
      out.plan = shardload::PlanSource::Json(text, "<plan JSON>");
      return out;
    default:
      return refuse("shardload_tp.plan_kind is not a SHARDLOAD_PLAN_* value");
  }
}

void FillStats(const shardload::LoadStats& s, shardload_stats* out) {
  out->tensors = s.tensors;
  out->bytes = s.bytes;
  out->bytes_read = s.bytes_read;
  out->read_ops = s.read_ops;
  out->short_reads = s.short_reads;
  out->retries = s.retries;
  out->seconds = s.seconds;
  out->backend = static_cast<int>(s.backend);
  out->threads = s.threads;
  out->mode = static_cast<int>(s.mode);
  out->bytes_direct = s.bytes_direct;
}

void FillTensor(const shardload::LoadedTensor& t, shardload_tensor* out) {
  out->name = t.name.c_str();
  out->dtype = static_cast<int>(t.dtype);
  out->ndim = t.shape.size();
  out->shape = t.shape.empty() ? nullptr : t.shape.data();
  out->data = t.data.data();
  out->size = t.data.size();
}

int OutOfRange(std::size_t index, std::size_t count, shardload_error** err) {
  return Fail(shardload::MakeError(ErrorCode::kInvalidArgument, "", "",
                                   "index " + std::to_string(index) + " is not below the count " +
                                       std::to_string(count)),
              err);
}

const char* Text(const shardload_error* err, const std::string& (*pick)(const shardload_error&)) {
  return err == nullptr ? "" : pick(*err).c_str();
}

}  // namespace

extern "C" {

const char* shardload_version(void) { return SHARDLOAD_VERSION; }

void shardload_options_init(shardload_options* options) {
  if (options == nullptr) return;
  const shardload::LoaderOptions d;
  const shardload::LoadRequest r;
  options->struct_size = sizeof(shardload_options);
  options->threads = d.threads;
  options->queue_depth = d.queue_depth;
  options->chunk_size = d.chunk_size;
  options->mode = static_cast<int>(r.mode);
  options->backend = static_cast<int>(d.backend);
  options->huge_pages = d.huge_pages ? 1 : 0;
  options->prefault = d.prefault ? 1 : 0;
}

const char* shardload_dtype_name(int dtype) {
  if (dtype < 0 || dtype >= shardload::kNumDTypes) return nullptr;
  // DTypeName's views point at string literals, so they are NUL-terminated.
  return shardload::DTypeName(static_cast<shardload::DType>(dtype)).data();
}

const char* shardload_backend_name(int backend) {
  if (backend < SHARDLOAD_BACKEND_AUTO || backend > SHARDLOAD_BACKEND_PREAD) return nullptr;
  return shardload::BackendName(static_cast<shardload::Backend>(backend)).data();
}

int shardload_open(const char* path, const shardload_options* options,
                   shardload_checkpoint** out, shardload_error** err) {
  return Guard(err, [&] {
    if (path == nullptr || out == nullptr) return Invalid("shardload_open: path and out are required", err);
    *out = nullptr;
    if (std::optional<Error> bad = CheckOptions(options)) return Fail(std::move(*bad), err);
    auto loader = shardload::Loader::Open(path, ToLoaderOptions(options));
    if (!loader) return Fail(std::move(loader).error(), err);
    *out = new shardload_checkpoint{std::move(*loader), ToRequest(options)};
    return SHARDLOAD_OK;
  });
}

void shardload_close(shardload_checkpoint* checkpoint) { delete checkpoint; }

size_t shardload_tensor_count(const shardload_checkpoint* checkpoint) {
  return checkpoint == nullptr ? 0 : checkpoint->loader.checkpoint().tensors().size();
}

int shardload_tensor_at(const shardload_checkpoint* checkpoint, size_t index,
                        shardload_tensor_info* out, shardload_error** err) {
  return Guard(err, [&] {
    if (checkpoint == nullptr || out == nullptr) return Invalid("shardload_tensor_at: checkpoint and out are required", err);
    const shardload::Checkpoint& c = checkpoint->loader.checkpoint();
    if (index >= c.tensors().size()) return OutOfRange(index, c.tensors().size(), err);
    const shardload::TensorInfo& t = c.tensors()[index];
    out->name = t.name.c_str();
    out->dtype = static_cast<int>(t.dtype);
    out->dtype_name = shardload_dtype_name(out->dtype);
    out->ndim = t.shape.size();
    out->shape = t.shape.empty() ? nullptr : t.shape.data();
    out->file = c.shards()[t.shard].path.c_str();
    out->offset = t.offset;
    out->size = t.size;
    return SHARDLOAD_OK;
  });
}

int shardload_plan_rank(shardload_checkpoint* checkpoint, const shardload_selection* selection,
                        const shardload_tp* tp, shardload_rank_plan** out,
                        shardload_error** err) {
  return Guard(err, [&] {
    if (checkpoint == nullptr || tp == nullptr || out == nullptr) {
      return Invalid("shardload_plan_rank: checkpoint, tp and out are required", err);
    }
    *out = nullptr;
    auto parallel = ToTensorParallel(*tp);
    if (!parallel) return Fail(std::move(parallel).error(), err);
    auto plan = checkpoint->loader.Plan(checkpoint->For(ToSelection(selection), &*parallel));
    if (!plan) return Fail(std::move(plan).error(), err);
    *out = new shardload_rank_plan{std::move(*plan)};
    return SHARDLOAD_OK;
  });
}

void shardload_rank_plan_totals(const shardload_rank_plan* plan, shardload_rank_totals* out) {
  if (plan == nullptr || out == nullptr) return;
  out->rank = plan->plan.rank;
  out->world = plan->plan.world;
  out->bytes = plan->plan.bytes;
  out->local_bytes = plan->plan.local_bytes;
  out->bytes_read = plan->plan.bytes_read;
  out->read_ops = plan->plan.read_ops;
}

size_t shardload_rank_plan_count(const shardload_rank_plan* plan) {
  return plan == nullptr ? 0 : plan->plan.tensors.size();
}

int shardload_rank_plan_tensor(const shardload_rank_plan* plan, size_t index,
                               shardload_planned_tensor* out, shardload_error** err) {
  return Guard(err, [&] {
    if (plan == nullptr || out == nullptr) return Invalid("shardload_rank_plan_tensor: plan and out are required", err);
    const std::vector<shardload::PlannedTensor>& all = plan->plan.tensors;
    if (index >= all.size()) return OutOfRange(index, all.size(), err);
    const shardload::PlannedTensor& t = all[index];
    out->name = t.name.c_str();
    out->dtype = static_cast<int>(t.dtype);
    out->ndim = t.shape.size();
    out->shape = t.shape.empty() ? nullptr : t.shape.data();
    out->bytes = t.bytes;
    out->rule = t.rule.c_str();
    return SHARDLOAD_OK;
  });
}

void shardload_rank_plan_free(shardload_rank_plan* plan) { delete plan; }

int shardload_load(shardload_checkpoint* checkpoint, const shardload_selection* selection,
                   const shardload_tp* tp, shardload_loaded** out, shardload_error** err) {
  return Guard(err, [&] {
    if (checkpoint == nullptr || out == nullptr) return Invalid("shardload_load: checkpoint and out are required", err);
    *out = nullptr;
    std::optional<shardload::TensorParallel> parallel;
    if (tp != nullptr) {
      auto converted = ToTensorParallel(*tp);
      if (!converted) return Fail(std::move(converted).error(), err);
      parallel = std::move(*converted);
    }
    auto loaded = checkpoint->loader.Load(
        checkpoint->For(ToSelection(selection), parallel ? &*parallel : nullptr));
    if (!loaded) return Fail(std::move(loaded).error(), err);
    *out = new shardload_loaded{std::move(*loaded)};
    return SHARDLOAD_OK;
  });
}

size_t shardload_loaded_count(const shardload_loaded* loaded) {
  return loaded == nullptr ? 0 : loaded->loaded.tensors().size();
}

int shardload_loaded_at(const shardload_loaded* loaded, size_t index, shardload_tensor* out,
                        shardload_error** err) {
  return Guard(err, [&] {
    if (loaded == nullptr || out == nullptr) return Invalid("shardload_loaded_at: loaded and out are required", err);
    const std::vector<shardload::LoadedTensor>& all = loaded->loaded.tensors();
    if (index >= all.size()) return OutOfRange(index, all.size(), err);
    FillTensor(all[index], out);
    return SHARDLOAD_OK;
  });
}

int shardload_loaded_find(const shardload_loaded* loaded, const char* name,
                          shardload_tensor* out, shardload_error** err) {
  return Guard(err, [&] {
    if (loaded == nullptr || name == nullptr || out == nullptr) {
      return Invalid("shardload_loaded_find: loaded, name and out are required", err);
    }
    const shardload::LoadedTensor* t = loaded->loaded.Find(name);
    if (t == nullptr) {
      return Fail(shardload::MakeError(ErrorCode::kTensorNotFound, "", name,
                                       "no loaded tensor of this name"),
                  err);
    }
    FillTensor(*t, out);
    return SHARDLOAD_OK;
  });
}

void shardload_loaded_stats(const shardload_loaded* loaded, shardload_stats* out) {
  if (loaded == nullptr || out == nullptr) return;
  FillStats(loaded->loaded.stats(), out);
}

void shardload_loaded_free(shardload_loaded* loaded) { delete loaded; }

int shardload_load_into(shardload_checkpoint* checkpoint,
                        const shardload_destination* destinations, size_t count,
                        const shardload_tp* tp, shardload_stats* stats, shardload_error** err) {
  return Guard(err, [&] {
    if (checkpoint == nullptr || (destinations == nullptr && count > 0)) {
      return Invalid("shardload_load_into: checkpoint and destinations are required", err);
    }
    std::vector<shardload::Destination> dests;
    dests.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      const shardload_destination& d = destinations[i];
      if (d.name == nullptr) return Invalid("shardload_load_into: a destination has no name", err);
      dests.push_back({d.name, d.data, d.size});
    }
    std::optional<shardload::TensorParallel> parallel;
    if (tp != nullptr) {
      auto converted = ToTensorParallel(*tp);
      if (!converted) return Fail(std::move(converted).error(), err);
      parallel = std::move(*converted);
    }
    auto result =
        checkpoint->loader.LoadInto(dests, checkpoint->For({}, parallel ? &*parallel : nullptr));
    if (!result) return Fail(std::move(result).error(), err);
    if (stats != nullptr) FillStats(*result, stats);
    return SHARDLOAD_OK;
  });
}

int shardload_error_code(const shardload_error* err) {
  return err == nullptr ? SHARDLOAD_OK : Code(err->error);
}

const char* shardload_error_code_name(int code) {
  std::string_view name = shardload::ErrorCodeName(static_cast<ErrorCode>(code));
  // ErrorCodeName's views point at string literals (NUL-terminated).
  return name.empty() || name == "unknown" ? nullptr : name.data();
}

const char* shardload_error_message(const shardload_error* err) {
  return Text(err, [](const shardload_error& e) -> const std::string& { return e.message; });
}

const char* shardload_error_detail(const shardload_error* err) {
  return Text(err, [](const shardload_error& e) -> const std::string& { return e.error.detail; });
}

const char* shardload_error_file(const shardload_error* err) {
  return Text(err, [](const shardload_error& e) -> const std::string& { return e.error.path; });
}

const char* shardload_error_tensor(const shardload_error* err) {
  return Text(err, [](const shardload_error& e) -> const std::string& { return e.error.tensor; });
}

int shardload_error_errno(const shardload_error* err) {
  return err == nullptr ? 0 : err->error.sys_errno;
}

uint64_t shardload_error_offset(const shardload_error* err, int* has_offset) {
  const bool has = err != nullptr && err->error.offset.has_value();
  if (has_offset != nullptr) *has_offset = has ? 1 : 0;
  return has ? *err->error.offset : 0;
}

void shardload_error_free(shardload_error* err) { delete err; }

}  // extern "C"
