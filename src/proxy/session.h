#pragma once
// One proxied connection: the client socket, the upstream socket, and the two pipes between them.
//
// The proxy's files, each readable alone:
//   proxy.{h,cpp}        a listener per proxy: accepts, owns its sessions, accept modes, lookups
//   session.{h,cpp}      the connection lifecycle (connect, FIN/RST/drain/close, one End state
//                        with one deadline each) and the toxics a session runs
//   tap.{h,cpp}          the RESP tap: parsing, pairing, observers, and the decisions of the
//                        RESP rules on each request (decide, decide_head, request_frame); the
//                        no-fault forwarding path (forward_request) is there, inline
//   pipe.{h,cpp}         one direction: buffers, uv::Packer, watermarks, the toxic stage chain
//   resp_faults.{h,cpp}  what a RESP rule does once it fired (inject, delay, hang, reset/close,
//                        truncate), behind the small FaultPort interface the session implements
//   pairing.{h,cpp}      requests paired with replies (pure code, no libuv)
//   delivery.{h,cpp}     what became of each followed reply on its way to the client
//   observer.h, runtime.h  what sessions tell the rest of the program; what one loop shares

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

#include "proxy/pairing.h"
#include "toxics/toxic.h"
#include "uv/buffer.h"
#include "uv/timer.h"

namespace faultline::toxics {
struct RespAction;
enum class RespActionKind : uint8_t;
}

namespace faultline::proxy {

class Proxy;
class ReplyRewriter;
class Runtime;

enum class CloseReason {
  ClientClosed,   // the client closed (FIN), after the upstream also finished
  UpstreamClosed, // Redis closed and the client finished, or the drain time ran out
  ClientReset,
  UpstreamReset,
  ConnectFailed,
  ConnectTimeout,
  ProxyDisabled,
  Dropped,        // DELETE /proxies/{name}/connections
  Toxic,          // a toxic closed or reset it
  AcceptReset,    // the proxy's accept mode resets every connection
  Shutdown,
  Error,
};
std::string_view to_string(CloseReason r);

enum class AcceptMode { Normal, Reset, Hang };

// How far a session is in ending: one state, not a set of flags (each case of a switch says what
// it allows). Ordered: a session only moves down the list, except that a flush may follow a
// drain, and every state but Closing may go straight to Closing.
enum class End : uint8_t {
  Open,      // both directions flow
  Hung,      // accept=hang: the client is read and discarded, never forwarded, until it goes
  Draining,  // Redis is gone for writing: what it sent still reaches the client, whose bytes
             // are read and discarded for drain_timeout_ms
  FlushFin,  // reading stopped: what is queued reaches both sockets, then both close (FIN)
  FlushRst,  // the same, then RST
  Closing,   // handles are closing: every callback returns at once; memory goes with the last
};
std::string_view to_string(End e);

class Session {
public:
  Session(Proxy& proxy, uint64_t id);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int accept(uv_stream_t* server);
  void start(AcceptMode mode);
  void close(CloseReason r);
  void reset(CloseReason r);
  End end_state() const { return end_; }
  bool closing() const { return end_ == End::Closing; }
  // Accepted under accept=hang: read and discarded, never forwarded, until the client goes.
  bool hung() const { return end_ == End::Hung; }
  // Called by the proxy when the upstream's host name is looked up (see connect_upstream()).
  void connect_to(const sockaddr* addr);
  // Called by the proxy when the connect timeout, counted from connect_upstream(), ran out: the
  // session ends unless it connected meanwhile (or began to end for another reason).
  void connect_timed_out();

  // Toxics (toxicity is rolled here, once per connection and toxic).
  void add_toxic(const toxics::Toxic& t);
  void remove_toxic(std::string_view name, toxics::Stream s);
  void replace_toxic(const toxics::Toxic& t);

  // Requests a client may send ahead of their replies before it is no longer read.
  static constexpr size_t kMaxUnanswered = 1 << 20;

