// An overlayfs mount for tests that must run on one: lower, upper and work
// directories and the merged mount point in a fresh temporary directory,
// unmounted on destruction. Needs root (or a user namespace) and a kernel
// with overlayfs; otherwise ok() is false and reason() says why, for a skip.
#pragma once

#include <string>
#include <string_view>

#include "support/test_util.h"

namespace shardload::test {

class OverlayMount {
 public:
  OverlayMount();
  ~OverlayMount();
  OverlayMount(const OverlayMount&) = delete;
  OverlayMount& operator=(const OverlayMount&) = delete;

  bool ok() const { return mounted_; }
  const std::string& reason() const { return reason_; }
  // A path inside the merged (overlay) directory.
  std::string operator/(std::string_view name) const { return merged_ + "/" + std::string(name); }
  const std::string& merged() const { return merged_; }

 private:
  TempDir dir_;
  std::string merged_;
  bool mounted_ = false;
  std::string reason_;
};

}  // namespace shardload::test
