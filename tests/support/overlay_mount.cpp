// OverlayMount (overlay_mount.h): mount(2) of an overlay over directories
// in a TempDir; the kernel's refusal becomes the skip reason.
#include "support/overlay_mount.h"

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace shardload::test {

OverlayMount::OverlayMount() : merged_(dir_ / "merged") {
  for (const char* sub : {"lower", "upper", "work", "merged"}) {
    std::filesystem::create_directories(dir_ / sub);
  }
  const std::string options = "lowerdir=" + (dir_ / "lower") + ",upperdir=" + (dir_ / "upper") +
                              ",workdir=" + (dir_ / "work");
  if (::mount("overlay", merged_.c_str(), "overlay", 0, options.c_str()) != 0) {
    reason_ = "mount -t overlay on " + merged_ + " refused: " + std::strerror(errno);
    return;
  }
  mounted_ = true;
}

OverlayMount::~OverlayMount() {
  if (mounted_) ::umount2(merged_.c_str(), MNT_DETACH);
}

}  // namespace shardload::test