  uint64_t id() const { return id_; }
  const std::string& client_address() const { return client_addr_; }
  uint64_t started_ms() const { return started_ms_; }
  uint64_t bytes_from_client() const;
  uint64_t bytes_from_upstream() const;
  CloseReason close_reason() const { return reason_; }
  Proxy& proxy() { return proxy_; }
  // RESP facts (nullptr before the first byte, or with parsing off).
  const Pairing* pairing() const;
  uint64_t commands_seen() const { return commands_; }
  bool raw_mode() const;
  // From SessionObserver::on_reply() only: report what becomes of this reply through
  // on_delivery(). False when this session does not follow deliveries (it opened while no
  // observer wanted them), or the reply is not one it can follow (out of band).
  bool follow_delivery(PendingId id);
  bool follows_deliveries() const { return deliv_ != nullptr; }
  // The proxy's sweep (Proxy::trim_sessions), every kTrimIntervalMs: a session that carried no
  // byte since the last sweep lets go of its pipes' pack blocks and spare queue room, and, with
  // nothing in progress on the RESP side (no request or reply half read, nothing pending, held,
  // injected or flagged, no RESP rule, no connection state beyond the database and protocol),
  // frees its RESP state: parsers, pairing ring and fault state, some 4 kB. The next byte makes
  // it again, going on where it was (offsets, request ids, database, protocol).
  struct Trimmed {
    bool buffers = false;  // a pack block or queue room was let go
    bool resp = false;     // the RESP state was freed
  };
  Trimmed trim_if_idle();

  struct Side;
  struct Pipe;
  struct Slot;
  struct Resp;
  struct Head;
  struct FaultLink;
  struct Redirects;
  struct Deliveries;

private:
  friend struct Pipe;
  friend struct Slot;
  friend struct FaultLink;
  friend struct Redirects;
  void connect_upstream();
  void on_connected(int status);
  void on_read(Side& side, ssize_t nread, const uv_buf_t* buf);
  void on_read_error(Side& side, int err);
  void on_hung_read(ssize_t nread, const uv_buf_t* buf);
  void on_write_error(Side& side, int err);
  void reset_after_flush(Side& toward, CloseReason r);
  void check_done();
  void start_drain();
  void finish_after_flush(bool rst, CloseReason r);
  void arm_deadline(uint64_t ms);
  void on_deadline();
  // RESP: parse, pair, observe, and apply RESP-aware toxics.
  void ensure_resp();
  void on_client_chunk(uv::Chunk c);
  void on_upstream_chunk(uv::Chunk c);
  void client_eof();
  void upstream_eof();
  void request_frame(const resp::RequestFrame& f, uv::Chunk tail, uint64_t now_us,
                     struct Head* pre);
  void decide(const resp::RequestFrame& f, toxics::RespAction& a, std::string_view& fault);
  size_t head_limit() const;
  void decide_head();
  void stream_head(uv::Chunk c);
  void hold_client_if_replies_full();
  void check_replies_drained();
  void check_unanswered();
  // Inline: a plain request is a pairing entry and a count; the rest calls observe_request().
  [[gnu::always_inline]] inline void forward_request(const resp::RequestFrame& f, uint64_t now_us,
                                                     std::string_view fault);
  void observe_request(const resp::RequestFrame& f, PendingId id, std::string_view fault);
  // forward_request() on the observe-only path, where a deployment's proxy also flags the
  // replies its rewriter needs whole (the request's bytes go on with the chunk).
  void forward_observed(const resp::RequestFrame& f, uint64_t now_us);
  // A request whose reply is to be acted on (a RESP rule's reply-side action, or a deployment's
  // rewrite): paired, its reply flagged with what to do (delay_ms, bytes: as FlagEntry has
  // them) and the fault remembered, then observed. Its bytes are the caller's to forward.
  void flag_reply(const resp::RequestFrame& f, uint64_t now_us, toxics::RespActionKind kind,
                  uint64_t delay_ms, uint64_t bytes, std::string_view fault);
  bool no_rule_selects(const resp::RequestFrame& f) const;
  void reply_frame(const resp::ReplyFrame& f, uint64_t now_us);
  void release_injections();
  void flush_plain();  // hands this session's run of plain replies to the observers
  static void flush_plain_run(Runtime& rt);  // whichever session's run it is
  void begin_plain_requests();  // a chunk from the client: may its plain requests be counted?
  void flush_plain_requests();  // hands the count of plain requests to the observers
  void end_plain_requests();    // the chunk is done: flush, and count no more
  void flush_forward();
  // Deliveries (delivery.cpp): only called when deliv_ is set.
  void note_reply(uint64_t upstream_end, uint64_t extra, std::string_view fault, bool doomed);
  void delivery_written(size_t n);
  void delivery_dropped(size_t n);
  void note_cut(std::string_view by);
  std::string hold_cause(std::string_view fault) const;
  void resolve_marks(bool all);
  void up_deliver(uv::Chunk c);
  void down_deliver(uv::Chunk c);
  void drop(Pipe& p, uv::Chunk c);
  void enter_raw(toxics::Stream dir);
  void insert_stage(Pipe& p, size_t pos, const toxics::Toxic& t);
  bool rolls(double toxicity);  // this session gets a toxic of this toxicity
  void close_handles(bool rst);
  void on_handle_closed();
  Pipe& pipe_from(Side& side);
  Side& peer(Side& side);

