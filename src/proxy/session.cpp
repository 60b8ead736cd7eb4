// Session: one client connection and its upstream connection.
//
//            client_ (uv_tcp_t)                                upstream_ (uv_tcp_t)
//   client ──► read ──► up_:   [stage]…[stage] ──► try_write/uv_write ──► Redis
//   client ◄── try_write/uv_write ◄── [stage]…[stage] :down_ ◄── read ◄── Redis
//
// The pipes (up_, down_: buffers, backpressure, stages) are in pipe.{h,cpp}; what RESP faults do
// once decided is in resp_faults.{h,cpp}. Here: the lifecycle, then the RESP tap.
//
// Ends of a connection, each propagated as itself:
//   FIN from a side   → shutdown toward the other once everything before it is written.
//   RST / read error  → everything already read is written to the other side, then RST.
//   Redis closes (FIN) while the client still writes → the client gets every byte Redis sent and
//                       a FIN; what it still sends is read and discarded (drain) for
//                       drain_timeout_ms, then the connection closes. No reply is lost to a RST.
// Where a session is in ending is one state, End (session.h): Open, Hung, Draining, FlushFin /
// FlushRst, Closing. Memory is freed only from the last close callback; every callback checks
// closing().

#include "proxy/session.h"

#include <algorithm>
#include <array>

#include <deque>

#include "base/log.h"
#include "proxy/observer.h"
#include "proxy/pipe.h"
#include "proxy/resp_faults.h"
#include "proxy/proxy.h"
#include "proxy/runtime.h"
#include "resp/commands.h"
#include "toxics/resp_rule.h"
#include "uv/timer.h"

namespace faultline::proxy {

std::string_view to_string(CloseReason r) {
  switch (r) {
  case CloseReason::ClientClosed: return "client_closed";
  case CloseReason::UpstreamClosed: return "upstream_closed";
  case CloseReason::ClientReset: return "client_reset";
  case CloseReason::UpstreamReset: return "upstream_reset";
  case CloseReason::ConnectFailed: return "connect_failed";
  case CloseReason::ConnectTimeout: return "connect_timeout";
  case CloseReason::ProxyDisabled: return "proxy_disabled";
  case CloseReason::Dropped: return "dropped";
  case CloseReason::Toxic: return "toxic";
  case CloseReason::AcceptReset: return "accept_reset";
  case CloseReason::Shutdown: return "shutdown";
  case CloseReason::Error: return "error";
  }
  return "?";
}

std::string_view to_string(End e) {
  switch (e) {
  case End::Open: return "open";
  case End::Hung: return "hung";
  case End::Draining: return "draining";
  case End::FlushFin: return "flush_fin";
  case End::FlushRst: return "flush_rst";
  case End::Closing: return "closing";
  }
  return "?";
}

namespace {
uint64_t now_ms(uv_loop_t* loop) { return uv_now(loop); }
} // namespace

std::mt19937_64& Session::rng() {
  if (!rng_) rng_ = std::make_unique<std::mt19937_64>(proxy_.session_seed(id_));
  return *rng_;
}
Session::Session(Proxy& proxy, uint64_t id)
    : proxy_(proxy), rt_(proxy.runtime()), id_(id), started_ms_(now_ms(proxy.runtime().loop())),
      client_(std::make_unique<Side>()), upstream_(std::make_unique<Side>()),
      up_(std::make_unique<Pipe>()), down_(std::make_unique<Pipe>()) {
  uv_loop_t* loop = rt_.loop();
  for (Side* side : {client_.get(), upstream_.get()}) {
    uv_tcp_init(loop, &side->tcp);
    side->tcp.data = side;
    side->session = this;
  }
  client_->is_client = true;
  upstream_->is_client = false;
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  pending_closes_ = 3;
  auto wire = [this](Pipe& p, Side* src, Side* dst, toxics::Stream st) {
    p.s = this;
    p.src = src;
    p.dst = dst;
    p.stream = st;
  };
  wire(*up_, client_.get(), upstream_.get(), toxics::Stream::Upstream);
  wire(*down_, upstream_.get(), client_.get(), toxics::Stream::Downstream);
}

Session::~Session() = default;

uint64_t Session::bytes_from_client() const { return up_->bytes; }
uint64_t Session::bytes_from_upstream() const { return down_->bytes; }

Session::Pipe& Session::pipe_from(Side& side) { return side.is_client ? *up_ : *down_; }
Session::Side& Session::peer(Side& side) { return side.is_client ? *upstream_ : *client_; }

int Session::accept(uv_stream_t* server) {
  int rc = uv_accept(server, reinterpret_cast<uv_stream_t*>(&client_->tcp));
  if (rc == 0) {
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(&client_->tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
      client_addr_ = uv::format_address(reinterpret_cast<sockaddr*>(&ss));
  }
  return rc;
}

void Session::start(AcceptMode mode) {
  for (auto* o : rt_.observers()) o->on_session_open(*this);
  if (mode == AcceptMode::Reset) {
    reset(CloseReason::AcceptReset);
    return;
  }
  if (mode == AcceptMode::Hang) {
    // Accepted, never answered, never forwarded; but read (and discarded), so the session
    // ends when its client does and holds no bytes meanwhile.
    end_ = End::Hung;
    client_->reading = true;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&client_->tcp),
                  [](uv_handle_t* h, size_t, uv_buf_t* buf) {
                    auto* side = static_cast<Side*>(h->data);
                    uv::Block* b = side->session->rt_.pool().acquire();
                    *buf = uv_buf_init(b->data(), b->capacity);
                  },
                  [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
                    static_cast<Side*>(stream->data)->session->on_hung_read(nread, buf);
                  });
    return;
  }
  uv_tcp_nodelay(&client_->tcp, 1);
  client_->reading = true;
  up_->start_reading();
  for (const auto& t : proxy_.toxics()) add_toxic(t);
  connect_upstream();
}

