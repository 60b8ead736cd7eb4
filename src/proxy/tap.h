#pragma once
// The RESP tap's state (session.h lists the proxy's files). Private to src/proxy: session.cpp,
// the lifecycle, creates it on the first byte and frees it with the session; tap.cpp runs it:
// parsing, pairing, the observers, and the decisions of the RESP rules on each request.

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/lazy_deque.h"
#include "proxy/delivery.h"
#include "proxy/pairing.h"
#include "proxy/pipe.h"
#include "proxy/resp_faults.h"
#include "proxy/rewriter.h"
#include "proxy/runtime.h"
#include "proxy/session.h"
#include "toxics/resp_rule.h"

namespace faultline::proxy {

// What fault execution may do to this session (see resp_faults.h).
struct Session::FaultLink final : FaultPort {
  explicit FaultLink(Session& session) : s(session) {}
  Session& s;
  Pipe& pipe(toxics::Stream d) const { return d == toxics::Stream::Upstream ? *s.up_ : *s.down_; }
  void to_redis(uv::Chunk c) override { s.up_->emit(0, std::move(c)); }
  void to_client(uv::Chunk c) override { s.down_->emit(0, std::move(c)); }
  void eof(toxics::Stream d) override { pipe(d).emit_eof(0); }
  void inject(std::string_view b) override {
    if (s.deliv_) s.deliv_->injected += b.size();
    s.down_->inflight += b.size();
    s.down_deliver(s.down_->packer.copy(s.rt_.pool(), b.data(), b.size()));
  }
  // Swallowed before the pipe: kept out of the count of what the pipe dropped (deliveries).
  void dropped(toxics::Stream d, size_t n) override;
  uv::Chunk keep(toxics::Stream d, uv::Chunk c) override { return pipe(d).keep(std::move(c)); }
  void stop_client() override {
    s.client_->reading = false;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&s.client_->tcp));
  }
  void end(bool rst) override { s.finish_after_flush(rst, CloseReason::Toxic); }
  bool ended() const override { return s.ended(); }
  bool closing() const override { return s.closing(); }
  bool reply_expected() const override;
  uint32_t drain_timeout_ms() const override { return s.rt_.options().drain_timeout_ms; }
  uv_loop_t* loop() override { return s.rt_.loop(); }
  size_t rewrite_limit() const override { return s.rt_.options().high_watermark / 2; }
  bool rewrite(uint8_t kind, std::string_view frame, std::string& out) override {
    return s.rewriter_ && s.rewriter_->rewrite(kind, frame, out);
  }
  void rewrite_too_large(uint8_t kind, size_t bytes) override {
    if (s.rewriter_) s.rewriter_->too_large(kind, bytes);
  }
  uv::Chunk replacement(size_t n, std::string_view b) override {
    // As if Redis's bytes were swallowed and these injected (the delivery counts balance).
    if (s.deliv_) {
      s.deliv_->swallowed += n;
      s.deliv_->injected += b.size();
    }
    s.down_->release(n);
    s.down_->inflight += b.size();
    return s.down_->packer.copy(s.rt_.pool(), b.data(), b.size());
  }
};

// Where the moved and ask presets send the client (toxics::RedirectTarget).
struct Session::Redirects final : toxics::RedirectTarget {
  explicit Redirects(Session& session) : s(session) {}
  Session& s;
  std::string redirect_address(unsigned slot) const override;
};

struct Session::Head {
  bool active = false;
  uint64_t start = 0;                    // the frame's first byte
  toxics::RespAction action;
  std::string fault;
  uint64_t due_ms = 0;                   // DelayRequest: when its held bytes go on
};

struct Session::Resp {
  static constexpr size_t kPairingCapacity = 4;  // the ring grows from there
  // The bytes of a slot that holds a Resp and every first array it takes from its room.
  static size_t slot_bytes(const resp::CaptureOptions& cap) {
    return sizeof(Resp) + resp::RequestParser::storage_bytes(cap) +
           resp::ReplyParser::storage_bytes(cap) + Pairing::storage_bytes(kPairingCapacity);
  }
  Resp(const resp::CaptureOptions& cap, Session& s, Room* room, uv::SlotPool* pool)
      : req({}, cap, room), rep({}, cap, room), pairing(kPairingCapacity, room), link(s),
        exec(link), redirects(s), slots(pool) {}
  resp::RequestParser req;
  resp::ReplyParser rep;
  Pairing pairing;
  bool req_raw = false, rep_raw = false;
  struct Rule {
    std::string name;
    std::shared_ptr<const toxics::ToxicImpl> impl; // keeps the rule alive while in use
    const toxics::RespRule* rule;
  };
  std::vector<Rule> rules;
  std::vector<uv::Chunk> partial;        // bytes of the request in progress (rules only)
  size_t partial_bytes = 0;              // their sum
  uint64_t partial_start = 0;            // stream offset of partial's first byte
  // A request that grew past the head limit before it ended is decided on what has arrived
  // (name, first key, argc): the rest of its bytes stream as that decision says (forwarded,
  // held, discarded), and request_frame() applies it when the frame ends. So no rule ever
  // waits for a frame that backpressure would stop it from reading.
  Head head;
  uv::Chunk forward;                     // adjacent forwarded frames, written as one
  LazyDeque<std::pair<PendingId, std::string>> faults;  // fault names by request id, in order
  bool count_plain = false;              // this chunk's plain requests are counted, not shown
  uint64_t plain_requests = 0;           // plain requests counted, not yet observed
  bool multi_error = false;              // an injected error inside MULTI: EXEC aborts

  std::vector<uv::Chunk> take_partial() {
    std::vector<uv::Chunk> p;
    p.swap(partial);
    partial_bytes = 0;
    return p;
  }
  // What the rules decided, executed (holds, injected replies, reply-side faults, the end).
  FaultLink link;
  RespFaults exec;
  Redirects redirects;
  uv::SlotPool* slots;  // the pool whose slot this is

  std::string_view fault_of(PendingId id) const {
    for (const auto& [pid, name] : faults)
      if (pid == id) return name;
    return {};
  }
  void forget_fault(PendingId id) {
    for (size_t i = 0; i < faults.size(); ++i)
      if (faults[i].first == id) {
        faults.erase(faults.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
  }
};

inline bool Session::FaultLink::reply_expected() const {
  return s.resp_->pairing.expected().has_value();
}

inline void Session::FaultLink::dropped(toxics::Stream d, size_t n) {
  if (s.deliv_ && d == toxics::Stream::Downstream) {
    s.deliv_->swallowed += n;
    s.note_cut(s.resp_->exec.collect_fault());
  }
  pipe(d).release(n);
}

} // namespace faultline::proxy
