// The RESP tap of a session: what session.cpp's lifecycle hands every chunk to when parsing is
// on. Session members, kept in their own file so that each part reads alone (session.h lists
// the proxy's files); the state they share is Session::Resp (tap.h).
//
//   client ─► RequestParser ─► frame ─► rules ─► Forward ──────────────► up_deliver ─► up_ pipe
//                                          │     Inject ─► pairing FIFO ─► down_deliver (in turn)
//                                          │     DelayRequest ─► exec (held, timer) ─► up_ pipe
//                                          └     flagged (reply actions) ─► forward, remember id
//   Redis ─► ReplyParser ─► frame ─► pairing ─► down_deliver ─► down_ pipe
//                                      └ the expected reply is flagged: exec collects its bytes
//                                        from its first one, then delay / drop / truncate / reset.
//
// Deciding is here; executing a decision is RespFaults' (resp_faults.h), through FaultLink.
//
// Without rules, frames are only observed: the chunk is forwarded whole after parsing. With
// rules, the bytes of a request in progress wait (`partial`) until the frame is complete and
// decided; that is the only copy-free holding the fast path never does.
//
// While the observers only count plain traffic (no traffic log, no verdict watching a resend),
// a simple request is a pairing entry and two counts, taken before the parser records its
// arguments; a simple reply is its size in a small buffer, and the requests those replies
// answer are popped in one loop (Pairing::take_plain) before anything else reads the pairing.

#include "proxy/tap.h"

#include <algorithm>
#include <array>

#include "base/log.h"
#include "proxy/observer.h"
#include "proxy/proxy.h"
#include "uv/address.h"
#include "resp/commands.h"
#include "uv/timer.h"

