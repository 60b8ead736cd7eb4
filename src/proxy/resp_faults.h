#pragma once
// RESP fault execution: what happens once a RESP-aware toxic has decided on a command.
//
//   decision ─► Inject ─► queue_injection ─► (its turn, by the pairing) ─► reply()
//           ├─► DelayRequest ─► delay_request: held ─► timer ─► to_redis
//           ├─► Reset/CloseBefore ─► begin_end: drop the rest, replies before it go out, end
//           └─► flagged (reply-side) ─► begin_collect ─► collect(bytes as they come)
//                                          ├ DelayReply: held ─► timer ─► to_client
//                                          ├ Truncate: first N bytes ─► to_client, then RST
//                                          ├ Hang: dropped, and every later reply
//                                          └ Reset/CloseAfter: dropped, then end
//
// Deciding (rules, parsing, pairing, observers) is the tap's job (session.cpp); this class only
// executes, against a FaultPort: the few things it may do to its session. It holds nothing
// beyond what a delay holds (within the pipe's backpressure: held bytes stay counted as in
// flight), and decides nothing from what it has not seen, so tests drive it with a fake port.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

#include "base/lazy_deque.h"
#include "proxy/pairing.h"
#include "toxics/resp_rule.h"
#include "uv/buffer.h"
#include "uv/timer.h"

namespace faultline::proxy {

// What fault execution may do to its session. Upstream = toward Redis, Downstream = toward the
// client.
class FaultPort {
public:
  virtual ~FaultPort() = default;
  // Into the pipe of one direction: its toxic stages, then the socket.
  virtual void to_redis(uv::Chunk c) = 0;
  virtual void to_client(uv::Chunk c) = 0;
  // The FIN of one direction, after everything held before it went on.
  virtual void eof(toxics::Stream dir) = 0;
  // An injected reply: counted as bytes owed to the client, then delivered through reply().
  virtual void inject(std::string_view bytes) = 0;
  // Bytes read and not delivered (frees the pipe's budget).
  virtual void dropped(toxics::Stream dir, size_t bytes) = 0;
  // A chunk about to wait (held by a delay): packed so it does not pin a whole read block.
  virtual uv::Chunk keep(toxics::Stream dir, uv::Chunk c) = 0;
  // Read no more from the client.
  virtual void stop_client() = 0;
  // Stop reading, let what is queued reach both sockets, then FIN (or RST).
  virtual void end(bool rst) = 0;
  // Closing, or end() already called: nothing more to start.
  virtual bool ended() const = 0;
  virtual bool closing() const = 0;
  // Redis still owes a reply to an earlier request.
  virtual bool reply_expected() const = 0;
  virtual uint32_t drain_timeout_ms() const = 0;
  virtual uv_loop_t* loop() = 0;
  // ---- Rewrite (proxy/rewriter.h) ----
  // The most a reply to rewrite may hold before it goes on as it came: below the watermark
  // that would stop reading Redis, so collecting never waits for bytes it cannot read.
  virtual size_t rewrite_limit() const = 0;
  // The rewriter's answer for a whole reply: false to deliver it as it came.
  virtual bool rewrite(uint8_t kind, std::string_view frame, std::string& out) = 0;
  virtual void rewrite_too_large(uint8_t kind, size_t bytes) = 0;
  // `bytes` replace `n` bytes read from Redis (released): a chunk counted as owed to the client.
  virtual uv::Chunk replacement(size_t n, std::string_view bytes) = 0;
};

// A request whose reply a rule acts on.
struct FlagEntry {
  PendingId id = 0;
  toxics::RespActionKind kind = toxics::RespActionKind::Forward;
  uint64_t delay_ms = 0;
  uint64_t bytes = 0;      // Truncate: bytes delivered; Rewrite: the rewriter's kind
  std::string fault;
};

class RespFaults {
public:
  explicit RespFaults(FaultPort& port) : port_(port) {}
  RespFaults(const RespFaults&) = delete;
  RespFaults& operator=(const RespFaults&) = delete;

  // ---- request side ----
  // A delay holds requests: everything toward Redis waits behind them (request()).
  bool holds_requests() const { return !req_hold_.empty(); }
  // Bytes toward Redis while requests are held: behind them.
  void request(uv::Chunk c);
  // When a request delayed by delay_ms from now goes on (never before one held already).
  uint64_t request_due(uint64_t delay_ms) const;
  // Holds a request's bytes until `due`: each(fn) hands them to fn. `pack` copies small chunks
  // (see FaultPort::keep); `marker` holds an empty entry when there are no bytes, so later
  // requests still wait for `due`. Returns when they go on.
  template <class Each> uint64_t delay_request(uint64_t due, Each&& each, bool pack, bool marker) {
    if (!req_hold_.empty()) due = std::max(due, req_hold_.back().due_ms);
    const bool was_empty = req_hold_.empty();
    each([&](uv::Chunk b) {
      req_hold_.push_back({due, pack ? port_.keep(toxics::Stream::Upstream, std::move(b))
                                     : std::move(b)});
    });
    if (marker && req_hold_.empty()) req_hold_.push_back({due, {}});
    if (was_empty && !req_hold_.empty()) release(true);
    return due;
  }
  // The client's FIN: after what is held.
  void client_eof();

