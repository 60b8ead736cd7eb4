// Session: one client connection and its upstream connection.
//
//            client_ (uv_tcp_t)                                upstream_ (uv_tcp_t)
//   client ──► read ──► up_:   [stage]…[stage] ──► try_write/uv_write ──► Redis
//   client ◄── try_write/uv_write ◄── [stage]…[stage] :down_ ◄── read ◄── Redis
//
// A pipe counts the bytes it has read and not yet handed to the kernel (inflight_). Above the
// high watermark it stops reading its source; below the low one it reads again, so a slow reader
// never makes the proxy buffer without bound. With no toxic, a chunk goes from the read callback
// straight to uv_try_write on the peer: no copy, no timer, no allocation (blocks are pooled).
//
// Ends of a connection, each propagated as itself:
//   FIN from a side   → shutdown toward the other once everything before it is written.
//   RST / read error  → everything already read is written to the other side, then RST.
//   Redis closes (FIN) while the client still writes → the client gets every byte Redis sent and
//                       a FIN; what it still sends is read and discarded (drain) for
//                       drain_timeout_ms, then the connection closes. No reply is lost to a RST.
// Memory is freed only from the last close callback; every callback checks closing_.

#include "proxy/session.h"

#include <algorithm>

#include "observe/log.h"
#include "proxy/proxy.h"
#include "proxy/runtime.h"

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

namespace {
// Write requests are pooled: a partial write is the only case that needs one.
struct WriteReq {
  uv_write_t req;
  uv::Chunk chunk;
  Session::Pipe* pipe;
};
std::vector<WriteReq*>& write_req_pool() {
  static thread_local std::vector<WriteReq*> pool;
  return pool;
}
WriteReq* get_write_req() {
  auto& pool = write_req_pool();
  if (pool.empty()) return new WriteReq;
  WriteReq* r = pool.back();
  pool.pop_back();
  return r;
}
void put_write_req(WriteReq* r) {
  r->chunk = {};
  auto& pool = write_req_pool();
  if (pool.size() < 256) pool.push_back(r);
  else delete r;
}
uint64_t now_ms(uv_loop_t* loop) { return uv_now(loop); }
} // namespace

struct Session::Side {
  uv_tcp_t tcp;
  Session* session;
  bool is_client;
  bool reading = false;
  bool eof = false;          // read FIN from this side
  bool shutdown_sent = false;
  bool shutdown_done = false;
  bool write_failed = false;
  size_t writes_outstanding = 0;
  uv_shutdown_t shutdown_req;
  const char* name() const { return is_client ? "client" : "upstream"; }
};

// One stage position in a pipe: the Output the stage writes to.
struct Session::Slot final : toxics::Output {
  Pipe* pipe;
  size_t index;
  std::string name;
  std::unique_ptr<toxics::Stage> stage;

  void data(uv::Chunk c) override;
  void eof() override;
  void dropped(size_t bytes) override;
  void close_session() override;
  void reset_session() override;
  uv_loop_t* loop() override;
  std::mt19937_64& rng() override;
  uv::BufferPool& pool() override;
};

struct Session::Pipe {
  Session* s;
  Side* src;
  Side* dst;
  toxics::Stream stream;
  uint64_t bytes = 0;
  size_t inflight = 0;
  bool paused = false;
  bool discard = false;           // drain mode: the destination is gone, drop what comes
  bool eof_pending = false;       // eof reached the sink before the destination connected
  std::vector<uv::Chunk> held;    // reached the sink before the destination connected
  std::vector<std::unique_ptr<Slot>> slots;

