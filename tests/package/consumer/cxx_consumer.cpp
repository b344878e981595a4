// cxx_consumer CHECKPOINT: opens and loads a checkpoint through the
// installed C++ API and prints "<tensors> <bytes>". Single-threaded.
#include <cstdio>

#include <shardload/loader.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto loader = shardload::Loader::Open(argv[1]);
  if (!loader) {
    std::fprintf(stderr, "%s\n", loader.error().ToString().c_str());
    return 1;
  }
  auto loaded = loader->Load();
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().ToString().c_str());
    return 1;
  }
  std::printf("%zu %llu %.*s\n", loaded->tensors().size(),
              static_cast<unsigned long long>(loaded->stats().bytes),
              static_cast<int>(shardload::BackendName(loaded->stats().backend).size()),
              shardload::BackendName(loaded->stats().backend).data());
  return 0;
}
