#include "observe/record.h"

#include <cstring>
#include <ctime>

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

// Two decimal digits at a time.
constexpr char kDigits2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

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

namespace {

// sdscatrepr without the quotes; with Json, the result is also escaped for a JSON string (every
// backslash doubled, quotes escaped), in one pass.
template <bool Json> void repr_impl(std::string& out, std::string_view s) {
  // Fast path: runs of plain printable bytes are copied at once.
  const char* p = s.data();
  const char* end = p + s.size();
  const char* bs = Json ? "\\\\" : "\\";
  const size_t bsn = Json ? 2 : 1;
  while (p < end) {
    const char* run = p;
    while (p < end && kPlain.v[static_cast<unsigned char>(*p)]) ++p;
    if (p > run) out.append(run, static_cast<size_t>(p - run));
    if (p == end) break;
    unsigned char c = static_cast<unsigned char>(*p++);
    out.append(bs, bsn);
    switch (c) {
    case '\\': out.append(bs, bsn); break;
    case '"':
      if (Json) out += '\\';
      out += '"';
      break;
    case '\n': out += 'n'; break;
    case '\r': out += 'r'; break;
    case '\t': out += 't'; break;
    case '\a': out += 'a'; break;
    case '\b': out += 'b'; break;
    default: {
      char hex[3] = {'x', kHex[c >> 4], kHex[c & 15]};
      out.append(hex, 3);
    }
    }
  }
}

template <bool Json>
void repr_truncated_impl(std::string& out, std::string_view s, uint64_t full_len,
                         size_t max_bytes) {
  bool cut = s.size() > max_bytes;
  if (cut) s = s.substr(0, max_bytes);
  repr_impl<Json>(out, s);
  if (cut || full_len > s.size()) {
    lit(out, "... (");
    append_uint(out, full_len);
    lit(out, " bytes)");
  }
}

} // namespace

void append_repr(std::string& out, std::string_view s) { repr_impl<false>(out, s); }
void append_json_repr(std::string& out, std::string_view s) { repr_impl<true>(out, s); }

void append_repr_truncated(std::string& out, std::string_view s, uint64_t full_len,
                           size_t max_bytes) {
  repr_truncated_impl<false>(out, s, full_len, max_bytes);
}
void append_json_repr_truncated(std::string& out, std::string_view s, uint64_t full_len,
                                size_t max_bytes) {
  repr_truncated_impl<true>(out, s, full_len, max_bytes);
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

void append_uint(std::string& out, uint64_t v) {
  if (v < 10) {
    out += static_cast<char>('0' + v);
    return;
  }
  char buf[20];
  char* p = buf + sizeof buf;
  while (v >= 100) {
    const char* d = kDigits2 + (v % 100) * 2;
    v /= 100;
    *--p = d[1];
    *--p = d[0];
  }
  if (v >= 10) {
    const char* d = kDigits2 + v * 2;
    *--p = d[1];
    *--p = d[0];
  } else {
    *--p = static_cast<char>('0' + v);
  }
  out.append(p, static_cast<size_t>(buf + sizeof buf - p));
}

void append_int(std::string& out, int64_t v) {
  if (v < 0) {
    out += '-';
    append_uint(out, uint64_t(0) - static_cast<uint64_t>(v));
  } else {
    append_uint(out, static_cast<uint64_t>(v));
  }
}

void TimestampFormatter::refresh(uint64_t sec) {
  sec_ = sec;
  time_t t = static_cast<time_t>(sec);
  struct tm tm;
  gmtime_r(&t, &tm);
  std::snprintf(date_, sizeof date_, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void TimestampFormatter::append(std::string& out, uint64_t unix_us) {
  uint64_t sec = unix_us / 1000000;
  if (sec != sec_) refresh(sec);
  char frac[8];
  uint64_t us = unix_us % 1000000;
  for (int i = 5; i >= 0; --i) {
    frac[i] = static_cast<char>('0' + us % 10);
    us /= 10;
  }
  frac[6] = 'Z';
  out.append(date_, 20);
  out.append(frac, 7);
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
  struct tm tm {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  time_t t = timegm(&tm);
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

void append_reply_json(std::string& out, const ReplySummary& r, size_t max_text) {
  using resp::Type;
  lit(out, "{\"type\":\"");
  out += reply_type_name(r);
  out += '"';
  if (r.is_null) {
    out += '}';
    return;
  }
  auto text = [&](uint64_t full) {
    lit(out, ",\"text\":\"");
    append_json_repr_truncated(out, r.text, full, max_text);
    out += '"';
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
      lit(out, ",\"streamed\":true");
    } else {
      lit(out, ",\"len\":");
      append_int(out, r.size);
      text(static_cast<uint64_t>(r.size));
    }
    break;
  case Type::Integer:
    lit(out, ",\"value\":");
    append_int(out, r.integer);
    break;
  case Type::Boolean: out += r.integer ? ",\"value\":true" : ",\"value\":false"; break;
  case Type::Array:
  case Type::Map:
  case Type::Set:
  case Type::Push:
    if (r.streamed) {
      lit(out, ",\"streamed\":true");
    } else {
      lit(out, ",\"count\":");
      append_int(out, r.size);
    }
    if (!r.head.empty()) {
      lit(out, ",\"head\":\"");
      append_json_repr(out, r.head);
      out += '"';
    }
    break;
  default: break;
  }
  out += '}';
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
