#pragma once
// Deliveries: what became of each reply an observer follows on its way to the client.
//
//   reply parsed ─► on_reply() ─► follow_delivery(id): a mark at the reply's end in the stream
//                   that enters the down pipe (Redis's bytes, plus injected replies, minus what
//                   a RESP fault swallowed before the pipe)
//   down pipe ─► bytes written to the client's socket, or dropped by a stage ─► `done`
//                   └ each mark `done` passes: delivered (written, nothing dropped meanwhile,
//                     the client had not sent FIN), or not (cut: bytes were dropped; gone: the
//                     client had closed its side)
//   session closes ─► the marks left: not delivered, the client gone or cut, and by what
//
// Only sessions opened while an observer wants deliveries (SessionObserver::wants_delivery())
// have one; the pipes of the others carry a null pointer and pay one branch per write.
// Bounded by the observer: a mark exists only for a reply it holds (the traffic log's bound).
//
// Known approximation: bytes are not tagged with their position inside the stages, so a drop
// toward the client (timeout, limit_data) while a reply is on its way marks that reply cut,
// even when a stage after the dropping one still held it whole.

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "proxy/pairing.h"
#include "proxy/session.h"

namespace faultline::proxy {

struct Session::Deliveries {
  struct Mark {
    uint64_t end;      // the reply's end in the stream entering the down pipe
    PendingId id;
    uint64_t drops;    // `drops` when it was noted
    std::string fault; // the RESP fault that held (resp_delay reply) or cut it, if any
    bool doomed;       // that fault keeps it from the client (truncate, resp_hang, ... after)
  };
  std::deque<Mark> marks;
  uint64_t done = 0;      // bytes of the down pipe written to the client, or dropped
  uint64_t drops = 0;     // times bytes toward the client were dropped in the pipe
  uint64_t injected = 0;  // injected replies' bytes given to the down pipe
  uint64_t swallowed = 0; // Redis's bytes a RESP fault kept from the down pipe
  std::string cut_by;     // the toxic or fault that dropped bytes or ended the session
  // Set by the tap just before the observers see a reply (note_reply): where it ends, what
  // acted on it. Valid during that on_reply() only.
  bool next_valid = false;
  uint64_t next_end = 0;
  std::string_view next_fault;
  bool next_doomed = false;
  // While injected replies are released after a reply of Redis's (tap: general()): Redis's
  // bytes passed on so far, where they go. Otherwise every byte read was passed on.
  static constexpr uint64_t kNoCursor = UINT64_MAX;
  uint64_t cursor = kNoCursor;
};

} // namespace faultline::proxy
