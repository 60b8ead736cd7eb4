#include "resp/parser.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace faultline::resp {

namespace {

enum Role : uint8_t {
  kName = 1,
  kSub = 2,
  kKey = 4,
  kNumkeys = 8,
  kKeyword = 16,
  kCapture = 32,
  kToken = kName | kSub | kNumkeys | kKeyword,  // roles that need the first 32 bytes
};

constexpr size_t kTok = 32;

inline char upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 32) : c; }

using detail::fast_len;

inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

inline int hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool iequals_upper(std::string_view upper_kw, const char* s, size_t n) {
  if (n != upper_kw.size()) return false;
  for (size_t i = 0; i < n; ++i)
    if (upper(s[i]) != upper_kw[i]) return false;
  return true;
}

bool parse_small_int(const char* s, size_t n, int64_t& out) {
  if (n == 0 || n > 18) return false;
  size_t i = 0;
  bool neg = s[0] == '-';
  if (neg && (i = 1) == n) return false;
  int64_t v = 0;
  for (; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = neg ? -v : v;
  return true;
}

// Redis's sdssplitargs(): splits an inline command line into arguments, decoding "..." (with
// \xHH, \n, \r, \t, \b, \a escapes) and '...' (with \' only). A closing quote must be followed
// by a space or the end. A NUL byte ends the line, as in the C original. Writes the decoded
// bytes to out (at most n bytes) and their views to argv. False on unbalanced quotes.
bool split_args(const char* line, size_t n, char* out, std::vector<std::string_view>& argv) {
  auto at = [&](size_t k) -> char { return k < n ? line[k] : '\0'; };
  size_t i = 0;
  for (;;) {
    while (at(i) != '\0' && is_space(at(i))) ++i;
    if (at(i) == '\0') return true;
    bool inq = false, insq = false, done = false;
    char* start = out;
    while (!done) {
      char c = at(i);
      if (inq) {
        if (c == '\\' && at(i + 1) == 'x' && hex_val(at(i + 2)) >= 0 && hex_val(at(i + 3)) >= 0) {
          *out++ = char(hex_val(at(i + 2)) * 16 + hex_val(at(i + 3)));
          i += 3;
        } else if (c == '\\' && at(i + 1) != '\0') {
          ++i;
          switch (at(i)) {
          case 'n': *out++ = '\n'; break;
          case 'r': *out++ = '\r'; break;
          case 't': *out++ = '\t'; break;
          case 'b': *out++ = '\b'; break;
          case 'a': *out++ = '\a'; break;
          default: *out++ = at(i); break;
          }
        } else if (c == '"') {
          if (at(i + 1) != '\0' && !is_space(at(i + 1))) return false;
          done = true;
        } else if (c == '\0') {
          return false;
        } else {
          *out++ = c;
        }
      } else if (insq) {
        if (c == '\\' && at(i + 1) == '\'') {
          ++i;
          *out++ = '\'';
        } else if (c == '\'') {
          if (at(i + 1) != '\0' && !is_space(at(i + 1))) return false;
          done = true;
        } else if (c == '\0') {
          return false;
        } else {
          *out++ = c;
        }
      } else {
        switch (c) {
        case ' ': case '\n': case '\r': case '\t': case '\0': done = true; break;
        case '"': inq = true; break;
        case '\'': insq = true; break;
        default: *out++ = c; break;
        }
      }
      if (at(i) != '\0') ++i;
    }
    argv.emplace_back(start, size_t(out - start));
  }
}

} // namespace

const char* type_name(Type t) {
  switch (t) {
  case Type::None: return "none";
  case Type::SimpleString: return "simple";
  case Type::Error: return "error";
  case Type::Integer: return "integer";
  case Type::Bulk: return "bulk";
  case Type::Array: return "array";
  case Type::Null: return "null";
  case Type::Double: return "double";
  case Type::Boolean: return "boolean";
  case Type::BlobError: return "blob_error";
  case Type::Verbatim: return "verbatim";
  case Type::BigNumber: return "big_number";
  case Type::Map: return "map";
  case Type::Set: return "set";
  case Type::Attribute: return "attribute";
  case Type::Push: return "push";
  }
  return "?";
}

std::string_view ReplyFrame::error_prefix() const {
  if (!is_error()) return {};
  size_t sp = text.find_first_of(" \r\n");
  return text.substr(0, sp);
}

// --- number lines -------------------------------------------------------------------------

detail::ParserBase::Num detail::ParserBase::read_number(const char*& p, const char* end,
                                                        bool allow_q) {
  while (p < end) {
    char c = *p;
    if (num_cr_) {
      if (c != '\n') {
        fail(pos(p), "expected CRLF");
        return Num::Bad;
      }
      ++p;
      return Num::Done;
    }
    if (c >= '0' && c <= '9' && !num_q_) {
      if (num_digits_ == 19) {
        fail(pos(p), "number too long");
        return Num::Bad;
      }
      num_val_ = num_val_ * 10 + (c - '0');
      ++num_digits_;
    } else if (c == '\r' && (num_digits_ > 0 || num_q_)) {
      // 19 digits fit in uint64 but not always in int64 (2^63 only as a negative value).
      if (num_val_ > uint64_t(INT64_MAX) + (num_neg_ ? 1 : 0)) {
        fail(pos(p), "number out of range");
        return Num::Bad;
      }
      num_cr_ = true;
    } else if (c == '-' && num_digits_ == 0 && !num_neg_ && !num_q_) {
      num_neg_ = true;
    } else if (c == '?' && allow_q && num_digits_ == 0 && !num_neg_ && !num_q_) {
      num_q_ = true;
    } else {
      fail(pos(p), "invalid number");
      return Num::Bad;
    }
    ++p;
  }
  return Num::More;
}