namespace faultline::proxy {

namespace {
const char kDiscard[] = "*1\r\n$7\r\nDISCARD\r\n";
} // namespace

const Pairing* Session::pairing() const { return resp_ ? &resp_->pairing : nullptr; }
bool Session::raw_mode() const { return resp_ && (resp_->req_raw || resp_->rep_raw); }

std::string Session::Redirects::redirect_address(unsigned slot) const {
  if (s.rewriter_) {
    std::string a = s.rewriter_->address_for_slot(slot);
    if (!a.empty()) return a;
  }
  // This proxy's own listener, as a client can reach it.
  std::string err;
  auto ep = uv::parse_endpoint(s.proxy_.listen_address(), err);
  if (!ep) return s.proxy_.listen_address();
  if (ep->host.empty() || ep->host == "0.0.0.0" || ep->host == "::") ep->host = "127.0.0.1";
  return ep->str();
}

void Session::ensure_resp() {
  if (resp_) return;
  const resp::CaptureOptions& cap = rt_.options().capture;
  uv::SlotPool& pool = rt_.resp_slots(Resp::slot_bytes(cap));
  void* at = pool.acquire();
  // A capture larger than the pool's first one (the traffic log turned on later) leaves the
  // parsers too little room: their arrays then come from the heap.
  Room room{static_cast<char*>(at) + sizeof(Resp), pool.slot_bytes() - sizeof(Resp)};
  resp_.reset(new (at) Resp(cap, *this, &room, &pool));
  // After a quiet spell (trim_if_idle()) the streams and the pairing go on where they were.
  resp_->req.resume_at(resumed_.req_offset);
  resp_->rep.resume_at(resumed_.rep_offset);
  resp_->pairing.resume(resumed_.pairing);
}

void Session::RespDeleter::operator()(Resp* r) const {
  uv::SlotPool* pool = r->slots;
  r->~Resp();
  pool->release(r);
}

Session::Trimmed Session::trim_if_idle() {
  const uint64_t mark = up_->bytes + down_->bytes;
  const bool quiet = mark == trim_mark_;
  trim_mark_ = mark;
  if (!quiet || end_ != End::Open) return {};
  // The pipes' small leftovers: the pack block (4 KiB, kept for the next small chunk that
  // waits: what the client sent before Redis was connected, a partial write) and the room
  // of the queue that held the client's first bytes.
  bool freed = false;
  for (Pipe* p : {up_, down_}) {
    freed |= p->packer.release();
    if (p->held.empty() && p->held.capacity() != 0) {
      std::vector<uv::Chunk>().swap(p->held);
      freed = true;
    }
  }
  if (!resp_) return {freed, false};
  const Resp& r = *resp_;
  if (r.req_raw || r.rep_raw || !r.rules.empty() || r.req.mid_frame() || r.rep.mid_frame() ||
      !r.partial.empty() || r.head.active || r.forward.len != 0 || !r.faults.empty() ||
      r.count_plain || r.multi_error || !r.pairing.quiet() || r.exec.holds_requests() ||
      r.exec.has_injections() || r.exec.intercepts_replies() || r.exec.has_flagged() ||
      r.exec.collecting() || r.exec.stopped())
    return {freed, false};
  flush_plain_requests();
  flush_plain();
  resumed_ = {r.req.offset(), r.rep.offset(), r.pairing.resume_state()};
  resp_.reset();
  return {freed, true};
}

namespace {
inline uint64_t now_us() { return uv_hrtime() / 1000; }
} // namespace

void Session::drop(Pipe& p, uv::Chunk c) { p.consumed(c.len); }

void Session::up_deliver(uv::Chunk c) {
  Resp& r = *resp_;
  if (r.exec.holds_requests()) {
    r.exec.request(std::move(c));
    return;
  }
  up_->emit(0, std::move(c));
}

void Session::down_deliver(uv::Chunk c) {
  Resp& r = *resp_;
  if (r.exec.intercepts_replies()) {
    r.exec.reply(std::move(c));
    return;
  }
  down_->emit(0, std::move(c));
}

void Session::enter_raw(toxics::Stream dir) {
  Resp& r = *resp_;
  const bool up = dir == toxics::Stream::Upstream;
  const resp::ParseError& e = up ? r.req.error() : r.rep.error();
  if (up) r.req_raw = true;
  else r.rep_raw = true;
  log::warn("proxy {}: session {}: {} is not RESP at byte {} ({}); forwarding it untouched",
            proxy_.name(), id_, up ? "client data" : "Redis data", e.offset,
            e.reason ? e.reason : "?");
  flush_plain_requests();
  flush_plain();
  for (auto* o : rt_.observers()) o->on_raw_mode(*this, dir, e);
}

void Session::on_client_chunk(uv::Chunk c) {
  Resp& r = *resp_;
  if (r.req_raw) {
    up_deliver(std::move(c));
    return;
  }
  const uint64_t now = now_us();
  begin_plain_requests();
  if (r.rules.empty() && r.partial.empty() && !r.head.active && !r.exec.stopped()) {
    // Observe only: the chunk goes on whole. While the observers only count plain requests,
    // a simple one is a pairing entry and a count, taken before the parser records its
    // arguments.
    struct Counted {
      Session& s;
      Resp& r;
      uint64_t now;
      bool on_simple_request(const resp::SimpleRequest& q) {
        if (s.rewriter_ && s.rewriter_->may_rewrite(q.cmd)) [[unlikely]] return false;
        if (!r.pairing.on_simple_request(q, now)) return false;
        ++s.commands_;
        ++r.plain_requests;
        return true;
      }
      bool on_simple_run(const resp::SimpleRun& q) {
        if (s.rewriter_ && s.rewriter_->may_rewrite(q.cmd)) [[unlikely]] return false;
        if (!r.pairing.on_simple_run(q, now)) return false;
        s.commands_ += q.count;
        r.plain_requests += q.count;
        return true;
      }
      void on_request(const resp::RequestFrame& f) { s.forward_observed(f, now); }
    };
    resp::Status st;
    if (r.count_plain) {
      Counted sink{*this, r, now};
      st = r.req.feed(c.data(), c.len, sink);
    } else {
      st = r.req.feed(c.data(), c.len,
                      [&](const resp::RequestFrame& f) { forward_observed(f, now); });
    }
    end_plain_requests();
    if (st == resp::Status::Error) enter_raw(toxics::Stream::Upstream);
    up_deliver(std::move(c));
    return;
  }
  // Rules: each complete frame is decided before any of its bytes move on.
  const char* data = c.data();
  const uint32_t len = c.len;
  uint64_t rest_off = r.req.offset();
  uv::Chunk rest = std::move(c);
  auto st = r.req.feed(data, len, [&](const resp::RequestFrame& f) {
    if (closing()) return;
    uint64_t take = f.end > rest_off ? f.end - rest_off : 0;
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(take, rest.len));
    if (r.head.active && f.start == r.head.start) {
      // The end of a request decided on its head: the last of its bytes, then the decision.
      uv::Chunk tail = rest.take_front(n);
      rest_off += tail.len;
      Head h = std::move(r.head);
      r.head.active = false;
      if (r.exec.stopped()) {
        drop(*up_, std::move(tail));
        return;
      }
      request_frame(f, std::move(tail), now, &h);
      return;
    }
    // A frame whose first bytes already went on (a rule was added in its middle) can only go
    // on untouched: Redis has its head.
    const uint64_t held_from = r.partial.empty() ? rest_off : r.partial_start;
    if (!r.exec.stopped() && held_from > f.start) {
      flush_forward();
      uv::Chunk tail = rest.take_front(n);
      rest_off += tail.len;
      for (auto& x : r.take_partial()) up_deliver(std::move(x));
      forward_request(f, now, {});
      up_deliver(std::move(tail));
      return;
    }
    if (!r.exec.stopped() && r.partial.empty() && no_rule_selects(f)) {
      // No rule names this command: it goes on as request_frame() would forward it, its bytes
      // added to the pending write without a chunk of its own.
      forward_request(f, now, {});
      uv::Chunk& acc = r.forward;
      if (n && acc.len && acc.block.get() == rest.block.get() && acc.off + acc.len == rest.off) {
        acc.len += n;
        rest.off += n;
        rest.len -= n;
      } else if (n) {
        flush_forward();
        r.forward = rest.take_front(n);
      }
      rest_off += n;
      return;
    }
    uv::Chunk tail = rest.take_front(n);
    rest_off += tail.len;
    if (r.exec.stopped()) {
      drop(*up_, std::move(tail));
      return;
    }
    request_frame(f, std::move(tail), now, nullptr);
  });
  if (closing()) return;
  end_plain_requests();
  if (r.exec.stopped()) {
    // A toxic is ending the connection: nothing after the command it acted on reaches Redis.
    for (auto& x : r.take_partial()) drop(*up_, std::move(x));
    drop(*up_, std::move(rest));
    return;
  }
  // The frames this chunk completed and let through leave now, in one write, ahead of
  // anything later.
  flush_forward();
  if (st == resp::Status::Error) {
    enter_raw(toxics::Stream::Upstream);
    r.head.active = false;
    for (auto& x : r.take_partial()) up_deliver(std::move(x));
    if (rest.len) up_deliver(std::move(rest));
    return;
  }
  if (rest.len) {
    if (r.head.active) {
      stream_head(std::move(rest));
    } else {
      if (r.partial.empty()) r.partial_start = rest_off;
      r.partial_bytes += rest.len;
      r.partial.push_back(up_->keep(std::move(rest)));
    }
  }
  if (!r.head.active && r.partial_bytes > head_limit()) decide_head();
}

