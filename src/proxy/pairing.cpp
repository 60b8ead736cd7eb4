#include "proxy/pairing.h"

#include <algorithm>
#include <cstring>

namespace faultline::proxy {

using resp::Special;

namespace {

bool ieq(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = char(c + 32);
    if (c != lower[i]) return false;
  }
  return true;
}

bool to_int(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = s[0] == '-' ? -v : v;
  return true;
}

bool is_subscribe_family(Special s) {
  return s == Special::Subscribe || s == Special::Psubscribe || s == Special::Ssubscribe ||
         s == Special::Unsubscribe || s == Special::Punsubscribe || s == Special::Sunsubscribe;
}

bool is_subscribe_reply(std::string_view head) {
  return ieq(head, "subscribe") || ieq(head, "psubscribe") || ieq(head, "ssubscribe") ||
         ieq(head, "unsubscribe") || ieq(head, "punsubscribe") || ieq(head, "sunsubscribe");
}

// "1700000000.123456 [0 127.0.0.1:50000] "get" "k"": what MONITOR sends for each command.
bool is_monitor_line(std::string_view t) {
  size_t i = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
  if (i == 0 || i >= t.size() || t[i] != '.') return false;
  size_t j = ++i;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
  return i > j && i + 1 < t.size() && t[i] == ' ' && t[i + 1] == '[';
}

} // namespace

const char* reply_kind_name(ReplyKind k) {
  switch (k) {
  case ReplyKind::Paired: return "paired";
  case ReplyKind::Push: return "push";
  case ReplyKind::PubSubMessage: return "pubsub_message";
  case ReplyKind::Monitor: return "monitor";
  case ReplyKind::Unmatched: return "unmatched";
  }
  return "?";
}

Pairing::Pairing(size_t initial_capacity) {
  size_t cap = 8;
  while (cap < initial_capacity) cap *= 2;
  ring_.resize(cap);
}

