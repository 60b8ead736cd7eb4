#pragma once
// Pairs request frames with reply frames for one session, and tracks the connection state that
// changes how many replies a request gets (pure code: no libuv).
//
//   requests, in the order they go to Redis        replies, in the order they come back
//   on_request() ──► [ GET | SUBSCRIBE a b | INJ | EXEC ] ──► on_reply()
//                      head ▲                 ▲
//            each reply completes the head;   an injected reply (answered by faultline) waits
//            SUBSCRIBE a b takes two;         here for its turn: next_injected() releases it
//            pushes, pub/sub messages and     once everything before it has been answered,
//            MONITOR lines pair with nothing  and real replies never consume it
//
// Connection state followed: MULTI/EXEC/DISCARD (QUEUED replies, nil EXEC after WATCH),
// RESP2 pub/sub mode (one reply per channel; UNSUBSCRIBE without arguments gets one per
// subscription, or one), RESP3 pushes, MONITOR, CLIENT REPLY OFF/ON/SKIP, HELLO 2/3 (only
// when it succeeds), RESET, QUIT, SELECT. Entries live in a ring that only grows, so a session
// in steady state does not allocate.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/room.h"
#include "resp/commands.h"
#include "resp/parser.h"
#include "resp/writer.h"

namespace faultline::proxy {

using PendingId = uint64_t;  // 1, 2, 3... per session; 0 = none

// Hash of a key, as the client verdicts keep it (to know a resend: the same command on the same
// key). Cheap rather than strong: a key of 8 to 16 bytes is two loads, two multiplications and
// a fold. Inline: the pairing FIFO takes one per request.
[[gnu::always_inline]] inline uint32_t key_hash(std::string_view s) {
  constexpr uint64_t k1 = 0x9E3779B97F4A7C15ULL, k2 = 0xff51afd7ed558ccdULL;
  const char* p = s.data();
  const size_t n = s.size();
  uint64_t h = n, a = 0, b = 0;
  if (n >= 8) [[likely]] {
    if (n > 16) {
      // Every word but the last (which b takes, overlapping).
      for (size_t i = 8; i + 8 < n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ w) * k2;
        h ^= h >> 29;
      }
    }
    std::memcpy(&a, p, 8);
    std::memcpy(&b, p + n - 8, 8);  // overlapping a when n < 16
  } else if (n >= 4) {
    uint32_t x, y;
    std::memcpy(&x, p, 4);
    std::memcpy(&y, p + n - 4, 4);
    a = x;
    b = y;
  } else if (n > 0) {
    a = uint64_t(uint8_t(p[0])) | uint64_t(uint8_t(p[n / 2])) << 8 |
        uint64_t(uint8_t(p[n - 1])) << 16;
  }
  uint64_t x = ((a ^ h) * k1) ^ (b * k2);
  x ^= x >> 32;
  return uint32_t(x) | 1u;  // never 0, which means "no key"
}

// A request waiting for its reply, as the caller sees it (the ring keeps it in less room).
struct PendingInfo {
  PendingId id = 0;
  const resp::CommandInfo* cmd = nullptr;  // nullptr for unknown commands
  uint64_t start_us = 0;                   // when the request was sent
  uint32_t req_bytes = 0;                  // its size (saturated at 4 GiB)
  int32_t db = 0;                          // database selected when the request was sent
  uint32_t key_hash = 0;                   // key_hash() of its first key; 0: no key
  uint8_t user_flags = 0;                  // caller's flags (toxic decisions), returned as given
  bool injected = false;                   // answered by faultline, never by Redis
  bool queued = false;                     // sent inside MULTI (its reply is +QUEUED)
};

// A reply in its plainest form: paired with its request, the request's last reply, from Redis,
// not an error, no fault involved (most replies, in steady traffic). As the pairing's fast path
// gives it: the command as its table index, the request's start rather than the latency.
struct PlainReply {
  PendingId id = 0;
  uint16_t cmd = 0xFFFF;   // CommandInfo::id; 0xFFFF when unknown
  uint64_t start_us = 0;   // when the request was sent
  uint64_t bytes_in = 0;   // the request's size
  uint64_t bytes_out = 0;  // the reply's size
};