  void emit(size_t index, uv::Chunk c) {
    if (s->closing_) return;
    if (index < slots.size()) slots[index]->stage->on_data(std::move(c));
    else sink(std::move(c));
  }
  void emit_eof(size_t index) {
    if (s->closing_) return;
    if (index < slots.size()) slots[index]->stage->on_eof();
    else sink_eof();
  }
  void sink(uv::Chunk c) {
    if (discard || dst->write_failed || dst->shutdown_sent) {
      consumed(c.len);
      return;
    }
    if (!dst_ready()) {
      held.push_back(std::move(c));
      return;
    }
    write(std::move(c));
  }
  bool dst_ready() const { return dst->is_client || s->connected_; }
  void write(uv::Chunk c) {
    uv_buf_t buf = uv_buf_init(const_cast<char*>(c.data()), c.len);
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&dst->tcp), &buf, 1);
    if (n == static_cast<int>(c.len)) {
      consumed(c.len);
      return;
    }
    if (n >= 0) {
      consumed(static_cast<size_t>(n));
      c.off += n;
      c.len -= n;
    } else if (n != UV_EAGAIN) {
      consumed(c.len);
      s->on_write_error(*dst, n);
      return;
    }
    WriteReq* r = get_write_req();
    r->pipe = this;
    buf = uv_buf_init(const_cast<char*>(c.data()), c.len);
    r->chunk = std::move(c);
    int rc = uv_write(&r->req, reinterpret_cast<uv_stream_t*>(&dst->tcp), &buf, 1, on_write);
    if (rc < 0) {
      consumed(r->chunk.len);
      put_write_req(r);
      s->on_write_error(*dst, rc);
      return;
    }
    ++dst->writes_outstanding;
  }
  static void on_write(uv_write_t* req, int status) {
    auto* r = reinterpret_cast<WriteReq*>(req);
    Pipe* p = r->pipe;
    size_t len = r->chunk.len;
    put_write_req(r);
    --p->dst->writes_outstanding;
    if (p->s->closing_) return;
    p->consumed(len);
    if (status < 0) {
      p->s->on_write_error(*p->dst, status);
      return;
    }
    if (p->dst->writes_outstanding == 0 && p->s->reset_pending_) p->s->check_done();
  }
  void sink_eof() {
    if (!dst_ready()) {
      eof_pending = true;
      return;
    }
    if (dst->shutdown_sent || dst->write_failed) {
      s->check_done();
      return;
    }
    dst->shutdown_sent = true;
    dst->shutdown_req.data = this;
    int rc = uv_shutdown(&dst->shutdown_req, reinterpret_cast<uv_stream_t*>(&dst->tcp),
                         [](uv_shutdown_t* req, int status) {
                           auto* p = static_cast<Pipe*>(req->data);
                           if (p->s->closing_) return;
                           p->dst->shutdown_done = true;
                           p->s->check_done();
                         });
    if (rc < 0) {
      dst->shutdown_done = true;
      s->check_done();
    }
  }
  // Bytes left the pipe (written to the kernel, or dropped).
  void consumed(size_t n) {
    inflight -= std::min(n, inflight);
    if (paused && inflight <= s->rt_.options().low_watermark && !s->closing_) {
      paused = false;
      if (src->reading) start_reading();
    }
  }
  void start_reading();
  void stop_reading() {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&src->tcp));
  }
  void flush_held() {
    std::vector<uv::Chunk> chunks;
    chunks.swap(held);
    for (auto& c : chunks) sink(std::move(c));
    if (eof_pending) {
      eof_pending = false;
      sink_eof();
    }
  }
  void renumber() {
    for (size_t i = 0; i < slots.size(); ++i) slots[i]->index = i;
  }
};

void Session::Slot::data(uv::Chunk c) { pipe->emit(index + 1, std::move(c)); }
void Session::Slot::eof() { pipe->emit_eof(index + 1); }
void Session::Slot::dropped(size_t bytes) { pipe->consumed(bytes); }
void Session::Slot::close_session() { pipe->s->close(CloseReason::Toxic); }
void Session::Slot::reset_session() { pipe->s->reset(CloseReason::Toxic); }
uv_loop_t* Session::Slot::loop() { return pipe->s->rt_.loop(); }
std::mt19937_64& Session::Slot::rng() { return pipe->s->proxy_.rng(); }
uv::BufferPool& Session::Slot::pool() { return pipe->s->rt_.pool(); }

void Session::Pipe::start_reading() {
  if (paused || s->closing_ || src->eof) return;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&src->tcp),
                [](uv_handle_t* h, size_t, uv_buf_t* buf) {
                  auto* side = static_cast<Side*>(h->data);
                  uv::Block* b = side->session->rt_.pool().acquire();
                  *buf = uv_buf_init(b->data(), b->capacity);
                },
                [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
                  auto* side = static_cast<Side*>(stream->data);
                  side->session->on_read(*side, nread, buf);
                });
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
  if (mode == AcceptMode::Reset) {
    reset(CloseReason::AcceptReset);
    return;
  }
  if (mode == AcceptMode::Hang) return; // accepted, never read, never forwarded
  uv_tcp_nodelay(&client_->tcp, 1);
  client_->reading = true;
  up_->start_reading();
  for (const auto& t : proxy_.toxics()) add_toxic(t);
  connect_upstream();
}

void Session::connect_upstream() {
  const sockaddr* addr = proxy_.upstream_sockaddr();
  if (!addr) {
    close(CloseReason::ConnectFailed);
    return;
  }
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, &upstream_->tcp, addr, [](uv_connect_t* req, int status) {
    static_cast<Session*>(req->data)->on_connected(status);
  });
  if (rc < 0) {
    proxy_.note_connect_failure(rc);
    close(CloseReason::ConnectFailed);
    return;
  }
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* s = static_cast<Session*>(t->data);
        if (s->closing_ || s->connected_) return;
        s->proxy_.note_connect_failure(UV_ETIMEDOUT);
        s->close(CloseReason::ConnectTimeout);
      },
      rt_.options().connect_timeout_ms, 0);
}