void Session::connect_upstream() {
  if (closing()) return;
  // The connect timeout also covers the lookup of an upstream host name.
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* s = static_cast<Session*>(t->data);
        if (s->closing() || s->connected_) return;
        s->proxy_.note_connect_failure(UV_ETIMEDOUT);
        s->close(CloseReason::ConnectTimeout);
      },
      rt_.options().connect_timeout_ms, 0);
  // nullptr: the proxy calls connect_to() once the name is looked up, or closes this session.
  if (const sockaddr* addr = proxy_.upstream_sockaddr(*this)) connect_to(addr);
}

void Session::connect_to(const sockaddr* addr) {
  if (closing()) return;
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, &upstream_->tcp, addr, [](uv_connect_t* req, int status) {
    static_cast<Session*>(req->data)->on_connected(status);
  });
  if (rc < 0) {
    proxy_.note_connect_failure(rc);
    close(CloseReason::ConnectFailed);
  }
}

void Session::on_connected(int status) {
  if (closing()) return;
  if (flushing()) {
    // The session began to end before Redis answered the connect (a fault's reset or close on
    // the first commands, the client's reset). timer_ is now the flush's deadline: keep it, read
    // nothing more, pass on only what preceded the end; check_done() ends the session when
    // those writes are done, the deadline if they never are.
    if (status < 0) {
      proxy_.note_connect_failure(status);
      close(reason_);
      return;
    }
    proxy_.note_connect_ok();
    connected_ = true;
    up_->flush_held();
    check_done();
    return;
  }
  uv_timer_stop(&timer_);
  if (status < 0) {
    proxy_.note_connect_failure(status);
    close(CloseReason::ConnectFailed);
    return;
  }
  proxy_.note_connect_ok();
  connected_ = true;
  uv_tcp_nodelay(&upstream_->tcp, 1);
  upstream_->reading = true;
  down_->start_reading();
  up_->flush_held();
}

void Session::on_read(Side& side, ssize_t nread, const uv_buf_t* buf) {
  uv::BlockRef block;
  if (buf->base) block = uv::BlockRef(reinterpret_cast<uv::Block*>(buf->base) - 1);
  if (closing()) return;
  if (nread > 0) {
    Pipe& p = pipe_from(side);
    p.bytes += static_cast<uint64_t>(nread);
    p.inflight += static_cast<size_t>(nread);
    uv::Chunk c{std::move(block), 0, static_cast<uint32_t>(nread)};
    if (rt_.options().parse_resp && !p.discarding()) {
      ensure_resp();
      if (side.is_client) {
        on_client_chunk(std::move(c));
        check_unanswered();
      } else {
        on_upstream_chunk(std::move(c));
      }
    } else {
      p.emit(0, std::move(c));
    }
    if (!closing() && !p.paused && p.inflight > rt_.options().high_watermark) {
      p.paused = true;
      p.stop_reading();
    }
    return;
  }
  if (nread == 0) return;
  if (nread == UV_EOF) {
    side.eof = true;
    Pipe& p = pipe_from(side);
    if (p.discarding()) {
      check_done();
      return;
    }
    if (resp_) {
      if (side.is_client) client_eof();
      else upstream_eof();
    } else {
      p.emit_eof(0);
    }
    // A stage may have ended this direction already (limit_data): its FIN went on before, so
    // nothing reaches the sink now, and this may be what finishes the session.
    check_done();
    return;
  }
  on_read_error(side, static_cast<int>(nread));
}

