#include "observe/record.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace faultline::observe {

namespace {

// A literal piece: its length is known at compile time (no strlen per append).
template <size_t N> inline void lit(std::string& o, const char (&s)[N]) { o.append(s, N - 1); }

constexpr char kHex[] = "0123456789abcdef";

// Bytes sdscatrepr prints as they are (printable ASCII but the backslash and the quote).
struct PlainTable {
  bool v[256];
  constexpr PlainTable() : v() {
    for (int c = 0x20; c <= 0x7e; ++c) v[c] = c != '\\' && c != '"';
  }
};
constexpr PlainTable kPlain;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

void set_bit(uint64_t& mask, size_t i) {
  if (i < 64) mask |= uint64_t(1) << i;
}

} // namespace

void RecordBuf::grow(size_t n) {
  size_t cap = std::max<size_t>({cap_ * 2, size_ + n, 256});
  std::unique_ptr<char[]> bigger(new char[cap]);
  if (size_) std::memcpy(bigger.get(), data_.get(), size_);
  data_ = std::move(bigger);
  cap_ = cap;
}

void RecordBuf::erase_front(size_t n) {
  n = std::min(n, size_);
  std::memmove(data_.get(), data_.get() + n, size_ - n);
  size_ -= n;
}

namespace {

// True when none of the eight bytes of x needs escaping: none below 0x20, above 0x7e, a
// backslash or a quote. Each test is the classic word trick ("has a byte less than n", "has a
// zero byte"), exact about whether some byte matches, which is all that is asked here.
inline bool word_is_plain(uint64_t x) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL, kHighs = 0x8080808080808080ULL;
  uint64_t below_space = (x - kOnes * 0x20) & ~x;
  uint64_t above_tilde = (x + kOnes) | x;
  uint64_t bs = x ^ (kOnes * '\\'), qt = x ^ (kOnes * '"');
  uint64_t is_bs = (bs - kOnes) & ~bs, is_qt = (qt - kOnes) & ~qt;
  return ((below_space | above_tilde | is_bs | is_qt) & kHighs) == 0;
}

// One byte as sdscatrepr shows it; with Json, also escaped for a JSON string (every backslash
// doubled, quotes escaped).
template <bool Json> inline char* repr_byte(char* o, unsigned char c) {
  if (kPlain.v[c]) {
    *o++ = static_cast<char>(c);
    return o;
  }
  *o++ = '\\';
  if (Json) *o++ = '\\';
  switch (c) {
  case '\\':
    *o++ = '\\';
    if (Json) *o++ = '\\';
    break;
  case '"':
    if (Json) *o++ = '\\';
    *o++ = '"';
    break;
  case '\n': *o++ = 'n'; break;
  case '\r': *o++ = 'r'; break;
  case '\t': *o++ = 't'; break;
  case '\a': *o++ = 'a'; break;
  case '\b': *o++ = 'b'; break;
  default:
    *o++ = 'x';
    *o++ = kHex[c >> 4];
    *o++ = kHex[c & 15];
  }
  return o;
}

// sdscatrepr without the quotes. Keys and values are mostly plain text: eight plain bytes are
// recognised and copied with a few word operations, and only a word holding a byte to escape is
// taken byte by byte.
template <bool Json> char* repr_impl(char* o, std::string_view s) {
  const char* p = s.data();
  const char* end = p + s.size();
  while (end - p >= 8) {
    uint64_t x;
    std::memcpy(&x, p, 8);
    if (word_is_plain(x)) {
      std::memcpy(o, &x, 8);
      o += 8;
      p += 8;
      continue;
    }
    for (const char* stop = p + 8; p < stop; ++p)
      o = repr_byte<Json>(o, static_cast<unsigned char>(*p));
  }
  for (; p < end; ++p) o = repr_byte<Json>(o, static_cast<unsigned char>(*p));
  return o;
}

template <bool Json>
char* repr_truncated_impl(char* o, std::string_view s, uint64_t full_len, size_t max_bytes) {
  bool cut = s.size() > max_bytes;
  if (cut) s = s.substr(0, max_bytes);
  o = repr_impl<Json>(o, s);
  if (cut || full_len > s.size()) {
    o = write_lit(o, "... (");
    o = write_uint(o, full_len);
    o = write_lit(o, " bytes)");
  }
  return o;
}

