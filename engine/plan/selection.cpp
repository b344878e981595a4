// Tensor selection: Select() of loader.h and the dot-component glob matcher.
// Thread-safe: pure functions over an immutable Checkpoint.
#include "plan/selection.h"

#include <algorithm>
#include <string>
#include <vector>

#include "shardload/loader.h"

namespace shardload {
namespace {

std::vector<std::string_view> SplitDots(std::string_view s) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    std::size_t dot = s.find('.', start);
    if (dot == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, dot - start));
    start = dot + 1;
  }
}

// One component with `*` wildcards (no dots involved). Classic greedy match
// with backtracking to the last star: O(|p| * |s|) worst case.
bool ComponentMatch(std::string_view p, std::string_view s) {
  std::size_t pi = 0, si = 0;
  std::size_t star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (pi < p.size() && p[pi] == s[si]) {
      ++pi;
      ++si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

}  // namespace

// Dynamic programming over components: can[i][j] = pattern components i.. match
// name components j.. .
bool GlobMatch(std::string_view pattern, std::string_view name) {
  std::vector<std::string_view> p = SplitDots(pattern);
  std::vector<std::string_view> n = SplitDots(name);
  const std::size_t cols = n.size() + 1;
  std::vector<char> can((p.size() + 1) * cols, 0);
  auto at = [&](std::size_t i, std::size_t j) -> char& { return can[i * cols + j]; };
  at(p.size(), n.size()) = 1;
  for (std::size_t i = p.size(); i-- > 0;) {
    for (std::size_t j = n.size() + 1; j-- > 0;) {
      if (p[i] == "**") {
        at(i, j) = at(i + 1, j) || (j < n.size() && at(i, j + 1));
      } else {
        at(i, j) = j < n.size() && ComponentMatch(p[i], n[j]) && at(i + 1, j + 1);
      }
    }
  }
  return at(0, 0) != 0;
}

Result<std::vector<const TensorInfo*>> Select(const Checkpoint& checkpoint,
                                              const Selection& selection) {
  const std::vector<TensorInfo>& all = checkpoint.tensors();
  std::vector<const TensorInfo*> out;
  if (selection.names.empty() && selection.globs.empty()) {
    out.reserve(all.size());
    for (const TensorInfo& t : all) out.push_back(&t);
    return out;
  }
  std::vector<char> picked(all.size(), 0);
  for (const std::string& name : selection.names) {
    const TensorInfo* t = checkpoint.Find(name);
    if (t == nullptr) {
      return MakeError(ErrorCode::kTensorNotFound, checkpoint.path(), name,
                       "no tensor of this name in the checkpoint");
    }
    picked[static_cast<std::size_t>(t - all.data())] = 1;
  }
  for (const std::string& glob : selection.globs) {
    bool any = false;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (GlobMatch(glob, all[i].name)) {
        picked[i] = 1;
        any = true;
      }
    }
    if (!any) {
      return MakeError(ErrorCode::kTensorNotFound, checkpoint.path(), "",
                       "glob `" + glob + "` matches no tensor");
    }
  }
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (picked[i]) out.push_back(&all[i]);
  }
  return out;
}

}  // namespace shardload
