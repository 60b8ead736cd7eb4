#pragma once
// Incremental RESP parsers: RequestParser (client -> Redis: multibulk and inline commands) and
// ReplyParser (Redis -> client: every RESP2 and RESP3 type). Pure code, no I/O.
//
//   chunk k-1            chunk k                     chunk k+1
//   ... *2\r\n$3\r\nG | ET\r\n$1\r\nk\r\n*2\r\n$3\r\n | GET\r\n$1\r\nx\r\n ...
//       ^frame A start          ^A end ^frame B start           ^B end
//
// feed() walks each chunk once. Frames are reported to a sink as facts plus absolute stream
// offsets [start, end) counted from the first byte ever fed, so the caller can forward the
// original bytes untouched and still know where every frame begins and ends. Bulk payloads are
// skipped by length (a 100 MB value is never scanned); only bounded prefixes are copied, and
// only when a frame spans chunks (views into the caller's chunk otherwise). Nothing allocates
// per frame: the capture buffers are sized once at construction.
//
// On input the grammar or the Limits forbid, the parser enters a sticky error state: error()
// gives the absolute offset and a short reason, later feed() calls return at once. The data
// path keeps forwarding raw bytes; there are no exceptions here.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "resp/commands.h"

namespace faultline::resp {

// Bounds on untrusted input. Defaults follow Redis where Redis has a limit.
struct Limits {
  uint32_t max_depth = 64;                  // nested aggregates in a reply (attributes count)
  int64_t max_elements = 1 << 24;           // elements of one aggregate / args of one request
  int64_t max_bulk_len = 512LL << 20;       // proto-max-bulk-len
  uint32_t max_inline_len = 64 * 1024;      // PROTO_INLINE_MAX_SIZE, inline requests
  uint64_t max_line_len = 512ULL << 20;     // simple string / error / double lines in replies
};

// What the request parser copies for the caller. Arguments are only recorded up to
// max_args (at least 3: the name, a subcommand and one more, which the pairing needs for
// CLIENT REPLY, HELLO and SELECT); the first key is always recorded.
struct CaptureOptions {
  uint32_t max_args = 64;         // arguments recorded per request (argc is always exact)
  uint32_t arg_cap_bytes = 256;   // bytes kept per argument when the frame spans chunks
  uint32_t text_cap_bytes = 128;  // bytes of a reply's text kept (error line, bulk prefix)
};

enum class Status : uint8_t { Ok, Error };

struct ParseError {
  uint64_t offset = 0;            // absolute offset of the offending byte
  const char* reason = nullptr;   // static string
};

// An argument: data is the whole argument, or its first arg_cap_bytes when the frame spanned
// chunks (len is then larger than data.size()).
struct Arg {
  std::string_view data;
  uint64_t len = 0;
  bool truncated() const { return data.size() < len; }
};

// A complete request frame. Views are valid during the callback only.
struct RequestFrame {
  uint64_t start = 0, end = 0;    // absolute stream offsets [start, end)
  uint64_t argc = 0;              // 0 for an empty inline line or *0 / *-1 (no reply from Redis)
  std::string_view name;          // upper-cased command name, at most 32 bytes
  std::string_view sub;           // upper-cased subcommand of a container command (CLIENT, ...)
  const CommandInfo* cmd = nullptr;  // nullptr for unknown commands
  bool has_key = false;
  Arg key;                        // first key (COMMAND GETKEYS semantics), when has_key
  std::span<const Arg> args;      // args[0] is the name as sent; min(argc, max_args) entries
  bool is_inline = false;
  uint64_t size() const { return end - start; }
};

enum class Type : uint8_t {
  None,
  SimpleString,  // +
  Error,         // -
  Integer,       // :
  Bulk,          // $  (null: is_null; streamed $?: streamed)
  Array,         // *  (null: *-1)
  Null,          // _
  Double,        // ,
  Boolean,       // #
  BlobError,     // !
  Verbatim,      // =
  BigNumber,     // (
  Map,           // %
  Set,           // ~
  Attribute,     // |  (never a frame's type: attached to the value that follows)
  Push,          // >
};

const char* type_name(Type t);

// A complete top-level reply. Views are valid during the callback only.
struct ReplyFrame {
  uint64_t start = 0, end = 0;    // absolute offsets, including a leading attribute
  Type type = Type::None;
  bool is_null = false;           // _, $-1, *-1
  bool streamed = false;          // $? / *? / ~? / %? / >?
  bool has_attribute = false;     // a |attribute preceded the value
  int64_t size = 0;               // element count (map: pairs) or bulk length; -1 null/streamed
  int64_t integer = 0;            // Integer value; Boolean 1/0
  std::string_view text;          // first line of simple/error/double/bignum, or the first
                                  // text_cap_bytes of bulk/blob error/verbatim payloads
  std::string_view head;          // first element of a top-level aggregate, if a string
                                  // (at most 32 bytes): "message", "subscribe", "invalidate"
  int64_t tail_int = 0;           // last integer element directly inside a top-level aggregate
  bool has_tail_int = false;

