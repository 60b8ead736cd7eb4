// Deliveries (see delivery.h for the picture): Session members that note where each followed
// reply ends toward the client, count what the down pipe wrote or dropped, and tell the
// observers what became of each reply.

#include "proxy/delivery.h"

#include "proxy/observer.h"
#include "proxy/pipe.h"
#include "proxy/runtime.h"
#include "proxy/tap.h"

namespace faultline::proxy {

namespace {
inline uint64_t now_us() { return uv_hrtime() / 1000; }
} // namespace

bool Session::follow_delivery(PendingId id) {
  if (!deliv_ || !deliv_->next_valid) return false;
  Deliveries& d = *deliv_;
  if (!d.marks.empty() && d.marks.back().id == id) return true;  // another observer asked
  d.marks.push_back({d.next_end, id, d.drops, std::string(d.next_fault), d.next_doomed});
  return true;
}

void Session::note_reply(uint64_t upstream_end, uint64_t extra, std::string_view fault,
                         bool doomed) {
  Deliveries& d = *deliv_;
  d.next_valid = true;
  d.next_end = upstream_end + d.injected + extra - d.swallowed;
  d.next_fault = fault;
  d.next_doomed = doomed;
}

void Session::delivery_written(size_t n) {
  Deliveries& d = *deliv_;
  d.done += n;
  if (!d.marks.empty() && d.marks.front().end <= d.done) resolve_marks(false);
}

// Not resolved here: a failed write is counted before the session learns that the client is
// gone. The next write, or the session's end, says what became of the marks passed.
void Session::delivery_dropped(size_t n) {
  Deliveries& d = *deliv_;
  d.done += n;
  ++d.drops;
}

void Session::note_cut(std::string_view by) {
  if (deliv_ && deliv_->cut_by.empty()) deliv_->cut_by = by;
}

// What held a reply: the RESP fault that acted on it, else the toxics of the down pipe.
std::string Session::hold_cause(std::string_view fault) const {
  if (!fault.empty()) return std::string(fault);
  std::string s;
  for (const auto& slot : down_->slots) {
    if (!s.empty()) s += ',';
    s += slot->name;
  }
  return s;
}

// The marks `done` passed (all of them when the session ends): what became of each.
void Session::resolve_marks(bool all) {
  Deliveries& d = *deliv_;
  const bool client_left = client_->eof || client_->write_failed ||
                           (closing() && (reason_ == CloseReason::ClientClosed ||
                                          reason_ == CloseReason::ClientReset));
  std::string by;
  while (!d.marks.empty() && (all || d.marks.front().end <= d.done)) {
    Deliveries::Mark m = std::move(d.marks.front());
    d.marks.pop_front();
    Delivery out;
    const bool reached = m.end <= d.done;
    if (reached && !m.doomed && m.drops == d.drops && !client_left) {
      out.delivered = true;
      out.at_us = now_us();
      by = hold_cause(m.fault);
    } else if (m.doomed) {
      out.client_gone = client_left && !reached;
      by = m.fault;
    } else if (m.drops != d.drops) {
      out.client_gone = client_->write_failed;
      by = d.cut_by.empty() ? hold_cause(m.fault) : d.cut_by;
      if (by.empty()) by = to_string(reason_);
    } else if (client_left) {
      out.client_gone = true;
      by = hold_cause(m.fault);
      if (by.empty()) by = d.cut_by.empty() ? std::string(to_string(reason_)) : d.cut_by;
    } else {
      by = !d.cut_by.empty() ? d.cut_by : hold_cause(m.fault);
      if (by.empty()) by = to_string(reason_);
    }
    out.by = by;
    for (auto* o : rt_.delivery_observers()) o->on_delivery(*this, m.id, out);
  }
}

} // namespace faultline::proxy