void Session::on_connected(int status) {
  if (closing_) return;
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
  if (closing_) return;
  if (nread > 0) {
    Pipe& p = pipe_from(side);
    p.bytes += static_cast<uint64_t>(nread);
    p.inflight += static_cast<size_t>(nread);
    p.emit(0, uv::Chunk{std::move(block), 0, static_cast<uint32_t>(nread)});
    if (!closing_ && !p.paused && p.inflight > rt_.options().high_watermark) {
      p.paused = true;
      p.stop_reading();
    }
    return;
  }
  if (nread == 0) return;
  if (nread == UV_EOF) {
    side.eof = true;
    Pipe& p = pipe_from(side);
    if (p.discard) {
      check_done();
      return;
    }
    p.emit_eof(0);
    return;
  }
  on_read_error(side, static_cast<int>(nread));
}

void Session::on_read_error(Side& side, int err) {
  log::debug("session {} {}: read error: {}", id_, side.name(), uv_strerror(err));
  side.eof = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&side.tcp));
  if (!side.is_client && side.write_failed) {
    // Redis went away after we wrote to a socket it had closed: what it said is already
    // queued toward the client; finish that and drain.
    check_done();
    return;
  }
  reset_after_flush(peer(side), side.is_client ? CloseReason::ClientReset
                                               : CloseReason::UpstreamReset);
}

void Session::on_write_error(Side& side, int err) {
  if (closing_) return;
  side.write_failed = true;
  log::debug("session {} {}: write error: {}", id_, side.name(), uv_strerror(err));
  if (!side.is_client && upstream_->eof) {
    // Redis closed after writing: keep delivering to the client, discard what it still sends.
    up_->discard = true;
    up_->held.clear();
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_)))
      uv_timer_start(
          &timer_,
          [](uv_timer_t* t) { static_cast<Session*>(t->data)->close(CloseReason::UpstreamClosed); },
          rt_.options().drain_timeout_ms, 0);
    check_done();
    return;
  }
  // The peer of `side` is the one that still has something to say; let it be delivered, then
  // reset, as a broken connection would.
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&side.tcp));
  side.eof = true;
  reset_after_flush(peer(side), side.is_client ? CloseReason::ClientReset
                                               : CloseReason::UpstreamReset);
}

void Session::reset_after_flush(Side& toward, CloseReason r) {
  reason_ = r;
  reset_pending_ = true;
  client_->reading = upstream_->reading = false;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&client_->tcp));
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&upstream_->tcp));
  if (toward.writes_outstanding == 0) {
    reset(r);
    return;
  }
  uv_timer_stop(&timer_);
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* s = static_cast<Session*>(t->data);
        s->reset(s->reason_);
      },
      rt_.options().drain_timeout_ms, 0);
}

void Session::check_done() {
  if (closing_) return;
  if (reset_pending_) {
    if (client_->writes_outstanding == 0 && upstream_->writes_outstanding == 0) reset(reason_);
    return;
  }
  // A direction is finished when its source sent FIN and the FIN was passed on (or the
  // destination is gone).
  auto finished = [](Pipe& p) {
    return p.src->eof && (p.dst->shutdown_done || p.dst->write_failed || p.discard);
  };
  bool up_done = finished(*up_) || (up_->discard && client_->eof);
  bool down_done = finished(*down_);
  if (up_->discard && client_->eof && down_->dst->writes_outstanding == 0) {
    close(CloseReason::UpstreamClosed);
    return;
  }
  if (up_done && down_done) close(client_->eof ? CloseReason::ClientClosed
                                               : CloseReason::UpstreamClosed);
}

void Session::close(CloseReason r) {
  if (closing_) return;
  reason_ = r;
  close_handles(false);
}

void Session::reset(CloseReason r) {
  if (closing_) return;
  reason_ = r;
  close_handles(true);
}

void Session::close_handles(bool rst) {
  closing_ = true;
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
  // timers may still fire; emit() drops everything once closing_ is set.
  up_->held.clear();
  down_->held.clear();
}

void Session::on_handle_closed() {
  if (--pending_closes_ > 0) return;
  proxy_.session_closed(*this); // deletes this
}

void Session::add_toxic(const toxics::Toxic& t) {
  if (closing_) return;
  Pipe& p = t.stream == toxics::Stream::Upstream ? *up_ : *down_;
  insert_stage(p, p.slots.size(), t);
}

void Session::remove_toxic(std::string_view name, toxics::Stream stream) {
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
  if (!closing_) slot->stage->flush();
}

void Session::replace_toxic(const toxics::Toxic& t) {
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
    if (!closing_) old->stage->flush();
    return;
  }
  add_toxic(t);
}

void Session::insert_stage(Pipe& p, size_t pos, const toxics::Toxic& t) {
  if (t.toxicity < 1.0) {
    std::uniform_real_distribution<double> d(0.0, 1.0);
    if (!(d(proxy_.rng()) < t.toxicity)) return;
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