  bool is_error() const { return type == Type::Error || type == Type::BlobError; }
  bool is_push() const { return type == Type::Push; }
  bool is_aggregate() const {
    return type == Type::Array || type == Type::Map || type == Type::Set || type == Type::Push;
  }
  // "LOADING", "ERR", "MOVED"...: the first word of an error's text.
  std::string_view error_prefix() const;
  uint64_t size_bytes() const { return end - start; }
};

namespace detail {
// Shared by both parsers: the absolute offset, the sticky error and the number-line reader.
class ParserBase {
public:
  bool failed() const { return error_.reason != nullptr; }
  const ParseError& error() const { return error_; }
  uint64_t offset() const { return offset_; }   // bytes fed so far

protected:
  enum class Num : uint8_t { More, Done, Bad };
  // Reads "[-]digits\r\n" (or "?\r\n" when allow_q) incrementally from [p, end).
  Num read_number(const char*& p, const char* end, bool allow_q);
  void fail(uint64_t at, const char* why) {
    if (error_.reason == nullptr) error_ = {at, why};
  }
  int64_t num_value() const { return num_neg_ ? int64_t(0 - num_val_) : int64_t(num_val_); }
  void reset_number() {
    num_val_ = 0;
    num_digits_ = 0;
    num_neg_ = false;
    num_q_ = false;
    num_cr_ = false;
  }

  uint64_t offset_ = 0;
  const char* base_ = nullptr;  // start of the current chunk, for absolute offsets
  ParseError error_;
  uint64_t num_val_ = 0;
  uint8_t num_digits_ = 0;
  bool num_neg_ = false, num_q_ = false, num_cr_ = false;
  uint64_t pos(const char* p) const { return offset_ + uint64_t(p - base_); }
};
} // namespace detail

class RequestParser : public detail::ParserBase {
public:
  explicit RequestParser(const Limits& limits = {}, const CaptureOptions& capture = {});

  // Feeds one chunk; calls sink(frame) or sink.on_request(frame) for each complete request.
  template <class Sink> Status feed(const char* data, size_t len, Sink&& sink) {
    using S = std::remove_reference_t<Sink>;
    return feed_impl(data, len, &call_sink<S>, const_cast<void*>(static_cast<const void*>(&sink)));
  }
  template <class Sink> Status feed(std::string_view s, Sink&& sink) {
    return feed(s.data(), s.size(), sink);
  }

  // True when some bytes of an unfinished request have been consumed.
  bool mid_frame() const { return state_ != St::Start; }
  // Start of the request in progress, or offset() when between requests.
  uint64_t frame_start() const { return mid_frame() ? frame_start_ : offset_; }

private:
  using Callback = void (*)(void*, const RequestFrame&);
  template <class Sink> static void call_sink(void* s, const RequestFrame& f) {
    if constexpr (std::is_invocable_v<Sink&, const RequestFrame&>)
      (*static_cast<Sink*>(s))(f);
    else
      static_cast<Sink*>(s)->on_request(f);
  }
  Status feed_impl(const char* data, size_t len, Callback cb, void* ctx);

  enum class St : uint8_t { Start, MbCount, BulkHdr, BulkLen, BulkData, BulkCR, BulkLF, Inline };
  const char* fast_frames(const char* p, const char* end, Callback cb, void* ctx);
  const char* fast_frame(const char* p, const char* end, RequestFrame& f, Callback cb, void* ctx);
  const char* fast_frame_roles(const char* p, const char* end, Callback cb, void* ctx);
  const CommandInfo* cached_lookup(const char* d, size_t n, const char* end);
  const CommandInfo* lookup_name(const char* d, size_t n);
  void begin_arg(const char* p, const char* end);
  void arg_bytes(const char* p, size_t n);
  void finish_arg(const char* data, size_t n, bool view);
  void set_name(const char* data, size_t n);
  void set_sub(const char* data, size_t n);
  void plan_keys();
  bool inline_line(const char* line, size_t n, uint64_t line_start, uint64_t line_end,
                   Callback cb, void* ctx);
  void emit(uint64_t end, Callback cb, void* ctx);
  void materialize(const char* chunk, size_t len);
  void reset_frame();

