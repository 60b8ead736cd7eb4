#include "resp/commands.h"

#include <algorithm>
#include <cstring>

namespace faultline::resp {

using detail::kCommandCount;
using detail::kCommandHash;
using detail::kCommands;

namespace {

const CommandInfo* find_top(std::string_view name, uint32_t fnv) {
  if (name.empty()) return nullptr;
  uint32_t h = fnv & 1023u;
  for (;;) {
    uint16_t i = kCommandHash[h];
    if (i == 0xFFFF) return nullptr;
    const std::string_view n = kCommands[i].name;
    if (n.size() == name.size() && std::memcmp(n.data(), name.data(), n.size()) == 0)
      return &kCommands[i];
    h = (h + 1) & 1023u;
  }
}

const CommandInfo* find_sub(const CommandInfo* top, std::string_view sub) {
  if (sub.empty()) return top;
  const CommandInfo* b = kCommands + top->sub_begin;
  const CommandInfo* e = b + top->sub_count;
  auto it = std::lower_bound(b, e, sub, [](const CommandInfo& c, std::string_view s) {
    return c.sub < s;
  });
  return (it != e && it->sub == sub) ? it : top;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = char(x - 32);
    if (y >= 'a' && y <= 'z') y = char(y - 32);
    if (x != y) return false;
  }
  return true;
}

bool parse_int(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  size_t i = 0;
  bool neg = false;
  if (s[0] == '-') {
    neg = true;
    i = 1;
    if (s.size() == 1) return false;
  }
  int64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = neg ? -v : v;
  return true;
}

} // namespace

const CommandInfo* detail::lookup_hashed(std::string_view upper_name, uint32_t fnv) {
  return find_top(upper_name, fnv);
}

const CommandInfo* lookup(std::string_view upper_name, std::string_view upper_sub) {
  const CommandInfo* top = find_top(upper_name, fnv1a(upper_name));
  if (top == nullptr || top->sub_count == 0) return top;
  return find_sub(top, upper_sub);
}

const CommandInfo* lookup_any_case(std::string_view name, std::string_view sub) {
  char n[64], s[64];
  if (name.size() > sizeof n || sub.size() > sizeof s) return nullptr;
  for (size_t i = 0; i < name.size(); ++i)
    n[i] = (name[i] >= 'a' && name[i] <= 'z') ? char(name[i] - 32) : name[i];
  for (size_t i = 0; i < sub.size(); ++i)
    s[i] = (sub[i] >= 'a' && sub[i] <= 'z') ? char(sub[i] - 32) : sub[i];
  return lookup({n, name.size()}, {s, sub.size()});
}

std::span<const CommandInfo> all_commands() { return {kCommands, kCommandCount}; }

AclCategory category_from_name(std::string_view name) {
  if (!name.empty() && name[0] == '@') name.remove_prefix(1);
  static constexpr std::pair<std::string_view, AclCategory> kNames[] = {
      {"keyspace", AclCategory::Keyspace},   {"read", AclCategory::Read},
      {"write", AclCategory::Write},         {"set", AclCategory::Set},
      {"sortedset", AclCategory::Sortedset}, {"list", AclCategory::List},
      {"hash", AclCategory::Hash},           {"string", AclCategory::String},
      {"bitmap", AclCategory::Bitmap},       {"hyperloglog", AclCategory::Hyperloglog},
      {"geo", AclCategory::Geo},             {"stream", AclCategory::Stream},
      {"pubsub", AclCategory::Pubsub},       {"admin", AclCategory::Admin},
      {"fast", AclCategory::Fast},           {"slow", AclCategory::Slow},
      {"blocking", AclCategory::Blocking},   {"dangerous", AclCategory::Dangerous},
      {"connection", AclCategory::Connection}, {"transaction", AclCategory::Transaction},
      {"scripting", AclCategory::Scripting},
  };
  for (const auto& [n, c] : kNames)
    if (iequals(n, name)) return c;
  return AclCategory::None;
}

int first_key_index(const CommandInfo& cmd, std::span<const std::string_view> argv) {
  const KeySpec& ks = cmd.key_spec;
  const int argc = int(argv.size());
  int pos = -1;
  switch (ks.begin) {
  case BeginSearch::None:
    return -1;
  case BeginSearch::Index:
    pos = ks.begin_arg;
    break;
  case BeginSearch::Keyword: {
    std::string_view kw = ks.keyword;
    if (ks.begin_arg >= 0) {
      for (int i = ks.begin_arg; i < argc; ++i)
        if (iequals(argv[size_t(i)], kw)) {
          pos = i;
          break;
        }
    } else {
      for (int i = argc + ks.begin_arg; i >= 1; --i)
        if (iequals(argv[size_t(i)], kw)) {
          pos = i;
          break;
        }
    }
    if (pos < 0) return -1;
    pos += 1;
    break;
  }
  }
  if (ks.find == FindKeys::Keynum) {
    int npos = pos + ks.find_a;
    if (npos >= argc) return -1;
    int64_t n = 0;
    if (!parse_int(argv[size_t(npos)], n) || n <= 0) return -1;
    pos = pos + ks.find_b;
  }
  return pos < argc ? pos : -1;
}

} // namespace faultline::resp
