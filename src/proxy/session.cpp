// Session: one client connection and its upstream connection.
//
//            client_ (uv_tcp_t)                                upstream_ (uv_tcp_t)
//   client ──► read ──► up_:   [stage]…[stage] ──► try_write/uv_write ──► Redis
//   client ◄── try_write/uv_write ◄── [stage]…[stage] :down_ ◄── read ◄── Redis
//
// The pipes (up_, down_: buffers, backpressure, stages) are in pipe.{h,cpp}; what RESP faults do
// once decided is in resp_faults.{h,cpp}; the RESP tap is in tap.{h,cpp}. Here: the lifecycle,
// and the toxics a session runs (added, replaced, removed; toxicity rolled).
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
#include "proxy/tap.h"

#include <algorithm>
#include <array>

#include <deque>

#include "base/log.h"
#include "proxy/delivery.h"
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

struct Session::Parts {
  Side client, upstream;
  Pipe up, down;
};
void Session::PartsDeleter::operator()(Parts* p) const { delete p; }

std::mt19937_64& Session::rng() {
  if (!rng_) rng_ = std::make_unique<std::mt19937_64>(proxy_.session_seed(id_));
  return *rng_;
}
Session::Session(Proxy& proxy, uint64_t id)
    : proxy_(proxy), rt_(proxy.runtime()), id_(id), started_ms_(now_ms(proxy.runtime().loop())),
      parts_(new Parts()), client_(&parts_->client), upstream_(&parts_->upstream),
      up_(&parts_->up), down_(&parts_->down),
      rewriter_(proxy.rewriter()) {
  uv_loop_t* loop = rt_.loop();
  for (Side* side : {client_, upstream_}) {
    uv_tcp_init(loop, &side->tcp);
    side->tcp.data = side;
    side->session = this;
  }
  client_->is_client = true;
  upstream_->is_client = false;
  pending_closes_ = 2;
  auto wire = [this](Pipe& p, Side* src, Side* dst, toxics::Stream st) {
    p.s = this;
    p.src = src;
    p.dst = dst;
    p.stream = st;
  };
  wire(*up_, client_, upstream_, toxics::Stream::Upstream);
  wire(*down_, upstream_, client_, toxics::Stream::Downstream);
  if (!rt_.delivery_observers().empty()) {
    deliv_ = std::make_unique<Deliveries>();
    down_->deliv = deliv_.get();
  }
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
  // The connect timeout also covers the lookup of an upstream host name. The proxy keeps it,
  // with its other sessions' (Proxy::watch_connect).
  proxy_.watch_connect(*this);
  // nullptr: the proxy calls connect_to() once the name is looked up, or closes this session.
  if (const sockaddr* addr = proxy_.upstream_sockaddr(*this)) connect_to(addr);
}

void Session::connect_to(const sockaddr* addr) {
  if (closing()) return;
  // Freed in its callback, which libuv calls even when closing the handle cancels the connect
  // (before the handle's close callback, so the session is still there).
  auto* req = new uv_connect_t;
  req->data = this;
  int rc = uv_tcp_connect(req, &upstream_->tcp, addr, [](uv_connect_t* req, int status) {
    auto* s = static_cast<Session*>(req->data);
    delete req;
    s->on_connected(status);
  });
  if (rc < 0) {
    delete req;
    // No descriptor for the upstream socket: the process, not Redis, is the problem.
    if (rc == UV_EMFILE || rc == UV_ENFILE) proxy_.note_fd_exhausted(rc);
    else proxy_.note_connect_failure(rc);
    close(CloseReason::ConnectFailed);
  }
}

void Session::on_connected(int status) {
  if (closing()) return;
  if (flushing()) {
    // The session began to end before Redis answered the connect (a fault's reset or close on
    // the first commands, the client's reset). The deadline is the flush's now and stays; read
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
  up_->held.clear();
  if (end_ != End::Open) return;
  end_ = End::Draining;
  arm_deadline(rt_.options().drain_timeout_ms);
}

// deadline_ is the deadline of the state the session is in, armed on entering it: the drain
// (Draining), the flush (FlushFin, FlushRst); the connect's (Open, not yet connected) is kept by
// the proxy for all its sessions at once (Proxy::watch_connect, connect_timed_out()). What happens
// when it fires is read from the state then, so a state change can never leave behind a
// deadline meant for another.
void Session::arm_deadline(uint64_t ms) {
  if (!deadline_) deadline_ = std::make_unique<uv::Timer>(rt_.loop());
  deadline_->start(ms, [this] { on_deadline(); });
}

void Session::connect_timed_out() {
  if (end_ != End::Open || connected_) return;
  proxy_.note_connect_failure(UV_ETIMEDOUT);
  close(CloseReason::ConnectTimeout);
}

void Session::on_deadline() {
  switch (end_) {
  case End::Open: return;  // the connect's deadline is the proxy's (connect_timed_out())
  case End::Hung: return;
  case End::Draining: close(CloseReason::UpstreamClosed); return;
  case End::FlushFin: close(reason_); return;
  case End::FlushRst: reset(reason_); return;
  case End::Closing: return;
  }
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
  arm_deadline(rt_.options().drain_timeout_ms);
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
  if (deliv_) resolve_marks(true);  // what is still on its way never reaches the client
  for (auto* o : rt_.observers()) o->on_session_close(*this);
  auto on_close = [](uv_handle_t* h) { static_cast<Side*>(h->data)->session->on_handle_closed(); };
  // Stopped, not freed: this may run inside its callback. It goes with the session (its handle
  // then closes on its own and never calls back).
  if (deadline_) deadline_->stop();
  for (Side* side : {client_, upstream_}) {
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

// An updated toxic is rolled again against its toxicity, as Toxiproxy restarts every stub of a
// changed chain: a session that was spared may now get it, and one that had it may lose it.
void Session::replace_toxic(const toxics::Toxic& t) {
  if (resp_) {
    auto& rules = resp_->rules;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (rules[i].name != t.name) continue;
      const toxics::RespRule* nr = t.impl->resp_rule();
      if (nr && rolls(t.toxicity)) {
        rules[i].impl = t.impl;  // in place: it keeps its turn among the rules
        rules[i].rule = nr;
        return;
      }
      rules.erase(rules.begin() + static_cast<std::ptrdiff_t>(i));
      if (nr) return;
      break;
    }
  }
  // In place: the new stage takes the old one's position and receives what the old one held.
  for (Pipe* p : {up_, down_}) {
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

bool Session::rolls(double toxicity) {
  if (toxicity >= 1.0) return true;
  std::uniform_real_distribution<double> d(0.0, 1.0);
  return d(rng()) < toxicity;
}

void Session::insert_stage(Pipe& p, size_t pos, const toxics::Toxic& t) {
  if (!rolls(t.toxicity)) return;
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