  Limits limits_;
  CaptureOptions cap_;
  St state_ = St::Start;
  uint64_t frame_start_ = 0;
  int64_t argc_ = 0;
  int64_t arg_idx_ = 0;
  int64_t arg_len_ = 0;     // current argument's length
  int64_t arg_left_ = 0;    // payload bytes still to come
  uint8_t roles_ = 0;       // what the current argument is used for (Role bits)
  uint32_t acc_len_ = 0;    // bytes accumulated for the current argument (spanning case)

  // Facts of the request in progress.
  char name_[32];
  uint8_t name_len_ = 0;
  char sub_[32];
  uint8_t sub_len_ = 0;
  char tok_[32];            // small tokens (name, sub, keyword, numkeys) across chunks
  const CommandInfo* cmd_ = nullptr;
  bool want_sub_ = false;
  int64_t key_pos_ = -1;      // argument index of the first key, once known
  int64_t numkeys_pos_ = -1;  // argument holding a key count (EVAL, ZUNION...)
  int64_t key_after_numkeys_ = -1;
  int64_t kw_from_ = -1, kw_to_ = -1;  // keyword search window (XREAD ... STREAMS)
  bool kw_last_ = false;               // take the last match (negative startfrom)
  std::string_view kw_;
  bool has_key_ = false;
  Arg key_;

  // Command names as last sent (raw bytes, at most 16) and their table entries: a pipeline
  // repeats a few commands, so the name is compared as two words instead of hashed.
  struct NameCache {
    uint64_t w0 = 0, w1 = 0;
    uint64_t len = 0;
    const CommandInfo* cmd = nullptr;
  };
  NameCache name_cache_[4];

  std::vector<Arg> args_;
  std::unique_ptr<char[]> arena_;      // max_args * arg_cap_bytes, + one slot for the key
  char* key_slot_ = nullptr;

  std::string line_;                   // inline line spanning chunks
  std::string inline_buf_;             // decoded inline arguments
  std::vector<std::string_view> inline_argv_;
};

class ReplyParser : public detail::ParserBase {
public:
  explicit ReplyParser(const Limits& limits = {}, const CaptureOptions& capture = {});

  // Feeds one chunk; calls sink(frame) or sink.on_reply(frame) for each complete reply.
  template <class Sink> Status feed(const char* data, size_t len, Sink&& sink) {
    using S = std::remove_reference_t<Sink>;
    return feed_impl(data, len, &call_sink<S>, const_cast<void*>(static_cast<const void*>(&sink)));
  }
  template <class Sink> Status feed(std::string_view s, Sink&& sink) {
    return feed(s.data(), s.size(), sink);
  }

  bool mid_frame() const { return in_frame_; }
  uint64_t frame_start() const { return in_frame_ ? frame_start_ : offset_; }

private:
  using Callback = void (*)(void*, const ReplyFrame&);
  template <class Sink> static void call_sink(void* s, const ReplyFrame& f) {
    if constexpr (std::is_invocable_v<Sink&, const ReplyFrame&>)
      (*static_cast<Sink*>(s))(f);
    else
      static_cast<Sink*>(s)->on_reply(f);
  }
  Status feed_impl(const char* data, size_t len, Callback cb, void* ctx);

  enum class St : uint8_t { Type, Number, Line, Bulk, BulkCR, BulkLF };
  struct Level {
    int64_t remaining;  // elements still expected; -1 for streamed aggregates
    Type type;
    bool attribute;
  };
  const char* fast_scalars(const char* p, const char* end, Callback cb, void* ctx);
  const char* fast_scalar(const char* p, const char* end, ReplyFrame& f, Callback cb, void* ctx);
  bool on_type(const char* p);
  bool on_number(const char* p, Callback cb, void* ctx);
  bool line_done(const char* p, Callback cb, void* ctx);
  bool value_done(uint64_t end, Callback cb, void* ctx);
  bool push_level(const char* p, Type t, int64_t n, bool attribute, Callback cb, void* ctx);
  void keep_text(const char* data, size_t n);
  void reset_frame();

  Limits limits_;
  CaptureOptions cap_;
  St state_ = St::Type;
  Type cur_ = Type::None;       // type of the value being read
  char cur_byte_ = 0;
  bool in_frame_ = false;
  bool in_stream_str_ = false;  // inside $? ... ;0
  uint64_t frame_start_ = 0;
  uint64_t line_len_ = 0;
  bool line_cr_ = false;
  int64_t bulk_left_ = 0;
  uint32_t depth_ = 0;
  std::vector<Level> stack_;
  int64_t first_idx_ = 0;       // element index at depth 1, for head capture
  ReplyFrame frame_;
  std::unique_ptr<char[]> text_;
  uint32_t text_len_ = 0;
  char head_[32];
  uint8_t head_len_ = 0;
};

} // namespace faultline::resp