void Pairing::grow() {
  std::vector<Entry> bigger(ring_.size() * 2);
  for (size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
  ring_.swap(bigger);
  head_ = 0;
}

Pairing::Entry* Pairing::first_real() {
  if (injected_ == 0) return size_ ? &ring_[head_] : nullptr;
  const size_t mask = ring_.size() - 1;
  for (size_t i = 0; i < size_; ++i) {
    Entry& e = ring_[(head_ + i) & mask];
    if (!e.info.injected) return &e;
  }
  return nullptr;
}

const PendingInfo* Pairing::expected() const {
  if (injected_ == 0) return size_ ? &ring_[head_].info : nullptr;
  const size_t mask = ring_.size() - 1;
  for (size_t i = 0; i < size_; ++i) {
    const Entry& e = ring_[(head_ + i) & mask];
    if (!e.info.injected) return &e.info;
  }
  return nullptr;
}

void Pairing::pop_entry(Entry* e) {
  const size_t mask = ring_.size() - 1;
  size_t at = size_t(e - ring_.data());
  // Injected entries before e (not yet released by the caller) keep their order.
  while (at != head_) {
    size_t prev = (at - 1) & mask;
    ring_[at] = ring_[prev];
    at = prev;
  }
  head_ = (head_ + 1) & mask;
  --size_;
}

RequestResult Pairing::on_injected(const resp::RequestFrame& f, uint64_t now_us,
                                   uint8_t user_flags) {
  Entry& e = push_entry();
  ++injected_;
  e.info = make_info(f, now_us, user_flags, true);
  e.expect = 1;
  e.arg = 0;
  e.special = Special::None;
  return {e.info.id, true};
}

RequestResult Pairing::on_request_general(const resp::RequestFrame& f, uint64_t now_us,
                                          uint8_t user_flags) {
  const bool skipped = skip_next_;
  skip_next_ = false;
  if (f.argc == 0) return {next_id_++, false};  // Redis runs nothing, but it ends a SKIP

  const Special sp = f.cmd != nullptr ? f.cmd->special : Special::None;
  auto arg = [&](size_t i) -> std::string_view {
    return i < f.args.size() ? f.args[i].data : std::string_view{};
  };
  PendingInfo info = make_info(f, now_us, user_flags, false);
  int32_t expect = 1;
  int64_t value = 0;
  bool reply = reply_mode_ == ReplyMode::On && !skipped;

  if (in_multi_) {
    // Queued: one reply (+QUEUED or an error); effects happen at EXEC. These few run at once.
    if (sp == Special::Exec || sp == Special::Discard || sp == Special::Reset ||
        sp == Special::Multi || sp == Special::Watch || sp == Special::Quit)
      info.queued = false;
    switch (sp) {
    case Special::Exec:
      // The commands after EXEC run in the db a queued SELECT chose (if EXEC runs).
      in_multi_ = false;
      value = tx_db_;
      if (tx_db_ >= 0) sent_db_ = int32_t(tx_db_);
      tx_db_ = -1;
      break;
    case Special::Discard:
      in_multi_ = false;
      tx_db_ = -1;
      break;
    case Special::Reset:
      in_multi_ = false;
      tx_db_ = -1;
      sent_db_ = 0;
      reply_mode_ = ReplyMode::On;
      reply = true;
      break;
    case Special::Select:
      if (to_int(arg(1), value)) tx_db_ = value;
      break;
    default:
      break;
    }
  } else {
    switch (sp) {
    case Special::Multi:
      in_multi_ = true;
      tx_db_ = -1;
      break;
    case Special::ClientReply:
      if (f.argc == 3 && ieq(arg(2), "on")) {
        reply_mode_ = ReplyMode::On;
        reply = true;  // ON always answers +OK
      } else if (f.argc == 3 && ieq(arg(2), "off")) {
        reply_mode_ = ReplyMode::Off;
        reply = false;
      } else if (f.argc == 3 && ieq(arg(2), "skip")) {
        if (reply_mode_ == ReplyMode::On) skip_next_ = true;
        reply = false;
      }
      break;
    case Special::Reset:
      reply_mode_ = ReplyMode::On;
      reply = true;
      sent_db_ = 0;
      break;
    case Special::Subscribe:
    case Special::Psubscribe:
    case Special::Ssubscribe:
      expect = f.argc > 1 ? int32_t(std::min<uint64_t>(f.argc - 1, INT32_MAX)) : 1;
      break;
    case Special::Unsubscribe:
    case Special::Punsubscribe:
    case Special::Sunsubscribe:
      expect = f.argc > 1 ? int32_t(std::min<uint64_t>(f.argc - 1, INT32_MAX)) : kDynamic;
      break;
    case Special::Select:
      // Commands pipelined behind it run in the new db: they are recorded with it.
      if (!to_int(arg(1), value) || value < 0 || value > INT32_MAX) value = -1;
      else sent_db_ = int32_t(value);
      break;
    case Special::Hello:
      if (f.argc < 2 || !to_int(arg(1), value)) value = 0;
      break;
    default:
      break;
    }
  }
  if (!reply) return {info.id, false};
  Entry& e = push_entry();
  e.info = info;
  e.expect = expect;
  e.arg = entry_arg(value);
  e.special = sp;
  return {info.id, true};
}

std::optional<PendingInfo> Pairing::next_injected() {
  if (size_ == 0) return std::nullopt;
  Entry& e = ring_[head_];
  if (!e.info.injected) return std::nullopt;
  PendingInfo info = e.info;
  head_ = (head_ + 1) & (ring_.size() - 1);
  --size_;
  --injected_;
  return info;
}

// Subscription counts follow the replies, which carry the client's total after each
// (un)subscribe: channels+patterns for the classic kinds, shard channels for the S kinds.
void Pairing::track_subscriptions(const resp::ReplyFrame& f) {
  if (!f.has_tail_int) return;
  const int64_t t = f.tail_int;
  std::string_view h = f.head;
  if (ieq(h, "subscribe") || ieq(h, "unsubscribe"))
    channels_ = std::max<int64_t>(0, t - patterns_);
  else if (ieq(h, "psubscribe") || ieq(h, "punsubscribe"))
    patterns_ = std::max<int64_t>(0, t - channels_);
  else if (ieq(h, "ssubscribe") || ieq(h, "sunsubscribe"))
    shard_channels_ = std::max<int64_t>(0, t);
}

void Pairing::complete(const Entry& e, const resp::ReplyFrame& f) {
  const bool ok = !f.is_error();
  if (e.special == Special::Quit) quitting_ = true;
  if (e.info.queued) return;  // +QUEUED: effects come with EXEC
  switch (e.special) {
  case Special::Exec:
    // nil: WATCH aborted it; an error: it never ran. Then the db did not change after all.
    if (e.arg >= 0) {
      if (ok && !f.is_null) db_ = int32_t(e.arg);
      else if (sent_db_ == e.arg) sent_db_ = db_;
    }
    break;
  case Special::Select:
    if (e.arg >= 0) {
      if (ok) db_ = int32_t(e.arg);
      else if (sent_db_ == e.arg) sent_db_ = db_; // refused: the commands after it (if any
                                                  // were pipelined) are logged with the old db
    }
    break;
  case Special::Hello:
    if (ok && (e.arg == 2 || e.arg == 3)) protocol_ = resp::Protocol(e.arg);
    break;
  case Special::Monitor:
    if (ok) monitoring_ = true;
    break;
  case Special::Reset:
    if (ok) goto reset;
    break;
  default:
    break;
  }
  return;
reset:
  protocol_ = resp::Protocol::Resp2;
  db_ = sent_db_ = 0;
  channels_ = patterns_ = shard_channels_ = 0;
  monitoring_ = false;
  tx_db_ = -1;
}

ReplyResult Pairing::on_reply_general(const resp::ReplyFrame& f, uint64_t now_us) {
  ReplyResult r;
  Entry* e = first_real();
  if (f.is_push()) {
    // RESP3 sends (un)subscribe confirmations as pushes: they answer the pending command.
    const bool answers = e != nullptr && !e->info.queued && is_subscribe_family(e->special) &&
                         is_subscribe_reply(f.head);
    if (!answers) {
      track_subscriptions(f);  // e.g. a server-side sunsubscribe after a slot migration
      r.kind = ReplyKind::Push;
      ++out_of_band_;
      return r;
    }
  } else if (protocol_ == resp::Protocol::Resp2 && subscribed() && f.type == resp::Type::Array &&
             (ieq(f.head, "message") || ieq(f.head, "pmessage") || ieq(f.head, "smessage"))) {
    r.kind = ReplyKind::PubSubMessage;
    ++out_of_band_;
    return r;
  } else if (monitoring_ && f.type == resp::Type::SimpleString &&
             (e == nullptr || is_monitor_line(f.text))) {
    r.kind = ReplyKind::Monitor;
    ++out_of_band_;
    return r;
  }
  if (e == nullptr) {
    r.kind = ReplyKind::Unmatched;
    ++unmatched_;
    return r;
  }
  if (e->expect == kDynamic) {
    int64_t n = e->special == Special::Unsubscribe    ? channels_
                : e->special == Special::Punsubscribe ? patterns_
                                                      : shard_channels_;
    e->expect = int32_t(std::clamp<int64_t>(n, 1, INT32_MAX));
  }
  if (is_subscribe_family(e->special) && !e->info.queued && is_subscribe_reply(f.head))
    track_subscriptions(f);
  r.kind = ReplyKind::Paired;
  r.request = e->info;
  r.latency_us = now_us >= e->info.start_us ? now_us - e->info.start_us : 0;
  // An error ends a multi-reply command (e.g. SUBSCRIBE refused inside a RESP2 context).
  if (--e->expect <= 0 || f.is_error()) {
    r.final = true;
    Entry done = *e;
    pop_entry(e);
    complete(done, f);
  } else {
    r.final = false;
  }
  return r;
}

} // namespace faultline::proxy
