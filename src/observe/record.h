#pragma once
// The one place that formats a traffic record: argument escaping (as redis-cli shows values),
// JSON string escaping, timestamps, reply summaries and the redaction of secrets. Pure code:
// no libuv, no sessions, so every piece is testable with strings.
//
// Two layers. The write_* functions store through a raw pointer into room the caller made
// beforehand, each with a documented bound on what it writes: a hot record asks for room once
// (RecordBuf::room) and then pays plain stores, not one capacity check and call per piece. The
// append_* functions are the same formatting on a std::string, for the cold paths (events, the
// text format, tests).

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "resp/parser.h"

namespace faultline::observe {

// What redaction puts in place of a secret argument.
inline constexpr std::string_view kRedacted = "(redacted)";

// Upper bounds of what the writers below store, for sizing a record before writing it.
inline constexpr size_t kReprMaxPerByte = 4;      // \xHH
inline constexpr size_t kJsonReprMaxPerByte = 5;  // \\xHH (the backslash doubled for JSON)
inline constexpr size_t kUintMaxChars = 20;       // 18446744073709551615
inline constexpr size_t kIntMaxChars = 20;        // -9223372036854775808
inline constexpr size_t kTruncationMaxChars = 5 + kUintMaxChars + 7; // "... (N bytes)"
inline constexpr size_t kTimestampChars = 27;     // "2026-11-29T05:10:00.123456Z"

// A record being formatted: a byte buffer that a writer asks for room once (`room(n)`: at least
// n bytes writable at the returned pointer), fills with plain stores, and closes with
// `set_end`. Growing keeps the content and, unlike std::string::resize, does not zero the new
// room. Reused record after record, so the steady state does not allocate.
class RecordBuf {
public:
  char* room(size_t n) {
    if (cap_ - size_ < n) grow(n);
    return data_.get() + size_;
  }
  void set_end(const char* end) { size_ = static_cast<size_t>(end - data_.get()); }
  void append(std::string_view s) {
    if (!s.empty()) std::memcpy(room(s.size()), s.data(), s.size());
    size_ += s.size();
  }
  RecordBuf& operator+=(std::string_view s) {
    append(s);
    return *this;
  }
  RecordBuf& operator+=(char c) {
    *room(1) = c;
    ++size_;
    return *this;
  }
  void clear() { size_ = 0; }
  // Drops the first n bytes (a consumed prefix).
  void erase_front(size_t n);
  void swap(RecordBuf& other) noexcept {
    data_.swap(other.data_);
    std::swap(size_, other.size_);
    std::swap(cap_, other.cap_);
  }
  char* data() { return data_.get(); }
  const char* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {data_.get(), size_}; }

private:
  void grow(size_t n);
  std::unique_ptr<char[]> data_;
  size_t size_ = 0, cap_ = 0;
};

// A literal piece (its length known at compile time) and a run of bytes, stored at p.
template <size_t N> inline char* write_lit(char* p, const char (&s)[N]) {
  std::memcpy(p, s, N - 1);
  return p + (N - 1);
}
inline char* write_bytes(char* p, std::string_view s) {
  if (s.empty()) return p;  // an empty view may hold a null pointer: no memcpy from it
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

// Writes `s` as redis-cli prints a bulk string (sdscatrepr), without the surrounding quotes:
// \\ \" \n \r \t \a \b escaped, other bytes outside 0x20..0x7e as \xHH. The output is printable
// ASCII, at most kReprMaxPerByte * s.size() bytes. Returns the end of what was written.
char* write_repr(char* p, std::string_view s);
// The same, escaped for the inside of a JSON string in the same pass (what the JSON record holds:
// decoding the JSON string gives exactly the write_repr text); at most kJsonReprMaxPerByte *
// s.size() bytes.
char* write_json_repr(char* p, std::string_view s);
// write_json_repr of the first max_bytes bytes; when the value is longer than what is shown
// (`full_len` counts the whole value), then "... (N bytes)" with the original length. At most
// kJsonReprMaxPerByte * min(s.size(), max_bytes) + kTruncationMaxChars bytes.
char* write_json_repr_truncated(char* p, std::string_view s, uint64_t full_len, size_t max_bytes);
char* write_repr_truncated(char* p, std::string_view s, uint64_t full_len, size_t max_bytes);

namespace detail {
// Two decimal digits at a time.
inline constexpr char kDigits2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";
char* write_uint_wide(char* p, uint64_t v);
} // namespace detail

// Decimal numbers: at most kUintMaxChars / kIntMaxChars bytes. Most numbers in a record (a
// database, a byte count, an element count) are below 100: those are a store or two, inline.
inline char* write_uint(char* p, uint64_t v) {
  if (v < 10) {
    *p = static_cast<char>('0' + v);
    return p + 1;
  }
  if (v < 100) {
    std::memcpy(p, detail::kDigits2 + v * 2, 2);
    return p + 2;
  }
  return detail::write_uint_wide(p, v);
}
inline char* write_int(char* p, int64_t v) {
  if (v >= 0) return write_uint(p, static_cast<uint64_t>(v));
  *p++ = '-';
  return write_uint(p, uint64_t(0) - static_cast<uint64_t>(v));
}

// The std::string forms of the writers above (the same bytes).
void append_repr(std::string& out, std::string_view s);
void append_repr_truncated(std::string& out, std::string_view s, uint64_t full_len,
                           size_t max_bytes);
void append_json_repr(std::string& out, std::string_view s);
void append_json_repr_truncated(std::string& out, std::string_view s, uint64_t full_len,
                                size_t max_bytes);
void append_json_repr(RecordBuf& out, std::string_view s);
void append_uint(std::string& out, uint64_t v);
void append_int(std::string& out, int64_t v);

// Appends `s` as the inside of a JSON string (RFC 8259 escapes; bytes >= 0x80 are passed as they
// are, which callers avoid by feeding append_repr output).
void append_json_escaped(std::string& out, std::string_view s);

// RFC 3339 UTC timestamps with microseconds ("2026-11-29T05:10:00.123456Z"). Caches the part up
// to the second, so consecutive records cost a few digit writes.
class TimestampFormatter {
public:
  // Writes kTimestampChars bytes.
  char* write(char* p, uint64_t unix_us);
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

// Writes the "reply" object: {"type":"bulk","len":3,"text":"bar"}, at most
// reply_json_bound(r, max_text_bytes) bytes.
size_t reply_json_bound(const ReplySummary& r, size_t max_text_bytes);
char* write_reply_json(char* p, const ReplySummary& r, size_t max_text_bytes);
void append_reply_json(std::string& out, const ReplySummary& r, size_t max_text_bytes);
// Appends the reply as redis-cli would show it, compactly: "bar", (integer) 3, (error) ERR x,
// (nil), (array of 3).
void append_reply_text(std::string& out, const ReplySummary& r, size_t max_text_bytes);

} // namespace faultline::observe
