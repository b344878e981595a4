// ClipName: error text's bound on quoted names (clip_name.h).
#include "util/clip_name.h"

namespace shardload {

std::string ClipName(std::string_view name) {
  if (name.size() <= kMaxQuotedName) return std::string(name);
  std::size_t cut = kMaxQuotedName;
  // Back off continuation bytes (10xxxxxx) and the lead byte they follow, so
  // that no UTF-8 sequence is cut in two.
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
  return std::string(name.substr(0, cut)) + "... (" + std::to_string(name.size()) + " bytes)";
}

}  // namespace shardload