// Runs a writer on a std::string: room for `bound` bytes, then cut back to what was written.
template <class F> void append_with(std::string& out, size_t bound, F&& write) {
  size_t old = out.size();
  out.resize(old + bound);
  char* end = write(out.data() + old);
  out.resize(static_cast<size_t>(end - out.data()));
}

size_t truncated_bound(size_t size, size_t max_bytes, size_t per_byte) {
  return per_byte * std::min(size, max_bytes) + kTruncationMaxChars;
}

} // namespace

char* write_repr(char* p, std::string_view s) { return repr_impl<false>(p, s); }
char* write_json_repr(char* p, std::string_view s) { return repr_impl<true>(p, s); }
char* write_repr_truncated(char* p, std::string_view s, uint64_t full_len, size_t max_bytes) {
  return repr_truncated_impl<false>(p, s, full_len, max_bytes);
}
char* write_json_repr_truncated(char* p, std::string_view s, uint64_t full_len,
                                size_t max_bytes) {
  return repr_truncated_impl<true>(p, s, full_len, max_bytes);
}

void append_repr(std::string& out, std::string_view s) {
  append_with(out, kReprMaxPerByte * s.size(), [&](char* p) { return write_repr(p, s); });
}
void append_json_repr(std::string& out, std::string_view s) {
  append_with(out, kJsonReprMaxPerByte * s.size(), [&](char* p) { return write_json_repr(p, s); });
}
void append_json_repr(RecordBuf& out, std::string_view s) {
  out.set_end(write_json_repr(out.room(kJsonReprMaxPerByte * s.size()), s));
}
void append_repr_truncated(std::string& out, std::string_view s, uint64_t full_len,
                           size_t max_bytes) {
  append_with(out, truncated_bound(s.size(), max_bytes, kReprMaxPerByte),
              [&](char* p) { return write_repr_truncated(p, s, full_len, max_bytes); });
}
void append_json_repr_truncated(std::string& out, std::string_view s, uint64_t full_len,
                                size_t max_bytes) {
  append_with(out, truncated_bound(s.size(), max_bytes, kJsonReprMaxPerByte),
              [&](char* p) { return write_json_repr_truncated(p, s, full_len, max_bytes); });
}

void append_json_escaped(std::string& out, std::string_view s) {
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    const char* run = p;
    while (p < end) {
      unsigned char c = static_cast<unsigned char>(*p);
      if (c < 0x20 || c == '\\' || c == '"') break;
      ++p;
    }
    if (p > run) out.append(run, static_cast<size_t>(p - run));
    if (p == end) break;
    unsigned char c = static_cast<unsigned char>(*p++);
    switch (c) {
    case '\\': lit(out, "\\\\"); break;
    case '"': lit(out, "\\\""); break;
    case '\n': lit(out, "\\n"); break;
    case '\r': lit(out, "\\r"); break;
    case '\t': lit(out, "\\t"); break;
    default: {
      char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
      out.append(u, 6);
    }
    }
  }
}

namespace {
unsigned decimal_digits(uint64_t v) {
  unsigned n = 1;
  for (;;) {
    if (v < 10) return n;
    if (v < 100) return n + 1;
    if (v < 1000) return n + 2;
    if (v < 10000) return n + 3;
    v /= 10000;
    n += 4;
  }
}
} // namespace

char* detail::write_uint_wide(char* p, uint64_t v) {
  // The length first, then the digits from the end, two at a time.
  char* end = p + decimal_digits(v);
  char* q = end;
  while (v >= 100) {
    q -= 2;
    std::memcpy(q, kDigits2 + (v % 100) * 2, 2);
    v /= 100;
  }
  if (v >= 10) std::memcpy(q - 2, kDigits2 + v * 2, 2);
  else q[-1] = static_cast<char>('0' + v);
  return end;
}

void append_uint(std::string& out, uint64_t v) {
  append_with(out, kUintMaxChars, [&](char* p) { return write_uint(p, v); });
}

void append_int(std::string& out, int64_t v) {
  append_with(out, kIntMaxChars, [&](char* p) { return write_int(p, v); });
}