// accept=hang: what the client sends is counted and dropped; its close ends the session.
void Session::on_hung_read(ssize_t nread, const uv_buf_t* buf) {
  uv::BlockRef block;
  if (buf->base) block = uv::BlockRef(reinterpret_cast<uv::Block*>(buf->base) - 1);
  if (closing()) return;
  if (nread > 0) up_->bytes += static_cast<uint64_t>(nread);
  else if (nread == UV_EOF) close(CloseReason::ClientClosed);
  else if (nread < 0) close(CloseReason::ClientReset);
}

void Session::on_read_error(Side& side, int err) {
  log::debug("session {} {}: read error: {}", id_, side.name(), uv_strerror(err));
  side.eof = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&side.tcp));
  if (!side.is_client && (side.write_failed || draining())) {
    // Redis closed while the client was still writing, and the kernel answered our writes
    // with a reset. What Redis said before is delivered; the client gets a FIN, not a RST.
    if (resp_) upstream_eof();
    else down_->emit_eof(0);
    start_drain();
    check_done();
    return;
  }
  reset_after_flush(peer(side), side.is_client ? CloseReason::ClientReset
                                               : CloseReason::UpstreamReset);
}

void Session::start_drain() {
  // A flush already under way stays one: it stopped reading, and write_failed drops the rest.
  if (end_ == End::Open) end_ = End::Draining;
  up_->held.clear();
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_)))
    uv_timer_start(
        &timer_,
        [](uv_timer_t* t) { static_cast<Session*>(t->data)->close(CloseReason::UpstreamClosed); },
        rt_.options().drain_timeout_ms, 0);
}

void Session::on_write_error(Side& side, int err) {
  if (closing()) return;
  side.write_failed = true;
  log::debug("session {} {}: write error: {}", id_, side.name(), uv_strerror(err));
  if (!side.is_client) {
    // Redis is gone for writing. Keep reading it: a reply it wrote before closing is still in
    // our receive buffer, and the read that follows ends this direction. Meanwhile what the
    // client sends is discarded.
    start_drain();
    check_done();
    return;
  }
  // The client is gone: nothing more can reach it. Tell Redis the same way.
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&side.tcp));
  side.eof = true;
  reset_after_flush(peer(side), CloseReason::ClientReset);
}

void Session::reset_after_flush(Side& toward, CloseReason r) {
  (void)toward;
  finish_after_flush(true, r);
}

// Stop reading, let what is already queued reach both sockets, then RST (or close). A broken
// connection delivers what preceded the break; so does this.
void Session::finish_after_flush(bool rst, CloseReason r) {
  if (closing()) return;
  reason_ = r;
  end_ = rst ? End::FlushRst : End::FlushFin;
  client_->reading = upstream_->reading = false;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&client_->tcp));
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&upstream_->tcp));
  if (client_->writes_outstanding == 0 && upstream_->writes_outstanding == 0) {
    if (rst) reset(r);
    else close(r);
    return;
  }
  uv_timer_stop(&timer_);
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* s = static_cast<Session*>(t->data);
        if (s->end_ == End::FlushRst) s->reset(s->reason_);
        else s->close(s->reason_);
      },
      rt_.options().drain_timeout_ms, 0);
}

void Session::check_done() {
  if (closing()) return;
  if (flushing()) {
    if (client_->writes_outstanding == 0 && upstream_->writes_outstanding == 0) {
      if (end_ == End::FlushRst) reset(reason_);
      else close(reason_);
    }
    return;
  }
  // A direction is finished when its source sent FIN and the FIN was passed on (or the
  // destination is gone).
  auto finished = [](Pipe& p) {
    return p.src->eof && (p.dst->shutdown_done || p.dst->write_failed || p.discarding());
  };
  bool up_done = finished(*up_) || (draining() && client_->eof);
  bool down_done = finished(*down_);
  if (draining() && client_->eof && down_->dst->writes_outstanding == 0) {
    close(CloseReason::UpstreamClosed);
    return;
  }
  if (up_done && down_done) close(client_->eof ? CloseReason::ClientClosed
                                               : CloseReason::UpstreamClosed);
}