// Plain replies of one chunk as observers receive them: consecutive replies to the same
// command with the same latency (a pipeline: its requests arrived in one chunk, its replies in
// another) are one group, so a 32-command pipeline is one histogram update, not 32.
struct PlainReplies {
  const resp::CommandInfo* cmd = nullptr;  // nullptr when unknown
  uint64_t latency_us = 0;
  uint64_t count = 0;      // replies in the group
  uint64_t bytes_in = 0;   // their requests' sizes, summed
  uint64_t bytes_out = 0;  // the replies' sizes, summed
  PendingId last_id = 0;   // the pairing id of the last of them
  uint64_t start_us = 0;   // when their requests were sent
  uint16_t cmd_id = 0xFFFF;
};

// The groups of one chunk, all timed against its arrival (`now`, given by begin()). One for
// all sessions of a loop (a chunk is parsed at a time), so it stays in cache.
class PlainRun {
public:
  void begin(uint64_t now_us) { now_us_ = now_us; }
  void add(const PlainReply& r) { add_group(r.cmd, r.start_us, 1, r.bytes_in, r.bytes_out, r.id); }
  void add_group(uint16_t cmd, uint64_t start_us, uint64_t count, uint64_t bytes_in,
                 uint64_t bytes_out, PendingId last_id) {
    if (size_ != 0) {
      PlainReplies& g = groups_[size_ - 1];
      if (g.cmd_id == cmd && g.start_us == start_us) [[likely]] {
        g.count += count;
        g.bytes_in += bytes_in;
        g.bytes_out += bytes_out;
        g.last_id = last_id;
        return;
      }
    }
    if (size_ == groups_.size()) groups_.resize(groups_.empty() ? 64 : groups_.size() * 2);
    PlainReplies& g = groups_[size_++];
    g.cmd_id = cmd;
    g.start_us = start_us;
    g.count = count;
    g.bytes_in = bytes_in;
    g.bytes_out = bytes_out;
    g.last_id = last_id;
  }
  bool empty() const { return size_ == 0; }
  void clear() { size_ = 0; }
  // The groups, their commands and latencies filled in.
  std::span<const PlainReplies> groups() {
    for (size_t i = 0; i < size_; ++i) {
      PlainReplies& g = groups_[i];
      g.cmd = g.cmd_id == 0xFFFF ? nullptr : &resp::detail::kCommands[g.cmd_id];
      g.latency_us = now_us_ >= g.start_us ? now_us_ - g.start_us : 0;
    }
    return {groups_.data(), size_};
  }

private:
  std::vector<PlainReplies> groups_;
  size_t size_ = 0;
  uint64_t now_us_ = 0;
};

struct RequestResult {
  PendingId id = 0;
  bool expects_reply = false;  // false: CLIENT REPLY OFF/SKIP, empty commands
};

enum class ReplyKind : uint8_t {
  Paired,         // a reply to `request`
  Push,           // RESP3 push not answering a request (pub/sub message, invalidation...)
  PubSubMessage,  // RESP2 "message" / "pmessage" / "smessage" in subscribed mode
  Monitor,        // a MONITOR line
  Unmatched,      // a reply with no pending request (counted)
};

const char* reply_kind_name(ReplyKind k);

struct ReplyResult {
  ReplyKind kind = ReplyKind::Unmatched;
  PendingInfo request;        // when Paired
  uint64_t latency_us = 0;    // when Paired: now - request.start_us
  bool final = true;          // when Paired: the request's last reply (SUBSCRIBE a b has two)
};

enum class ReplyMode : uint8_t { On, Off };

class Pairing {
public:
  // room: where the first ring is taken from, when it has storage_bytes(initial_capacity) left
  // (base/room.h); else, and for every larger ring, the heap.
  explicit Pairing(size_t initial_capacity = 64, Room* room = nullptr);
  static size_t storage_bytes(size_t initial_capacity);

