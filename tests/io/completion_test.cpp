// The completion policy table (io/completion.h), row by row.
#include <doctest/doctest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "io/completion.h"

namespace shardload {
namespace {

ReadOp Op(std::uint64_t offset, std::uint64_t length, std::uint64_t required) {
  ReadOp op;
  op.offset = offset;
  op.length = length;
  op.required = required;
  op.delivered = required;
  return op;
}

struct Run {
  OpCursor cursor;
  WorkerStats stats;
  Error error;
  Verdict Feed(const ReadOp& op, std::int64_t res, std::uint64_t alignment = 1) {
    return OnReadResult(op, res, alignment, "/x/shard.safetensors", cursor, stats, &error);
  }
};

TEST_CASE("full read: done") {
  Run r;
  ReadOp op = Op(100, 4096, 4096);
  CHECK(r.Feed(op, 4096) == Verdict::kDone);
  CHECK(r.stats.bytes_read == 4096);
  CHECK(r.stats.short_reads == 0);
}

TEST_CASE("short read: the rest is resubmitted from where it stopped") {
  Run r;
  ReadOp op = Op(100, 4096, 4096);
  CHECK(r.Feed(op, 1000) == Verdict::kResubmit);
  CHECK(r.cursor.offset(op) == 1100);
  CHECK(r.cursor.remaining(op) == 3096);
  std::byte buf[4096];
  op.dst = buf;
  CHECK(r.cursor.target(op, nullptr) == buf + 1000);
  CHECK(r.Feed(op, 3096) == Verdict::kDone);
  CHECK(r.stats.short_reads == 1);
  CHECK(r.stats.bytes_read == 4096);
}

TEST_CASE("O_DIRECT short read: resubmitted from the aligned point below") {
  Run r;
  ReadOp op = Op(4096, 8192, 8192);
  CHECK(r.Feed(op, 5000, 512) == Verdict::kResubmit);
  CHECK(r.cursor.done == 4608);
  CHECK(r.cursor.offset(op) % 512 == 0);
  CHECK(r.Feed(op, 8192 - 4608, 512) == Verdict::kDone);
}

TEST_CASE("aligned read past the data: EOF after the required bytes is fine") {
  Run r;
  ReadOp op = Op(0, 4096, 3000);
  CHECK(r.Feed(op, 3000, 512) == Verdict::kDone);
}

TEST_CASE("EOF before the planned end: kTruncated naming file, offset and length") {
  SUBCASE("zero at once") {
    Run r;
    ReadOp op = Op(8192, 4096, 4096);
    CHECK(r.Feed(op, 0) == Verdict::kFailed);
    CHECK(r.error.code == ErrorCode::kTruncated);
    CHECK(r.error.path == "/x/shard.safetensors");
    CHECK(r.error.detail.find("read of 4096 bytes at offset 8192") != std::string::npos);
    CHECK(r.stats.failed_offset == 8192);
  }
  SUBCASE("short, then zero") {
    Run r;
    ReadOp op = Op(8192, 4096, 4096);
    CHECK(r.Feed(op, 100) == Verdict::kResubmit);
    CHECK(r.Feed(op, 0) == Verdict::kFailed);
    CHECK(r.error.code == ErrorCode::kTruncated);
    CHECK(r.error.detail.find("got 100") != std::string::npos);
    CHECK(r.stats.failed_offset == 8292);
  }
  SUBCASE("O_DIRECT: the same partial block again is no progress") {
    Run r;
    ReadOp op = Op(0, 4096, 4096);
    CHECK(r.Feed(op, 300, 512) == Verdict::kResubmit);
    CHECK(r.cursor.done == 0);
    CHECK(r.Feed(op, 300, 512) == Verdict::kFailed);
    CHECK(r.error.code == ErrorCode::kTruncated);
  }
}

TEST_CASE("EAGAIN and EINTR: resubmitted unchanged, up to the retry limit") {
  Run r;
  ReadOp op = Op(0, 4096, 4096);
  for (unsigned i = 0; i < kMaxRetries; ++i) {
    REQUIRE(r.Feed(op, i % 2 ? -EINTR : -EAGAIN) == Verdict::kResubmit);
  }
  CHECK(r.stats.retries == kMaxRetries);
  CHECK(r.cursor.done == 0);
  CHECK(r.Feed(op, -EAGAIN) == Verdict::kFailed);
  CHECK(r.error.code == ErrorCode::kIoError);
  CHECK(r.error.sys_errno == EAGAIN);

  Run progress;  // a successful read resets the count
  for (unsigned i = 0; i < kMaxRetries; ++i) {
    REQUIRE(progress.Feed(op, -EAGAIN) == Verdict::kResubmit);
  }
  REQUIRE(progress.Feed(op, 10) == Verdict::kResubmit);
  CHECK(progress.Feed(op, -EINTR) == Verdict::kResubmit);
}

TEST_CASE("other errors: kIoError with errno, file, offset and length") {
  Run r;
  ReadOp op = Op(12288, 4096, 4096);
  CHECK(r.Feed(op, -EIO) == Verdict::kFailed);
  CHECK(r.error.code == ErrorCode::kIoError);
  CHECK(r.error.sys_errno == EIO);
  CHECK(r.error.path == "/x/shard.safetensors");
  CHECK(r.error.detail.find("read of 4096 bytes at offset 12288") != std::string::npos);
}

TEST_CASE("delivery copies staged bytes and reports progress") {
  std::vector<std::byte> staging(64), dst(10);
  for (std::size_t i = 0; i < staging.size(); ++i) staging[i] = static_cast<std::byte>(i);
  ReadOp op = Op(0, 64, 30);
  op.copy_dst = dst.data();
  op.copy_skip = 20;
  op.copy_length = 10;
  op.delivered = 10;
  ProgressMeter meter(10, 1, nullptr);
  ExecContext ctx;
  ctx.progress = &meter;
  WorkerStats stats;
  DeliverOp(op, staging.data(), ctx, stats);
  for (std::size_t i = 0; i < dst.size(); ++i) CHECK(dst[i] == static_cast<std::byte>(20 + i));
  CHECK(stats.bytes_delivered == 10);
  CHECK(meter.done() == 10);
}

TEST_CASE("progress is throttled to one call per step, plus the last") {
  std::vector<std::uint64_t> seen;
  ProgressMeter meter(1000, 300, [&](std::uint64_t done, std::uint64_t) { seen.push_back(done); });
  for (int i = 0; i < 100; ++i) meter.Add(10);
  CHECK(seen == std::vector<std::uint64_t>{300, 600, 900, 1000});
}

}  // namespace
}  // namespace shardload
