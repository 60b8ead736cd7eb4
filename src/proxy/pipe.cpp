// The pipe's slow paths: partial writes, FIN, reading on and off, the stage chain's outputs.
// The per-chunk path is inline in pipe.h.

#include "proxy/pipe.h"

#include "proxy/proxy.h"

namespace faultline::proxy {

namespace {
// Frees what it holds at thread exit, so leak checkers see no pooled request as lost.
struct WriteReqPool {
  std::vector<WriteReq*> reqs;
  ~WriteReqPool() {
    for (WriteReq* r : reqs) delete r;
  }
};
std::vector<WriteReq*>& write_req_pool() {
  static thread_local WriteReqPool pool;
  return pool.reqs;
}
} // namespace

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

void Session::Pipe::to_stage(size_t index, uv::Chunk c) {
  // The first stage may hold what it gets (latency, bandwidth, slicer).
  slots[index]->stage->on_data(index == 0 ? keep(std::move(c)) : std::move(c));
}

void Session::Pipe::on_write(uv_write_t* req, int status) {
  auto* r = reinterpret_cast<WriteReq*>(req);
  Pipe* p = r->pipe;
  size_t len = r->chunk.len;
  put_write_req(r);
  --p->dst->writes_outstanding;
  if (p->s->closing()) return;
  if (status < 0) {
    p->consumed(len);
    p->s->on_write_error(*p->dst, status);
    return;
  }
  p->sent(len);
  if (p->dst->writes_outstanding == 0 && p->s->flushing()) p->s->check_done();
}

void Session::Pipe::sink_eof() {
  if (!dst_ready()) {
    eof_pending = true;
    return;
  }
  if (dst->shutdown_sent || dst->write_failed) {
    s->check_done();
    return;
  }
  dst->shutdown_sent = true;
  // Made for the one shutdown a side gets, not kept by every session. Closing the handle
  // cancels it, and libuv still calls back (before the handle's close callback): the request
  // is always freed there.
  auto* req = new uv_shutdown_t;
  req->data = this;
  int rc = uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&dst->tcp),
                       [](uv_shutdown_t* req, int status) {
                         auto* p = static_cast<Pipe*>(req->data);
                         delete req;
                         if (p->s->closing()) return;
                         p->dst->shutdown_done = true;
                         p->s->check_done();
                       });
  if (rc < 0) {
    delete req;
    dst->shutdown_done = true;
    s->check_done();
  }
}

void Session::Pipe::start_reading() {
  if (paused || s->closing() || src->eof) return;
  if (src->is_client && s->replies_full_) return;  // injected replies wait for the client
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

void Session::Pipe::flush_held() {
  std::vector<uv::Chunk> chunks;
  chunks.swap(held);
  for (auto& c : chunks) sink(std::move(c));
  if (eof_pending) {
    eof_pending = false;
    sink_eof();
  }
}

void Session::Slot::data(uv::Chunk c) { pipe->emit(index + 1, std::move(c)); }
void Session::Slot::eof() { pipe->emit_eof(index + 1); }
void Session::Slot::dropped(size_t bytes) {
  if (pipe->deliv) pipe->s->note_cut(name);
  pipe->consumed(bytes);
}
void Session::Slot::close_session() {
  pipe->s->note_cut(name);
  pipe->s->close(CloseReason::Toxic);
}
void Session::Slot::reset_session() {
  pipe->s->note_cut(name);
  pipe->s->reset(CloseReason::Toxic);
}
uv_loop_t* Session::Slot::loop() { return pipe->s->rt_.loop(); }
std::mt19937_64& Session::Slot::rng() { return pipe->s->rng(); }
uv::BufferPool& Session::Slot::pool() { return pipe->s->rt_.pool(); }

} // namespace faultline::proxy
