// RESP fault execution (see resp_faults.h for the picture).

#include "proxy/resp_faults.h"

#include <algorithm>

#include "proxy/rewriter.h"

namespace faultline::proxy {

using K = toxics::RespActionKind;
constexpr uint64_t kRedirectOnlyKind = ReplyRewriter::kRedirectOnly;
using toxics::Stream;

void RespFaults::request(uv::Chunk c) {
  req_hold_.push_back({req_hold_.back().due_ms, port_.keep(Stream::Upstream, std::move(c))});
}

uint64_t RespFaults::request_due(uint64_t delay_ms) const {
  uint64_t due = uv_now(port_.loop()) + delay_ms;
  if (!req_hold_.empty()) due = std::max(due, req_hold_.back().due_ms);
  return due;
}

void RespFaults::client_eof() {
  if (!req_hold_.empty()) {
    req_eof_after_hold_ = true;
    return;
  }
  port_.eof(Stream::Upstream);
}

void RespFaults::release(bool request_side) {
  auto& q = request_side ? req_hold_ : rep_hold_;
  auto& timer = request_side ? req_timer_ : rep_timer_;
  uint64_t now = uv_now(port_.loop());
  while (!q.empty() && q.front().due_ms <= now && !port_.closing()) {
    uv::Chunk c = std::move(q.front().chunk);
    q.pop_front();
    if (!c.len) continue;
    if (request_side) port_.to_redis(std::move(c));
    else port_.to_client(std::move(c));
  }
  if (port_.closing()) return;
  if (!q.empty()) {
    if (!timer) timer = std::make_unique<uv::Timer>(port_.loop());
    timer->start(q.front().due_ms - now, [this, request_side] { release(request_side); });
    return;
  }
  if (!request_side && ending_ != Ending::None) {
    maybe_end();
    return;
  }
  bool& eof_after = request_side ? req_eof_after_hold_ : rep_eof_after_hold_;
  if (eof_after) {
    eof_after = false;
    port_.eof(request_side ? Stream::Upstream : Stream::Downstream);
  }
}

void RespFaults::queue_injection(std::string reply, std::string_view fault) {
  injected_bytes_ += reply.size();
  injections_.push_back(std::move(reply));
  injection_faults_.emplace_back(fault);
}

bool RespFaults::next_injection(std::string& payload, std::string& fault) {
  if (injections_.empty()) return false;
  payload = std::move(injections_.front());
  fault = std::move(injection_faults_.front());
  injections_.pop_front();
  injection_faults_.pop_front();
  return true;
}

void RespFaults::deliver_injection(std::string_view payload) {
  injected_bytes_ -= std::min(injected_bytes_, payload.size());
  if (payload.empty() || port_.closing()) return;
  port_.inject(payload);
}

void RespFaults::reply(uv::Chunk c) {
  if (blackhole_) {
    port_.dropped(Stream::Downstream, c.len);
    return;
  }
  if (!rep_hold_.empty()) {
    rep_hold_.push_back({rep_hold_.back().due_ms, port_.keep(Stream::Downstream, std::move(c))});
    return;
  }
  port_.to_client(std::move(c));
}

void RespFaults::begin_collect(PendingId id) {
  auto it = std::find_if(flagged_.begin(), flagged_.end(),
                         [&](const FlagEntry& e) { return e.id == id; });
  if (it == flagged_.end()) return;
  col_ = std::move(*it);
  flagged_.erase(it);
  collecting_ = true;
  collect_id_ = id;
  col_left_ = col_.bytes;
  gather_ = Gather::Undecided;
  if (col_.kind == K::DelayReply) {
    col_due_ = uv_now(port_.loop()) + col_.delay_ms;
    if (!rep_hold_.empty()) col_due_ = std::max(col_due_, rep_hold_.back().due_ms);
  }
}

void RespFaults::begin_collect_unpaired(uint8_t kind) {
  col_ = FlagEntry{kUnpairedId, K::Rewrite, 0, kind, {}};
  collecting_ = true;
  collect_id_ = kUnpairedId;
  col_left_ = 0;
  gather_ = Gather::Undecided;
}

void RespFaults::collect(uv::Chunk c) {
  switch (col_.kind) {
  case K::DelayReply: {
    if (blackhole_) break;
    const bool was_empty = rep_hold_.empty();
    rep_hold_.push_back({col_due_, port_.keep(Stream::Downstream, std::move(c))});
    if (was_empty) release(false);
    return;
  }
  case K::Truncate: {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(col_left_, c.len));
    if (n) {
      col_left_ -= n;
      reply(c.take_front(n));
    }
    break;
  }
  case K::Hang:
  case K::ResetAfter:
  case K::CloseAfter:
  case K::Inject:  // the DISCARD faultline sent for an aborted EXEC: its +OK is not the client's
    break;
  case K::Rewrite: {
    if (gather_ == Gather::Undecided && c.len) {
      // A request that may only be redirected: any reply but an error streams as usual.
      const char t = c.data()[0];
      gather_ = col_.bytes == kRedirectOnlyKind && t != '-' && t != '!' ? Gather::Pass
                                                                       : Gather::Keep;
    }
    if (gather_ == Gather::Keep) {
      if (gathered_bytes_ + c.len <= port_.rewrite_limit()) {
        gathered_bytes_ += c.len;
        gathered_.push_back(port_.keep(Stream::Downstream, std::move(c)));
        return;
      }
      port_.rewrite_too_large(static_cast<uint8_t>(col_.bytes), gathered_bytes_ + c.len);
      release_gathered();
      gather_ = Gather::Pass;
    }
    reply(std::move(c));
    return;
  }
  default:
    reply(std::move(c));
    return;
  }
  if (c.len) port_.dropped(Stream::Downstream, c.len);
}