  Proxy& proxy_;
  Runtime& rt_;
  uint64_t id_;
  uint64_t started_ms_;
  std::string client_addr_;
  // The two sides and the two pipes, made together in one allocation (a session lives as long
  // as its connection, and idle connections are what a pool keeps by the thousand).
  struct Parts;
  struct PartsDeleter {
    void operator()(Parts* p) const;
  };
  std::unique_ptr<Parts, PartsDeleter> parts_;
  Side* client_;
  Side* upstream_;
  Pipe* up_;   // client → upstream
  Pipe* down_; // upstream → client
  // The RESP state lives in a slot of the runtime's pool (uv/slot_pool.h), with its parsers'
  // and pairing's first arrays (base/room.h): freed by an idle session, its pages go back to
  // the system whole.
  struct RespDeleter {
    void operator()(Resp* r) const;
  };
  std::unique_ptr<Resp, RespDeleter> resp_; // created with the first byte when parsing is on
  // What trim_if_idle() keeps of the RESP state it frees, for ensure_resp() to go on from.
  struct Resumed {
    uint64_t req_offset = 0, rep_offset = 0;
    Pairing::Resume pairing;
  };
  Resumed resumed_;
  uint64_t trim_mark_ = 0;     // bytes both ways as the last sweep saw them
  std::unique_ptr<Deliveries> deliv_; // when an observer wanted deliveries as the session opened
  ReplyRewriter* rewriter_;            // a deployment's proxy (rewriter.h), as the session opened
  uint64_t commands_ = 0;
  // Random choices of this session's toxics (toxicity, probability, jitter, slicer sizes):
  // its own generator, made on first use, seeded from the proxy's seed and its sequence number.
  std::unique_ptr<std::mt19937_64> rng_;
  std::mt19937_64& rng();
  // The deadline of the End state (arm_deadline, on_deadline), made when a drain or a flush
  // needs one: a connection that just carries commands has none (a libuv timer is 152 bytes,
  // and idle connections are what a pool keeps by the thousand). The connect's deadline is
  // the proxy's (Proxy::watch_connect).
  std::unique_ptr<uv::Timer> deadline_;
  bool draining() const { return end_ == End::Draining; }
  bool flushing() const { return end_ == End::FlushFin || end_ == End::FlushRst; }
  // Closing, or flushing toward it: nothing new starts.
  bool ended() const { return end_ >= End::FlushFin; }
  bool connected_ = false;
  bool replies_full_ = false;  // injected replies filled the client's queue: client not read
  End end_ = End::Open;
  CloseReason reason_ = CloseReason::ClientClosed;
  int pending_closes_ = 0;
};

} // namespace faultline::proxy
