// Compiles and matches the tensor-name patterns of a plan (see pattern.h).
// Thread-safe: no shared mutable state (a compiled RE2 is safe to share).
#include "tp/pattern.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace shardload::tp {

struct Pattern::CompiledRegex {
  explicit CompiledRegex(const std::string& re, const RE2::Options& options) : regex(re, options) {}
  RE2 regex;
};

namespace {

constexpr std::string_view kRegexPrefix = "re:";

Error PatternError(std::string detail) {
  return MakeError(ErrorCode::kTpBadPattern, {}, {}, std::move(detail));
}

void SplitComponents(std::string_view name, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  while (true) {
    std::size_t dot = name.find('.', start);
    out.push_back(name.substr(start, dot - start));
    if (dot == std::string_view::npos) return;
    start = dot + 1;
  }
}

std::vector<std::string_view> SplitComponents(std::string_view name) {
  std::vector<std::string_view> out;
  SplitComponents(name, out);
  return out;
}

// fnmatch with only `*` (any run of characters, the empty run included).
bool WildMatch(std::string_view pattern, std::string_view s) {
  std::size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = i;
    } else if (p < pattern.size() && pattern[p] == s[i]) {
      ++p;
      ++i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// A regex longer than this is refused: rules are short, and RE2's compile
// memory grows with the text.
constexpr std::size_t kMaxRegexLength = 512;
// `{expert}` becomes this named capturing group.
constexpr std::string_view kExpertGroupName = "shardload_expert";

RE2::Options RegexOptions() {
  RE2::Options options;  // RE2 syntax, UTF-8, `.` does not match a newline
  options.set_log_errors(false);
  return options;
}

}  // namespace

std::optional<std::uint64_t> ParseDigits(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (__builtin_mul_overflow(value, 10u, &value) ||
        __builtin_add_overflow(value, digit, &value)) {
      return std::nullopt;
    }
  }
  return value;
}

Result<Pattern> Pattern::Compile(std::string_view text, std::string_view capture) {
  Result<Pattern> out = text.starts_with(kRegexPrefix)
                            ? CompileRegex(text.substr(kRegexPrefix.size()), capture)
                            : CompileGlob(text, capture);
  if (out) out->text_ = std::string(text);
  return out;
}

Result<Pattern> Pattern::CompileGlob(std::string_view text, std::string_view capture) {
  if (text.empty()) return PatternError("empty pattern");
  Pattern p;
  for (std::string_view c : SplitComponents(text)) {
    if (c.empty()) {
      return PatternError("empty component (leading, trailing or doubled `.`)");
    }
    if (c == capture) {
      if (p.has_expert_) return PatternError(fmt::format("`{}` appears twice", capture));
      p.has_expert_ = true;
      p.tokens_.push_back({Kind::kExpert, {}});
    } else if (c.find_first_of("{}") != std::string_view::npos) {
      return PatternError(fmt::format(
          "`{{` and `}}` are allowed only in the whole component `{}` "
          "(use `re:` for alternatives)", capture));
    } else if (c == "**") {
      if (p.tokens_.empty() || p.tokens_.back().kind != Kind::kAny) {
        p.tokens_.push_back({Kind::kAny, {}});
      }
    } else if (c.find("**") != std::string_view::npos) {
      return PatternError("`**` must be a whole component");
    } else if (c == "*") {
      p.tokens_.push_back({Kind::kOne, {}});
    } else {
      Kind kind = c.find('*') == std::string_view::npos ? Kind::kLiteral : Kind::kWild;
      p.tokens_.push_back({kind, std::string(c)});
    }
  }
  return p;
}