void TimestampFormatter::refresh(uint64_t sec) {
  sec_ = sec;
  time_t t = static_cast<time_t>(sec);
  const std::tm tm = fmt::gmtime(t); // gmtime_r on POSIX, gmtime_s on Windows
  std::snprintf(date_, sizeof date_, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

char* TimestampFormatter::write(char* p, uint64_t unix_us) {
  uint64_t sec = unix_us / 1000000;
  if (sec != sec_) refresh(sec);
  uint32_t us = static_cast<uint32_t>(unix_us % 1000000);
  std::memcpy(p, date_, 20);
  std::memcpy(p + 20, detail::kDigits2 + (us / 10000) * 2, 2);
  std::memcpy(p + 22, detail::kDigits2 + (us / 100 % 100) * 2, 2);
  std::memcpy(p + 24, detail::kDigits2 + (us % 100) * 2, 2);
  p[26] = 'Z';
  return p + kTimestampChars;
}

void TimestampFormatter::append(std::string& out, uint64_t unix_us) {
  append_with(out, kTimestampChars, [&](char* p) { return write(p, unix_us); });
}

void TimestampFormatter::append_time_of_day(std::string& out, uint64_t unix_us) {
  uint64_t sec = unix_us / 1000000;
  if (sec != sec_) refresh(sec);
  out.append(date_ + 11, 9); // "05:10:00."
  char frac[6];
  uint64_t us = unix_us % 1000000;
  for (int i = 5; i >= 0; --i) {
    frac[i] = static_cast<char>('0' + us % 10);
    us /= 10;
  }
  out.append(frac, 6);
}

bool parse_timestamp(std::string_view ts, uint64_t& unix_us) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  auto num = [&](size_t at, size_t n, int& v) {
    if (at + n > ts.size()) return false;
    v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (ts[i] < '0' || ts[i] > '9') return false;
      v = v * 10 + (ts[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, s;
  if (!num(0, 4, y) || ts.size() < 19 || ts[4] != '-' || !num(5, 2, mo) || ts[7] != '-' ||
      !num(8, 2, d) || (ts[10] != 'T' && ts[10] != 't' && ts[10] != ' ') || !num(11, 2, h) ||
      ts[13] != ':' || !num(14, 2, mi) || ts[16] != ':' || !num(17, 2, s))
    return false;
  size_t i = 19;
  uint64_t frac = 0;
  if (i < ts.size() && ts[i] == '.') {
    ++i;
    int digits = 0;
    while (i < ts.size() && ts[i] >= '0' && ts[i] <= '9') {
      if (digits < 6) {
        frac = frac * 10 + static_cast<uint64_t>(ts[i] - '0');
        ++digits;
      }
      ++i;
    }
    if (digits == 0) return false;
    for (; digits < 6; ++digits) frac *= 10;
  }
  int64_t offset_s = 0;
  if (i < ts.size() && (ts[i] == 'Z' || ts[i] == 'z')) {
    ++i;
  } else if (i < ts.size() && (ts[i] == '+' || ts[i] == '-')) {
    int oh, om;
    if (!num(i + 1, 2, oh) || i + 3 >= ts.size() || ts[i + 3] != ':' || !num(i + 4, 2, om))
      return false;
    offset_s = (oh * 3600 + om * 60) * (ts[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return false;
  }
  if (i != ts.size()) return false;
  // What timegm() computes (a day past the month's end rolls over), portably: C++20's calendar.
  namespace c = std::chrono;
  const int months = y * 12 + mo - 1; // month 0 and 13+ roll over too
  const c::sys_days days{c::year{months / 12} / c::month{static_cast<unsigned>(months % 12 + 1)} /
                         c::day{static_cast<unsigned>(d)}};
  const int64_t t = days.time_since_epoch().count() * 86400 + h * 3600 + mi * 60 + s;
  if (t < 0) return false;
  unix_us = static_cast<uint64_t>(int64_t(t) - offset_s) * 1000000 + frac;
  return true;
}

uint64_t secret_args(std::string_view name, std::string_view sub,
                     std::span<const std::string_view> argv) {
  uint64_t mask = 0;
  const size_t n = argv.size();
  if (name == "AUTH") {
    // Like Redis's own redaction: every argument (the user name goes too).
    for (size_t i = 1; i < n; ++i) set_bit(mask, i);
  } else if (name == "HELLO") {
    for (size_t i = 2; i < n; ++i) {
      if (iequals(argv[i], "AUTH")) {
        set_bit(mask, i + 2);
        i += 2;
      } else if (iequals(argv[i], "SETNAME")) {
        i += 1;
      }
    }
  } else if (name == "MIGRATE") {
    for (size_t i = 6; i < n; ++i) {
      if (iequals(argv[i], "AUTH")) {
        set_bit(mask, i + 1);
        i += 1;
      } else if (iequals(argv[i], "AUTH2")) {
        set_bit(mask, i + 1);
        set_bit(mask, i + 2);
        i += 2;
      } else if (iequals(argv[i], "KEYS")) {
        break;
      }
    }
  } else if (name == "CONFIG" && sub == "SET") {
    for (size_t i = 2; i < n; i += 2) {
      std::string_view p = argv[i];
      if (iequals(p, "requirepass") || iequals(p, "masterauth") ||
          iequals(p, "tls-key-file-pass") || iequals(p, "tls-client-key-file-pass"))
        set_bit(mask, i + 1);
    }
  } else if (name == "ACL" && sub == "SETUSER") {
    for (size_t i = 3; i < n; ++i) {
      std::string_view r = argv[i];
      if (!r.empty() && (r[0] == '>' || r[0] == '<' || r[0] == '#' || r[0] == '!'))
        set_bit(mask, i);
    }
  } else if (name == "SENTINEL" && (sub == "SET" || sub == "CONFIG")) {
    for (size_t i = 2; i < n; ++i)
      if (iequals(argv[i], "auth-pass") || iequals(argv[i], "sentinel-pass"))
        set_bit(mask, i + 1);
  }
  return mask;
}

std::string_view ReplySummary::error_prefix() const {
  if (!is_error()) return {};
  size_t sp = text.find_first_of(" \r\n");
  return text.substr(0, sp);
}

ReplySummary summarize(const resp::ReplyFrame& f) {
  ReplySummary r;
  r.type = f.type;
  r.is_null = f.is_null;
  r.streamed = f.streamed;
  r.size = f.size;
  r.integer = f.integer;
  r.text = f.text;
  r.head = f.head;
  r.bytes = f.size_bytes();
  return r;
}

ReplySummary summarize_injected(std::string_view b) {
  ReplySummary r;
  r.bytes = b.size();
  if (b.empty()) return r;
  size_t eol = b.find("\r\n");
  std::string_view line = b.substr(1, eol == std::string_view::npos ? b.size() - 1 : eol - 1);
  auto to_int = [](std::string_view s) {
    int64_t v = 0;
    bool neg = !s.empty() && s[0] == '-';
    for (size_t i = neg ? 1 : 0; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i)
      v = v * 10 + (s[i] - '0');
    return neg ? -v : v;
  };
  auto payload = [&](int64_t len) {
    if (eol == std::string_view::npos || len < 0) return std::string_view();
    std::string_view p = b.substr(eol + 2);
    return p.substr(0, std::min<size_t>(p.size(), static_cast<size_t>(len)));
  };
  switch (b[0]) {
  case '+': r.type = resp::Type::SimpleString; r.text = line; break;
  case '-': r.type = resp::Type::Error; r.text = line; break;
  case ':': r.type = resp::Type::Integer; r.integer = to_int(line); break;
  case ',': r.type = resp::Type::Double; r.text = line; break;
  case '(': r.type = resp::Type::BigNumber; r.text = line; break;
  case '#': r.type = resp::Type::Boolean; r.integer = line == "t"; break;
  case '_': r.type = resp::Type::Null; r.is_null = true; break;
  case '$':
  case '!':
  case '=':
    r.type = b[0] == '$' ? resp::Type::Bulk : b[0] == '!' ? resp::Type::BlobError
                                                          : resp::Type::Verbatim;
    r.size = to_int(line);
    r.is_null = r.size < 0;
    r.text = payload(r.size);
    break;
  case '*':
  case '%':
  case '~':
  case '>':
    r.type = b[0] == '*' ? resp::Type::Array : b[0] == '%' ? resp::Type::Map
                             : b[0] == '~' ? resp::Type::Set : resp::Type::Push;
    r.size = to_int(line);
    r.is_null = r.size < 0;
    break;
  default: r.type = resp::Type::None; break;
  }
  return r;
}

std::string_view reply_type_name(const ReplySummary& r) {
  if (r.is_null) return "null";
  return resp::type_name(r.type);
}

size_t reply_json_bound(const ReplySummary& r, size_t max_text) {
  // The longest fixed parts ({"type":"blob_error","len":N,"text":"..."}, or an aggregate's
  // count and head) fit in 128 bytes with both numbers at their widest.
  return 128 + kJsonReprMaxPerByte * (std::min(r.text.size(), max_text) + r.head.size()) +
         kTruncationMaxChars;
}

char* write_reply_json(char* o, const ReplySummary& r, size_t max_text) {
  using resp::Type;
  o = write_lit(o, "{\"type\":\"");
  o = write_bytes(o, reply_type_name(r));
  *o++ = '"';
  if (r.is_null) {
    *o++ = '}';
    return o;
  }
  auto text = [&](uint64_t full) {
    o = write_lit(o, ",\"text\":\"");
    o = write_json_repr_truncated(o, r.text, full, max_text);
    *o++ = '"';
  };
  switch (r.type) {
  case Type::SimpleString:
  case Type::Error:
  case Type::Double:
  case Type::BigNumber: text(r.text.size()); break;
  case Type::Bulk:
  case Type::BlobError:
  case Type::Verbatim:
    if (r.streamed) {
      o = write_lit(o, ",\"streamed\":true");
    } else {
      o = write_lit(o, ",\"len\":");
      o = write_int(o, r.size);
      text(static_cast<uint64_t>(r.size));
    }
    break;
  case Type::Integer:
    o = write_lit(o, ",\"value\":");
    o = write_int(o, r.integer);
    break;
  case Type::Boolean:
    o = r.integer ? write_lit(o, ",\"value\":true") : write_lit(o, ",\"value\":false");
    break;
  case Type::Array:
  case Type::Map:
  case Type::Set:
  case Type::Push:
    if (r.streamed) {
      o = write_lit(o, ",\"streamed\":true");
    } else {
      o = write_lit(o, ",\"count\":");
      o = write_int(o, r.size);
    }
    if (!r.head.empty()) {
      o = write_lit(o, ",\"head\":\"");
      o = write_json_repr(o, r.head);
      *o++ = '"';
    }
    break;
  default: break;
  }
  *o++ = '}';
  return o;
}

void append_reply_json(std::string& out, const ReplySummary& r, size_t max_text) {
  append_with(out, reply_json_bound(r, max_text),
              [&](char* p) { return write_reply_json(p, r, max_text); });
}

void append_reply_text(std::string& out, const ReplySummary& r, size_t max_text) {
  using resp::Type;
  if (r.is_null) {
    lit(out, "(nil)");
    return;
  }
  switch (r.type) {
  case Type::None: lit(out, "(no reply)"); break;
  case Type::SimpleString: append_repr_truncated(out, r.text, r.text.size(), max_text); break;
  case Type::Error:
  case Type::BlobError:
    lit(out, "(error) ");
    append_repr_truncated(out, r.text, r.type == Type::Error ? r.text.size()
                                                             : static_cast<uint64_t>(r.size),
                          max_text);
    break;
  case Type::Integer:
    lit(out, "(integer) ");
    append_int(out, r.integer);
    break;
  case Type::Boolean: out += r.integer ? "(true)" : "(false)"; break;
  case Type::Double:
  case Type::BigNumber:
    out += r.type == Type::Double ? "(double) " : "(big number) ";
    append_repr(out, r.text);
    break;
  case Type::Bulk:
  case Type::Verbatim:
    if (r.streamed) {
      lit(out, "(streamed string)");
      break;
    }
    out += '"';
    append_repr_truncated(out, r.text, static_cast<uint64_t>(r.size), max_text);
    out += '"';
    break;
  default:
    out += '(';
    out += resp::type_name(r.type);
    if (r.streamed) {
      lit(out, " streamed");
    } else {
      out += ' ';
      append_int(out, r.size);
    }
    if (!r.head.empty()) {
      out += ' ';
      append_repr(out, r.head);
    }
    out += ')';
    break;
  }
}

} // namespace faultline::observe