// Large requests are decided on their head: never more than this waits for a frame's end.
size_t Session::head_limit() const {
  return std::min<size_t>(64 * 1024, rt_.options().high_watermark / 2);
}

// The first rule that acts on f decides; `fault` names it.
void Session::decide(const resp::RequestFrame& f, toxics::RespAction& a, std::string_view& fault) {
  Resp& r = *resp_;
  a = toxics::RespAction{};
  if (f.argc == 0) return;
  toxics::RespContext ctx;
  ctx.protocol = r.pairing.protocol();
  ctx.in_multi = r.pairing.in_multi();
  ctx.subscribed = r.pairing.subscribed() && r.pairing.protocol() == resp::Protocol::Resp2;
  ctx.monitoring = r.pairing.monitoring();
  ctx.reply_off = r.pairing.reply_mode() == ReplyMode::Off;
  ctx.rng = &rng();
  ctx.redirect = &r.redirects;
  for (const auto& rule : r.rules) {
    a = rule.rule->decide(f, ctx);
    if (a.kind != toxics::RespActionKind::Forward) {
      fault = rule.name;
      break;
    }
  }
}

// The request in progress is past the head limit: decide it on what has arrived, deal with
// the bytes held so far, and stream the rest (stream_head) until request_frame() finishes it.
void Session::decide_head() {
  Resp& r = *resp_;
  resp::RequestFrame f;
  if (!r.req.partial_frame(f)) return;  // an inline request: bounded by max_inline_len
  flush_forward();
  if (r.partial_start > f.start) {
    // Its head went on before a rule was there: the rest can only follow it untouched.
    for (auto& b : r.take_partial()) up_deliver(std::move(b));
    r.head = Head{};
    r.head.active = true;
    r.head.start = f.start;
    return;
  }
  Head& h = r.head;
  h = Head{};
  h.active = true;
  h.start = f.start;
  std::string_view fault;
  decide(f, h.action, fault);
  h.fault = fault;
  using K = toxics::RespActionKind;
  std::vector<uv::Chunk> held = r.take_partial();
  switch (h.action.kind) {
  case K::Inject:
    for (auto& b : held) drop(*up_, std::move(b));
    return;
  case K::ResetBefore:
  case K::CloseBefore:
    for (auto& b : held) drop(*up_, std::move(b));
    note_cut(fault);
    r.exec.begin_end(h.action.kind == K::ResetBefore, false);
    return;
  case K::DelayRequest: {
    // Kept already (they waited in partial): held as they are.
    h.due_ms = r.exec.delay_request(
        uv_now(rt_.loop()) + h.action.delay_ms,
        [&](auto&& fn) {
          for (auto& b : held) fn(std::move(b));
        },
        false, false);
    return;
  }
  default:
    for (auto& b : held) up_deliver(std::move(b));
    return;
  }
}