void Session::close(CloseReason r) {
  if (closing()) return;
  reason_ = r;
  close_handles(false);
}

void Session::reset(CloseReason r) {
  if (closing()) return;
  reason_ = r;
  close_handles(true);
}

void Session::close_handles(bool rst) {
  end_ = End::Closing;
  if (resp_) {
    flush_plain_requests();
    flush_plain();
  }
  for (auto* o : rt_.observers()) o->on_session_close(*this);
  auto on_close = [](uv_handle_t* h) {
    Session* s = h->type == UV_TIMER ? static_cast<Session*>(h->data)
                                     : static_cast<Side*>(h->data)->session;
    s->on_handle_closed();
  };
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_close);
  for (Side* side : {client_.get(), upstream_.get()}) {
    auto* h = reinterpret_cast<uv_handle_t*>(&side->tcp);
    if (rst && !side->shutdown_sent && uv_tcp_close_reset(&side->tcp, on_close) == 0) continue;
    uv_close(h, on_close);
  }
  // Stages stay until the session is freed: one of them may be on the stack right now. Their
  // timers may still fire; emit() drops everything once closing.
  up_->held.clear();
  down_->held.clear();
}

void Session::on_handle_closed() {
  if (--pending_closes_ > 0) return;
  proxy_.session_closed(*this); // deletes this
}


// ---- RESP: parsing, pairing, observers and RESP-aware toxics ----
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

namespace {
const char kDiscard[] = "*1\r\n$7\r\nDISCARD\r\n";
} // namespace

// What fault execution may do to this session (see resp_faults.h).
struct Session::FaultLink final : FaultPort {
  explicit FaultLink(Session& session) : s(session) {}
  Session& s;
  Pipe& pipe(toxics::Stream d) const { return d == toxics::Stream::Upstream ? *s.up_ : *s.down_; }
  void to_redis(uv::Chunk c) override { s.up_->emit(0, std::move(c)); }
  void to_client(uv::Chunk c) override { s.down_->emit(0, std::move(c)); }
  void eof(toxics::Stream d) override { pipe(d).emit_eof(0); }
  void inject(std::string_view b) override {
    s.down_->inflight += b.size();
    s.down_deliver(s.down_->packer.copy(s.rt_.pool(), b.data(), b.size()));
  }
  void dropped(toxics::Stream d, size_t n) override { pipe(d).consumed(n); }
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
};

struct Session::Head {
  bool active = false;
  uint64_t start = 0;                    // the frame's first byte
  toxics::RespAction action;
  std::string fault;
  uint64_t due_ms = 0;                   // DelayRequest: when its held bytes go on
};

