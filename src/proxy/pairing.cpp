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

namespace {
size_t ring_capacity(size_t initial_capacity) {
  size_t cap = 8;
  while (cap < initial_capacity) cap *= 2;
  return cap;
}
} // namespace

size_t Pairing::storage_bytes(size_t initial_capacity) {
  return ArrayStorage<Entry>::room_bytes(ring_capacity(initial_capacity));
}

Pairing::Pairing(size_t initial_capacity, Room* room)
    : ring_(ring_capacity(initial_capacity), room) {
  mask_ = ring_.size() - 1;
}

void Pairing::grow() {
  const size_t cap = (mask_ + 1) * 2;
  ArrayStorage<Entry> bigger(cap, nullptr);
  for (size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) & mask_];
  ring_ = std::move(bigger);
  mask_ = cap - 1;
  head_ = 0;
}

Pairing::Entry* Pairing::first_real() {
  if (injected_ == 0) return size_ ? &ring_[head_] : nullptr;
  for (size_t i = 0; i < size_; ++i) {
    Entry& e = ring_[(head_ + i) & mask_];
    if (!(e.kind & kInjected)) return &e;
  }
  return nullptr;
}

std::optional<PendingInfo> Pairing::expected() const {
  for (size_t i = 0; i < size_; ++i) {
    const Entry& e = ring_[(head_ + i) & mask_];
    if (!(e.kind & kInjected)) return info(e);
  }
  return std::nullopt;
}

void Pairing::pop_entry(Entry* e) {
  if (!plain(*e)) --nonplain_;
  size_t at = size_t(e - ring_.get());
  // Injected entries before e (not yet released by the caller) keep their order.
  while (at != head_) {
    size_t prev = (at - 1) & mask_;
    ring_[at] = ring_[prev];
    at = prev;
  }
  pop_head();
}

// Out of line, one loop per case: inlined into the session's chunk handler its values
// spilled to the stack.
bool Pairing::on_simple_run(const resp::SimpleRun& r, uint64_t now_us) {
  if (!req_plain_) return false;
  reserve(r.count);
  Entry proto;
  proto.start_us = now_us;
  proto.id_lo = uint32_t(next_id_);
  proto.req_bytes = r.size;
  proto.key_hash = 0;
  proto.db = sent_db_;
  proto.cmd = r.cmd->id;
  proto.kind = 0;
  proto.user_flags = 0;
  Entry* const ring = ring_.get();
  const size_t at = head_ + size_, mask = mask_, n = r.count;
  auto fill = [&](auto hash) {
    const char* key = r.data + (r.has_key() ? r.key_at : 0);
    const size_t step = r.size;
    for (size_t i = 0; i < n; ++i, key += step) {
      Entry& e = ring[(at + i) & mask];
      e = proto;
      e.id_lo += uint32_t(i);
      e.x = int32_t(n - i);
      e.key_hash = hash(key);
    }
  };
  if (r.has_key()) {
    const size_t len = r.key_len;
    if (len - 8 <= 8)  // most keys: key_hash() without its length tests
      fill([len](const char* k) { return key_hash({k, len > 16 ? 16 : len < 8 ? 8 : len}); });
    else
      fill([len](const char* k) { return key_hash({k, len}); });
  } else {
    fill([](const char*) { return 0u; });
  }
  next_id_ += n;
  size_ += n;
  return true;
}

// Consecutive replies to one command sent in one chunk are one group, summed in registers;
// entries a run made are counted a run (or what is left of it) at a time.
void Pairing::take_plain(uint32_t size, size_t k, PlainRun& run) {
  size_t i = 0;
  while (i < k) {
    const Entry& first = ring_[(head_ + i) & mask_];
    const uint16_t cmd = first.cmd;
    const uint64_t start = first.start_us;
    uint64_t count = 0, bytes_in = 0, bytes_out = 0;
    do {
      const Entry& e = ring_[(head_ + i) & mask_];
      if (e.cmd != cmd || e.start_us != start) break;
      const size_t n = e.kind == 0 && e.x > 1 ? std::min(size_t(e.x), k - i) : 1;
      count += n;
      bytes_in += uint64_t(e.req_bytes) * n;
      bytes_out += uint64_t(size) * n;
      i += n;
    } while (i < k);
    run.add_group(cmd, start, count, bytes_in, bytes_out,
                  full_id(ring_[(head_ + i - 1) & mask_].id_lo));
  }
  head_ = (head_ + k) & mask_;
  size_ -= k;
}