// --- requests ------------------------------------------------------------------------------

namespace {
CaptureOptions request_capture(CaptureOptions c) {
  c.max_args = std::max<uint32_t>(c.max_args, 3);
  c.arg_cap_bytes = std::max<uint32_t>(c.arg_cap_bytes, 16);
  return c;
}
CaptureOptions reply_capture(CaptureOptions c) {
  c.text_cap_bytes = std::max<uint32_t>(c.text_cap_bytes, 8);
  return c;
}
} // namespace

size_t RequestParser::storage_bytes(const CaptureOptions& capture) {
  const CaptureOptions c = request_capture(capture);
  return ArrayStorage<Arg>::room_bytes(c.max_args) +
         ArrayStorage<char>::room_bytes(size_t(c.max_args + 1) * c.arg_cap_bytes);
}

RequestParser::RequestParser(const Limits& limits, const CaptureOptions& capture, Room* room)
    : limits_(limits), cap_(request_capture(capture)), args_(cap_.max_args, room),
      arena_(size_t(cap_.max_args + 1) * cap_.arg_cap_bytes, room) {
  key_slot_ = arena_.get() + size_t(cap_.max_args) * cap_.arg_cap_bytes;
}

void RequestParser::reset_frame() {
  argc_ = 0;
  arg_idx_ = 0;
  name_len_ = 0;
  sub_len_ = 0;
  cmd_ = nullptr;
  want_sub_ = false;
  key_pos_ = -1;
  numkeys_pos_ = -1;
  key_after_numkeys_ = -1;
  kw_from_ = kw_to_ = -1;
  kw_last_ = false;
  has_key_ = false;
}

void RequestParser::set_name(const char* data, size_t n) {
  size_t k = std::min(n, sizeof name_);
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < k; ++i) {
    const char c = upper(data[i]);
    name_[i] = c;
    h = (h ^ uint8_t(c)) * 16777619u;
  }
  name_len_ = uint8_t(k);
  cmd_ = n <= sizeof name_ ? detail::lookup_hashed({name_, k}, h) : nullptr;
}

void RequestParser::set_sub(const char* data, size_t n) {
  size_t k = std::min(n, sizeof sub_);
  for (size_t i = 0; i < k; ++i) sub_[i] = upper(data[i]);
  sub_len_ = uint8_t(k);
  if (n <= sizeof sub_) cmd_ = lookup({name_, name_len_}, {sub_, k});
}

// Works out which argument holds the first key once the command (and subcommand) is known.
void RequestParser::plan_keys() {
  if (cmd_ == nullptr) return;
  const KeySpec& ks = cmd_->key_spec;
  if (ks.begin == BeginSearch::None) return;
  if (ks.begin == BeginSearch::Keyword) {
    kw_ = ks.keyword;
    if (ks.begin_arg >= 0) {
      kw_from_ = ks.begin_arg;
      kw_to_ = argc_ - 1;
    } else {
      kw_from_ = 1;
      kw_to_ = argc_ + ks.begin_arg;
      kw_last_ = true;
    }
    return;
  }
  if (ks.find == FindKeys::Keynum) {
    numkeys_pos_ = ks.begin_arg + ks.find_a;
    key_after_numkeys_ = ks.begin_arg + ks.find_b;
  } else {
    key_pos_ = ks.begin_arg;
  }
}

void RequestParser::begin_arg(const char* p, const char* end) {
  const int64_t i = arg_idx_;
  uint8_t r = 0;
  if (i == 0) r |= kName;
  else if (i == 1 && want_sub_) r |= kSub;
  if (i == key_pos_) r |= kKey;
  if (i == numkeys_pos_) r |= kNumkeys;
  if (kw_from_ >= 0 && i >= kw_from_ && i <= kw_to_ && size_t(arg_len_) == kw_.size())
    r |= kKeyword;
  if (i < int64_t(cap_.max_args)) r |= kCapture;
  roles_ = r;
  acc_len_ = 0;
  if (end - p >= arg_len_) {
    finish_arg(p, size_t(arg_len_), true);
  }
}

// Spanning argument: keep the bounded prefixes each role needs.
void RequestParser::arg_bytes(const char* p, size_t n) {
  const uint32_t cap = cap_.arg_cap_bytes;
  if (acc_len_ >= std::max<uint32_t>(cap, kTok)) {
    acc_len_ = std::max<uint32_t>(cap, kTok);
    return;
  }
  if (roles_ & kToken && acc_len_ < kTok) {
    size_t k = std::min<size_t>(n, kTok - acc_len_);
    std::memcpy(tok_ + acc_len_, p, k);
  }
  if (roles_ & (kCapture | kKey) && acc_len_ < cap) {
    char* slot = (roles_ & kCapture) ? arena_.get() + size_t(arg_idx_) * cap : key_slot_;
    size_t k = std::min<size_t>(n, cap - acc_len_);
    std::memcpy(slot + acc_len_, p, k);
  }
  acc_len_ += uint32_t(std::min<size_t>(n, 1u << 20));
}

