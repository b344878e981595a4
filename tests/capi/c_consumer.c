/* c_consumer CHECKPOINT: a C99 program over the C ABI (shardload.h) only.
 * Every tensor loaded into library memory, and half of them into the
 * caller's buffers, must equal the bytes a plain pread of the file gives at
 * the offsets the listing reports; stats must count them; errors must carry
 * their code, file, tensor and errno. Exit 0: all checks passed.
 * Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardload/shardload.h"

static int failures = 0;

#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

/* The independent oracle: `size` bytes of `file` at `offset` by pread. */
static unsigned char* PreadBytes(const char* file, uint64_t offset, uint64_t size) {
  unsigned char* out = malloc(size > 0 ? (size_t)size : 1);
  int fd = open(file, O_RDONLY);
  uint64_t done = 0;
  if (out == NULL || fd < 0) {
    fprintf(stderr, "cannot read %s\n", file);
    exit(1);
  }
  while (done < size) {
    ssize_t got = pread(fd, out + done, (size_t)(size - done), (off_t)(offset + done));
    if (got <= 0) {
      fprintf(stderr, "pread of %s failed\n", file);
      exit(1);
    }
    done += (uint64_t)got;
  }
  close(fd);
  return out;
}

static int SameAsFile(const shardload_tensor_info* info, const void* data, uint64_t size) {
  unsigned char* want = PreadBytes(info->file, info->offset, info->size);
  int same = size == info->size && (size == 0 || memcmp(want, data, (size_t)size) == 0);
  free(want);
  return same;
}

static void CheckWholeLoad(shardload_checkpoint* ckpt, size_t count, uint64_t* total) {
  shardload_loaded* loaded = NULL;
  shardload_error* err = NULL;
  shardload_stats stats;
  size_t i;
  EXPECT(shardload_load(ckpt, NULL, NULL, &loaded, &err) == SHARDLOAD_OK);
  if (loaded == NULL) {
    fprintf(stderr, "load: %s\n", shardload_error_message(err));
    shardload_error_free(err);
    exit(1);
  }
  EXPECT(shardload_loaded_count(loaded) == count);
  *total = 0;
  for (i = 0; i < count; ++i) {
    shardload_tensor_info info;
    shardload_tensor t;
    size_t d;
    EXPECT(shardload_tensor_at(ckpt, i, &info, NULL) == SHARDLOAD_OK);
    EXPECT(shardload_loaded_find(loaded, info.name, &t, NULL) == SHARDLOAD_OK);
    EXPECT(strcmp(t.name, info.name) == 0);
    EXPECT(t.dtype == info.dtype && t.ndim == info.ndim);
    for (d = 0; d < t.ndim; ++d) EXPECT(t.shape[d] == info.shape[d]);
    EXPECT(strcmp(info.dtype_name, shardload_dtype_name(info.dtype)) == 0);
    EXPECT(SameAsFile(&info, t.data, t.size));
    *total += info.size;
  }
  shardload_loaded_stats(loaded, &stats);
  EXPECT(stats.tensors == count);
  EXPECT(stats.bytes == *total);
  EXPECT(stats.backend == SHARDLOAD_BACKEND_IO_URING || stats.backend == SHARDLOAD_BACKEND_PREAD);
  shardload_loaded_free(loaded);
}