struct Session::Resp {
  Resp(const resp::CaptureOptions& cap, Session& s)
      : req({}, cap), rep({}, cap), pairing(4), link(s), exec(link) {}
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
  std::deque<std::pair<PendingId, std::string>> faults;  // fault names by request id, in order
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

bool Session::FaultLink::reply_expected() const {
  return s.resp_->pairing.expected().has_value();
}

const Pairing* Session::pairing() const { return resp_ ? &resp_->pairing : nullptr; }
bool Session::raw_mode() const { return resp_ && (resp_->req_raw || resp_->rep_raw); }

void Session::ensure_resp() {
  if (resp_) return;
  resp_ = std::make_unique<Resp>(rt_.options().capture, *this);
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
        if (!r.pairing.on_simple_request(q, now)) return false;
        ++s.commands_;
        ++r.plain_requests;
        return true;
      }
      bool on_simple_run(const resp::SimpleRun& q) {
        if (!r.pairing.on_simple_run(q, now)) return false;
        s.commands_ += q.count;
        r.plain_requests += q.count;
        return true;
      }
      void on_request(const resp::RequestFrame& f) { s.forward_request(f, now, {}); }
    };
    resp::Status st;
    if (r.count_plain) {
      Counted sink{*this, r, now};
      st = r.req.feed(c.data(), c.len, sink);
    } else {
      st = r.req.feed(c.data(), c.len,
                      [&](const resp::RequestFrame& f) { forward_request(f, now, {}); });
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
    r.exec.begin_end(a.kind == K::ResetBefore, false);
    return;
  default: {
    // The reply is acted on: remember which request it answers.
    ++commands_;
    RequestResult rr = r.pairing.on_request(f, now, 1);
    if (rr.expects_reply) {
      r.faults.emplace_back(rr.id, std::string(fault));
      r.exec.flag({rr.id, a.kind, a.delay_ms, a.bytes, std::string(fault)});
    }
    flush_plain_requests();
    for (auto* o : rt_.request_observers()) o->on_request(*this, f, rr.id, fault);
    forward_bytes();
    return;
  }
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
      for (auto* o : rt_.observers()) o->on_reply(*this, rr, nullptr, payload, fault);
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
  auto maybe_collect = [&] {
    if (r.exec.collecting() || !r.exec.has_flagged()) return;
    const std::optional<PendingInfo> next = r.pairing.expected();
    if (next && next->user_flags) r.exec.begin_collect(next->id);
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
        for (auto* o : rt_.observers()) o->on_reply(*this, res, &f, {}, fault);
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
    }
    if (r.exec.has_injections()) {
      pass_to(f.end);
      release_injections();
    }
    if (!r.exec.collecting() && r.exec.has_flagged()) {
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

void Session::add_toxic(const toxics::Toxic& t) {
  if (closing()) return;
  Pipe& p = t.stream == toxics::Stream::Upstream ? *up_ : *down_;
  insert_stage(p, p.slots.size(), t);
}

void Session::remove_toxic(std::string_view name, toxics::Stream stream) {
  if (resp_) {
    auto& rules = resp_->rules;
    auto rit = std::find_if(rules.begin(), rules.end(), [&](const auto& x) { return x.name == name; });
    if (rit != rules.end()) {
      rules.erase(rit);
      return;
    }
  }
  Pipe& p = stream == toxics::Stream::Upstream ? *up_ : *down_;
  auto it = std::find_if(p.slots.begin(), p.slots.end(),
                         [&](const auto& s) { return s->name == name; });
  if (it == p.slots.end()) return;
  size_t pos = static_cast<size_t>(it - p.slots.begin());
  std::unique_ptr<Slot> slot = std::move(*it);
  p.slots.erase(it);
  p.renumber();
  // What the stage held goes to the stage that followed it (index + 1 == pos; for pos 0 the
  // unsigned wrap makes it 0). Everything there came through this stage earlier, so order holds.
  slot->index = pos - 1;
  if (!closing()) slot->stage->flush();
}

void Session::replace_toxic(const toxics::Toxic& t) {
  if (resp_) {
    for (auto& rule : resp_->rules) {
      if (rule.name != t.name) continue;
      if (const toxics::RespRule* nr = t.impl->resp_rule()) {
        rule.impl = t.impl;
        rule.rule = nr;
        return;
      }
      remove_toxic(t.name, t.stream);
      break;
    }
  }
  // In place: the new stage takes the old one's position and receives what the old one held.
  for (Pipe* p : {up_.get(), down_.get()}) {
    auto it = std::find_if(p->slots.begin(), p->slots.end(),
                           [&](const auto& s) { return s->name == t.name; });
    if (it == p->slots.end()) continue;
    if (p->stream != t.stream) {
      remove_toxic(t.name, p->stream);
      continue;
    }
    size_t pos = static_cast<size_t>(it - p->slots.begin());
    std::unique_ptr<Slot> old = std::move(*it);
    p->slots.erase(p->slots.begin() + static_cast<std::ptrdiff_t>(pos));
    insert_stage(*p, pos, t);
    p->renumber();
    old->index = pos - 1;
    if (!closing()) old->stage->flush();
    return;
  }
  add_toxic(t);
}

void Session::insert_stage(Pipe& p, size_t pos, const toxics::Toxic& t) {
  if (t.toxicity < 1.0) {
    std::uniform_real_distribution<double> d(0.0, 1.0);
    if (!(d(rng()) < t.toxicity)) return;
  }
  if (const toxics::RespRule* rule = t.impl->resp_rule()) {
    if (!rt_.options().parse_resp) return; // RESP-aware faults need parsing
    ensure_resp();
    resp_->rules.push_back({t.name, t.impl, rule});
    return;
  }
  auto slot = std::make_unique<Slot>();
  slot->pipe = &p;
  slot->index = pos;
  slot->name = t.name;
  slot->stage = t.impl->make_stage(*slot);
  p.slots.insert(p.slots.begin() + static_cast<std::ptrdiff_t>(pos), std::move(slot));
  p.renumber();
}

} // namespace faultline::proxy
