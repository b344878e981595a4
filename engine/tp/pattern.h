// Tensor-name patterns of a tensor-parallel plan.
//
// A pattern is either a glob over dot-separated name components or, after a
// `re:` prefix, an RE2 regex (Python `re` syntax without backreferences or
// lookaround; matching is linear in the name, never backtracking). Both are matched against the WHOLE
// string given to Match (the plan tries the tensor name, then the name
// without its last component; see splitter.h).
//
//   glob component   matches
//   --------------   ----------------------------------------------------
//   `*`              exactly one component (any text)
//   `**`             any number of components, zero included
//   `{expert}`       one all-digit component, captured as the expert index
//                    (a pipeline's layer pattern captures `{layer}` instead;
//                    Compile's CAPTURE names the token)
//   `a*b`            one component; `*` inside a component is any run of
//                    characters other than `.`
//   anything else    that component literally
//
// In a regex, the text `{expert}` (at most once) stands for `([0-9]+)` and is
// captured the same way; everything else is RE2 syntax.
// Thread-safe after Compile: Match is const and keeps no state.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/error.h"

namespace shardload::tp {

class Pattern {
 public:
  // Parses TEXT, whose capture token is CAPTURE (`{expert}` in plan rules,
  // `{layer}` in a pipeline's layer pattern). Errors are kTpBadPattern with
  // only `detail` set; the plan parser adds the path and the rule.
  static Result<Pattern> Compile(std::string_view text,
                                 std::string_view capture = "{expert}");

  // True when the whole of NAME matches. When the pattern has its capture,
  // *expert receives the captured index (a component that is all digits but
  // does not fit in 64 bits does not match). Never fails today (RE2 matches
  // any name in linear time); a Result so that callers need no change if a
  // matcher ever can.
  Result<bool> Match(std::string_view name,
                     std::optional<std::uint64_t>* expert) const;

  const std::string& text() const { return text_; }
  bool has_expert() const { return has_expert_; }

 private:
  enum class Kind : std::uint8_t { kLiteral, kOne, kWild, kAny, kExpert };
  struct Token {
    Kind kind;
    std::string text;  // kLiteral and kWild
  };

  static Result<Pattern> CompileGlob(std::string_view text, std::string_view capture);
  static Result<Pattern> CompileRegex(std::string_view text, std::string_view capture);
  bool MatchGlob(std::string_view name,
                 std::optional<std::uint64_t>* expert) const;
  Result<bool> MatchRegex(std::string_view name,
                          std::optional<std::uint64_t>* expert) const;
  bool TokenMatches(const Token& token, std::string_view component,
                    std::optional<std::uint64_t>* expert) const;

  std::string text_;
  struct CompiledRegex;  // an RE2, kept out of this header

  std::vector<Token> tokens_;                      // glob
  std::shared_ptr<const CompiledRegex> regex_;     // regex; shared by copies
  std::size_t expert_group_ = 0;               // regex group of {expert}
  bool has_expert_ = false;
};

// Parses an all-digit string; nullopt when empty, not digits or >= 2^64.
std::optional<std::uint64_t> ParseDigits(std::string_view text);

}  // namespace shardload::tp
