#pragma once
// The pipe: one direction of a session (client → Redis, or Redis → client).
//
//   src socket ─► read ─► [stage]…[stage] ─► sink ─► uv_try_write / uv_write ─► dst socket
//                          (toxic chain)        └ held until dst connects
//
// A pipe counts the bytes it has read and not yet handed to the kernel (inflight). Above the
// high watermark it stops reading its source; below the low one it reads again, so a slow reader
// never makes the proxy buffer without bound. With no toxic, a chunk goes from the read callback
// straight to uv_try_write on the peer: no copy, no timer, no allocation (blocks are pooled;
// a chunk that must wait is packed by uv::Packer so it does not pin a whole read block).
//
// When an observer follows deliveries, the down pipe of a session opened meanwhile tells its
// session what it wrote to the client and what it dropped (deliv, delivery.h); otherwise deliv
// is null and that costs one branch per write.
//
// The hot path (emit → sink → write → consumed) is inline here, so whichever file of the
// session delivers a chunk compiles it in place. Nested in Session: a pipe asks its session
// whether it is closing and tells it of write errors and FINs passed on.

#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include "proxy/runtime.h"
#include "proxy/session.h"
#include "toxics/toxic.h"
#include "uv/buffer.h"

namespace faultline::proxy {

// Write requests are pooled: a partial write is the only case that needs one.
struct WriteReq {
  uv_write_t req;
  uv::Chunk chunk;
  Session::Pipe* pipe;
};
WriteReq* get_write_req();
void put_write_req(WriteReq* r);

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
  bool eof_pending = false;       // eof reached the sink before the destination connected
  std::vector<uv::Chunk> held;    // reached the sink before the destination connected
  std::vector<std::unique_ptr<Slot>> slots;
  uv::Packer packer;              // small chunks that wait are copied here (see uv::Packer)
  Deliveries* deliv = nullptr;    // the down pipe's, when its session follows deliveries

  // A chunk that is about to wait somewhere: small ones no longer pin a whole read block.
  uv::Chunk keep(uv::Chunk c) { return packer.keep(s->rt_.pool(), std::move(c)); }
  void emit(size_t index, uv::Chunk c) {
    if (s->closing()) return;
    if (index < slots.size()) [[unlikely]] to_stage(index, std::move(c));
    else sink(std::move(c));
  }
  [[gnu::noinline]] void to_stage(size_t index, uv::Chunk c);
  void emit_eof(size_t index) {
    if (s->closing()) return;
    if (index < slots.size()) slots[index]->stage->on_eof();
    else sink_eof();
  }
  // Drain mode (End::Draining) drops what the client sends: Redis is gone for writing.
  bool discarding() const { return stream == toxics::Stream::Upstream && s->draining(); }
  void sink(uv::Chunk c) {
    if (discarding() || dst->write_failed || dst->shutdown_sent) {
      consumed(c.len);
      return;
    }
    if (!dst_ready()) {
      held.push_back(keep(std::move(c)));
      return;
    }
    write(std::move(c));
  }
  bool dst_ready() const { return dst->is_client || s->connected_; }
  void write(uv::Chunk c) {
    uv_buf_t buf = uv_buf_init(const_cast<char*>(c.data()), c.len);
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&dst->tcp), &buf, 1);
    if (n == static_cast<int>(c.len)) {
      sent(c.len);
      return;
    }
    if (n >= 0) {
      sent(static_cast<size_t>(n));
      c.off += n;
      c.len -= n;
    } else if (n != UV_EAGAIN) {
      consumed(c.len);
      s->on_write_error(*dst, n);
      return;
    }
    WriteReq* r = get_write_req();
    r->pipe = this;
    c = keep(std::move(c));  // waits for the peer to read
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
  static void on_write(uv_write_t* req, int status);
  void sink_eof();
  // Bytes written to the destination's socket.
  void sent(size_t n) {
    if (deliv) [[unlikely]] s->delivery_written(n);
    release(n);
  }
  // Bytes dropped: they never reach the destination.
  void consumed(size_t n) {
    if (deliv) [[unlikely]] s->delivery_dropped(n);
    release(n);
  }
  // Bytes left the pipe (written to the kernel, or dropped).
  void release(size_t n) {
    inflight -= std::min(n, inflight);
    if (paused && inflight <= s->rt_.options().low_watermark && !s->closing()) {
      paused = false;
      if (src->reading) start_reading();
    }
    if (s->replies_full_) [[unlikely]] s->check_replies_drained();
  }
  void start_reading();
  void stop_reading() { uv_read_stop(reinterpret_cast<uv_stream_t*>(&src->tcp)); }
  void flush_held();
  void renumber() {
    for (size_t i = 0; i < slots.size(); ++i) slots[i]->index = i;
  }
};

} // namespace faultline::proxy
