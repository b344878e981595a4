// libFuzzer target for the safetensors header reader. Each input is read
// twice: as header text (ParseHeader, first for a file with no data, then,
// when only the coverage check failed, for a file exactly as long as its
// tensors need, which must then be accepted) and as a whole file in a memfd
// (ReadHeader: the length prefix and the pread path, which must agree with
// ParseHeader on the same bytes). A crash, a sanitizer report or a broken
// invariant is a finding.
// Thread-compatible: libFuzzer calls it from one thread.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "format/header.h"
#include "format/header_json.h"

namespace shardload::format {
namespace {

const std::string kPath = "fuzz.safetensors";

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_header invariant broken: %s\n", what);
  std::abort();
}

// An error names the file, says why, and carries a header-stage code.
void CheckRefusal(const Error& error) {
  Require(error.path == kPath, "the error names the file");
  Require(!error.detail.empty(), "the error says why");
  Require(error.code >= ErrorCode::kHeaderTooSmall && error.code <= ErrorCode::kIncompleteBuffer,
          "a header error code");
  Require(error.ToString().find(kPath) != std::string::npos, "the message names the file");
}

// An independent check of steps 6-8 on an accepted header, in 128-bit
// arithmetic: sorted by (begin, end), the tensors tile [0, end) with the
// sizes their dtype and shape imply, and 8 + N + end is the file size.
void CheckAccepted(const Header& header, std::uint64_t file_size) {
  std::vector<std::tuple<std::uint64_t, std::uint64_t, const HeaderTensor*>> spans;
  for (const HeaderTensor& t : header.tensors) spans.emplace_back(t.begin, t.end, &t);
  std::sort(spans.begin(), spans.end());
  unsigned __int128 end = 0;
  for (const auto& [begin, stop, tensor] : spans) {
    Require(begin == end && stop >= begin, "accepted tensors tile the buffer");
    unsigned __int128 elements = 1;
    for (std::uint64_t dim : tensor->shape) {
      elements *= dim;  // < 2^64 * 2^64: cannot wrap
      Require(elements >> 64 == 0, "accepted element counts fit 64 bits, left to right");
    }
    unsigned __int128 bits = elements * DTypeBits(tensor->dtype);
    Require(bits >> 64 == 0, "accepted bit counts fit 64 bits");
    Require(bits % 8 == 0 && bits / 8 == stop - begin, "accepted sizes match dtype and shape");
    end = stop;
  }
  Require(8 + header.header_size + end == file_size, "accepted tensors cover the file");
}

// Checks either outcome; returns the error code, kOk when accepted.
ErrorCode Check(const Result<Header>& result, std::uint64_t file_size) {
  if (!result.has_value()) {
    CheckRefusal(result.error());
    return result.error().code;
  }
  CheckAccepted(*result, file_size);
  return ErrorCode::kOk;
}

// The end of the last tensor, for well-formed JSON.
std::uint64_t LastEnd(std::string_view text) {
  Result<Header> parsed = ParseHeaderJson(text, kPath);
  Require(parsed.has_value(), "steps 6-8 ran on JSON that parses");
  std::uint64_t end = 0;
  for (const HeaderTensor& t : parsed->tensors) end = std::max(end, t.end);
  return end;
}

void ParseAsText(std::string_view text) {
  std::uint64_t size = 8 + text.size();
  ErrorCode code = Check(ParseHeader(text, size, kPath), size);
  if (code != ErrorCode::kIncompleteBuffer) return;
  std::uint64_t end = LastEnd(text);
  if (end > UINT64_MAX - size) return;  // no file is that long
  Require(Check(ParseHeader(text, size + end, kPath), size + end) == ErrorCode::kOk,
          "a header that failed only coverage is accepted at its own length");
}

// A memfd holding exactly `bytes`, reused across inputs.
int FileWith(std::string_view bytes) {
  static const int fd = ::memfd_create("fuzz_header", MFD_CLOEXEC);
  Require(fd >= 0, "memfd_create");
  Require(::ftruncate(fd, 0) == 0, "ftruncate");
  Require(::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()),
          "pwrite");
  return fd;
}

void ParseAsFile(std::string_view bytes) {
  ErrorCode code = Check(ReadHeader(FileWith(bytes), bytes.size(), kPath), bytes.size());
  if (bytes.size() < 8) return;
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  if (n > bytes.size() - 8) return;
  Result<Header> text = ParseHeader(bytes.substr(8, n), bytes.size(), kPath);
  Require(Check(text, bytes.size()) == code, "ReadHeader and ParseHeader agree");
}

}  // namespace
}  // namespace shardload::format

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  shardload::format::ParseAsText(input);
  shardload::format::ParseAsFile(input);
  return 0;
}
