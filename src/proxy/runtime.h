#pragma once
// What every proxy on one loop shares: the loop, the buffer pool, the options of the data path.
// Nothing here is global, so a later --threads N can run one Runtime per loop.

#include <cstdint>
#include <memory>
#include <vector>

#include <uv.h>

#include "proxy/observer.h"
#include "resp/parser.h"
#include "uv/buffer.h"
#include "uv/slot_pool.h"

namespace faultline::proxy {

class SessionObserver;

struct DataPathOptions {
  uint32_t connect_timeout_ms = 2000;
  size_t high_watermark = 1 << 20;   // stop reading a side when this much waits for its peer
  size_t low_watermark = 256 << 10;  // resume below this
  uint32_t drain_timeout_ms = 1000;  // after the upstream closed: discard client bytes this long
  bool parse_resp = true;            // RESP parsing for pairing, logs and RESP-aware faults
  int backlog = 511;                 // listen() backlog of every proxy (--backlog)
  // What the request parser keeps of each command: three arguments are enough for pairing and
  // RESP-aware faults; the traffic log asks for more.
  resp::CaptureOptions capture{3, 64, 128};
};

class Runtime {
public:
  Runtime(uv_loop_t* loop, DataPathOptions opts) : loop_(loop), opts_(opts) {}
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  uv_loop_t* loop() const { return loop_; }
  uv::BufferPool& pool() { return pool_; }
  // Slots for the sessions' RESP state (uv/slot_pool.h), of the size the first one asks for.
  uv::SlotPool& resp_slots(size_t slot_bytes) {
    if (!resp_slots_) resp_slots_ = std::make_unique<uv::SlotPool>(slot_bytes);
    return *resp_slots_;
  }
  // Hands back the pages of RESP state and pack blocks freed since the last call.
  void trim_pages() {
    if (resp_slots_) resp_slots_->trim();
    pool_.trim_pages();
  }
  const DataPathOptions& options() const { return opts_; }
  DataPathOptions& mutable_options() { return opts_; }

  // Observers see every session's events (traffic log, metrics). Not owned.
  void add_observer(SessionObserver* o);
  void remove_observer(SessionObserver* o);
  const std::vector<SessionObserver*>& observers() const { return observers_; }
  // Those of them that look at request frames (SessionObserver::wants_requests()).
  const std::vector<SessionObserver*>& request_observers() const { return request_observers_; }
  // Those that want to know what became of replies (SessionObserver::wants_delivery()).
  const std::vector<SessionObserver*>& delivery_observers() const { return delivery_observers_; }
  // Every observer takes plain replies in runs (and there is one at least).
  bool plain_replies() const { return plain_replies_; }
  // Every observer that wants requests takes plain ones in runs (and there is one at least).
  bool plain_requests() const { return plain_requests_; }
  // Plain replies waiting to be handed to the observers, and the session they belong to: one
  // run for all sessions (one chunk is parsed at a time), so it stays in cache.
  PlainRun& plain_run() { return plain_run_; }
  Session*& plain_run_owner() { return plain_run_owner_; }

  // Lookups of upstream host names on libuv's thread pool whose callback has not run yet (their
  // proxy may be gone). The loop, and libuv at exit, wait for them; a stopping app need not.
  void lookup_started() { ++lookups_in_flight_; }
  void lookup_done() { --lookups_in_flight_; }
  uint32_t lookups_in_flight() const { return lookups_in_flight_; }

  // The process's limit on open descriptors (0: none known, as on Windows), and the sessions
  // of every proxy on this loop, each of which holds two: proxies stop accepting near it.
  void set_fd_limit(uint64_t n) { fd_limit_ = n; }
  uint64_t fd_limit() const { return fd_limit_; }
  void session_opened() { ++sessions_; }
  void session_gone() { --sessions_; }
  uint64_t sessions() const { return sessions_; }

private:
  uv_loop_t* loop_;
  DataPathOptions opts_;
  uv::BufferPool pool_;
  std::unique_ptr<uv::SlotPool> resp_slots_;
  std::vector<SessionObserver*> observers_;
  std::vector<SessionObserver*> request_observers_;
  std::vector<SessionObserver*> delivery_observers_;
  bool plain_replies_ = false;
  bool plain_requests_ = false;
  PlainRun plain_run_;
  Session* plain_run_owner_ = nullptr;
  uint32_t lookups_in_flight_ = 0;
  uint64_t fd_limit_ = 0;
  uint64_t sessions_ = 0;
  void note_observers();
};

} // namespace faultline::proxy