void Pairing::take_plain(const uint32_t* sizes, size_t k, PlainRun& run) {
  // Entry by entry (few replies come this way now: the first of a chunk, unlike neighbours).
  size_t i = 0;
  while (i < k) {
    const Entry& first = ring_[(head_ + i) & mask_];
    const uint16_t cmd = first.cmd;
    const uint64_t start = first.start_us;
    uint64_t bytes_in = first.req_bytes, bytes_out = sizes[i];
    const size_t from = i;
    for (++i; i < k; ++i) {
      const Entry& h = ring_[(head_ + i) & mask_];
      if (h.cmd != cmd || h.start_us != start) break;
      bytes_in += h.req_bytes;
      bytes_out += sizes[i];
    }
    run.add_group(cmd, start, i - from, bytes_in, bytes_out,
                  full_id(ring_[(head_ + i - 1) & mask_].id_lo));
  }
  head_ = (head_ + k) & mask_;
  size_ -= k;
}

RequestResult Pairing::on_injected(const resp::RequestFrame& f, uint64_t now_us,
                                   uint8_t user_flags) {
  const PendingId id = next_id_++;
  fill(push_entry(), id, f, now_us, user_flags, kInjected | (in_multi_ ? kQueued : 0));
  ++injected_;
  ++nonplain_;
  refresh();
  return {id, true};
}

RequestResult Pairing::on_request_general(const resp::RequestFrame& f, uint64_t now_us,
                                          uint8_t user_flags) {
  const bool skipped = skip_next_;
  skip_next_ = false;
  if (f.argc == 0) {  // Redis runs nothing, but it ends a SKIP
    refresh();
    return {next_id_++, false};
  }

  const Special sp = f.cmd != nullptr ? f.cmd->special : Special::None;
  auto arg = [&](size_t i) -> std::string_view {
    return i < f.args.size() ? f.args[i].data : std::string_view{};
  };
  const PendingId id = next_id_++;
  const int32_t db = sent_db_;  // the db it runs in: a SELECT changes it for those after it
  bool queued = in_multi_;
  int32_t expect = 1;
  int64_t value = 0;
  bool reply = reply_mode_ == ReplyMode::On && !skipped;

  if (in_multi_) {
    // Queued: one reply (+QUEUED or an error); effects happen at EXEC. These few run at once.
    if (sp == Special::Exec || sp == Special::Discard || sp == Special::Reset ||
        sp == Special::Multi || sp == Special::Watch || sp == Special::Quit)
      queued = false;
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
  refresh();
  if (!reply) return {id, false};
  Entry& e = push_entry();
  fill(e, id, f, now_us, user_flags, uint8_t(uint8_t(sp) | (queued ? kQueued : 0)));
  if (!plain(e)) ++nonplain_;
  e.x = is_subscribe_family(sp) ? expect : entry_arg(value);
  e.db = db;
  return {id, true};
}

std::optional<PendingInfo> Pairing::next_injected() {
  if (size_ == 0) return std::nullopt;
  const Entry& e = ring_[head_];
  if (!(e.kind & kInjected)) return std::nullopt;
  PendingInfo p = info(e);
  pop_head();
  --injected_;
  --nonplain_;
  refresh();
  return p;
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
  if (special(e) == Special::Quit) quitting_ = true;
  if (e.kind & kQueued) return;  // +QUEUED: effects come with EXEC
  switch (special(e)) {
  case Special::Exec:
    // nil: WATCH aborted it; an error: it never ran. Then the db did not change after all.
    if (e.x >= 0) {
      if (ok && !f.is_null) db_ = e.x;
      else if (sent_db_ == e.x) sent_db_ = db_;
    }
    break;
  case Special::Select:
    if (e.x >= 0) {
      if (ok) db_ = e.x;
      else if (sent_db_ == e.x) sent_db_ = db_; // refused: the commands after it (if any
                                                  // were pipelined) are logged with the old db
    }
    break;
  case Special::Hello:
    if (ok && (e.x == 2 || e.x == 3)) protocol_ = resp::Protocol(e.x);
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
    const bool answers = e != nullptr && !(e->kind & kQueued) &&
                         is_subscribe_family(special(*e)) && is_subscribe_reply(f.head);
    if (!answers) {
      track_subscriptions(f);  // e.g. a server-side sunsubscribe after a slot migration
      refresh();
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
  const Special sp = special(*e);
  const bool multi_reply = is_subscribe_family(sp);
  if (multi_reply && e->x == kDynamic) {
    int64_t n = sp == Special::Unsubscribe    ? channels_
                : sp == Special::Punsubscribe ? patterns_
                                              : shard_channels_;
    e->x = int32_t(std::clamp<int64_t>(n, 1, INT32_MAX));
  }
  if (multi_reply && !(e->kind & kQueued) && is_subscribe_reply(f.head)) track_subscriptions(f);
  r.kind = ReplyKind::Paired;
  r.request = info(*e);
  r.latency_us = now_us >= e->start_us ? now_us - e->start_us : 0;
  // An error ends a multi-reply command (e.g. SUBSCRIBE refused inside a RESP2 context).
  if (!multi_reply || --e->x <= 0 || f.is_error()) {
    r.final = true;
    Entry done = *e;
    pop_entry(e);
    complete(done, f);
  } else {
    r.final = false;
  }
  refresh();
  return r;
}

} // namespace faultline::proxy