void RequestParser::finish_arg(const char* data, size_t n, bool view) {
  const uint8_t r = roles_;
  const uint32_t cap = cap_.arg_cap_bytes;
  if (r & (kCapture | kKey)) {
    Arg a;
    if (view) {
      a = {{data, n}, n};
    } else {
      const char* slot = (r & kCapture) ? arena_.get() + size_t(arg_idx_) * cap : key_slot_;
      a = {{slot, std::min<size_t>(n, cap)}, n};
    }
    if (r & kCapture) args_[size_t(arg_idx_)] = a;
    if (r & kKey) {
      key_ = a;
      has_key_ = true;
    }
  }
  if (!(r & kToken)) return;
  const char* tok = view ? data : tok_;
  size_t tn = std::min(n, kTok);
  if (r & kName) {
    set_name(tok, n > kTok ? kTok + 1 : n);  // > 32 bytes: truncated, unknown
    name_len_ = uint8_t(std::min(n, sizeof name_));
    if (cmd_ != nullptr && cmd_->is_container() && argc_ > 1)
      want_sub_ = true;
    else
      plan_keys();
  }
  if (r & kSub) {
    set_sub(tok, n > kTok ? kTok + 1 : n);
    sub_len_ = uint8_t(std::min(n, sizeof sub_));
    plan_keys();
  }
  if (r & kNumkeys) {
    int64_t nk = 0;
    if (n <= kTok && parse_small_int(tok, tn, nk) && nk > 0) key_pos_ = key_after_numkeys_;
  }
  if ((r & kKeyword) && iequals_upper(kw_, tok, n)) {
    key_pos_ = arg_idx_ + 1;
    if (!kw_last_) kw_from_ = -1;  // first match wins
  }
}

void RequestParser::emit(uint64_t end, Callback cb, void* ctx) {
  RequestFrame f;
  f.start = frame_start_;
  f.end = end;
  f.argc = uint64_t(argc_);
  f.name = {name_, name_len_};
  f.sub = {sub_, sub_len_};
  f.cmd = cmd_;
  f.has_key = has_key_;
  if (has_key_) f.key = key_;
  f.args = {args_.get(), size_t(std::min<int64_t>(argc_, cap_.max_args))};
  f.simple = is_simple();
  cb(ctx, f);
  reset_frame();
}

bool RequestParser::partial_frame(RequestFrame& f) const {
  if (state_ == St::Start || state_ == St::Inline) return false;
  f = RequestFrame{};
  f.start = frame_start_;
  f.argc = uint64_t(std::max<int64_t>(argc_, 0));
  f.name = {name_, name_len_};
  f.sub = {sub_, sub_len_};
  f.cmd = cmd_;
  f.has_key = has_key_;
  if (has_key_) f.key = key_;
  int64_t done = arg_idx_ + ((state_ == St::BulkCR || state_ == St::BulkLF) ? 1 : 0);
  if (state_ == St::MbCount) done = 0;
  f.args = {args_.get(), size_t(std::min<int64_t>(done, cap_.max_args))};
  f.simple = done > 0 && is_simple();
  return true;
}

// A frame continues in the next chunk: views into this chunk become bounded copies.
void RequestParser::materialize(const char* chunk, size_t len) {
  auto in_chunk = [&](const Arg& a) {
    return a.data.data() >= chunk && a.data.data() < chunk + len;
  };
  const uint32_t cap = cap_.arg_cap_bytes;
  int64_t done = arg_idx_ + ((state_ == St::BulkCR || state_ == St::BulkLF) ? 1 : 0);
  done = std::min<int64_t>(done, cap_.max_args);
  for (int64_t j = 0; j < done; ++j) {
    Arg& a = args_[size_t(j)];
    if (in_chunk(a)) {
      char* slot = arena_.get() + size_t(j) * cap;
      size_t k = std::min<size_t>(a.data.size(), cap);
      std::memmove(slot, a.data.data(), k);
      a.data = {slot, k};
    }
  }
  if (has_key_ && in_chunk(key_)) {
    size_t k = std::min<size_t>(key_.data.size(), cap);
    std::memmove(key_slot_, key_.data.data(), k);
    key_.data = {key_slot_, k};
  }
}