void RespFaults::release_gathered() {
  std::vector<uv::Chunk> g;
  g.swap(gathered_);
  gathered_bytes_ = 0;
  for (auto& c : g) reply(std::move(c));
}

void RespFaults::finish_collect() {
  collecting_ = false;
  switch (col_.kind) {
  case K::DelayReply: {
    // Later replies wait behind it even when its bytes have all gone on.
    const uint64_t t = uv_now(port_.loop());
    if (rep_hold_.empty() && col_due_ > t) {
      rep_hold_.push_back({col_due_, {}});
      release(false);
    }
    break;
  }
  case K::Hang:
    blackhole_ = true;
    break;
  case K::Truncate:
  case K::ResetAfter:
  case K::CloseAfter:
    // Nothing after it goes on; the connection ends once what precedes it (including replies
    // a delay holds) is out.
    begin_end(col_.kind != K::CloseAfter, true);
    break;
  case K::Rewrite: {
    if (gathered_.empty()) break;
    std::string frame;
    frame.reserve(gathered_bytes_);
    for (const auto& c : gathered_) frame.append(c.data(), c.len);
    std::string out;
    if (!port_.rewrite(static_cast<uint8_t>(col_.bytes), frame, out)) {
      release_gathered();
      break;
    }
    const size_t n = gathered_bytes_;
    gathered_.clear();
    gathered_bytes_ = 0;
    reply(port_.replacement(n, out));
    break;
  }
  default:
    break;
  }
}

void RespFaults::upstream_eof() {
  collecting_ = false;
  release_gathered();
  if (!rep_hold_.empty()) {
    rep_eof_after_hold_ = true;
    return;
  }
  port_.eof(Stream::Downstream);
}

void RespFaults::begin_end(bool rst, bool after) {
  if (ending_ != Ending::None) return;
  ending_ = after ? (rst ? Ending::ResetAfter : Ending::CloseAfter)
                  : (rst ? Ending::ResetBefore : Ending::CloseBefore);
  if (after) blackhole_ = true;
  port_.stop_client();
  end_timer_ = std::make_unique<uv::Timer>(port_.loop());
  end_timer_->start(port_.drain_timeout_ms(), [this] {
    if (port_.ended()) return;
    blackhole_ = true;
    port_.end(ending_ == Ending::ResetBefore || ending_ == Ending::ResetAfter);
  });
  maybe_end();
}

void RespFaults::maybe_end() {
  if (ending_ == Ending::None || port_.ended() || !rep_hold_.empty()) return;
  const bool after = ending_ == Ending::CloseAfter || ending_ == Ending::ResetAfter;
  if (!after && (collecting_ || !injections_.empty() || port_.reply_expected())) return;
  blackhole_ = true; // what Redis still sends (after the end point) is not delivered
  port_.end(ending_ == Ending::ResetBefore || ending_ == Ending::ResetAfter);
}

} // namespace faultline::proxy
