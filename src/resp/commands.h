#pragma once
// The Redis command table (generated from redis-server 7 by tools/gen-command-table) and the
// first-key logic the parser and the toxics' command filters share.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace faultline::resp {

// Command flags, as in COMMAND INFO.
enum class CommandFlag : uint32_t {
  None = 0,
  Write = 1u << 0,
  Readonly = 1u << 1,
  Denyoom = 1u << 2,
  Module = 1u << 3,
  Admin = 1u << 4,
  Pubsub = 1u << 5,
  Noscript = 1u << 6,
  Blocking = 1u << 7,
  Loading = 1u << 8,
  Stale = 1u << 9,
  SkipMonitor = 1u << 10,
  SkipSlowlog = 1u << 11,
  Asking = 1u << 12,
  Fast = 1u << 13,
  NoAuth = 1u << 14,
  MayReplicate = 1u << 15,
  Sentinel = 1u << 16,
  OnlySentinel = 1u << 17,
  NoMandatoryKeys = 1u << 18,
  Protected = 1u << 19,
  NoAsyncLoading = 1u << 20,
  NoMulti = 1u << 21,
  Movablekeys = 1u << 22,
  AllowBusy = 1u << 23,
};

// ACL categories (@read, @write, ...), as in COMMAND INFO.
enum class AclCategory : uint32_t {
  None = 0,
  Keyspace = 1u << 0,
  Read = 1u << 1,
  Write = 1u << 2,
  Set = 1u << 3,
  Sortedset = 1u << 4,
  List = 1u << 5,
  Hash = 1u << 6,
  String = 1u << 7,
  Bitmap = 1u << 8,
  Hyperloglog = 1u << 9,
  Geo = 1u << 10,
  Stream = 1u << 11,
  Pubsub = 1u << 12,
  Admin = 1u << 13,
  Fast = 1u << 14,
  Slow = 1u << 15,
  Blocking = 1u << 16,
  Dangerous = 1u << 17,
  Connection = 1u << 18,
  Transaction = 1u << 19,
  Scripting = 1u << 20,
};

constexpr CommandFlag operator|(CommandFlag a, CommandFlag b) {
  return CommandFlag(uint32_t(a) | uint32_t(b));
}
constexpr AclCategory operator|(AclCategory a, AclCategory b) {
  return AclCategory(uint32_t(a) | uint32_t(b));
}

// Commands the pairing state machine treats specially (set by the generator by name).
enum class Special : uint8_t {
  None,
  Multi,
  Exec,
  Discard,
  Watch,
  Unwatch,
  Subscribe,
  Psubscribe,
  Ssubscribe,
  Unsubscribe,
  Punsubscribe,
  Sunsubscribe,
  Ping,
  Monitor,
  ClientReply,
  Hello,
  Reset,
  Quit,
  Select,
  Auth,
};

enum class BeginSearch : uint8_t { None, Index, Keyword };
enum class FindKeys : uint8_t { None, Range, Keynum };

// The first key spec of a command (COMMAND INFO key specs, Redis 7): where the search for keys
// begins (a fixed index, or after a keyword) and how keys are found from there.
struct KeySpec {
  BeginSearch begin = BeginSearch::None;
  int16_t begin_arg = 0;     // Index: argument position; Keyword: startfrom (negative = from end)
  const char* keyword = nullptr;
  FindKeys find = FindKeys::None;
  int16_t find_a = 0;        // Range: lastkey;  Keynum: keynumidx
  int16_t find_b = 0;        // Range: keystep;  Keynum: firstkey
  int16_t find_c = 0;        // Range: limit;    Keynum: keystep
};

struct CommandInfo {
  std::string_view name;     // upper case, e.g. "CLIENT"
  std::string_view sub;      // upper case subcommand, e.g. "REPLY"; empty for a top-level entry
  uint16_t id;               // index in the table, stable for one build
  int16_t arity;             // Redis arity: N exact, -N at least N (counting the name)
  CommandFlag flags;
  AclCategory categories;
  int16_t first_key, last_key, key_step;  // legacy COMMAND INFO key positions
  KeySpec key_spec;
  uint16_t sub_begin, sub_count;          // subcommand entries in the table (containers only)
  Special special;

  bool has(CommandFlag f) const { return (uint32_t(flags) & uint32_t(f)) != 0; }
  bool in(AclCategory c) const { return (uint32_t(categories) & uint32_t(c)) != 0; }
  bool is_container() const { return sub_count != 0; }
  bool is_write() const { return in(AclCategory::Write); }
  bool is_read() const { return in(AclCategory::Read); }
  bool is_blocking() const { return in(AclCategory::Blocking); }
  bool is_pubsub() const { return in(AclCategory::Pubsub); }
  bool is_admin() const { return in(AclCategory::Admin); }
  bool is_keyspace() const { return in(AclCategory::Keyspace); }
};

// Looks up an upper-cased command name, and the upper-cased subcommand for container commands.
// For a container with an unknown or empty subcommand the container itself is returned; for an
// unknown name, nullptr. Costs one FNV-1a hash over the name.
const CommandInfo* lookup(std::string_view upper_name, std::string_view upper_sub = {});

// Case-insensitive variant for callers holding raw arguments (config, tests, API filters).
const CommandInfo* lookup_any_case(std::string_view name, std::string_view sub = {});

// The whole table, sorted by (name, sub).
std::span<const CommandInfo> all_commands();

// Parses "@write" / "write" into a category; None when unknown.
AclCategory category_from_name(std::string_view name);

// FNV-1a, as used by the generated hash index.
constexpr uint32_t fnv1a(std::string_view s) {
  uint32_t h = 2166136261u;
  for (char c : s) h = (h ^ uint8_t(c)) * 16777619u;
  return h;
}

// Position of the first key in argv (argv[0] is the command name), following COMMAND GETKEYS
// semantics for the first key spec: fixed index, keyword search (XREAD ... STREAMS k),
// key count arguments (EVAL script numkeys k). `arg(i)` returns argument i or nullopt-like
// empty when not available; returns -1 when the command has no key in this argv.
// Used by the parser incrementally; exposed for callers that hold a full argv.
int first_key_index(const CommandInfo& cmd, std::span<const std::string_view> argv);

namespace detail {
// lookup() of a top-level name whose FNV-1a the caller computed while upper-casing it.
const CommandInfo* lookup_hashed(std::string_view upper_name, uint32_t fnv);
extern const CommandInfo kCommands[];
extern const size_t kCommandCount;
extern const uint16_t kCommandHash[1024];
} // namespace detail

} // namespace faultline::resp