bool RequestParser::inline_line(const char* line, size_t n, uint64_t line_start,
                                uint64_t line_end, Callback cb, void* ctx) {
  if (n > 0 && line[n - 1] == '\r') --n;
  if (inline_buf_.size() < n) inline_buf_.resize(n);
  inline_argv_.clear();
  if (!split_args(line, n, inline_buf_.data(), inline_argv_)) {
    fail(line_start, "unbalanced quotes in inline request");
    return false;
  }
  reset_frame();
  argc_ = int64_t(inline_argv_.size());
  if (argc_ > 0) {
    set_name(inline_argv_[0].data(), inline_argv_[0].size());
    if (cmd_ != nullptr && cmd_->is_container() && argc_ > 1)
      set_sub(inline_argv_[1].data(), inline_argv_[1].size());
    if (cmd_ != nullptr) {
      int k = first_key_index(*cmd_, inline_argv_);
      if (k > 0) {
        has_key_ = true;
        key_ = {inline_argv_[size_t(k)], inline_argv_[size_t(k)].size()};
      }
    }
    size_t m = std::min<size_t>(inline_argv_.size(), cap_.max_args);
    for (size_t j = 0; j < m; ++j) args_[j] = {inline_argv_[j], inline_argv_[j].size()};
  }
  RequestFrame f;
  f.start = line_start;
  f.end = line_end;
  f.argc = uint64_t(argc_);
  f.name = {name_, name_len_};
  f.sub = {sub_, sub_len_};
  f.cmd = cmd_;
  f.has_key = has_key_;
  if (has_key_) f.key = key_;
  f.args = {args_.get(), size_t(std::min<int64_t>(argc_, cap_.max_args))};
  f.is_inline = true;
  f.simple = is_simple();
  cb(ctx, f);
  reset_frame();
  return true;
}

// set_name() for the fast path: the name and command it leaves in the parser's frame state
// are cleared again, or a frame the state machine parses next (an empty multibulk, *0) would
// carry them (found by the request fuzzer).
const CommandInfo* RequestParser::lookup_name(const char* d, size_t n) {
  set_name(d, n);
  const CommandInfo* found = cmd_;
  name_len_ = 0;
  cmd_ = nullptr;
  return found;
}

// How the fast path takes a command: its first key at a fixed index (or none), or through
// fast_frame_roles() (keyword and key-count specs, containers with arguments, unknown names).
RequestParser::NameCache RequestParser::cache_entry(const CommandInfo* cmd) {
  NameCache e;
  e.cmd = cmd;
  if (cmd == nullptr) {
    e.roles = true;
    return e;
  }
  e.container = cmd->is_container();
  const KeySpec& ks = cmd->key_spec;
  if (ks.begin == BeginSearch::Index && ks.find != FindKeys::Keynum) e.key_pos = ks.begin_arg;
  else if (ks.begin != BeginSearch::None) e.roles = true;
  e.simple = cmd->special == Special::None;
  return e;
}

const RequestParser::NameCache& RequestParser::cache_fill(NameCache& slot, const char* d,
                                                          size_t n, uint64_t w0, uint64_t w1) {
  const CommandInfo* found = lookup_name(d, n);
  if (found == nullptr) return unknown_;
  slot = cache_entry(found);
  slot.w0 = w0;
  slot.w1 = w1;
  slot.len = uint8_t(n);
  return slot;
}

const RequestParser::NameCache& RequestParser::lookup_uncached(const char* d, size_t n) {
  const CommandInfo* found = n > kTok ? nullptr : lookup_name(d, n);
  if (found == nullptr) return unknown_;
  scratch_ = cache_entry(found);
  return scratch_;
}

// Remembers the frame start [p, q) (through the name's CRLF) when it fits two words and the
// chunk holds both: a later frame that starts with the same bytes skips the first two header
// lines and the name lookup.
void RequestParser::learn_prefix(const char* p, const char* q, const char* end, int64_t n,
                                 const char* d, const NameCache& c) {
  if constexpr (std::endian::native == std::endian::little) {
    const size_t size = size_t(q - p);
    if (size > 16 || end - p < 16 || n > int64_t(UINT32_MAX)) return;
    const uint64_t w0 = detail::load64(p), w1 = detail::load64(p + 8);
    const uint64_t mask = size == 16 ? ~uint64_t(0) : (uint64_t(1) << (8 * (size - 8))) - 1;
    Prefix& e = prefixes_[prefix_slot(w0, w1)];
    e.w0 = w0;
    e.w1 = w1 & mask;
    e.mask = mask;
    e.cmd = c.cmd;
    e.argc = uint32_t(n);
    e.size = uint8_t(size);
    e.name_at = uint8_t(d - p);
    e.name_len = uint8_t(q - d - 2);
    e.simple = c.simple;
    e.key_pos = c.key_pos;
    e.shape = Shape{};  // a shape belongs to the prefix it was learnt under
  }
}

// Out of line, one loop per window count: the values in registers and one branch per frame
// (inlined into the session's chunk handler, a general loop spilled them).
namespace {
template <size_t N, class Prefix>
const char* run_end_n(const Prefix& e, const char* p, const char* end) {
  const auto& sh = e.shape;
  const size_t size = sh.size, need = std::max<size_t>(size, 16);
  const uint64_t w0 = e.w0, w1 = e.w1, mask = e.mask;
  size_t at[N + 1];
  uint64_t m[N + 1], v[N + 1];
  for (size_t k = 0; k < N; ++k) {
    at[k] = sh.at[k];
    m[k] = sh.mask[k];
    v[k] = sh.value[k];
  }
  while (size_t(end - p) >= need) {
    uint64_t diff = (detail::load64(p) ^ w0) | ((detail::load64(p + 8) & mask) ^ w1);
    for (size_t k = 0; k < N; ++k) diff |= (detail::load64(p + at[k]) & m[k]) ^ v[k];
    if (diff != 0) break;
    p += size;
  }
  return p;
}
} // namespace