/* Every other tensor into malloc'd buffers, fenced by guard bytes. */
static void CheckLoadInto(shardload_checkpoint* ckpt, size_t count) {
  shardload_destination* dests = calloc(count + 1, sizeof(shardload_destination));
  shardload_tensor_info* infos = calloc(count + 1, sizeof(shardload_tensor_info));
  size_t n = 0, i;
  shardload_stats stats;
  shardload_error* err = NULL;
  uint64_t bytes = 0;
  for (i = 0; i < count; i += 2) {
    shardload_tensor_info* info = &infos[n];
    unsigned char* buffer;
    EXPECT(shardload_tensor_at(ckpt, i, info, NULL) == SHARDLOAD_OK);
    buffer = malloc((size_t)info->size + 16);
    memset(buffer, 0xA5, (size_t)info->size + 16);
    dests[n].name = info->name;
    dests[n].data = buffer + 8;
    dests[n].size = info->size;
    bytes += info->size;
    ++n;
  }
  EXPECT(shardload_load_into(ckpt, dests, n, NULL, &stats, &err) == SHARDLOAD_OK);
  if (err != NULL) fprintf(stderr, "load_into: %s\n", shardload_error_message(err));
  shardload_error_free(err);
  EXPECT(stats.tensors == n && stats.bytes == bytes);
  for (i = 0; i < n; ++i) {
    unsigned char* buffer = (unsigned char*)dests[i].data - 8;
    int k;
    EXPECT(SameAsFile(&infos[i], dests[i].data, dests[i].size));
    for (k = 0; k < 8; ++k) {
      EXPECT(buffer[k] == 0xA5);
      EXPECT(buffer[8 + dests[i].size + (size_t)k] == 0xA5);
    }
    free(buffer);
  }
  free(dests);
  free(infos);
}

static void CheckErrors(shardload_checkpoint* ckpt, const char* dir) {
  shardload_checkpoint* none = NULL;
  shardload_loaded* loaded = NULL;
  shardload_error* err = NULL;
  char missing[4096];
  const char* unknown[] = {"no.such.tensor"};
  shardload_selection sel = {unknown, 1, NULL, 0};
  shardload_options options;
  int has_offset = 1;

  snprintf(missing, sizeof missing, "%s/does-not-exist", dir);
  EXPECT(shardload_open(missing, NULL, &none, &err) == 302); /* kIoError */
  EXPECT(none == NULL);
  EXPECT(shardload_error_code(err) == 302);
  EXPECT(strcmp(shardload_error_code_name(302), "io_error") == 0);
  EXPECT(strcmp(shardload_error_file(err), missing) == 0);
  EXPECT(shardload_error_errno(err) == ENOENT);
  EXPECT(strstr(shardload_error_message(err), missing) != NULL);
  EXPECT(shardload_error_offset(err, &has_offset) == 0 && has_offset == 0);
  shardload_error_free(err);

  EXPECT(shardload_load(ckpt, &sel, NULL, &loaded, &err) == 301); /* kTensorNotFound */
  EXPECT(loaded == NULL);
  EXPECT(strcmp(shardload_error_tensor(err), "no.such.tensor") == 0);
  shardload_error_free(err);

  shardload_options_init(&options);
  options.struct_size = 1;
  EXPECT(shardload_open(dir, &options, &none, NULL) == 300); /* kInvalidArgument */
  EXPECT(shardload_open(NULL, NULL, &none, NULL) == 300);
}

int main(int argc, char** argv) {
  shardload_checkpoint* ckpt = NULL;
  shardload_error* err = NULL;
  shardload_options options;
  size_t count;
  uint64_t total = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: c_consumer CHECKPOINT\n");
    return 2;
  }
  shardload_options_init(&options);
  options.threads = 2;
  options.chunk_size = 4096; /* many reads per tensor */
  if (shardload_open(argv[1], &options, &ckpt, &err) != SHARDLOAD_OK) {
    fprintf(stderr, "open: %s\n", shardload_error_message(err));
    shardload_error_free(err);
    return 1;
  }
  count = shardload_tensor_count(ckpt);
  EXPECT(count > 0);
  CheckWholeLoad(ckpt, count, &total);
  CheckLoadInto(ckpt, count);
  CheckErrors(ckpt, argv[1]);
  shardload_close(ckpt);
  printf("c_consumer: %lu tensors, %llu bytes, shardload %s: %s\n", (unsigned long)count,
         (unsigned long long)total, shardload_version(), failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