// More bytes of a request decided on its head.
void Session::stream_head(uv::Chunk c) {
  Resp& r = *resp_;
  if (r.head.action.kind == toxics::RespActionKind::Inject) drop(*up_, std::move(c));
  else up_deliver(std::move(c));  // behind what a DelayRequest still holds, if anything
}

// What the proxy owes the client is bounded too. Injected replies are under the same
// backpressure as Redis's: above the high watermark toward the client (queued for their turn or
// written), the client is not read until it drains. And a client that sends more than
// kMaxUnanswered requests ahead of their replies is not read until Redis catches up (the pairing
// FIFO costs 32 bytes a request; Redis's own test suite pipelines 200,000 before reading).
void Session::hold_client_if_replies_full() {
  if (replies_full_ || !resp_) return;
  if (down_->inflight + resp_->exec.injected_bytes() <= rt_.options().high_watermark &&
      resp_->pairing.pending() <= kMaxUnanswered)
    return;
  replies_full_ = true;
  up_->stop_reading();
}

void Session::check_unanswered() {
  if (resp_->pairing.pending() > kMaxUnanswered) [[unlikely]] hold_client_if_replies_full();
}

void Session::check_replies_drained() {
  if (closing()) return;
  const size_t waiting = down_->inflight + (resp_ ? resp_->exec.injected_bytes() : 0);
  if (waiting > rt_.options().low_watermark) return;
  if (resp_ && resp_->pairing.pending() > kMaxUnanswered / 2) return;
  replies_full_ = false;
  if (client_->reading) up_->start_reading();
}

// True when request_frame() would certainly forward f untouched: no rule's command filter
// names it (one bit per rule for the commands of the table), and it is none of the commands
// whose handling depends on earlier refusals (MULTI, EXEC, DISCARD).
bool Session::no_rule_selects(const resp::RequestFrame& f) const {
  if (rewriter_ && rewriter_->kind(f) != ReplyRewriter::kNone) return false;
  if (f.cmd) {
    const resp::Special sp = f.cmd->special;
    if (sp == resp::Special::Exec || sp == resp::Special::Multi || sp == resp::Special::Discard)
      return false;
  }
  for (const auto& rule : resp_->rules)
    if (rule.rule->filter().selects(f)) return false;
  return true;
}

void Session::forward_request(const resp::RequestFrame& f, uint64_t now, std::string_view fault) {
  Resp& r = *resp_;
  ++commands_;
  RequestResult rr = r.pairing.on_request(f, now, 0);
  if (r.count_plain && fault.empty() && f.simple) [[likely]] {
    ++r.plain_requests;
    return;
  }
  observe_request(f, rr.id, fault);
}

void Session::forward_observed(const resp::RequestFrame& f, uint64_t now) {
  if (rewriter_) [[unlikely]] {
    if (const uint8_t k = rewriter_->kind(f); k != ReplyRewriter::kNone) {
      flag_reply(f, now, toxics::RespActionKind::Rewrite, 0, k, {});
      return;
    }
  }
  forward_request(f, now, {});
}

void Session::flag_reply(const resp::RequestFrame& f, uint64_t now, toxics::RespActionKind kind,
                         uint64_t delay_ms, uint64_t bytes, std::string_view fault) {
  Resp& r = *resp_;
  ++commands_;
  RequestResult rr = r.pairing.on_request(f, now, 1);
  if (rr.expects_reply) {
    if (!fault.empty()) r.faults.emplace_back(rr.id, std::string(fault));
    r.exec.flag({rr.id, kind, delay_ms, bytes, std::string(fault)});
  }
  flush_plain_requests();
  for (auto* o : rt_.request_observers()) o->on_request(*this, f, rr.id, fault);
}

