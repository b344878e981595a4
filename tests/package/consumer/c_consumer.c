/* c_consumer CHECKPOINT: the same through the installed C ABI. */
#include <stdio.h>

#include <shardload/shardload.h>

int main(int argc, char** argv) {
  shardload_checkpoint* ckpt = NULL;
  shardload_loaded* loaded = NULL;
  shardload_error* err = NULL;
  shardload_stats stats;
  if (argc != 2) return 2;
  if (shardload_open(argv[1], NULL, &ckpt, &err) != SHARDLOAD_OK ||
      shardload_load(ckpt, NULL, NULL, &loaded, &err) != SHARDLOAD_OK) {
    fprintf(stderr, "%s\n", shardload_error_message(err));
    shardload_error_free(err);
    shardload_close(ckpt);
    return 1;
  }
  shardload_loaded_stats(loaded, &stats);
  printf("%lu %llu %s\n", (unsigned long)shardload_loaded_count(loaded),
         (unsigned long long)stats.bytes, shardload_backend_name(stats.backend));
  shardload_loaded_free(loaded);
  shardload_close(ckpt);
  return 0;
}