  // A request forwarded to Redis, in stream order.
  RequestResult on_request(const resp::RequestFrame& f, uint64_t now_us, uint8_t user_flags = 0) {
    // Inline: a simple command (no special meaning) while nothing pending changes how many
    // replies it gets is one entry in the ring.
    if (f.simple && req_plain_) [[likely]] {
      const PendingId id = next_id_++;
      fill(push_entry(), id, f, now_us, user_flags, 0);
      return {id, true};
    }
    return on_request_general(f, now_us, user_flags);
  }
  // on_request() for a simple request as the parser's fast path offers it: false (nothing
  // done) unless it is one entry in the ring, as on_request() would make it.
  bool on_simple_request(const resp::SimpleRequest& r, uint64_t now_us) {
    if (!req_plain_) return false;
    const PendingId id = next_id_++;
    Entry& e = push_entry();
    e.start_us = now_us;
    e.id_lo = uint32_t(id);
    e.req_bytes = uint32_t(std::min<uint64_t>(r.size(), UINT32_MAX));
    e.key_hash = r.has_key ? key_hash(r.key) : 0u;
    e.db = sent_db_;
    e.x = 1;
    e.cmd = r.cmd->id;
    e.kind = 0;
    e.user_flags = 0;
    return true;
  }
  // on_simple_request() for each frame of a run, in one pass: false (nothing done) unless
  // each is one entry in the ring.
  bool on_simple_run(const resp::SimpleRun& r, uint64_t now_us);
  // A request faultline answers itself (not forwarded). It takes its place in the FIFO and
  // changes no connection state (Redis never saw it).
  RequestResult on_injected(const resp::RequestFrame& f, uint64_t now_us,
                            uint8_t user_flags = 0);
  // A reply frame from Redis, in stream order.
  ReplyResult on_reply(const resp::ReplyFrame& f, uint64_t now_us) {
    // Inline: the head is a plain command, nothing injected waits, no out-of-band traffic can
    // interleave (no MONITOR, no subscription, not a push): this reply is all the head gets.
    if (rep_plain_ && size_ != 0 && !f.is_push()) {
      const Entry& h = ring_[head_];
      if ((h.kind & ~kQueued) == 0) {
        ReplyResult r;
        r.kind = ReplyKind::Paired;
        r.request = info(h);
        r.latency_us = now_us >= h.start_us ? now_us - h.start_us : 0;
        r.final = true;
        pop_head();
        return r;
      }
    }
    return on_reply_general(f, now_us);
  }
  // on_reply() for the plainest case, the caller's fast path: a reply that is not an error
  // completing a plain head (one reply expected, nothing special, nothing injected waiting,
  // no out-of-band traffic possible). Fills `out` (bytes_out: the frame's size) and pops the
  // head; false (nothing done) for any other reply, which then goes to on_reply(). The
  // latency is the caller's to work out, from out.start_us.
  bool plain_reply(const resp::ReplyFrame& f, PlainReply& out) {
    if (f.is_push() || f.is_error()) return false;
    return plain_reply(f.size_bytes(), out);
  }
  // The same for a reply known to be neither a push nor an error, of `bytes` bytes.
  bool plain_reply(uint64_t bytes, PlainReply& out) {
    if (!rep_plain_ || size_ == 0) return false;
    const Entry& h = ring_[head_];
    if ((h.kind & ~kQueued) != 0) return false;
    out.id = full_id(h.id_lo);
    out.cmd = h.cmd;
    out.start_us = h.start_us;
    out.bytes_in = h.req_bytes;
    out.bytes_out = bytes;
    pop_head();
    return true;
  }
  // How many of the next replies, each neither an error nor a push, would each complete a
  // plain head as plain_reply() does: every entry when none is special or injected and no
  // out-of-band traffic can interleave; 0 otherwise (then plain_reply() decides each).
  size_t plain_ahead() const { return rep_plain_ && nonplain_ == 0 ? size_ : 0; }
  // plain_reply() for the next k replies at once (k <= plain_ahead()), of sizes[0..k) bytes:
  // pops their requests and adds them to `run`, grouped.
  void take_plain(const uint32_t* sizes, size_t k, PlainRun& run);
  // The same for k replies of `size` bytes each.
  void take_plain(uint32_t size, size_t k, PlainRun& run);
  // After on_request/on_injected/on_reply: pops the head if it is an injected entry whose turn
  // has come (everything before it answered). Call until it returns nullopt.
  std::optional<PendingInfo> next_injected();
  // The request the next real reply will answer (oldest entry Redis will answer), if any.
  std::optional<PendingInfo> expected() const;