const char* RequestParser::run_end(const Prefix& e, const char* p, const char* end) {
  static_assert(kShapeWindows == 6);
  switch (e.shape.windows) {
  case 0: return run_end_n<0>(e, p, end);
  case 1: return run_end_n<1>(e, p, end);
  case 2: return run_end_n<2>(e, p, end);
  case 3: return run_end_n<3>(e, p, end);
  case 4: return run_end_n<4>(e, p, end);
  case 5: return run_end_n<5>(e, p, end);
  default: return run_end_n<6>(e, p, end);
  }
}

void RequestParser::learn_shape(Prefix& e, const char* p, const char* end) {
  Shape sh;
  sh.misses = e.shape.misses;
  const size_t size = size_t(end - p);
  bool fits = size <= UINT16_MAX;
  // Windows over [a, b), 8 <= b <= size: 8-byte loads that never reach past b.
  auto window = [&](size_t a, size_t b) {
    for (size_t o = a; o < b && fits; o += 8) {
      if (sh.windows == kShapeWindows) {
        fits = false;
        return;
      }
      const size_t w = std::min(o, b - 8);
      uint64_t mask = 0;
      for (size_t i = std::max(a, w); i < std::min(b, w + 8); ++i)
        mask |= uint64_t(0xFF) << (8 * (i - w));
      sh.at[sh.windows] = uint16_t(w);
      sh.mask[sh.windows] = mask;
      sh.value[sh.windows] = detail::load64(p + w) & mask;
      ++sh.windows;
    }
  };
  // The structural bytes after the prefix: each argument's header line, with the CRLF that
  // closed the argument before it.
  size_t seg = e.size;
  const char* r = p + e.size;
  for (int64_t i = 1; i < int64_t(e.argc) && fits; ++i) {
    int64_t len = 0;
    const char* d = detail::header_line(r, end, '$', len);
    if (d == nullptr || end - d < len + 2) {
      fits = false;
      break;
    }
    if (i == e.key_pos) {
      sh.key_at = int32_t(d - p);
      sh.key_len = uint16_t(len);
    }
    window(seg, size_t(d - p));
    seg = size_t(d - p) + size_t(len);
    r = d + len + 2;
  }
  // The last argument's CRLF; with no argument the name's, which the prefix already holds
  // (the frame is the prefix: no window, its size says it all).
  if (fits && e.argc > 1) window(seg, seg + 2);
  if (!fits || r != end || (sh.windows == 0 && e.argc > 1)) {
    e.shape = Shape{};
    e.shape.misses = sh.misses;
    return;
  }
  sh.size = uint32_t(size);
  e.shape = sh;
}

// fast_frames() for commands whose arguments play roles (subcommand, keyword, key count).
const char* RequestParser::fast_frame_roles(const char* p, const char* end, Callback cb,
                                            void* ctx) {
  int64_t n = 0;
  const char* q = fast_len(p + 1, end, n);
  if (q == nullptr || n <= 0 || n > limits_.max_elements) return nullptr;
  frame_start_ = pos(p);
  argc_ = n;
  for (int64_t i = 0; i < n; ++i) {
    int64_t len = 0;
    const char* d;
    if (q >= end || *q != '$' || (d = fast_len(q + 1, end, len)) == nullptr ||
        len > limits_.max_bulk_len || end - d < len + 2 || d[len] != '\r' || d[len + 1] != '\n') {
      reset_frame();
      return nullptr;
    }
    arg_idx_ = i;
    arg_len_ = len;
    begin_arg(d, end);
    q = d + len + 2;
  }
  emit(pos(q), cb, ctx);
  return q;
}

