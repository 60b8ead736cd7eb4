#include "toxics/resp_rule.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "toxics/toxic.h"

namespace faultline::toxics {

const char* to_string(RespActionKind k) {
  switch (k) {
  case RespActionKind::Forward: return "forward";
  case RespActionKind::Inject: return "inject";
  case RespActionKind::DelayRequest: return "delay_request";
  case RespActionKind::DelayReply: return "delay_reply";
  case RespActionKind::Hang: return "hang";
  case RespActionKind::ResetBefore: return "reset_before";
  case RespActionKind::CloseBefore: return "close_before";
  case RespActionKind::ResetAfter: return "reset_after";
  case RespActionKind::CloseAfter: return "close_after";
  case RespActionKind::Truncate: return "truncate";
  case RespActionKind::Rewrite: return "rewrite";
  }
  return "?";
}

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

// Pseudo-category for the flag Redis uses to refuse commands under maxmemory.
constexpr uint32_t kDenyoomBit = 1u << 31;

} // namespace

const AttrTable<FilterParams>& filter_attrs() {
  // Constructed on first use: the RESP types' registrations need it during static
  // initialisation, from other files.
  static const AttrTable<FilterParams> attrs = {
      list_attr("commands", &FilterParams::commands, "", "all; some presets pick their own",
                "names, `CONTAINER|SUB` (`CLIENT|SETNAME`, `CONFIG GET`) or ACL categories "
                "(`@write`, `@read`, `@blocking`, `@pubsub`, `@admin`, `@keyspace`, `@string`..., "
                "and `@denyoom`: what Redis refuses under maxmemory); case does not matter"),
      string_attr("keys", &FilterParams::keys, "a Redis glob", "",
                  "matched on the command's first key (`*`, `?`, `[a-z]`, `[^x]`, `\\x`: the "
                  "same answers as `KEYS`); commands without a key do not match")
          .omit_default(),
      number_attr("probability", &FilterParams::probability, "", {0.0, 1.0}, 1.0,
                  "drawn per matching command from the proxy's generator (`--seed` makes it "
                  "repeatable)"),
      int_attr("first", &FilterParams::first, "", {0, INT64_MAX}, 0,
               "act on the first N matching commands only (0: no limit)")
          .omit_default(),
      int_attr("every", &FilterParams::every, "", {0, INT64_MAX}, 0,
               "act on every Nth matching command (counted after `after`; 0 and 1: each)")
          .omit_default(),
      int_attr("after", &FilterParams::after, "", {0, INT64_MAX}, 0,
               "skip the first N matching commands")
          .omit_default(),
  };
  return attrs;
}

RespFilter::RespFilter(const nlohmann::json& attrs)
    : RespFilter(filter_attrs().parse("filter", attrs)) {}

RespFilter::RespFilter(FilterParams p) : p_(std::move(p)) {
  static const std::vector<std::string> kNone;
  const std::vector<std::string>& names = p_.commands ? *p_.commands : kNone;
  for (const auto& n : names) {
    Entry e;
    if (n[0] == '@') {
      std::string cat = n.substr(1);
      for (auto& c : cat) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (cat == "denyoom") {
        e.category = kDenyoomBit;
      } else {
        resp::AclCategory c = resp::category_from_name(cat);
        if (c == resp::AclCategory::None)
          throw ToxicError(fmt::format("attribute 'commands': unknown category '{}'", n));
        e.category = static_cast<uint32_t>(c);
      }
    } else {
      std::string u = upper(n);
      size_t bar = u.find('|');
      if (bar == std::string::npos) bar = u.find(' ');
      if (bar != std::string::npos) {
        e.sub = trim(std::string_view(u).substr(bar + 1));
        u = trim(std::string_view(u).substr(0, bar));
      }
      e.name = u;
    }
    commands_.push_back(std::move(e));
  }
  // The answer for every command the table names exactly, decided once. A container's own
  // entry is left out: with an unknown subcommand, the subcommand as sent decides.
  auto all = resp::all_commands();
  selected_.assign(all.size(), false);
  for (const auto& c : all) {
    if (c.sub_count != 0 || c.id >= all.size()) continue;
    bool hit = commands_.empty();
    for (const auto& e : commands_)
      if (!hit && entry_matches(e, c)) hit = true;
    selected_[c.id] = hit;
  }
}

// command_matches() for a frame whose name and subcommand are those of table entry c.
bool RespFilter::entry_matches(const Entry& e, const resp::CommandInfo& c) const {
  if (e.category == kDenyoomBit) return c.has(resp::CommandFlag::Denyoom);
  if (e.category) return (static_cast<uint32_t>(c.categories) & e.category) != 0;
  return e.name == c.name && (e.sub.empty() || e.sub == c.sub);
}

bool RespFilter::names_command(std::string_view name, std::string_view sub) const {
  for (const auto& e : commands_)
    if (e.category == 0 && e.name == name && (e.sub.empty() || e.sub == sub)) return true;
  return false;
}