void Session::observe_request(const resp::RequestFrame& f, PendingId id, std::string_view fault) {
  Resp& r = *resp_;
  if (!fault.empty()) r.faults.emplace_back(id, std::string(fault));
  flush_plain_requests();
  for (auto* o : rt_.request_observers()) o->on_request(*this, f, id, fault);
}

void Session::begin_plain_requests() {
  Resp& r = *resp_;
  r.count_plain = rt_.plain_requests();
  if (r.count_plain)
    for (auto* o : rt_.request_observers())
      if (!o->plain_requests_now(*this)) r.count_plain = false;
}

void Session::end_plain_requests() {
  flush_plain_requests();
  resp_->count_plain = false;
}

void Session::flush_plain_requests() {
  Resp& r = *resp_;
  if (r.plain_requests == 0) return;
  for (auto* o : rt_.request_observers()) o->on_plain_requests(*this, r.plain_requests);
  r.plain_requests = 0;
}

// A whole request: decide it (or apply the decision its head got: pre), then forward, answer,
// hold or drop its bytes (those still in `partial`, and `tail`).
void Session::request_frame(const resp::RequestFrame& f, uv::Chunk tail, uint64_t now,
                            Head* pre) {
  Resp& r = *resp_;
  // The frame's bytes: what waited in `partial`, then `tail`. Walked in place, without a
  // vector per frame (partial keeps its capacity).
  auto each_chunk = [&](auto&& fn) {
    for (auto& b : r.partial) fn(std::move(b));
    r.partial.clear();
    r.partial_bytes = 0;
    if (tail.len) fn(std::move(tail));
  };
  auto forward_bytes = [&] {
    // Frames that follow each other in one block are written together: a pipeline stays one
    // write when a rule lets every command through.
    each_chunk([&](uv::Chunk b) {
      uv::Chunk& acc = r.forward;
      if (acc.len && acc.block.get() == b.block.get() && acc.off + acc.len == b.off) {
        acc.len += b.len;
        return;
      }
      flush_forward();
      r.forward = std::move(b);
    });
  };
  auto drop_bytes = [&] { each_chunk([&](uv::Chunk b) { drop(*up_, std::move(b)); }); };

  // EXEC of a transaction faultline refused a command of (or refuses EXEC itself): the client
  // gets EXECABORT, as from Redis, and Redis gets DISCARD in EXEC's place, its +OK swallowed,
  // so the queued commands never run.
  const bool exec_in_multi =
      f.cmd && r.pairing.in_multi() && f.cmd->special == resp::Special::Exec;
  auto abort_exec = [&](std::string reply, std::string_view fault) {
    flush_forward();
    drop_bytes();
    r.multi_error = false;
    const bool quiet = r.pairing.reply_mode() == ReplyMode::Off;
    resp::RequestParser tmp;
    tmp.feed(kDiscard, sizeof kDiscard - 1, [&](const resp::RequestFrame& d) {
      RequestResult rr = r.pairing.on_request(d, now, 1);
      if (rr.expects_reply)
        r.exec.flag({rr.id, toxics::RespActionKind::Inject /* swallow */, 0, 0, ""});
    });
    up_deliver(up_->packer.copy(rt_.pool(), kDiscard, sizeof kDiscard - 1));
    ++commands_;
    RequestResult rr = r.pairing.on_injected(f, now);
    r.exec.queue_injection(quiet ? std::string() : std::move(reply), fault);
    flush_plain_requests();
    for (auto* o : rt_.request_observers()) o->on_request(*this, f, rr.id, fault);
    release_injections();
    hold_client_if_replies_full();
  };
  if (exec_in_multi && r.multi_error && !pre) {
    abort_exec("-EXECABORT Transaction discarded because of previous errors.\r\n", {});
    return;
  }
  if (f.cmd && (f.cmd->special == resp::Special::Multi || f.cmd->special == resp::Special::Discard))
    r.multi_error = false;

  toxics::RespAction a;
  std::string_view fault;
  if (pre) {
    a = std::move(pre->action);
    fault = pre->fault;
  } else {
    decide(f, a, fault);
  }
  using K = toxics::RespActionKind;
  if (a.kind == K::Forward && rewriter_) {
    // A deployment's proxy: a reply that may name a real node is collected and rewritten.
    if (const uint8_t k = rewriter_->kind(f); k != ReplyRewriter::kNone) {
      a.kind = K::Rewrite;
      a.bytes = k;
    }
  }
  if (a.kind != K::Forward) flush_forward();
  switch (a.kind) {
  case K::Forward:
    forward_request(f, now, {});
    forward_bytes();
    return;
  case K::Inject: {
    if (exec_in_multi && a.reply.size() > 3 && a.reply[0] == '-') {
      // Redis answers a refused EXEC with "EXECABORT Transaction discarded because of: <error>"
      // and drops the transaction.
      abort_exec("-EXECABORT Transaction discarded because of: " + a.reply.substr(1), fault);
      return;
    }
    drop_bytes();
    ++commands_;
    bool quiet = r.pairing.reply_mode() == ReplyMode::Off;
    RequestResult rr = r.pairing.on_injected(f, now);
    if (r.pairing.in_multi() && !a.reply.empty() && (a.reply[0] == '-' || a.reply[0] == '!'))
      r.multi_error = true;
    flush_plain_requests();
    for (auto* o : rt_.request_observers()) o->on_request(*this, f, rr.id, fault);
    r.exec.queue_injection(quiet ? std::string() : std::move(a.reply), fault);
    release_injections();
    hold_client_if_replies_full();
    return;
  }
  case K::DelayRequest: {
    forward_request(f, now, fault);
    // A request decided on its head keeps the time its first bytes were given.
    r.exec.delay_request(pre ? pre->due_ms : uv_now(rt_.loop()) + a.delay_ms, each_chunk, true,
                         true);
    return;
  }
  case K::ResetBefore:
  case K::CloseBefore:
    // The command and everything after it are dropped; what is already on its way to the
    // client is delivered first, then the connection ends.
    drop_bytes();
    note_cut(fault);
    r.exec.begin_end(a.kind == K::ResetBefore, false);
    return;
  default:
    // The reply is acted on: remember which request it answers.
    flag_reply(f, now, a.kind, a.delay_ms, a.bytes, fault);
    forward_bytes();
    return;
  }
}

