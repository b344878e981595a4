// convert_tool FROM TO IN OUT [scalar]: converts the elements in file IN
// (dtype FROM) to dtype TO with ConvertElements and writes them to OUT; with
// `scalar`, the F16 path runs without F16C. Driven by test_convert.py, which
// compares OUT with numpy. Exit 2 on bad arguments.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "convert/convert.h"

int main(int argc, char** argv) {
  using namespace shardload;
  if (argc < 5) {
    std::fprintf(stderr, "usage: convert_tool FROM TO IN OUT [scalar]\n");
    return 2;
  }
  auto from = ParseDType(argv[1]), to = ParseDType(argv[2]);
  if (!from || !to || !(*from == *to || (IsConvertibleSource(*from) && IsConversionTarget(*to)))) {
    std::fprintf(stderr, "convert_tool: cannot convert %s to %s\n", argv[1], argv[2]);
    return 2;
  }
  ForceScalarF16ForTesting(argc > 5 && std::strcmp(argv[5], "scalar") == 0);
  std::ifstream in(argv[3], std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t in_size = DTypeBits(*from) / 8, out_size = DTypeBits(*to) / 8;
  std::size_t count = bytes.size() / in_size;
  // Odd offsets: the kernels must not assume alignment.
  std::vector<std::byte> src(bytes.size() + 1), dst(count * out_size + 1);
  std::memcpy(src.data() + 1, bytes.data(), bytes.size());
  ConvertElements(*from, *to, src.data() + 1, dst.data() + 1, count);
  std::ofstream out(argv[4], std::ios::binary);
  out.write(reinterpret_cast<const char*>(dst.data() + 1), static_cast<std::streamsize>(count * out_size));
  std::printf("%s\n", ConvertUsesF16c() ? "f16c" : "scalar");
  return out ? 0 : 1;
}