// The state machine: every byte, whatever the chunking. It returns after each frame it
// completes, so that feed() can take the frames after it through the fast path again.
const char* RequestParser::step(const char* p, const char* end, Callback cb, void* ctx) {
  while (p < end) {
    switch (state_) {
    case St::Start:
      if (*p == '*') {
        frame_start_ = pos(p);
        ++p;
        reset_number();
        state_ = St::MbCount;
      } else {
        frame_start_ = pos(p);
        line_.clear();
        state_ = St::Inline;
      }
      break;
    case St::MbCount: {
      Num r = read_number(p, end, false);
      if (r == Num::More) break;
      if (r == Num::Bad) return nullptr;
      const int64_t n = num_value();
      if (n > limits_.max_elements) {
        fail(pos(p) - 1, "too many arguments");
        return nullptr;
      }
      if (n <= 0) {  // Redis ignores *0 and *-1: no command, no reply
        state_ = St::Start;
        emit(pos(p), cb, ctx);
        return p;
      }
      argc_ = n;
      arg_idx_ = 0;
      state_ = St::BulkHdr;
      break;
    }
    case St::BulkHdr:
      if (*p != '$') {
        fail(pos(p), "expected '$'");
        return nullptr;
      }
      ++p;
      reset_number();
      state_ = St::BulkLen;
      break;
    case St::BulkLen: {
      Num r = read_number(p, end, false);
      if (r == Num::More) break;
      if (r == Num::Bad) return nullptr;
      if (num_neg_ || num_val_ > uint64_t(limits_.max_bulk_len)) {
        fail(pos(p) - 1, "invalid bulk length");
        return nullptr;
      }
      arg_len_ = arg_left_ = int64_t(num_val_);
      begin_arg(p, end);
      if (end - p >= arg_len_) {
        p += arg_len_;
        state_ = St::BulkCR;
      } else {
        state_ = St::BulkData;
      }
      break;
    }
    case St::BulkData: {
      size_t take = size_t(std::min<int64_t>(end - p, arg_left_));
      if (roles_ != 0) arg_bytes(p, take);
      p += take;
      arg_left_ -= int64_t(take);
      if (arg_left_ == 0) {
        finish_arg(nullptr, size_t(arg_len_), false);
        state_ = St::BulkCR;
      }
      break;
    }
    case St::BulkCR:
      if (*p != '\r') {
        fail(pos(p), "expected CRLF after bulk");
        return nullptr;
      }
      ++p;
      state_ = St::BulkLF;
      break;
    case St::BulkLF:
      if (*p != '\n') {
        fail(pos(p), "expected CRLF after bulk");
        return nullptr;
      }
      ++p;
      if (++arg_idx_ == argc_) {
        state_ = St::Start;
        emit(pos(p), cb, ctx);
        return p;
      } else {
        state_ = St::BulkHdr;
      }
      break;
    case St::Inline: {
      const size_t have = line_.size();
      const size_t allowed = limits_.max_inline_len - have;  // bytes allowed before '\n'
      const size_t avail = size_t(end - p);
      const size_t scan = std::min(avail, allowed + 1);
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', scan));
      if (nl == nullptr) {
        if (avail > allowed) {
          fail(pos(p + allowed), "inline request too long");
          return nullptr;
        }
        line_.append(p, avail);
        p = end;
        break;
      }
      uint64_t line_end = pos(nl + 1);
      bool ok;
      if (have == 0) {
        ok = inline_line(p, size_t(nl - p), frame_start_, line_end, cb, ctx);
      } else {
        line_.append(p, size_t(nl - p));
        ok = inline_line(line_.data(), line_.size(), frame_start_, line_end, cb, ctx);
        line_.clear();
      }
      if (!ok) return nullptr;
      state_ = St::Start;
      return nl + 1;
    }
    }
  }
  return p;
}

// --- replies -------------------------------------------------------------------------------

size_t ReplyParser::storage_bytes(const CaptureOptions& capture) {
  return ArrayStorage<char>::room_bytes(reply_capture(capture).text_cap_bytes);
}

ReplyParser::ReplyParser(const Limits& limits, const CaptureOptions& capture, Room* room)
    : limits_(limits), cap_(reply_capture(capture)), text_(cap_.text_cap_bytes, room) {}

void ReplyParser::keep_text(const char* data, size_t n) {
  if (text_len_ < cap_.text_cap_bytes) {
    size_t k = std::min<size_t>(n, cap_.text_cap_bytes - text_len_);
    std::memcpy(text_.get() + text_len_, data, k);
    text_len_ += uint32_t(k);
  }
}

void ReplyParser::reset_frame() {
  in_frame_ = false;
  depth_ = 0;
  in_stream_str_ = false;
}

bool ReplyParser::on_type(const char* p) {
  const char c = *p;
  if (!in_frame_) {
    in_frame_ = true;
    frame_start_ = pos(p);
    frame_ = ReplyFrame{};
    head_len_ = 0;
    first_idx_ = 0;
  }
  reset_number();
  state_ = St::Number;
  if (in_stream_str_) {
    if (c != ';') {
      fail(pos(p), "expected ';' in streamed string");
      return false;
    }
    cur_byte_ = ';';
    return true;
  }
  text_len_ = 0;
  line_len_ = 0;
  line_cr_ = false;
  cur_byte_ = c;
  switch (c) {
  case '+': cur_ = Type::SimpleString; state_ = St::Line; break;
  case '-': cur_ = Type::Error; state_ = St::Line; break;
  case ',': cur_ = Type::Double; state_ = St::Line; break;
  case '(': cur_ = Type::BigNumber; state_ = St::Line; break;
  case '_': cur_ = Type::Null; state_ = St::Line; break;
  case '#': cur_ = Type::Boolean; state_ = St::Line; break;
  case '.': cur_ = Type::None; state_ = St::Line; break;
  case ':': cur_ = Type::Integer; break;
  case '$': cur_ = Type::Bulk; break;
  case '!': cur_ = Type::BlobError; break;
  case '=': cur_ = Type::Verbatim; break;
  case '*': cur_ = Type::Array; break;
  case '%': cur_ = Type::Map; break;
  case '~': cur_ = Type::Set; break;
  case '|': cur_ = Type::Attribute; break;
  case '>': cur_ = Type::Push; break;
  default:
    fail(pos(p), "invalid reply type byte");
    return false;
  }
  if (depth_ == 0) {
    if (cur_ == Type::Attribute)
      frame_.has_attribute = true;
    else
      frame_.type = cur_;
  }
  return true;
}