void Session::flush_forward() {
  Resp& r = *resp_;
  if (r.forward.len) up_deliver(std::move(r.forward));
  r.forward = {};
}

void Session::flush_plain() {
  if (rt_.plain_run_owner() == this) flush_plain_run(rt_);
}

void Session::flush_plain_run(Runtime& rt) {
  Session* owner = rt.plain_run_owner();
  auto& run = rt.plain_run();
  rt.plain_run_owner() = nullptr;
  if (owner == nullptr || run.empty()) return;
  const std::span<const PlainReplies> groups = run.groups();
  for (auto* o : rt.observers()) o->on_plain_replies(*owner, groups);
  run.clear();
}

void Session::release_injections() {
  Resp& r = *resp_;
  flush_plain();
  while (auto inj = r.pairing.next_injected()) {
    std::string payload, fault;
    if (!r.exec.next_injection(payload, fault)) break;
    if (!rt_.observers().empty()) {
      ReplyResult rr;
      rr.kind = ReplyKind::Paired;
      rr.request = *inj;
      rr.latency_us = now_us() - inj->start_us;
      if (deliv_) {
        // After Redis's bytes passed on so far: within a chunk, up to the reply just parsed;
        // otherwise all that were read.
        const uint64_t at =
            deliv_->cursor != Deliveries::kNoCursor ? deliv_->cursor : r.rep.offset();
        note_reply(at, payload.size(), {}, false);
      }
      for (auto* o : rt_.observers()) o->on_reply(*this, rr, nullptr, payload, fault);
      if (deliv_) deliv_->next_valid = false;
    }
    r.exec.deliver_injection(payload);
  }
}