Result<Pattern> Pattern::CompileRegex(std::string_view text, std::string_view capture) {
  if (text.empty()) return PatternError("empty regex after `re:`");
  if (text.size() > kMaxRegexLength) return PatternError("regex longer than 512 characters");
  if (text.find(kExpertGroupName) != std::string_view::npos) {
    return PatternError("the group name `" + std::string(kExpertGroupName) + "` is reserved");
  }
  Pattern p;
  std::string re(text);
  std::size_t pos = re.find(capture);
  if (pos != std::string::npos) {
    if (re.find(capture, pos + 1) != std::string::npos) {
      return PatternError(fmt::format("`{}` appears twice", capture));
    }
    p.has_expert_ = true;
    re.replace(pos, capture.size(),
               "(?P<" + std::string(kExpertGroupName) + ">[0-9]+)");
  }
  auto compiled = std::make_shared<const CompiledRegex>(re, RegexOptions());
  if (!compiled->regex.ok()) return PatternError("invalid regex: " + compiled->regex.error());
  if (p.has_expert_) {
    const auto& named = compiled->regex.NamedCapturingGroups();
    auto group = named.find(std::string(kExpertGroupName));
    if (group == named.end()) {
      return PatternError(fmt::format("`{}` is not a capturing position", capture));
    }
    p.expert_group_ = static_cast<std::size_t>(group->second);
  }
  p.regex_ = std::move(compiled);
  return p;
}

Result<bool> Pattern::Match(std::string_view name,
                            std::optional<std::uint64_t>* expert) const {
  if (regex_) return MatchRegex(name, expert);
  return MatchGlob(name, expert);
}

bool Pattern::TokenMatches(const Token& token, std::string_view component,
                           std::optional<std::uint64_t>* expert) const {
  switch (token.kind) {
    case Kind::kLiteral: return component == token.text;
    case Kind::kOne: return true;
    case Kind::kWild: return WildMatch(token.text, component);
    case Kind::kExpert:
      *expert = ParseDigits(component);
      return expert->has_value();
    case Kind::kAny: return false;  // handled by MatchGlob
  }
  return false;
}

// The classic greedy wildcard walk with `**` as the star and components as
// characters: O(tokens x components), no recursion. `{expert}` is re-captured
// whenever the walk backtracks over it, so the final capture is the one of
// the successful alignment.
bool Pattern::MatchGlob(std::string_view name,
                        std::optional<std::uint64_t>* expert) const {
  // Planning matches every tensor name against every rule, once per rank:
  // reuse this thread's buffer rather than allocate per call.
  thread_local std::vector<std::string_view> comps;
  SplitComponents(name, comps);
  std::optional<std::uint64_t> capture;
  std::size_t t = 0, c = 0, star = tokens_.size(), mark = 0;
  while (c < comps.size()) {
    if (t < tokens_.size() && tokens_[t].kind == Kind::kAny) {
      star = t++;
      mark = c;
    } else if (t < tokens_.size() && TokenMatches(tokens_[t], comps[c], &capture)) {
      ++t;
      ++c;
    } else if (star != tokens_.size()) {
      t = star + 1;
      c = ++mark;
    } else {
      return false;
    }
  }
  while (t < tokens_.size() && tokens_[t].kind == Kind::kAny) ++t;
  if (t != tokens_.size()) return false;
  if (expert != nullptr) *expert = capture;
  return true;
}

Result<bool> Pattern::MatchRegex(std::string_view name,
                                 std::optional<std::uint64_t>* expert) const {
  const RE2& re = regex_->regex;
  const re2::StringPiece text(name.data(), name.size());
  if (!has_expert_) return re.Match(text, 0, text.size(), RE2::ANCHOR_BOTH, nullptr, 0);
  std::vector<re2::StringPiece> groups(expert_group_ + 1);
  if (!re.Match(text, 0, text.size(), RE2::ANCHOR_BOTH, groups.data(),
                static_cast<int>(groups.size()))) {
    return false;
  }
  const re2::StringPiece& group = groups[expert_group_];
  if (group.data() == nullptr) return false;  // inside an alternative that did not match
  std::optional<std::uint64_t> capture = ParseDigits(std::string_view(group.data(), group.size()));
  if (!capture) return false;
  if (expert != nullptr) *expert = capture;
  return true;
}

}  // namespace shardload::tp