bool ReplyParser::push_level(const char* p, Type t, int64_t n, bool attribute, Callback cb,
                             void* ctx) {
  state_ = St::Type;
  if (n == 0) {
    if (attribute) return true;  // an empty attribute decorates the next value
    return value_done(pos(p), cb, ctx);
  }
  if (depth_ >= limits_.max_depth) {
    fail(pos(p) - 1, "nesting too deep");
    return false;
  }
  push(Level{n, t, attribute});
  return true;
}

bool ReplyParser::on_number(const char* p, Callback cb, void* ctx) {
  const int64_t v = num_value();
  const bool top = depth_ == 0;
  switch (cur_byte_) {
  case ':':
    if (top) frame_.integer = v;
    if (depth_ == 1 && !stack_[0].attribute) {
      frame_.tail_int = v;
      frame_.has_tail_int = true;
    }
    state_ = St::Type;
    return value_done(pos(p), cb, ctx);
  case '$':
  case '!':
  case '=':
    if (num_q_) {
      if (cur_byte_ != '$') {
        fail(pos(p) - 1, "invalid length");
        return false;
      }
      in_stream_str_ = true;
      if (top) {
        frame_.streamed = true;
        frame_.size = -1;
      }
      state_ = St::Type;
      return true;
    }
    if (v == -1 && cur_byte_ == '$') {
      if (top) {
        frame_.is_null = true;
        frame_.size = -1;
      }
      state_ = St::Type;
      return value_done(pos(p), cb, ctx);
    }
    if (v < 0 || v > limits_.max_bulk_len) {
      fail(pos(p) - 1, "invalid bulk length");
      return false;
    }
    if (top) frame_.size = v;
    bulk_left_ = v;
    state_ = v > 0 ? St::Bulk : St::BulkCR;
    return true;
  case ';':
    if (num_q_ || v < 0 || v > limits_.max_bulk_len) {
      fail(pos(p) - 1, "invalid streamed chunk length");
      return false;
    }
    if (v == 0) {
      in_stream_str_ = false;
      state_ = St::Type;
      return value_done(pos(p), cb, ctx);
    }
    bulk_left_ = v;
    state_ = St::Bulk;
    return true;
  default: {  // * % ~ | >
    const bool attribute = cur_byte_ == '|';
    if (num_q_) {
      if (attribute || cur_byte_ == '>') {
        fail(pos(p) - 1, "invalid aggregate length");
        return false;
      }
      if (top) {
        frame_.streamed = true;
        frame_.size = -1;
      }
      if (depth_ >= limits_.max_depth) {
        fail(pos(p) - 1, "nesting too deep");
        return false;
      }
      push(Level{-1, cur_, false});
      state_ = St::Type;
      return true;
    }
    if (v == -1 && cur_byte_ == '*') {
      if (top) {
        frame_.is_null = true;
        frame_.size = -1;
      }
      state_ = St::Type;
      return value_done(pos(p), cb, ctx);
    }
    if (v < 0 || v > limits_.max_elements) {
      fail(pos(p) - 1, v < 0 ? "invalid aggregate length" : "too many elements");
      return false;
    }
    if (top && !attribute) frame_.size = v;
    const bool pairs = cur_byte_ == '%' || attribute;
    return push_level(p, cur_, pairs ? 2 * v : v, attribute, cb, ctx);
  }
  }
}

bool ReplyParser::line_done(const char* p, Callback cb, void* ctx) {
  // line_len_ counts the bytes before '\n', the last being '\r'.
  const uint64_t content = line_len_ - 1;
  if (text_len_ > content) text_len_ = uint32_t(content);
  const char first = content > 0 ? text_.get()[0] : '\0';
  state_ = St::Type;
  switch (cur_byte_) {
  case '_':
    if (content != 0) {
      fail(pos(p) - 1, "invalid null");
      return false;
    }
    if (depth_ == 0) frame_.is_null = true;
    break;
  case '#':
    if (content != 1 || (first != 't' && first != 'f')) {
      fail(pos(p) - 1, "invalid boolean");
      return false;
    }
    if (depth_ == 0) frame_.integer = first == 't';
    break;
  case ',':
  case '(':
    if (content == 0) {
      fail(pos(p) - 1, "empty number");
      return false;
    }
    break;
  case '.': {
    if (content != 0 || depth_ == 0 || stack_[depth_ - 1].remaining != -1) {
      fail(pos(p) - 1, "unexpected end of streamed aggregate");
      return false;
    }
    --depth_;
    return value_done(pos(p), cb, ctx);
  }
  default:
    break;
  }
  return value_done(pos(p), cb, ctx);
}

