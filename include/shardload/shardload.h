/* The shardload C ABI: plain C99 over opaque handles, for C programs and
 * other languages' foreign-function interfaces (docs/c-api.md).
 * Every function returns 0 (SHARDLOAD_OK) or an error code (the numbers of
 * shardload::ErrorCode, docs/errors.md) and, when `err` is not NULL, stores a
 * shardload_error the caller frees with shardload_error_free. No C++
 * exception crosses this interface. Strings are UTF-8, NUL-terminated.
 * Thread-safety: a handle is used by one thread at a time; distinct handles
 * may be used concurrently. Pointers returned into a handle stay valid until
 * that handle is freed. */
#ifndef SHARDLOAD_SHARDLOAD_H_
#define SHARDLOAD_SHARDLOAD_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SHARDLOAD_API __attribute__((visibility("default")))
#else
#define SHARDLOAD_API
#endif

#define SHARDLOAD_OK 0

typedef struct shardload_checkpoint shardload_checkpoint; /* an opened checkpoint */
typedef struct shardload_loaded shardload_loaded;         /* tensors in library memory */
typedef struct shardload_rank_plan shardload_rank_plan;   /* one rank's share, not read */
typedef struct shardload_error shardload_error;           /* one error */

/* Load options; shardload_options_init fills the defaults of LoadOptions. */
typedef struct shardload_options {
  uint32_t struct_size;   /* sizeof(shardload_options), set by _init */
  uint32_t threads;       /* 0: one per online CPU */
  uint32_t queue_depth;   /* reads in flight per worker */
  uint64_t chunk_size;    /* largest single read, bytes */
  int mode;               /* SHARDLOAD_MODE_*: buffered or O_DIRECT reads */
  int backend;            /* SHARDLOAD_BACKEND_* */
  int huge_pages;         /* nonzero: library memory on transparent huge pages */
  int prefault;           /* nonzero: fault caller buffers in before reads */
} shardload_options;

enum { SHARDLOAD_BACKEND_AUTO = 0, SHARDLOAD_BACKEND_IO_URING = 1, SHARDLOAD_BACKEND_PREAD = 2 };

/* Read modes (LoadOptions::mode): AUTO reads what the page cache holds
 * through it and the rest with O_DIRECT; the others force one mode. */
enum { SHARDLOAD_MODE_AUTO = 0, SHARDLOAD_MODE_BUFFERED = 1, SHARDLOAD_MODE_DIRECT = 2 };

/* Which tensors: exact names and globs (loader.h Selection). A NULL
 * selection, or one with both counts 0, is every tensor. */
typedef struct shardload_selection {
  const char* const* names;
  size_t num_names;
  const char* const* globs;
  size_t num_globs;
} shardload_selection;

/* Tensor-parallel plan sources (docs/tp-plan.md). */
enum {
  SHARDLOAD_PLAN_NONE = 0,      /* no plan: world must be 1 */
  SHARDLOAD_PLAN_FILE = 1,      /* text: path of a plan JSON file (our format) */
  SHARDLOAD_PLAN_HF = 2,        /* the checkpoint's config.json base_model_tp_plan; text unused */
  SHARDLOAD_PLAN_HF_CONFIG = 3, /* text: path of a Hugging Face config.json */
  SHARDLOAD_PLAN_JSON = 4       /* text: the plan JSON itself */
};

typedef struct shardload_tp {
  uint32_t rank;
  uint32_t world;
  int plan_kind;          /* SHARDLOAD_PLAN_* */
  const char* plan_text;  /* see the kinds; may be NULL for NONE and HF */
} shardload_tp;

typedef struct shardload_tensor_info {
  const char* name;
  int dtype;               /* shardload::DType order, see shardload_dtype_name */
  const char* dtype_name;  /* "BF16", "F8_E4M3", ... */
  size_t ndim;
  const uint64_t* shape;   /* ndim entries (NULL when ndim == 0) */
  const char* file;        /* path of the shard file holding it */
  uint64_t offset;         /* absolute file offset of its first byte */
  uint64_t size;           /* bytes: [offset, offset + size) in file */
} shardload_tensor_info;

typedef struct shardload_tensor {
  const char* name;
  int dtype;
  size_t ndim;
  const uint64_t* shape;  /* the local shape for a rank's slices */
  void* data;
  uint64_t size;          /* bytes at data */
} shardload_tensor;

typedef struct shardload_planned_tensor {
  const char* name;
  int dtype;
  size_t ndim;
  const uint64_t* shape;  /* the local shape */
  uint64_t bytes;         /* local bytes */
  const char* rule;       /* the plan rule that decided it */
} shardload_planned_tensor;

typedef struct shardload_rank_totals {
  uint32_t rank;
  uint32_t world;
  uint64_t bytes;       /* received from storage */
  uint64_t local_bytes; /* memory the local tensors take */
  uint64_t bytes_read;  /* read from storage */
  uint64_t read_ops;
} shardload_rank_totals;

