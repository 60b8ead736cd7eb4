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
// Two paths share the work. Frames wholly inside a chunk go through an inline fast path that
// calls the sink directly: requests through a prefix cache (the first 16 bytes of recent frames
// and what they mean) and a shape cache (where the later header lines of the last such frame
// were), replies through a scalar switch. Everything else (frames spanning chunks, aggregates,
// RESP3 types, errors in the input) goes through the per-byte state machine, which hands back
// to the fast path after each frame. A sink that only needs the facts of simple frames can say
// so (on_simple_request / on_simple_reply) and is offered them before any frame is built, and
// the frames after one laid out exactly like it (a pipeline of one command, arguments of the
// same lengths) as one run (on_simple_run / on_simple_reply_run).
//
// On input the grammar or the Limits forbid, the parser enters a sticky error state: error()
// gives the absolute offset and a short reason, later feed() calls return at once. The data
// path keeps forwarding raw bytes; there are no exceptions here.

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/room.h"
#include "resp/commands.h"

// Built with -DFAULTLINE_PARSER_FAST_PATHS=0 (CMake option FAULTLINE_PARSER_FAST_PATHS=OFF),
// feed() never takes the fast paths: every frame goes through the state machine, the reference
// path. tools/test runs one whole suite that way, so each test checks both paths.
#ifndef FAULTLINE_PARSER_FAST_PATHS
#define FAULTLINE_PARSER_FAST_PATHS 1
#endif

namespace faultline::resp {

inline constexpr bool kFastPaths = FAULTLINE_PARSER_FAST_PATHS != 0;

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
  // A command the table names exactly (with its subcommand, for a container) that changes no
  // connection state (Special::None), with at least its name: most requests. The pairing and
  // the observers' fast paths take these without looking further.
  bool simple = false;
  uint64_t size() const { return end - start; }
};

// A simple request wholly inside one chunk, as the fast path offers it first to a sink that
// has on_simple_request(const SimpleRequest&) -> bool: the facts the pairing needs, before any
// argument is recorded. True: that was all the sink needed. False: the sink gets the whole
// RequestFrame next, through on_request() (or operator()), as any other sink would.
struct SimpleRequest {
  uint64_t start = 0, end = 0;    // absolute stream offsets [start, end)
  const CommandInfo* cmd = nullptr;
  bool has_key = false;
  std::string_view key;           // the first key (whole), when has_key
  uint64_t size() const { return end - start; }
};

template <class Sink>
concept TakesSimpleRequests = requires(Sink& s, const SimpleRequest& r) {
  { s.on_simple_request(r) } -> std::convertible_to<bool>;
};

// Simple requests laid out exactly alike, back to back in one chunk (a pipeline of one
// command whose arguments have the same lengths: what load generators and batch jobs send).
// A sink that took a simple request and has on_simple_run(const SimpleRun&) -> bool is offered
// the frames of the same layout right after it as one run. True: it took them all. False: it
// took none, and is offered them (and the rest of the chunk) one by one as before.
struct SimpleRun {
  uint64_t start = 0;             // absolute stream offset of the first frame
  const char* data = nullptr;     // the first frame's bytes; frame i starts at data + i * size
  uint32_t size = 0;              // bytes of each frame
  uint32_t count = 0;             // frames, at least one
  const CommandInfo* cmd = nullptr;
  int32_t key_at = -1;            // where the first key's payload starts in each frame; -1: none
  uint32_t key_len = 0;
  bool has_key() const { return key_at >= 0; }
  std::string_view key(size_t i) const { return {data + i * size + key_at, key_len}; }
  uint64_t end() const { return start + uint64_t(size) * count; }
  SimpleRequest frame(size_t i) const {
    SimpleRequest r;
    r.start = start + uint64_t(size) * i;
    r.end = r.start + size;
    r.cmd = cmd;
    r.has_key = has_key();
    if (r.has_key) r.key = key(i);
    return r;
  }
};

