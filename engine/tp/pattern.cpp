// Compiles and matches the tensor-name patterns of a plan (see pattern.h).
// Thread-safe: no shared mutable state.
#include "tp/pattern.h"

#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

namespace shardload::tp {

struct Pattern::CompiledRegex {
  std::regex regex;
};

namespace {

constexpr std::string_view kRegexPrefix = "re:";
constexpr std::string_view kExpertToken = "{expert}";

Error PatternError(std::string detail) {
  return MakeError(ErrorCode::kTpBadPattern, {}, {}, std::move(detail));
}

std::vector<std::string_view> SplitComponents(std::string_view name) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = name.find('.', start);
    out.push_back(name.substr(start, dot - start));
    if (dot == std::string_view::npos) return out;
    start = dot + 1;
  }
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

// Capturing groups opened in ECMAScript regex text: `(` not escaped, not in
// a character class and not followed by `?`.
std::size_t CountGroups(std::string_view re) {
  std::size_t count = 0;
  bool in_class = false;
  for (std::size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    if (c == '\\') {
      ++i;
    } else if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
    } else if (c == '(' && (i + 1 >= re.size() || re[i + 1] != '?')) {
      ++count;
    }
  }
  return count;
}


// Limits that keep std::regex (a recursive backtracking engine) away from
// exponential time and deep recursion on hostile tensor names.
constexpr std::size_t kMaxRegexLength = 512;
constexpr std::size_t kMaxRegexGroupDepth = 16;
constexpr std::size_t kMaxRegexRepeat = 1000;
constexpr std::size_t kMaxRegexNameLength = 1024;

// Skips a bracket expression starting at re[i] == '['; returns the index of
// its closing ']' (or re.size()).
std::size_t SkipClass(std::string_view re, std::size_t i) {
  std::size_t j = i + 1;
  if (j < re.size() && re[j] == '^') ++j;
  if (j < re.size() && re[j] == ']') ++j;
  while (j < re.size() && re[j] != ']') j += re[j] == '\\' ? 2 : 1;
  return j;
}

// Checks the counts of a `{n}` / `{n,m}` repeat at re[i] == '{'; returns
// the index of its '}' or nullopt when a count is too large.
std::optional<std::size_t> CheckRepeat(std::string_view re, std::size_t i) {
  std::size_t value = 0;
  for (std::size_t j = i + 1; j < re.size(); ++j) {
    char c = re[j];
    if (c == '}') return j;
    if (c == ',') {
      value = 0;
    } else if (c >= '0' && c <= '9') {
      value = value * 10 + static_cast<std::size_t>(c - '0');
      if (value > kMaxRegexRepeat) return std::nullopt;
    } else {
      return j - 1;  // not a repeat: std::regex decides
    }
  }
  return re.size();
}

// Why `re` is refused before compiling, or "" when it is fine: too long,
// groups nested too deep, backreferences, huge repeat counts, or a repeated
// group that itself contains a repeat (`(a*)*`: exponential backtracking).
std::string RegexHazard(std::string_view re) {
  if (re.size() > kMaxRegexLength) return "regex longer than 512 characters";
  std::vector<bool> groups;           // per open group: holds a quantifier
  bool atom = false, atom_repeats = false;  // last atom; is it a group with a repeat
  for (std::size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    bool quantifier = c == '*' || c == '+' || c == '{' || (c == '?' && atom);
    if (quantifier) {
      if (c == '{') {
        std::optional<std::size_t> end = CheckRepeat(re, i);
        if (!end) return "repeat count above 1000";
        i = *end;
      }
      if (atom_repeats) return "nested repeats such as `(a*)*` can take exponential time";
      if (!groups.empty()) groups.back() = true;
      atom = atom_repeats = false;
      continue;
    }
    atom_repeats = false;
    atom = true;
    if (c == '\\') {
      if (i + 1 < re.size() && re[i + 1] >= '1' && re[i + 1] <= '9') {
        return "backreferences are not supported";
      }
      ++i;
    } else if (c == '[') {
      i = SkipClass(re, i);
    } else if (c == '(') {
      if (groups.size() >= kMaxRegexGroupDepth) return "groups nested deeper than 16";
      groups.push_back(false);
      atom = false;
    } else if (c == ')' && !groups.empty()) {
      atom_repeats = groups.back();
      groups.pop_back();
      if (atom_repeats && !groups.empty()) groups.back() = true;
    } else if (c == '|' || c == '?') {
      atom = false;
    }
  }
  return "";
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

Result<Pattern> Pattern::Compile(std::string_view text) {
  Result<Pattern> out = text.starts_with(kRegexPrefix)
                            ? CompileRegex(text.substr(kRegexPrefix.size()))
                            : CompileGlob(text);
  if (out) out->text_ = std::string(text);
  return out;
}

Result<Pattern> Pattern::CompileGlob(std::string_view text) {
  if (text.empty()) return PatternError("empty pattern");
  Pattern p;
  for (std::string_view c : SplitComponents(text)) {
    if (c.empty()) {
      return PatternError("empty component (leading, trailing or doubled `.`)");
    }
    if (c == kExpertToken) {
      if (p.has_expert_) return PatternError("`{expert}` appears twice");
      p.has_expert_ = true;
      p.tokens_.push_back({Kind::kExpert, {}});
    } else if (c.find_first_of("{}") != std::string_view::npos) {
      return PatternError(
          "`{` and `}` are allowed only in the whole component `{expert}` "
          "(use `re:` for alternatives)");
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

Result<Pattern> Pattern::CompileRegex(std::string_view text) {
  if (text.empty()) return PatternError("empty regex after `re:`");
  Pattern p;
  std::string re(text);
  std::size_t pos = re.find(kExpertToken);
  if (pos != std::string::npos) {
    if (re.find(kExpertToken, pos + 1) != std::string::npos) {
      return PatternError("`{expert}` appears twice");
    }
    p.has_expert_ = true;
    p.expert_group_ = CountGroups(std::string_view(re).substr(0, pos)) + 1;
    re.replace(pos, kExpertToken.size(), "([0-9]+)");
  }
  if (std::string hazard = RegexHazard(re); !hazard.empty()) {
    return PatternError("regex refused: " + hazard);
  }
  try {
    p.regex_ = std::make_shared<const CompiledRegex>(
        CompiledRegex{std::regex(re, std::regex::ECMAScript)});
  } catch (const std::regex_error& e) {
    return PatternError("invalid regex: " + std::string(e.what()));
  }
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
  std::vector<std::string_view> comps = SplitComponents(name);
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
  if (name.size() > kMaxRegexNameLength) {
    return PatternError("a name of " + std::to_string(name.size()) +
                        " bytes is too long for `re:` matching (limit 1024)");
  }
  std::match_results<std::string_view::const_iterator> m;
  try {
    if (!std::regex_match(name.begin(), name.end(), m, regex_->regex)) return false;
  } catch (const std::regex_error& e) {
    return PatternError("regex failed on this name: " + std::string(e.what()));
  }
  if (!has_expert_) return true;
  const auto& group = m[expert_group_];
  if (!group.matched) return false;
  std::optional<std::uint64_t> capture = ParseDigits(name.substr(
      static_cast<std::size_t>(group.first - name.begin()),
      static_cast<std::size_t>(group.length())));
  if (!capture) return false;
  if (expert != nullptr) *expert = capture;
  return true;
}

}  // namespace shardload::tp