void Session::on_upstream_chunk(uv::Chunk c) {
  Resp& r = *resp_;
  if (r.rep_raw) {
    down_deliver(std::move(c));
    return;
  }
  const uint64_t now = now_us();
  const char* data = c.data();
  const uint32_t len = c.len;
  uint64_t rest_off = r.rep.offset();
  uv::Chunk rest = std::move(c);
  // Bytes of the chunk up to absolute offset `to` go on (or into the flagged reply).
  auto pass_to = [&](uint64_t to) {
    if (to <= rest_off) return;
    uv::Chunk head = rest.take_front(static_cast<uint32_t>(std::min<uint64_t>(to - rest_off,
                                                                             rest.len)));
    rest_off += head.len;
    if (r.exec.collecting()) r.exec.collect(std::move(head));
    else down_deliver(std::move(head));
  };
  // A sentinel's proxy: while subscribed, every frame (its events name nodes) is collected whole
  // for the rewriter, unless a RESP fault waits for a reply (then the fault acts, as on replies).
  const bool messages = proxy_.rewrites_messages();
  const bool redirects = proxy_.rewrites_redirects();
  auto wants_message = [&] {
    return messages && r.pairing.subscribed() && !r.exec.has_flagged();
  };
  auto maybe_collect = [&] {
    if (r.exec.collecting()) return;
    if (r.exec.has_flagged()) {
      const std::optional<PendingInfo> next = r.pairing.expected();
      if (next && next->user_flags) r.exec.begin_collect(next->id);
    } else if (wants_message()) [[unlikely]] {
      r.exec.begin_collect_unpaired(ReplyRewriter::kMessage);
    }
  };
  if (!r.rep.mid_frame()) maybe_collect();
  // While nothing on the reply side waits for a particular reply (no fault recorded, nothing
  // flagged, collected, injected or ending) and every observer takes plain replies in runs, a
  // plain reply is a pop from the pairing FIFO and an entry in the run, nothing more.
  auto quiet = [&] {
    return rt_.plain_replies() && !closing() && r.faults.empty() && !r.exec.has_flagged() &&
           !r.exec.collecting() && !r.exec.has_injections() && !r.exec.stopped();
  };
  // Any reply, with all the bookkeeping.
  auto general = [&](const resp::ReplyFrame& f) {
    if (closing()) return;
    ReplyResult res = r.pairing.on_reply(f, now);
    std::string_view fault;
    if (res.kind == ReplyKind::Paired) {
      if (!r.faults.empty()) fault = r.fault_of(res.request.id);
      if (rt_.plain_replies() && fault.empty() && res.final && !f.is_error()) [[likely]] {
        if (rt_.plain_run_owner() != this) [[unlikely]] {
          flush_plain_run(rt_);
          rt_.plain_run_owner() = this;
          rt_.plain_run().begin(now);
        }
        rt_.plain_run().add({res.request.id, res.request.cmd ? res.request.cmd->id : uint16_t(0xFFFF),
                             res.request.start_us, res.request.req_bytes, f.size_bytes()});
      } else if (!rt_.observers().empty()) {
        flush_plain();
        if (deliv_) [[unlikely]] {
          // Where the reply ends toward the client, and whether its own fault keeps it away.
          const bool acted = r.exec.collecting() && r.exec.collect_id() == res.request.id;
          using K = toxics::RespActionKind;
          const K k = acted ? r.exec.collect_kind() : K::Forward;
          const bool doomed =
              k == K::Truncate || k == K::Hang || k == K::ResetAfter || k == K::CloseAfter;
          note_reply(f.end, 0, doomed || k == K::DelayReply ? fault : std::string_view(), doomed);
        }
        for (auto* o : rt_.observers()) o->on_reply(*this, res, &f, {}, fault);
        if (deliv_) [[unlikely]] deliv_->next_valid = false;
      }
      if (res.final && !fault.empty() && !res.request.user_flags) r.forget_fault(res.request.id);
    } else if (!rt_.observers().empty()) {
      flush_plain();
      for (auto* o : rt_.observers()) o->on_out_of_band(*this, res, f);
    }
    if (r.exec.collecting() && res.kind == ReplyKind::Paired &&
        res.request.id == r.exec.collect_id() && res.final) {
      pass_to(f.end);
      r.forget_fault(r.exec.collected_id());
      r.exec.finish_collect();
      if (closing()) return;
    } else if (redirects && f.is_error() && !r.exec.collecting() && f.start >= rest_off)
        [[unlikely]] {
      // A cluster node's error, wholly in this chunk: offered whole (a MOVED or ASK names a
      // listener). Through the same collection as a split one, so delivery is counted alike.
      pass_to(f.start);
      r.exec.begin_collect_unpaired(ReplyRewriter::kRedirectOnly);
      pass_to(f.end);
      r.exec.finish_collect();
      if (closing()) return;
    } else if (r.exec.collecting() && r.exec.collect_id() == RespFaults::kUnpairedId) [[unlikely]] {
      // A frame collected as a message ends (whatever answered it).
      pass_to(f.end);
      if (res.kind == ReplyKind::Paired && res.request.user_flags) {
        // A flagged request sent after the collection began: its reply went as a message,
        // and its fault with it.
        r.exec.forget_flag(res.request.id);
        r.forget_fault(res.request.id);
      }
      r.exec.finish_collect();
      if (closing()) return;
    }
    if (r.exec.has_injections()) {
      pass_to(f.end);
      if (deliv_) [[unlikely]] deliv_->cursor = f.end;  // where the injected replies go
      release_injections();
      if (deliv_) [[unlikely]] deliv_->cursor = Deliveries::kNoCursor;
    }
    if (!r.exec.collecting() && (r.exec.has_flagged() || wants_message())) {
      pass_to(f.end);
      maybe_collect();
    }
    if (r.exec.stopped() && !flushing()) {
      pass_to(f.end);
      r.exec.maybe_end(); // the last reply before a resp_reset/resp_close "before" went out
    }
  };
  // A plain reply (see quiet()) is a pop from the pairing FIFO and an entry in the run. A
  // simple one (a scalar, not an error) only has its size noted while the pairing says the
  // replies ahead are all plain: their requests are popped together (commit()), before anything
  // else looks at the pairing, and at the end of the chunk.
  struct Replies {
    Session& s;
    Resp& r;
    uint64_t now;
    decltype(general)& general_;
    decltype(quiet)& quiet_;
    bool simple;
    size_t taken = 0, room = 0;  // sizes noted; how many may be, before asking the pairing
    std::array<uint32_t, 256> sizes;  // not cleared: only [0, taken) is read
    Replies(Session& s_, Resp& r_, uint64_t now_, decltype(general)& g, decltype(quiet)& q)
        : s(s_), r(r_), now(now_), general_(g), quiet_(q), simple(q()) {}
    PlainRun& run() {
      Runtime& rt = s.rt_;
      if (rt.plain_run_owner() != &s) [[unlikely]] {
        flush_plain_run(rt);
        rt.plain_run_owner() = &s;
        rt.plain_run().begin(now);
      }
      return rt.plain_run();
    }
    void commit() {
      if (taken == 0) return;
      r.pairing.take_plain(sizes.data(), taken, run());
      taken = room = 0;
    }
    bool on_simple_reply(const resp::SimpleReply& f) {
      if (taken == room) [[unlikely]] {
        commit();
        if (!simple) return false;
        room = std::min(r.pairing.plain_ahead(), sizes.size());
        if (room == 0) return false;
      }
      sizes[taken++] = uint32_t(f.size_bytes());  // a scalar inside one chunk
      return true;
    }
    // Replies like the one just taken, as many as the pairing says are plain ahead.
    // The reply before the run (the one that started it), when it is the only one noted and
    // alike, goes in the same take.
    size_t on_simple_reply_run(const resp::SimpleReplyRun& f) {
      const size_t before = taken == 1 && sizes[0] == f.size ? 1 : 0;
      if (before) {
        taken = room = 0;
      } else {
        commit();
        if (!simple) return 0;
      }
      const size_t k = std::min<size_t>(r.pairing.plain_ahead(), f.count + before);
      if (k != 0) r.pairing.take_plain(f.size, k, run());
      return k - before;  // k >= before: the noted reply was within plain_ahead()
    }
    void on_reply(const resp::ReplyFrame& f) {
      commit();
      room = 0;
      if (simple) [[likely]] {
        PlainReply pr;
        if (r.pairing.plain_reply(f, pr)) [[likely]] {
          run().add(pr);
          return;
        }
      }
      general_(f);
      simple = quiet_();
    }
  };
  Replies sink(*this, r, now, general, quiet);
  auto st = r.rep.feed(data, len, sink);
  sink.commit();
  if (closing()) return;
  flush_plain();
  if (st == resp::Status::Error) {
    enter_raw(toxics::Stream::Downstream);
    r.exec.stop_collecting();
  }
  if (redirects && rest.len && !r.exec.collecting() && r.rep.mid_frame()) [[unlikely]] {
    // A reply the chunk ends in: an error is collected from its first byte, so that it can be
    // offered whole when it ends (above).
    const uint64_t fs = r.rep.frame_start();
    if (fs >= rest_off && fs < rest_off + rest.len) {
      const char t = rest.data()[fs - rest_off];
      if (t == '-' || t == '!') {
        pass_to(fs);
        r.exec.begin_collect_unpaired(ReplyRewriter::kRedirectOnly);
      }
    }
  }
  if (rest.len) {
    if (r.exec.collecting()) r.exec.collect(std::move(rest));
    else down_deliver(std::move(rest));
  }
}

void Session::client_eof() {
  Resp& r = *resp_;
  flush_forward();
  // An unfinished request goes on as it is: Redis sees what the client sent.
  for (auto& x : r.take_partial()) up_deliver(std::move(x));
  r.exec.client_eof();
}

void Session::upstream_eof() {
  resp_->exec.upstream_eof();
}

} // namespace faultline::proxy
