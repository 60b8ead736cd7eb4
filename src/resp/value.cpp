#include "resp/value.h"

#include <algorithm>
#include <cstring>

namespace faultline::resp {

bool Value::is_aggregate() const {
  switch (type) {
  case Type::Array:
  case Type::Map:
  case Type::Set:
  case Type::Push:
    return true;
  default:
    return false;
  }
}

const std::string* Value::text() const {
  switch (type) {
  case Type::SimpleString:
  case Type::Bulk:
  case Type::Verbatim:
    return is_null ? nullptr : &str;
  default:
    return nullptr;
  }
}

std::string* Value::text() {
  return const_cast<std::string*>(static_cast<const Value*>(this)->text());
}

namespace {

struct Reader {
  const char* p;
  const char* end;

  // The line from p to its CRLF (exclusive); p moves past the CRLF.
  bool line(std::string_view& out) {
    const void* nl = std::memchr(p, '\n', size_t(end - p));
    if (nl == nullptr) return false;
    const char* n = static_cast<const char*>(nl);
    if (n == p || n[-1] != '\r') return false;
    out = {p, size_t(n - 1 - p)};
    p = n + 1;
    return true;
  }
};

// Canonical unsigned decimal ("0", or no leading zero), at most 18 digits.
bool parse_count(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 18 || (s.size() > 1 && s[0] == '0')) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

// Canonical signed 64-bit decimal: no '+', no "-0", no leading zeros.
bool parse_int(std::string_view s, int64_t& out) {
  const bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  if (s.empty() || s.size() > 19 || (s.size() > 1 && s[0] == '0') || (neg && s == "0"))
    return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint64_t(c - '0');
  }
  const uint64_t lim = neg ? uint64_t(INT64_MAX) + 1 : uint64_t(INT64_MAX);
  if (s.size() == 19 && v > lim) return false;  // 19 digits cannot wrap a uint64_t
  out = neg ? int64_t(0 - v) : int64_t(v);
  return true;
}

bool parse(Reader& r, Value& v, int depth);

// The n values of an aggregate at depth `depth` into out.
bool parse_elems(Reader& r, int64_t n, std::vector<Value>& out, int depth) {
  if (depth > kMaxDepth) return false;
  if (n > (r.end - r.p) / 3) return false;  // every value takes at least 3 bytes ("_\r\n")
  out.resize(size_t(n));
  for (Value& e : out)
    if (!parse(r, e, depth)) return false;
  return true;
}

bool parse(Reader& r, Value& v, int depth) {
  if (r.p == r.end) return false;
  const char t = *r.p++;
  std::string_view line;
  if (!r.line(line)) return false;
  int64_t n = 0;
  switch (t) {
  case '+':
    v.type = Type::SimpleString;
    v.str.assign(line);
    return true;
  case '-':
    v.type = Type::Error;
    v.str.assign(line);
    return true;
  case ':':
    v.type = Type::Integer;
    return parse_int(line, v.integer);
  case '_':
    v.type = Type::Null;
    return line.empty();
  case ',':
    v.type = Type::Double;
    v.str.assign(line);
    return !line.empty();
  case '(':
    v.type = Type::BigNumber;
    v.str.assign(line);
    return !line.empty();
  case '#':
    v.type = Type::Boolean;
    v.integer = line == "t";
    return line == "t" || line == "f";
  case '$':
  case '!':
  case '=': {
    v.type = t == '$' ? Type::Bulk : t == '!' ? Type::BlobError : Type::Verbatim;
    if (t == '$' && line == "-1") {
      v.is_null = true;
      return true;
    }
    if (!parse_count(line, n) || n > r.end - r.p - 2) return false;
    std::string_view body(r.p, size_t(n));
    if (r.p[n] != '\r' || r.p[n + 1] != '\n') return false;
    r.p += n + 2;
    if (t == '=') {
      if (body.size() < 4 || body[3] != ':') return false;
      v.format.assign(body.substr(0, 3));
      body.remove_prefix(4);
    }
    v.str.assign(body);
    return true;
  }
  case '*':
  case '~':
  case '>':
  case '%': {
    v.type = t == '*' ? Type::Array : t == '~' ? Type::Set : t == '>' ? Type::Push : Type::Map;
    if (t == '*' && line == "-1") {
      v.is_null = true;
      return true;
    }
    if (!parse_count(line, n)) return false;
    return parse_elems(r, t == '%' ? 2 * n : n, v.elems, depth + 1);
  }
  case '|': {
    if (!parse_count(line, n) || !parse_elems(r, 2 * n, v.attribute, depth + 1)) return false;
    // The value it decorates; one attribute per value (a second one could not be written back).
    Value decorated;
    if (!parse(r, decorated, depth) || decorated.has_attribute) return false;
    decorated.attribute = std::move(v.attribute);
    decorated.has_attribute = true;
    v = std::move(decorated);
    return true;
  }
  default:
    return false;
  }
}

void put_len(char t, int64_t n, std::string& out) {
  out += t;
  out += std::to_string(n);
  out += "\r\n";
}

} // namespace

std::optional<Value> decode(std::string_view bytes, size_t* used) {
  Reader r{bytes.data(), bytes.data() + bytes.size()};
  Value v;
  if (!parse(r, v, 0)) return std::nullopt;
  if (used != nullptr) *used = size_t(r.p - bytes.data());
  return v;
}

void encode(const Value& v, std::string& out) {
  if (v.has_attribute) {
    put_len('|', int64_t(v.attribute.size() / 2), out);
    for (const Value& e : v.attribute) encode(e, out);
  }
  auto line = [&](char t, std::string_view s) {
    out += t;
    out += s;
    out += "\r\n";
  };
  switch (v.type) {
  case Type::SimpleString:
    return line('+', v.str);
  case Type::Error:
    return line('-', v.str);
  case Type::Integer:
    return line(':', std::to_string(v.integer));
  case Type::Null:
  case Type::None:
  case Type::Attribute:
    return line('_', {});
  case Type::Double:
    return line(',', v.str);
  case Type::BigNumber:
    return line('(', v.str);
  case Type::Boolean:
    return line('#', v.integer != 0 ? "t" : "f");
  case Type::Bulk:
    if (v.is_null) return line('$', "-1");
    put_len('$', int64_t(v.str.size()), out);
    out += v.str;
    out += "\r\n";
    return;
  case Type::BlobError:
  case Type::Verbatim: {
    const bool verbatim = v.type == Type::Verbatim;
    put_len(verbatim ? '=' : '!', int64_t(v.str.size() + (verbatim ? 4 : 0)), out);
    if (verbatim) {
      out.append(v.format, 0, 3);
      out.append(3 - std::min<size_t>(3, v.format.size()), ' ');
      out += ':';
    }
    out += v.str;
    out += "\r\n";
    return;
  }
  case Type::Array:
  case Type::Set:
  case Type::Push:
  case Type::Map: {
    if (v.type == Type::Array && v.is_null) return line('*', "-1");
    const char t = v.type == Type::Array ? '*'
                   : v.type == Type::Set ? '~'
                   : v.type == Type::Push ? '>'
                                          : '%';
    put_len(t, int64_t(v.type == Type::Map ? v.elems.size() / 2 : v.elems.size()), out);
    for (const Value& e : v.elems) encode(e, out);
    return;
  }
  }
}

std::string encode(const Value& v) {
  std::string out;
  encode(v, out);
  return out;
}

} // namespace faultline::resp