  resp::Protocol protocol() const { return protocol_; }
  int32_t db() const { return db_; }
  bool in_multi() const { return in_multi_; }
  bool subscribed() const { return channels_ + patterns_ + shard_channels_ > 0; }
  int64_t subscriptions() const { return channels_ + patterns_ + shard_channels_; }
  bool monitoring() const { return monitoring_; }
  ReplyMode reply_mode() const { return reply_mode_; }
  bool quitting() const { return quitting_; }  // QUIT answered: Redis closes next
  size_t pending() const { return size_; }
  // What a pairing passes on to the one that takes over its session after a quiet spell (the
  // session frees its RESP state while idle, and makes it again with the next byte): the ids
  // go on, and the database and protocol stay as Redis confirmed them.
  struct Resume {
    PendingId next_id = 1;
    int32_t db = 0;
    resp::Protocol protocol = resp::Protocol::Resp2;
    uint64_t unmatched = 0, out_of_band = 0;
  };
  // Nothing pending and no state a Resume does not carry (transaction, subscriptions,
  // MONITOR, CLIENT REPLY, QUIT): a pairing resumed from resume_state() behaves as this one.
  bool quiet() const {
    return size_ == 0 && injected_ == 0 && !in_multi_ && tx_db_ < 0 && !subscribed() &&
           !monitoring_ && reply_mode_ == ReplyMode::On && !skip_next_ && !quitting_ &&
           sent_db_ == db_;
  }
  Resume resume_state() const { return {next_id_, db_, protocol_, unmatched_, out_of_band_}; }
  void resume(const Resume& r) {
    next_id_ = r.next_id;
    db_ = sent_db_ = r.db;
    protocol_ = r.protocol;
    unmatched_ = r.unmatched;
    out_of_band_ = r.out_of_band;
  }
  uint64_t unmatched_replies() const { return unmatched_; }
  uint64_t out_of_band() const { return out_of_band_; }
  // The requests still waiting for a reply (injected ones included), oldest first.
  template <class Fn> void each_pending(Fn&& fn) const {
    for (size_t i = 0; i < size_; ++i) fn(info(ring_[(head_ + i) & mask_]));
  }

private:
  // 32 bytes, two per cache line: a pipeline keeps one per command in flight, read again when
  // its reply comes, so their size is cache misses.
  struct Entry {
    uint64_t start_us;
    uint32_t id_lo;      // the id's low half (full_id() rebuilds it)
    uint32_t req_bytes;
    uint32_t key_hash;
    int32_t db;
    // The SUBSCRIBE family: replies still expected (kDynamic: UNSUBSCRIBE without arguments,
    // one per subscription). Others get one reply; for them: SELECT and EXEC the db (-1: none
    // or invalid), HELLO the protocol version; for a plain entry (kind 0) made by a run, the
    // entries left in that run from this one on (alike but for id and key hash), which
    // take_plain() pairs at once; 1 or less otherwise.
    int32_t x;
    uint16_t cmd;        // CommandInfo::id, kNoCommand for unknown commands
    uint8_t kind;        // Special (low bits) | kInjected | kQueued; 0: a plain command
    uint8_t user_flags;
  };
  static_assert(sizeof(Entry) == 32);
  static constexpr uint8_t kSpecialMask = 0x1F, kInjected = 0x40, kQueued = 0x80;
  static_assert(uint8_t(resp::Special::Auth) <= kSpecialMask);
  static constexpr uint16_t kNoCommand = 0xFFFF;
  static resp::Special special(const Entry& e) { return resp::Special(e.kind & kSpecialMask); }
  // Neither special nor injected (queued inside MULTI or not): its reply is all it gets.
  static bool plain(const Entry& e) { return (e.kind & ~kQueued) == 0; }
  static int32_t entry_arg(int64_t v) {
    return v >= INT32_MIN && v <= INT32_MAX ? int32_t(v) : -1;
  }
  static constexpr int32_t kDynamic = -1;
  static const resp::CommandInfo* command(uint16_t id) {
    return id == kNoCommand ? nullptr : &resp::detail::kCommands[id];
  }
  // Entries keep the low 32 bits of their id: the id is the one of the last 2^32 issued
  // (next_id_ - 1 and below) with those bits. A request is answered before 2^32 later ones
  // are issued (they would have to wait in the ring behind it).
  PendingId full_id(uint32_t lo) const { return next_id_ - uint32_t(uint32_t(next_id_) - lo); }
  PendingInfo info(const Entry& e) const {
    PendingInfo p;
    p.id = full_id(e.id_lo);
    p.cmd = command(e.cmd);
    p.start_us = e.start_us;
    p.req_bytes = e.req_bytes;
    p.db = e.db;
    p.key_hash = e.key_hash;
    p.user_flags = e.user_flags;
    p.injected = (e.kind & kInjected) != 0;
    p.queued = (e.kind & kQueued) != 0;
    return p;
  }
  void fill(Entry& e, PendingId id, const resp::RequestFrame& f, uint64_t now_us, uint8_t flags,
            uint8_t kind) {
    e.start_us = now_us;
    e.id_lo = uint32_t(id);
    e.req_bytes = uint32_t(std::min<uint64_t>(f.end - f.start, UINT32_MAX));
    e.key_hash = f.has_key ? key_hash(f.key.data) : 0u;
    e.db = sent_db_;
    e.x = 1;
    e.cmd = f.cmd ? f.cmd->id : kNoCommand;
    e.kind = kind;
    e.user_flags = flags;
  }