template <class Sink>
concept TakesSimpleRuns = TakesSimpleRequests<Sink> && requires(Sink& s, const SimpleRun& r) {
  { s.on_simple_run(r) } -> std::convertible_to<bool>;
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

// Likewise for replies: a top-level simple string, integer or bulk (never an error) wholly
// inside one chunk, offered first to a sink that has on_simple_reply(const SimpleReply&) ->
// bool; false gets it the whole ReplyFrame next.
struct SimpleReply {
  uint64_t start = 0, end = 0;
  Type type = Type::None;
  uint64_t size_bytes() const { return end - start; }
};

template <class Sink>
concept TakesSimpleReplies = requires(Sink& s, const SimpleReply& r) {
  { s.on_simple_reply(r) } -> std::convertible_to<bool>;
};

// Simple replies laid out exactly alike, back to back in one chunk, right after one the sink
// took: +OK after +OK, $-1 after $-1, bulks of one length ($3\r\nabc\r\n, $3\r\nxyz\r\n),
// the same integer (each frame's first line, at most 8 bytes, is the same). A sink that has
// on_simple_reply_run(const SimpleReplyRun&) -> size_t is offered them as one run and returns
// how many it took, from the first; the rest come one by one as before.
struct SimpleReplyRun {
  uint64_t start = 0;    // absolute stream offset of the first
  uint32_t size = 0;     // bytes of each
  uint32_t count = 0;    // frames, at least one
  Type type = Type::None;
};

template <class Sink>
concept TakesSimpleReplyRuns =
    TakesSimpleReplies<Sink> && requires(Sink& s, const SimpleReplyRun& r) {
      { s.on_simple_reply_run(r) } -> std::convertible_to<size_t>;
    };

namespace detail {
// A "digits\r\n" length line wholly inside [q, end): returns the byte after it, or nullptr for
// anything else (incomplete, signed, too long), which the state machine then handles, errors
// and offsets included.
inline const char* fast_len(const char* q, const char* end, int64_t& n) {
  // Most lengths in a pipeline have one or two digits: no loop for those.
  if (end - q >= 4) {
    const unsigned d0 = unsigned(uint8_t(q[0])) - '0';
    if (d0 <= 9) {
      if (q[1] == '\r') {
        if (q[2] != '\n') return nullptr;
        n = d0;
        return q + 3;
      }
      const unsigned d1 = unsigned(uint8_t(q[1])) - '0';
      if (d1 <= 9 && q[2] == '\r') {
        if (q[3] != '\n') return nullptr;
        n = d0 * 10 + d1;
        return q + 4;
      }
    }
  }
  int64_t v = 0;
  const char* start = q;
  while (q < end && *q >= '0' && *q <= '9') {
    v = v * 10 + (*q - '0');
    if (++q - start > 15) return nullptr;
  }
  if (q == start || end - q < 2 || q[0] != '\r' || q[1] != '\n') return nullptr;
  n = v;
  return q + 2;
}

inline uint64_t load64(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

inline bool is_crlf(const char* p) { return std::memcmp(p, "\r\n", 2) == 0; }  // one compare

// A header line "<type><digits>\r\n" (type '*' or '$') wholly inside [q, end): sets n and
// returns the byte after it, or nullptr. One and two digits, the lengths of a pipeline of
// small commands, are read from one 8-byte load with two masked compares.
[[gnu::always_inline]] inline const char* header_line(const char* q, const char* end, char type,
                                                      int64_t& n) {
  if constexpr (std::endian::native == std::endian::little) {
    if (end - q >= 8) [[likely]] {
      const uint64_t w = load64(q);
      const uint64_t t = uint8_t(type);
      const unsigned d0 = unsigned(w >> 8 & 0xFF) - '0';
      if ((w & 0xFFFF00FFULL) == (0x0A0D0000ULL | t)) {
        if (d0 > 9) return nullptr;
        n = d0;
        return q + 4;
      }
      if ((w & 0xFFFF0000FFULL) == (0x0A0D000000ULL | t)) {
        const unsigned d1 = unsigned(w >> 16 & 0xFF) - '0';
        if (d0 > 9 || d1 > 9) return nullptr;
        n = d0 * 10 + d1;
        return q + 5;
      }
    }
  }
  if (q >= end || *q != type) return nullptr;
  return fast_len(q + 1, end, n);
}

// Shared by both parsers: the absolute offset, the sticky error and the number-line reader.
class ParserBase {
public:
  bool failed() const { return error_.reason != nullptr; }
  const ParseError& error() const { return error_; }
  uint64_t offset() const { return offset_; }   // bytes fed so far
  // A fresh parser takes over a stream another one left between frames: its offsets go on
  // from there (a session that released its RESP state while idle makes it again).
  void resume_at(uint64_t offset) { offset_ = offset; }

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
  // room: where its arrays (the recorded arguments and their bytes) are taken from, when it
  // has storage_bytes(capture) left (base/room.h); else they come from the heap.
  explicit RequestParser(const Limits& limits = {}, const CaptureOptions& capture = {},
                         Room* room = nullptr);
  static size_t storage_bytes(const CaptureOptions& capture);

  // Feeds one chunk; calls sink(frame) or sink.on_request(frame) for each complete request.
  // Whole multibulk requests are parsed by an inline fast path that calls the sink directly
  // (no call through a pointer per frame); the rest goes through the state machine.
  template <class Sink> Status feed(const char* data, size_t len, Sink&& sink) {
    using S = std::remove_reference_t<Sink>;
    if (failed()) return Status::Error;
    base_ = data;
    const char* p = data;
    const char* const end = data + len;
    while (p < end) {
      if (kFastPaths && state_ == St::Start && *p == '*') {
        p = fast_frames(p, end, sink);
        if (p == end) break;
      }
      // The state machine takes the next frame (one the fast path declined, an inline one, or
      // the rest of one that began in an earlier chunk), then the fast path resumes.
      p = step(p, end, &call_sink<S>, const_cast<void*>(static_cast<const void*>(&sink)));
      if (p == nullptr) {
        offset_ += len;
        return Status::Error;
      }
    }
    if (state_ != St::Start) materialize(data, len);
    offset_ += len;
    return Status::Ok;
  }
  template <class Sink> Status feed(std::string_view s, Sink&& sink) {
    return feed(s.data(), s.size(), sink);
  }

  // True when some bytes of an unfinished request have been consumed.
  bool mid_frame() const { return state_ != St::Start; }
  // The facts of the multibulk request in progress, as far as its bytes have been fed: argc,
  // then the name, subcommand and command once their arguments are whole, the first key once it
  // is, the arguments that are whole. end is 0. False between frames and inside an inline
  // request. Lets a caller decide a large request on its head and stream the rest of it.
  bool partial_frame(RequestFrame& f) const;
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
  // The state machine from p: returns after the frame it completes (the parser is then
  // between frames again), at end, or nullptr once the input is not RESP (error() says why).
  const char* step(const char* p, const char* end, Callback cb, void* ctx);

  enum class St : uint8_t { Start, MbCount, BulkHdr, BulkLen, BulkData, BulkCR, BulkLF, Inline };

  // Command names as last sent (raw bytes, at most 16) and how the fast path takes them: a
  // pipeline repeats a few commands, so the name is compared as two words instead of hashed,
  // and where its first key sits is worked out once.
  struct NameCache {
    uint64_t w0 = 0, w1 = 0;
    const CommandInfo* cmd = nullptr;
    uint8_t len = 0;
    bool container = false;  // with arguments: fast_frame_roles() finds the subcommand
    bool roles = false;      // keyword or key-count key spec, or an unknown name
    bool simple = false;     // RequestFrame::simple (Special::None)
    int16_t key_pos = -1;    // fixed index of the first key; -1: none
  };
  // The first bytes of recent frames, up to the end of the name ("*2\r\n$3\r\nGET\r\n", at
  // most 16), with what they tell: a frame that starts with the same bytes has the same
  // argument count and command, so its first two header lines need not be read.
  //
  // With it, the shape of the last whole frame that started so: where its later header lines
  // and CRLFs are, as 8-byte windows with the bytes that must be there. A frame with the same
  // prefix and the same bytes in those windows has the same argument lengths (the header
  // lines say them) and so the same layout: its end and its key are known without reading a
  // header line (a pipeline of one command with keys and values of one length).
  static constexpr size_t kShapeWindows = 6;
  struct Shape {
    uint32_t size = 0;       // the frame's bytes; 0: no shape
    uint8_t windows = 0;
    uint8_t misses = 0;      // frames since the last match (learning backs off)
    uint16_t key_len = 0;
    int32_t key_at = -1;     // offset of the key's payload; -1: no key
    uint16_t at[kShapeWindows] = {};
    uint64_t mask[kShapeWindows] = {}, value[kShapeWindows] = {};
  };
  struct Prefix {
    uint64_t w0 = 0, w1 = 0;  // never matches empty: a frame's first byte is '*'
    uint64_t mask = 0;        // of the bytes of w1 that belong to the prefix
    const CommandInfo* cmd = nullptr;
    uint32_t argc = 0;
    uint8_t size = 0;         // bytes
    uint8_t name_at = 0, name_len = 0;
    bool simple = false;
    int16_t key_pos = -1;
    Shape shape;
  };
  static bool shape_matches(const Shape& sh, const char* p) {
    for (size_t k = 0; k < sh.windows; ++k)
      if ((detail::load64(p + sh.at[k]) & sh.mask[k]) != sh.value[k]) return false;
    return true;
  }
  // Where the frames from p that start with e's prefix and have its shape end (p: none).
  static const char* run_end(const Prefix& e, const char* p, const char* end);
  // Works out the shape of the whole frame [p, end) that starts with prefix e.
  static void learn_shape(Prefix& e, const char* p, const char* end);
  static size_t prefix_slot(uint64_t w0, uint64_t w1) {
    // The bytes always inside a prefix: its first 11 ("*1\r\n$1\r\nX\r\n" is the shortest).
    return size_t(((w0 + (w1 & 0xFFFFFF)) * 0x9E3779B97F4A7C15ULL) >> 62);
  }
  void learn_prefix(const char* p, const char* q, const char* end, int64_t n, const char* d,
                    const NameCache& c);
  template <class Sink> const char* fast_frames(const char* p, const char* end, Sink& sink);
  const char* fast_frame_roles(const char* p, const char* end, Callback cb, void* ctx);
  const NameCache& cached_lookup(const char* d, size_t n, const char* end);
  const NameCache& cache_fill(NameCache& slot, const char* d, size_t n, uint64_t w0,
                              uint64_t w1);
  const NameCache& lookup_uncached(const char* d, size_t n);
  static NameCache cache_entry(const CommandInfo* cmd);
  bool is_simple() const {
    return argc_ > 0 && cmd_ != nullptr && cmd_->special == Special::None &&
           (!cmd_->sub.empty() || sub_len_ == 0);
  }
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

  NameCache name_cache_[4];
  Prefix prefixes_[4];
  uint8_t last_prefix_ = 0;            // the entry the last frame matched
  NameCache scratch_;                  // a name too short to load as words
  NameCache unknown_ = cache_entry(nullptr);

  ArrayStorage<Arg> args_;             // max_args
  ArrayStorage<char> arena_;           // max_args * arg_cap_bytes, + one slot for the key
  char* key_slot_ = nullptr;

  std::string line_;                   // inline line spanning chunks
  std::string inline_buf_;             // decoded inline arguments
  std::vector<std::string_view> inline_argv_;
};

class ReplyParser : public detail::ParserBase {
public:
  // room: as RequestParser's, for the reply's kept text.
  explicit ReplyParser(const Limits& limits = {}, const CaptureOptions& capture = {},
                       Room* room = nullptr);
  static size_t storage_bytes(const CaptureOptions& capture);

  // Feeds one chunk; calls sink(frame) or sink.on_reply(frame) for each complete reply.
  // Whole top-level scalars are parsed by an inline fast path that calls the sink directly;
  // aggregates, RESP3 types and replies spanning chunks go through the state machine.
  template <class Sink> Status feed(const char* data, size_t len, Sink&& sink) {
    using S = std::remove_reference_t<Sink>;
    if (failed()) return Status::Error;
    base_ = data;
    const char* p = data;
    const char* const end = data + len;
    while (p < end) {
      if (kFastPaths && state_ == St::Type && !in_frame_) {
        p = fast_scalars(p, end, sink);
        if (p == end) break;
      }
      p = step(p, end, &call_sink<S>, const_cast<void*>(static_cast<const void*>(&sink)));
      if (p == nullptr) {
        offset_ += len;
        return Status::Error;
      }
    }
    offset_ += len;
    return Status::Ok;
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
  // The state machine from p: returns after the top-level reply it completes, at end, or
  // nullptr once the input is not RESP (error() says why).
  const char* step(const char* p, const char* end, Callback cb, void* ctx);

  enum class St : uint8_t { Type, Number, Line, Bulk, BulkCR, BulkLF };
  struct Level {
    int64_t remaining;  // elements still expected; -1 for streamed aggregates
    Type type;
    bool attribute;
  };
  template <class Sink> const char* fast_scalars(const char* p, const char* end, Sink& sink);
  // After the scalar [p, q): where the scalars from q laid out like it end (q: none).
  static const char* reply_run_end(const char* p, const char* q, const char* end);
  const char* long_line_end(const char* nl, const char* end) const;
  template <bool kFill>
  const char* scalar_at(const char* p, const char* end, Type& type, ReplyFrame* f) const;
  bool on_type(const char* p);
  bool on_number(const char* p, Callback cb, void* ctx);
  bool line_done(const char* p, Callback cb, void* ctx);
  bool value_done(uint64_t end, Callback cb, void* ctx);
  bool push_level(const char* p, Type t, int64_t n, bool attribute, Callback cb, void* ctx);
  void push(const Level& l) {  // depth_ < max_depth, checked by the caller
    if (depth_ == stack_.size()) stack_.push_back(l);
    else stack_[depth_] = l;
    ++depth_;
  }
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
  std::vector<Level> stack_;    // grows with the depth met (most replies never nest)
  int64_t first_idx_ = 0;       // element index at depth 1, for head capture
  ReplyFrame frame_;
  ArrayStorage<char> text_;
  uint32_t text_len_ = 0;
  char head_[32];
  uint8_t head_len_ = 0;
};

// --- the request fast path, inline so that the sink is called directly ----------------------

// The table entry of a command name (raw bytes as sent), through the per-parser cache.
[[gnu::always_inline]] inline const RequestParser::NameCache&
RequestParser::cached_lookup(const char* d, size_t n, const char* end) {
  if constexpr (std::endian::native == std::endian::little) {
    // Whole words only when the chunk has them: the name is followed by at least its CRLF.
    if (n - 1 < 16 && size_t(end - d) >= (n <= 8 ? 8u : 16u)) {
      uint64_t w0 = detail::load64(d), w1 = 0;
      if (n < 8) {
        w0 &= (uint64_t(1) << (8 * n)) - 1;
      } else if (n > 8) {
        w1 = detail::load64(d + 8);
        if (n < 16) w1 &= (uint64_t(1) << (8 * (n - 8))) - 1;
      }
      NameCache& c = name_cache_[((w0 ^ w1) * 0x9E3779B97F4A7C15ULL) >> 62];
      if (c.w0 == w0 && c.w1 == w1 && c.len == n) [[likely]]
        return c;
      return cache_fill(c, d, n, w0, w1);
    }
  }
  return lookup_uncached(d, n);
}

// The whole multibulk requests at p, one after another, without the per-byte state machine;
// returns where the first one it could not take starts (p itself when none): an incomplete
// frame, an unusual header, anything erroneous, which the state machine then parses.
//
// The common case (a known command whose first key sits at a fixed index: GET, SET, HSET,
// INCR...) is one pass over the header lines: the argument count, the name and the command
// come from the prefix cache when the frame starts as a recent one did ("*3\r\n$3\r\nSET\r\n"
// compared as two words), from the name cache otherwise; the arguments and the key are views
// into the chunk, and nothing is upper-cased or copied.
// Containers (CLIENT ...), keyword or key-count key specs and unknown names take
// fast_frame_roles(), which works out each argument's role as the state machine does.
template <class Sink>
const char* RequestParser::fast_frames(const char* p, const char* end, Sink& sink) {
  Arg* const args = args_.get();
  const int64_t max_args = cap_.max_args;
  const int64_t max_len = limits_.max_bulk_len;
  const uint64_t at0 = offset_ - uint64_t(uintptr_t(base_));  // pos(x) == at0 + x
  Prefix* last = &prefixes_[last_prefix_];
  RequestFrame f;  // what the fast path never sets (no subcommand, not inline) stays as is
  [[maybe_unused]] bool runs = true;  // the sink takes runs (until it declines one)
  do {
    int64_t n = 0, len = 0;
    const char* q;
    const char* d;
    Prefix* hit = nullptr;
    if constexpr (std::endian::native == std::endian::little) {
      if (end - p >= 16) [[likely]] {
        // The entry the previous frame used first (a pipeline repeats one command), then the
        // one the bytes hash to.
        const uint64_t w0 = detail::load64(p), w1 = detail::load64(p + 8);
        if (last->w0 == w0 && (w1 & last->mask) == last->w1) [[likely]] {
          hit = last;
        } else {
          const size_t slot = prefix_slot(w0, w1);
          Prefix& e = prefixes_[slot];
          if (e.w0 == w0 && (w1 & e.mask) == e.w1) {
            hit = last = &e;
            last_prefix_ = uint8_t(slot);
          }
        }
      }
    }
    const CommandInfo* cmd;
    int64_t key_pos;
    bool simple;
    if (hit != nullptr) [[likely]] {
      n = hit->argc;
      q = p + hit->size;
      cmd = hit->cmd;
      key_pos = hit->key_pos;
      simple = hit->simple;
      d = nullptr;  // the name is found again if a frame is built (below)
    } else {
      q = detail::header_line(p, end, '*', n);
      if (q == nullptr || n <= 0 || n > limits_.max_elements) break;
      d = detail::header_line(q, end, '$', len);
      if (d == nullptr || len > max_len || end - d < len + 2 || !detail::is_crlf(d + len)) break;
      const NameCache& c = cached_lookup(d, size_t(len), end);
      if (c.roles || (c.container && n > 1)) [[unlikely]] {
        q = fast_frame_roles(p, end, &call_sink<Sink>, &sink);
        if (q == nullptr) break;
        p = q;
        continue;
      }
      q = d + len + 2;
      cmd = c.cmd;
      key_pos = c.key_pos;
      simple = c.simple;
      learn_prefix(p, q, end, n, d, c);
    }
    // The arguments after the name: whole bulks, the key noted where the command has it.
    // `record` stores each one for the RequestFrame.
    const char* const args_at = q;
    auto walk = [&](bool record, const char*& at, Arg& key, bool& has_key) -> bool {
      const char* r = args_at;
      for (int64_t i = 1; i < n; ++i) {
        int64_t l = 0;
        const char* b = detail::header_line(r, end, '$', l);
        if (b == nullptr || l > max_len || end - b < l + 2 || !detail::is_crlf(b + l))
          return false;
        const Arg a{{b, size_t(l)}, uint64_t(l)};
        if (record && i < max_args) args[i] = a;
        if (i == key_pos) {
          key = a;
          has_key = true;
        }
        r = b + l + 2;
      }
      at = r;
      return true;
    };
    if constexpr (TakesSimpleRequests<Sink>) {
      if (simple) [[likely]] {
        if (hit != nullptr) {
          Shape& sh = hit->shape;
          if (sh.size != 0 && size_t(end - p) >= sh.size && shape_matches(sh, p)) [[likely]] {
            sh.misses = 0;
            SimpleRequest sr;
            sr.start = at0 + uint64_t(uintptr_t(p));
            sr.end = sr.start + sh.size;
            sr.cmd = cmd;
            sr.has_key = sh.key_at >= 0;
            sr.key = {p + sh.key_at, sh.key_len};
            if (sink.on_simple_request(sr)) [[likely]] {
              p += sh.size;
              if constexpr (TakesSimpleRuns<Sink>) {
                // The frames after it laid out alike: one offer, each checked as it was.
                const size_t size = sh.size;
                // (Not even looked for when the next frame cannot fit, a chunk of one request,
                // or starts otherwise, commands taking turns.)
                const char* r = runs && size_t(end - p) >= std::max<size_t>(size, 16) &&
                                        detail::load64(p) == hit->w0
                                    ? run_end(*hit, p, end)
                                    : p;
                if (r != p) {
                  SimpleRun run;
                  run.start = at0 + uint64_t(uintptr_t(p));
                  run.data = p;
                  run.size = uint32_t(size);
                  run.count = uint32_t(size_t(r - p) / size);
                  run.cmd = cmd;
                  run.key_at = sh.key_at;
                  run.key_len = sh.key_len;
                  if (sink.on_simple_run(run)) [[likely]]
                    p = r;
                  else
                    runs = false;  // one by one for the rest of this chunk
                }
              }
              continue;
            }
          }
        }
        Arg key;
        bool has_key = false;
        if (!walk(false, q, key, has_key)) break;
        if (hit != nullptr) {
          // A frame the shape did not describe: learn its own, backing off (after 1, 2, 4...
          // misses) when frames of this prefix keep changing shape.
          Shape& sh = hit->shape;
          if ((sh.misses & (sh.misses - 1)) == 0) learn_shape(*hit, p, q);
          if (sh.misses < 255) ++sh.misses;
        }
        SimpleRequest sr;
        sr.start = at0 + uint64_t(uintptr_t(p));
        sr.end = at0 + uint64_t(uintptr_t(q));
        sr.cmd = cmd;
        sr.has_key = has_key;
        sr.key = key.data;
        if (sink.on_simple_request(sr)) [[likely]] {
          p = q;
          continue;
        }
      }
    }
    if (hit != nullptr) {
      d = p + hit->name_at;
      len = hit->name_len;
    }
    args[0] = {{d, size_t(len)}, uint64_t(len)};
    f.has_key = false;
    f.key = {};
    if (!walk(true, q, f.key, f.has_key)) break;
    f.start = at0 + uint64_t(uintptr_t(p));
    f.end = at0 + uint64_t(uintptr_t(q));
    f.argc = uint64_t(n);
    f.name = cmd->name;
    f.cmd = cmd;
    f.args = {args, size_t(std::min(n, max_args))};
    f.simple = simple;
    if constexpr (std::is_invocable_v<Sink&, const RequestFrame&>)
      sink(f);
    else
      sink.on_request(f);
    p = q;
  } while (p < end && *p == '*');
  return p;
}

// --- the reply fast path, inline so that the sink is called directly ------------------------

// The whole top-level scalars (+, -, :, $) at p, one after another, without the state machine;
// returns where the first one it could not take starts (p itself when none), which the state
// machine then parses (and reports any error in at the right offset). The text is a view into
// the chunk (bounded as keep_text() would bound the copy), so +OK, :1, $-1 and a small bulk
// cost a few compares each.
// One top-level scalar at p: its type and the byte after it, or nullptr for anything the state
// machine has to take. With kFill, the frame's facts too (f's other fields as constructed).
template <bool kFill>
[[gnu::always_inline]] inline const char* ReplyParser::scalar_at(const char* p, const char* end,
                                                                 Type& type, ReplyFrame* f) const {
  int64_t n = 0;
  switch (*p) {
  case '+':
    // +OK, the reply of most writes: one compare.
    if (end - p >= 5 && std::memcmp(p, "+OK\r\n", 5) == 0) {
      type = Type::SimpleString;
      if constexpr (kFill) f->text = {p + 1, 2};  // text_cap_bytes is at least 8
      return p + 5;
    }
    [[fallthrough]];
  case '-': {
    // Short lines (+OK, +QUEUED, most errors) are scanned here; long ones with memchr.
    const char* nl = p + 1;
    const char* lim = std::min(end, p + 64);
    while (nl < lim && *nl != '\n') ++nl;
    if (nl == lim) {
      if (lim == end) return nullptr;
      nl = long_line_end(nl, end);
    }
    if (nl == nullptr || nl == p + 1 || nl[-1] != '\r' ||
        uint64_t(nl - p - 2) > limits_.max_line_len)
      return nullptr;
    type = *p == '+' ? Type::SimpleString : Type::Error;
    if constexpr (kFill) f->text = {p + 1, std::min<size_t>(size_t(nl - p - 2), cap_.text_cap_bytes)};
    return nl + 1;
  }
  case ':': {
    const bool neg = p + 1 < end && p[1] == '-';
    const char* q = detail::fast_len(p + 1 + neg, end, n);
    if (q == nullptr) return nullptr;
    type = Type::Integer;
    if constexpr (kFill) f->integer = neg ? -n : n;
    return q;
  }
  case '$': {
    if (p + 1 < end && p[1] == '-') {
      if (end - p < 5 || p[2] != '1' || p[3] != '\r' || p[4] != '\n') return nullptr;
      type = Type::Bulk;
      if constexpr (kFill) {
        f->is_null = true;
        f->size = -1;
      }
      return p + 5;
    }
    const char* d = detail::header_line(p, end, '$', n);
    if (d == nullptr || n > limits_.max_bulk_len || end - d < n + 2 || !detail::is_crlf(d + n))
      return nullptr;
    type = Type::Bulk;
    if constexpr (kFill) {
      f->size = n;
      f->text = {d, std::min<size_t>(size_t(n), cap_.text_cap_bytes)};
    }
    return d + n + 2;
  }
  default:
    return nullptr;
  }
}

template <class Sink>
const char* ReplyParser::fast_scalars(const char* p, const char* end, Sink& sink) {
  const uint64_t at0 = offset_ - uint64_t(uintptr_t(base_));  // pos(x) == at0 + x
  ReplyFrame f;  // what a scalar never sets stays as constructed, from frame to frame
  [[maybe_unused]] bool runs = true;  // the sink takes runs (until it takes part of one)
  do {
    Type type;
    const char* q;
    if constexpr (TakesSimpleReplies<Sink>) {
      // Only the type and the end, until the sink declines (it seldom does).
      q = scalar_at<false>(p, end, type, nullptr);
      if (q == nullptr) return p;
      if (type != Type::Error) [[likely]] {
        SimpleReply sr;
        sr.start = at0 + uint64_t(uintptr_t(p));
        sr.end = at0 + uint64_t(uintptr_t(q));
        sr.type = type;
        if (sink.on_simple_reply(sr)) [[likely]] {
          if constexpr (TakesSimpleReplyRuns<Sink>) {
            // The replies after it laid out alike: one offer.
            const char* r =
                runs && end - q >= q - p && *q == *p ? reply_run_end(p, q, end) : q;
            if (r != q) {
              const size_t size = size_t(q - p);
              SimpleReplyRun run;
              run.start = sr.end;
              run.size = uint32_t(size);
              run.count = uint32_t(size_t(r - q) / size);
              run.type = type;
              const size_t took = sink.on_simple_reply_run(run);
              q += took * size;
              if (took < run.count) runs = false;  // one by one for the rest of the chunk
            }
          }
          p = q;
          continue;
        }
      }
    }
    // The frame: its per-value fields cleared, then read (again, after a declined offer).
    f.is_null = false;
    f.size = 0;
    f.integer = 0;
    f.text = {};
    q = scalar_at<true>(p, end, type, &f);
    if (q == nullptr) return p;
    f.start = at0 + uint64_t(uintptr_t(p));
    f.end = at0 + uint64_t(uintptr_t(q));
    f.type = type;
    if constexpr (std::is_invocable_v<Sink&, const ReplyFrame&>)
      sink(f);
    else
      sink.on_reply(f);
    p = q;
  } while (p < end);
  return p;
}

} // namespace faultline::resp
