#pragma once
// The one place that formats a traffic record: argument escaping (as redis-cli shows values),
// JSON string escaping, timestamps, reply summaries and the redaction of secrets. Pure code:
// no libuv, no sessions, so every piece is testable with strings.
//
// Everything appends to a caller-owned std::string that is cleared and reused, so formatting a
// record in steady state does not allocate.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "resp/parser.h"

namespace faultline::observe {

// What redaction puts in place of a secret argument.
inline constexpr std::string_view kRedacted = "(redacted)";

// Appends `s` as redis-cli prints a bulk string (sdscatrepr), without the surrounding quotes:
// \\ \" \n \r \t \a \b escaped, other bytes outside 0x20..0x7e as \xHH. The output is printable
// ASCII.
void append_repr(std::string& out, std::string_view s);

// append_repr of the first max_bytes bytes; when the value is longer than what is shown
// (`full_len` counts the whole value), appends "... (N bytes)" with the original length.
void append_repr_truncated(std::string& out, std::string_view s, uint64_t full_len,
                           size_t max_bytes);

// The same, escaped for the inside of a JSON string in the same pass (what the JSON record holds:
// decoding the JSON string gives exactly the append_repr text).
void append_json_repr(std::string& out, std::string_view s);
void append_json_repr_truncated(std::string& out, std::string_view s, uint64_t full_len,
                                size_t max_bytes);

// Appends `s` as the inside of a JSON string (RFC 8259 escapes; bytes >= 0x80 are passed as they
// are, which callers avoid by feeding append_repr output).
void append_json_escaped(std::string& out, std::string_view s);

// Appends an unsigned / signed decimal number.
void append_uint(std::string& out, uint64_t v);
void append_int(std::string& out, int64_t v);

// RFC 3339 UTC timestamps with microseconds ("2026-11-29T05:10:00.123456Z"). Caches the part up
// to the second, so consecutive records cost a few digit writes.
class TimestampFormatter {
public:
  void append(std::string& out, uint64_t unix_us);
  // "05:10:00.123456", for the compact text format.
  void append_time_of_day(std::string& out, uint64_t unix_us);

private:
  void refresh(uint64_t sec);
  uint64_t sec_ = UINT64_MAX;
  char date_[64] = {};  // "2026-11-29T05:10:00."
};

// Parses an RFC 3339 timestamp as written above (also without fraction, or with an offset).
// Returns false when it is not one.
bool parse_timestamp(std::string_view ts, uint64_t& unix_us);

// Indexes (into argv, argv[0] being the command name) of arguments that carry a secret: AUTH,
// HELLO ... AUTH, MIGRATE ... AUTH / AUTH2, CONFIG SET requirepass/masterauth (and the TLS key
// passphrases), ACL SETUSER password rules (>, <, #, !), SENTINEL SET ... auth-pass. Bit i set =
// argument i is a secret (only the first 64 arguments are ever shown). `name` and `sub` are
// upper-cased.
uint64_t secret_args(std::string_view name, std::string_view sub,
                     std::span<const std::string_view> argv);

// The reply summary: type plus text, value, length or element count.
struct ReplySummary {
  resp::Type type = resp::Type::None;
  bool is_null = false;
  bool streamed = false;
  int64_t size = 0;             // element count or bulk length
  int64_t integer = 0;          // Integer / Boolean
  std::string_view text;        // first line, error text, or bulk prefix (maybe truncated)
  std::string_view head;        // first element of an aggregate, when a string
  uint64_t bytes = 0;           // size of the reply on the wire
  bool is_error() const { return type == resp::Type::Error || type == resp::Type::BlobError; }
  // "LOADING", "ERR"...; empty when not an error.
  std::string_view error_prefix() const;
};

ReplySummary summarize(const resp::ReplyFrame& f);
// A reply faultline wrote itself (RESP bytes, maybe empty when the client turned replies off).
ReplySummary summarize_injected(std::string_view bytes);

// Name used in records: "simple", "error", "integer", "bulk", "array", "null", "map"...
std::string_view reply_type_name(const ReplySummary& r);

// Appends the "reply" object: {"type":"bulk","len":3,"text":"bar"}.
void append_reply_json(std::string& out, const ReplySummary& r, size_t max_text_bytes);
// Appends the reply as redis-cli would show it, compactly: "bar", (integer) 3, (error) ERR x,
// (nil), (array of 3).
void append_reply_text(std::string& out, const ReplySummary& r, size_t max_text_bytes);

} // namespace faultline::observe