  RequestResult on_request_general(const resp::RequestFrame& f, uint64_t now_us,
                                   uint8_t user_flags);
  ReplyResult on_reply_general(const resp::ReplyFrame& f, uint64_t now_us);
  Entry& push_entry() {
    if (size_ > mask_) [[unlikely]]
      grow();
    Entry& e = ring_[(head_ + size_) & mask_];
    ++size_;
    return e;
  }
  void pop_head() {
    head_ = (head_ + 1) & mask_;
    --size_;
  }
  void grow();  // doubles the ring: the only allocation, amortised
  void reserve(size_t more) {
    while (size_ + more > mask_ + 1) [[unlikely]]
      grow();
  }
  Entry* first_real();       // oldest entry Redis will answer
  void pop_entry(Entry* e);  // removes e (the first real entry), keeping injected ones before it
  void track_subscriptions(const resp::ReplyFrame& f);
  void complete(const Entry& e, const resp::ReplyFrame& f);
  // The inline paths' conditions, worked out again whenever the state they depend on changes
  // (only the general paths change it).
  void refresh() {
    req_plain_ = !in_multi_ && !skip_next_ && reply_mode_ == ReplyMode::On;
    rep_plain_ = injected_ == 0 && !monitoring_ && !subscribed();
  }

  ArrayStorage<Entry> ring_;
  size_t mask_ = 0;              // capacity - 1 (a power of two)
  size_t head_ = 0, size_ = 0;
  size_t injected_ = 0;          // injected entries in the ring: none means the head is real
  size_t nonplain_ = 0;          // entries that are special or injected (see plain())
  PendingId next_id_ = 1;
  bool req_plain_ = true;        // a simple request is one entry
  bool rep_plain_ = true;        // the head's reply is all it gets

  resp::Protocol protocol_ = resp::Protocol::Resp2;
  int32_t db_ = 0;       // as Redis confirmed it (SELECT / EXEC replies)
  int32_t sent_db_ = 0;  // what the next request runs in, if the SELECTs before it succeed
  bool in_multi_ = false;
  int64_t tx_db_ = -1;       // SELECT queued in the transaction, applied if EXEC runs
  int64_t channels_ = 0, patterns_ = 0, shard_channels_ = 0;
  bool monitoring_ = false;
  ReplyMode reply_mode_ = ReplyMode::On;
  bool skip_next_ = false;   // CLIENT REPLY SKIP: the next command gets no reply
  bool quitting_ = false;
  uint64_t unmatched_ = 0, out_of_band_ = 0;
};

} // namespace faultline::proxy