// A value ended at `end`: count it in its parent and close every aggregate it completes.
bool ReplyParser::value_done(uint64_t end, Callback cb, void* ctx) {
  if (depth_ == 1 && !stack_[0].attribute && first_idx_ == 0) {
    if (cur_ == Type::SimpleString || cur_ == Type::Bulk || cur_ == Type::Verbatim) {
      head_len_ = uint8_t(std::min<uint32_t>(text_len_, sizeof head_));
      std::memcpy(head_, text_.get(), head_len_);
    }
  }
  for (;;) {
    if (depth_ == 0) {
      frame_.start = frame_start_;
      frame_.end = end;
      if (frame_.type != Type::Array && frame_.type != Type::Map && frame_.type != Type::Set &&
          frame_.type != Type::Push && frame_.type != Type::Integer &&
          frame_.type != Type::Boolean && frame_.type != Type::Null)
        frame_.text = {text_.get(), text_len_};
      frame_.head = {head_, head_len_};
      in_frame_ = false;
      cb(ctx, frame_);
      return true;
    }
    Level& l = stack_[depth_ - 1];
    if (depth_ == 1 && !l.attribute) ++first_idx_;
    if (l.remaining < 0) return true;  // streamed: ends with '.'
    if (--l.remaining > 0) return true;
    const bool attr = l.attribute;
    --depth_;
    if (attr) return true;  // an attribute is not a value: the decorated value follows
    cur_ = l.type;
  }
}

// A frame is like [p, q) when its first line is the same bytes and it is as long: for a
// bulk the payload between may differ (it is skipped by length, whatever it holds), for the
// others the first line is the whole frame. First lines over 8 bytes make no runs.
const char* ReplyParser::reply_run_end(const char* p, const char* q, const char* end) {
  if constexpr (std::endian::native != std::endian::little) return q;
  const size_t size = size_t(q - p);
  size_t line = size;
  if (*p == '$' && p[1] != '-') {
    line = 2;
    while (line < size && line <= 8 && p[line - 1] != '\n') ++line;
  }
  if (line > 8 || end - p < 8) return q;
  const uint64_t mask = line == 8 ? ~uint64_t(0) : (uint64_t(1) << (8 * line)) - 1;
  const uint64_t want = detail::load64(p) & mask;
  const size_t need = std::max<size_t>(size, 8);
  const char* r = q;
  while (size_t(end - r) >= need && (detail::load64(r) & mask) == want && r[size - 2] == '\r' &&
         r[size - 1] == '\n')
    r += size;
  return r;
}

// Lines longer than the inline scan of fast_scalars(), searched with memchr.
const char* ReplyParser::long_line_end(const char* nl, const char* end) const {
  const size_t scan = size_t(std::min<uint64_t>(uint64_t(end - nl), limits_.max_line_len + 2));
  return static_cast<const char*>(std::memchr(nl, '\n', scan));
}

// The state machine: every byte, whatever the chunking. It returns after each top-level reply
// it completes, so that feed() can take the replies after it through the fast path again.
const char* ReplyParser::step(const char* p, const char* end, Callback cb, void* ctx) {
  while (p < end) {
    switch (state_) {
    case St::Type:
      if (!on_type(p)) goto failed;
      ++p;
      break;
    case St::Number: {
      const bool allow_q = cur_byte_ == '$' || cur_byte_ == '*' || cur_byte_ == '%' ||
                           cur_byte_ == '~';
      Num r = read_number(p, end, allow_q);
      if (r == Num::More) break;
      if (r == Num::Bad) goto failed;
      if (!on_number(p, cb, ctx)) goto failed;
      break;
    }
    case St::Line: {
      const uint64_t allowed = limits_.max_line_len + 1 - line_len_;  // bytes before '\n'
      const size_t avail = size_t(end - p);
      const size_t scan = size_t(std::min<uint64_t>(avail, allowed + 1));
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', scan));
      if (nl == nullptr) {
        if (avail > allowed) {
          fail(pos(p) + allowed, "line too long");
          goto failed;
        }
        keep_text(p, avail);
        line_len_ += avail;
        line_cr_ = p[avail - 1] == '\r';
        p = end;
        break;
      }
      const size_t n = size_t(nl - p);
      keep_text(p, n);
      line_len_ += n;
      const bool cr = n > 0 ? nl[-1] == '\r' : line_cr_;
      if (line_len_ == 0 || !cr) {
        fail(pos(nl), "expected CRLF");
        goto failed;
      }
      p = nl + 1;
      if (!line_done(p, cb, ctx)) goto failed;
      break;
    }
    case St::Bulk: {
      const size_t take = size_t(std::min<int64_t>(end - p, bulk_left_));
      keep_text(p, take);
      p += take;
      bulk_left_ -= int64_t(take);
      if (bulk_left_ == 0) state_ = St::BulkCR;
      break;
    }
    case St::BulkCR:
      if (*p != '\r') {
        fail(pos(p), "expected CRLF after bulk");
        goto failed;
      }
      ++p;
      state_ = St::BulkLF;
      break;
    case St::BulkLF:
      if (*p != '\n') {
        fail(pos(p), "expected CRLF after bulk");
        goto failed;
      }
      ++p;
      state_ = St::Type;
      if (!in_stream_str_ && !value_done(pos(p), cb, ctx)) goto failed;
      break;
    }
    if (state_ == St::Type && !in_frame_) return p;
  }
  return p;
failed:
  return nullptr;
}

} // namespace faultline::resp