  // ---- injected replies (their turn comes from the pairing) ----
  void queue_injection(std::string reply, std::string_view fault);
  bool has_injections() const { return !injections_.empty(); }
  size_t injected_bytes() const { return injected_bytes_; }
  // The next injected reply and the fault that made it; false when none is queued.
  bool next_injection(std::string& payload, std::string& fault);
  // Its turn came: deliver it (through reply(), so a delay or a hang applies to it too).
  void deliver_injection(std::string_view payload);

  // ---- reply side ----
  // A delay holds replies, or replies are no longer delivered (hang, ending).
  bool intercepts_replies() const { return blackhole_ || !rep_hold_.empty(); }
  // Bytes toward the client while intercepts_replies(): held behind, or dropped.
  void reply(uv::Chunk c);
  void flag(FlagEntry e) { flagged_.push_back(std::move(e)); }
  // The reply to a flagged request went by without being acted on.
  void forget_flag(PendingId id) {
    for (auto it = flagged_.begin(); it != flagged_.end();)
      it = it->id == id ? flagged_.erase(it) : std::next(it);
  }
  bool has_flagged() const { return !flagged_.empty(); }
  bool collecting() const { return collecting_; }
  PendingId collect_id() const { return collect_id_; }
  // What is done to the reply being (or last) acted on, and the fault that does it.
  toxics::RespActionKind collect_kind() const { return col_.kind; }
  const std::string& collect_fault() const { return col_.fault; }
  // The reply to request `id` (flagged) starts: its bytes go to collect() from the first one.
  void begin_collect(PendingId id);
  // The collect id of a frame collected without a flagged request to tie it to (below).
  static constexpr PendingId kUnpairedId = ~PendingId(0);
  // The next frame, whatever it answers, is to be collected whole and offered to the rewriter as
  // `kind`: a subscribed session's message (kMessage), or a cluster node's error reply seen as
  // it arrives (kRedirectOnly). The caller finishes it at its end.
  void begin_collect_unpaired(uint8_t kind);
  // Bytes of the reply being acted on, as they arrive: held, cut or dropped, never gathered.
  void collect(uv::Chunk c);
  // The request whose reply is (or was last) acted on.
  PendingId collected_id() const { return col_.id; }
  // It ended: what the action does once it is whole.
  void finish_collect();
  // Parsing of replies stopped, or Redis closed: no reply is collected any more.
  void stop_collecting() {
    collecting_ = false;
    release_gathered();
  }
  // Redis's FIN: after what is held.
  void upstream_eof();

  // ---- ending the connection at a command ----
  enum class Ending : uint8_t { None, CloseBefore, ResetBefore, CloseAfter, ResetAfter };
  Ending ending() const { return ending_; }
  // Nothing more goes to Redis: a toxic is ending the connection.
  bool stopped() const { return ending_ != Ending::None; }
  // Before-phase (resp_reset/resp_close "before"): the client is read no more, and the replies
  // to the commands before it (still on their way from Redis, or held) go out first, for at
  // most drain_timeout_ms. After-phase (its reply was dropped or cut): nothing more is delivered
  // but replies a delay still holds.
  void begin_end(bool rst, bool after);
  // Ends the connection if nothing it waits for is left.
  void maybe_end();

private:
  struct Held {
    uint64_t due_ms;
    uv::Chunk chunk;
  };
  void release(bool request_side);
  // Rewrite: the bytes of the reply collected so far go on as they came.
  void release_gathered();

  FaultPort& port_;
  LazyDeque<Held> req_hold_;
  std::unique_ptr<uv::Timer> req_timer_;
  bool req_eof_after_hold_ = false;

  size_t injected_bytes_ = 0;            // injected replies waiting for their turn
  LazyDeque<std::string> injections_;   // FIFO
  LazyDeque<std::string> injection_faults_;

  LazyDeque<FlagEntry> flagged_;        // in order: the one taken is at the front
  bool collecting_ = false;
  PendingId collect_id_ = 0;
  FlagEntry col_;                        // the flag of the reply being acted on
  uint64_t col_left_ = 0;                // Truncate: bytes still to deliver
  uint64_t col_due_ = 0;                 // DelayReply: when its bytes go on
  LazyDeque<Held> rep_hold_;
  std::unique_ptr<uv::Timer> rep_timer_;
  bool rep_eof_after_hold_ = false;
  // Rewrite: the reply's chunks, kept until it is whole (or too large to rewrite).
  enum class Gather : uint8_t { Undecided, Keep, Pass };
  Gather gather_ = Gather::Undecided;
  std::vector<uv::Chunk> gathered_;
  size_t gathered_bytes_ = 0;
  bool blackhole_ = false;               // resp_hang, or the connection is ending: no reply
                                         // is delivered any more
  Ending ending_ = Ending::None;
  std::unique_ptr<uv::Timer> end_timer_; // bounds the wait for earlier replies
};

} // namespace faultline::proxy