typedef struct shardload_stats {
  uint64_t tensors;
  uint64_t bytes;       /* delivered into destinations */
  uint64_t bytes_read;  /* read from storage */
  uint64_t read_ops;
  uint64_t short_reads;
  uint64_t retries;
  double seconds;
  int backend;          /* SHARDLOAD_BACKEND_IO_URING or _PREAD */
  uint32_t threads;
  int mode;               /* SHARDLOAD_MODE_*, as asked */
  uint64_t bytes_direct;  /* of bytes_read, read with O_DIRECT */
} shardload_stats;

/* Where one tensor's bytes go; size must be the tensor's (local) size. */
typedef struct shardload_destination {
  const char* name;
  void* data;
  uint64_t size;
} shardload_destination;

SHARDLOAD_API const char* shardload_version(void);
SHARDLOAD_API void shardload_options_init(shardload_options* options);
/* "BF16", ...; NULL for an out-of-range value. */
SHARDLOAD_API const char* shardload_dtype_name(int dtype);
/* "auto", "io_uring", "pread"; NULL for an out-of-range value. */
SHARDLOAD_API const char* shardload_backend_name(int backend);

/* Resolves and validates PATH (a file, an index, a directory, a Hugging
 * Face snapshot). options may be NULL (defaults). */
SHARDLOAD_API int shardload_open(const char* path, const shardload_options* options,
                                 shardload_checkpoint** out, shardload_error** err);
SHARDLOAD_API void shardload_close(shardload_checkpoint* checkpoint);

SHARDLOAD_API size_t shardload_tensor_count(const shardload_checkpoint* checkpoint);
/* Tensor `index` of tensor_count, sorted by name. */
SHARDLOAD_API int shardload_tensor_at(const shardload_checkpoint* checkpoint, size_t index,
                                      shardload_tensor_info* out, shardload_error** err);

/* What rank tp->rank gets, computed from the headers only. */
SHARDLOAD_API int shardload_plan_rank(shardload_checkpoint* checkpoint,
                                      const shardload_selection* selection,
                                      const shardload_tp* tp, shardload_rank_plan** out,
                                      shardload_error** err);
SHARDLOAD_API void shardload_rank_plan_totals(const shardload_rank_plan* plan,
                                              shardload_rank_totals* out);
SHARDLOAD_API size_t shardload_rank_plan_count(const shardload_rank_plan* plan);
SHARDLOAD_API int shardload_rank_plan_tensor(const shardload_rank_plan* plan, size_t index,
                                             shardload_planned_tensor* out,
                                             shardload_error** err);
SHARDLOAD_API void shardload_rank_plan_free(shardload_rank_plan* plan);

/* Loads the selection (NULL: all), whole (tp NULL) or rank tp->rank's
 * slices, into memory the library owns. */
SHARDLOAD_API int shardload_load(shardload_checkpoint* checkpoint,
                                 const shardload_selection* selection, const shardload_tp* tp,
                                 shardload_loaded** out, shardload_error** err);
SHARDLOAD_API size_t shardload_loaded_count(const shardload_loaded* loaded);
SHARDLOAD_API int shardload_loaded_at(const shardload_loaded* loaded, size_t index,
                                      shardload_tensor* out, shardload_error** err);
SHARDLOAD_API int shardload_loaded_find(const shardload_loaded* loaded, const char* name,
                                        shardload_tensor* out, shardload_error** err);
SHARDLOAD_API void shardload_loaded_stats(const shardload_loaded* loaded, shardload_stats* out);
SHARDLOAD_API void shardload_loaded_free(shardload_loaded* loaded);

/* Loads each named tensor (whole, or rank tp->rank's slices when tp is not
 * NULL) into the caller's buffer; stats may be NULL. */
SHARDLOAD_API int shardload_load_into(shardload_checkpoint* checkpoint,
                                      const shardload_destination* destinations, size_t count,
                                      const shardload_tp* tp, shardload_stats* stats,
                                      shardload_error** err);

SHARDLOAD_API int shardload_error_code(const shardload_error* err);
/* "invalid_offset", ...; NULL for an unknown code. */
SHARDLOAD_API const char* shardload_error_code_name(int code);
/* The whole message: "PATH: tensor `NAME`: DETAIL (error: CODE_NAME)". */
SHARDLOAD_API const char* shardload_error_message(const shardload_error* err);
SHARDLOAD_API const char* shardload_error_detail(const shardload_error* err);
SHARDLOAD_API const char* shardload_error_file(const shardload_error* err);   /* "" if none */
SHARDLOAD_API const char* shardload_error_tensor(const shardload_error* err); /* "" if none */
SHARDLOAD_API int shardload_error_errno(const shardload_error* err);
/* The file offset the error is about; 0 and *has_offset = 0 when none. */
SHARDLOAD_API uint64_t shardload_error_offset(const shardload_error* err, int* has_offset);
SHARDLOAD_API void shardload_error_free(shardload_error* err);

#ifdef __cplusplus
}
#endif

#endif /* SHARDLOAD_SHARDLOAD_H_ */