bool RespFilter::command_matches(const resp::RequestFrame& f) const {
  if (commands_.empty()) return true;
  for (const auto& e : commands_) {
    if (e.category) {
      if (!f.cmd) continue;
      if (e.category == kDenyoomBit) {
        if (f.cmd->has(resp::CommandFlag::Denyoom)) return true;
      } else if (static_cast<uint32_t>(f.cmd->categories) & e.category) {
        return true;
      }
      continue;
    }
    if (e.name == f.name && (e.sub.empty() || e.sub == f.sub)) return true;
  }
  return false;
}

bool RespFilter::passes(const resp::RequestFrame& f, std::mt19937_64& rng) const {
  if (!p_.keys.empty()) {
    if (!f.has_key || !glob_match(p_.keys, f.key.data)) return false;
  }
  // The table's ranges make these non-negative.
  const auto first = static_cast<uint64_t>(p_.first);
  const auto every = static_cast<uint64_t>(p_.every);
  const auto after = static_cast<uint64_t>(p_.after);
  ++seen_;
  if (seen_ <= after) return false;
  uint64_t n = seen_ - after; // 1-based among the commands past `after`
  if (every > 1 && n % every != 0) return false;
  if (first > 0 && matched_ >= first) return false;
  if (p_.probability < 1.0) {
    std::uniform_real_distribution<double> d(0.0, 1.0);
    if (!(d(rng) < p_.probability)) return false;
  }
  ++matched_;
  return true;
}

void RespFilter::to_json(nlohmann::json& out) const { out.update(filter_attrs().to_json(p_)); }

RespAction RespRule::decide(const resp::RequestFrame& f, const RespContext& ctx) const {
  // A command the filter does not name is forwarded whatever the mode: decided first, by one
  // bit for the commands of the table, before anything that costs more.
  if (!filter_.selects(f)) return {};
  // The session's own handshake is left alone unless asked for by name.
  static constexpr std::string_view kHandshake[] = {"AUTH", "HELLO", "SELECT"};
  bool handshake = std::find(std::begin(kHandshake), std::end(kHandshake), f.name) !=
                       std::end(kHandshake) ||
                   (f.name == "CLIENT" && (f.sub == "SETNAME" || f.sub == "SETINFO"));
  if (handshake && !filter_.names_command(f.name, f.sub)) return {};
  if (!applies(f, ctx)) return {};
  // Constructing a Mersenne Twister costs thousands of instructions: never per request.
  static std::mt19937_64 fallback;
  if (!filter_.passes(f, ctx.rng ? *ctx.rng : fallback)) return {};
  RespAction a = act(f, ctx);
  if (a.kind != RespActionKind::Forward) ++injected_;
  return a;
}

namespace {

// One pattern token at p[pi] (never '*': '?', a [class], an escape or a literal) against c, as
// stringmatchlen reads it. Returns the index after the token, or npos if c does not match.
size_t match_token(std::string_view p, size_t pi, char c, bool nocase) {
  auto low = [&](char x) {
    return nocase ? static_cast<char>(std::tolower(static_cast<unsigned char>(x))) : x;
  };
  switch (p[pi]) {
  case '?':
    return pi + 1;
  case '[': {
    ++pi;
    const bool negate = pi < p.size() && p[pi] == '^';
    if (negate) ++pi;
    bool match = false;
    while (pi < p.size() && p[pi] != ']') {
      if (p[pi] == '\\' && pi + 1 < p.size()) {
        ++pi;
        if (p[pi] == c) match = true; // Redis compares escaped class members case-sensitively
      } else if (pi + 2 < p.size() && p[pi + 1] == '-') {
        char a = low(p[pi]), b = low(p[pi + 2]);
        if (a > b) std::swap(a, b);
        if (low(c) >= a && low(c) <= b) match = true;
        pi += 2;
      } else if (low(p[pi]) == low(c)) {
        match = true;
      }
      ++pi;
    }
    // An unterminated class ends the pattern, as in Redis.
    if (negate) match = !match;
    return match ? std::min(pi + 1, p.size()) : std::string_view::npos;
  }
  case '\\':
    if (pi + 1 < p.size()) ++pi;
    [[fallthrough]];
  default:
    return low(p[pi]) == low(c) ? pi + 1 : std::string_view::npos;
  }
}

} // namespace

// Redis's stringmatchlen, same answers, without its recursion: every token but '*' consumes
// exactly one character, so backtracking to the last '*' is enough. As in KEYS and SCAN, a
// lone "*" matches every key; otherwise an empty key matches only the empty pattern (Redis's
// quirk: "**" does not match "").
bool glob_match(std::string_view p, std::string_view s, bool nocase) {
  if (p == "*") return true;
  if (s.empty()) return p.empty();
  constexpr size_t npos = std::string_view::npos;
  size_t pi = 0, si = 0, star_p = npos, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      while (pi < p.size() && p[pi] == '*') ++pi;
      if (pi == p.size()) return true;
      star_p = pi;
      star_s = si;
      continue;
    }
    if (pi < p.size()) {
      size_t next = match_token(p, pi, s[si], nocase);
      if (next != npos) {
        pi = next;
        ++si;
        continue;
      }
    }
    if (star_p == npos) return false;
    pi = star_p;
    si = ++star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

} // namespace faultline::toxics
