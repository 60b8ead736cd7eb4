#include "observe/traffic_log.h"

#include <algorithm>
#include <cassert>
#include <csignal>
#include <cstring>
#include <deque>
#include <stdexcept>

#include <fmt/format.h>

#include "base/log.h"
#include "observe/sink.h"
#include "proxy/proxy.h"
#include "proxy/session.h"

namespace faultline::observe {

namespace {
// A literal piece of a record: its length is known at compile time (no strlen per append).
template <size_t N> inline void lit(std::string& o, const char (&s)[N]) { o.append(s, N - 1); }
template <size_t N> inline void lit(RecordBuf& o, const char (&s)[N]) {
  o.append({s, N - 1});
}
} // namespace


namespace {

constexpr size_t kMaxPendingPerSession = 1 << 16;
// Records held until their reply reached the client (or never will), across all sessions: past
// either bound a record is written at once with "delivery":null, and counted.
constexpr size_t kMaxHeldRecords = 10000;
constexpr size_t kMaxHeldBytes = 8 << 20;
// The longest delivery a JSON record can carry, besides the escaped "by".
constexpr size_t kJsonDeliveryFixed = 96;
constexpr size_t kMaxSubscriberBuffer = 4 << 20;
constexpr uint32_t kRedactedLen = UINT32_MAX;
constexpr uint64_t kPollMs = 100;

const char* kDim = "\x1b[2m";
const char* kCmd = "\x1b[1;36m";
const char* kRed = "\x1b[31m";
const char* kYellow = "\x1b[33m";
const char* kReset = "\x1b[0m";

// Commands whose arguments may hold a secret: only these pay for the redaction scan.
bool may_carry_secret(std::string_view name) {
  // On the first letter first: every other command pays one comparison, not a memcmp.
  switch (name.empty() ? '\0' : name[0]) {
  case 'A': return name == "AUTH" || name == "ACL";
  case 'H': return name == "HELLO";
  case 'M': return name == "MIGRATE";
  case 'C': return name == "CONFIG";
  case 'S': return name == "SENTINEL";
  default: return false;
  }
}

// What a pending request keeps of a stored argument before its bytes: the original length
// (uint32) and the bytes kept (uint16).
constexpr size_t kArgHeader = 6;
// Per argument in a JSON record, besides its escaped bytes: the quotes, the comma, and the
// longer of "(redacted)" and "... (N bytes)".
constexpr size_t kJsonArgOverhead = 4 + std::max(kRedacted.size(), kTruncationMaxChars);
// The fixed parts of a command's JSON record, every number at its widest.
constexpr size_t kJsonCommandFixed = 384;

template <class T> char* put(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
  return p + sizeof(T);
}
template <class T> T get(const char*& p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return v;
}

// An argument as stored: the bytes shown and the original length (kRedactedLen: a secret).
struct StoredArg {
  std::string_view shown;
  uint32_t full;
};
StoredArg read_arg(const char*& p) {
  uint32_t full = get<uint32_t>(p);
  uint16_t n = get<uint16_t>(p);
  StoredArg a{std::string_view(p, n), full};
  p += n;
  return a;
}

std::string_view oob_event(proxy::ReplyKind k) {
  switch (k) {
  case proxy::ReplyKind::Push: return "push";
  case proxy::ReplyKind::PubSubMessage: return "message";
  case proxy::ReplyKind::Monitor: return "monitor";
  default: return "unmatched";
  }
}

} // namespace

struct TrafficLog::SessionState {
  std::string proxy;
  std::string json_prefix; // "proxy":"redis","session":1,"client":"127.0.0.1:5555"
  std::string text_prefix; // redis#1 127.0.0.1:5555
  std::vector<Pending> ring = std::vector<Pending>(16);
  size_t head = 0, size = 0;
  RecordBuf arena; // what the pending requests keep of their arguments, in ring order
  // Records formatted and held until the session says what became of their reply
  // (on_delivery), in reply order: the JSON without its closing "}\n", the text without "\n".
  struct Held {
    proxy::PendingId id;
    uint64_t start_us; // the request's arrival (uv_hrtime µs)
    size_t off;        // in held_arena: the JSON, then the text
    uint32_t json_len, text_len;
  };
  std::deque<Held> held;
  RecordBuf held_arena;

  Pending& front() { return ring[head]; }
  void push(const Pending& p) {
    if (size == ring.size()) {
      std::vector<Pending> bigger(ring.size() * 2);
      for (size_t i = 0; i < size; ++i) bigger[i] = ring[(head + i) & (ring.size() - 1)];
      ring.swap(bigger);
      head = 0;
    }
    ring[(head + size) & (ring.size() - 1)] = p;
    ++size;
  }
  void pop() {
    head = (head + 1) & (ring.size() - 1);
    if (--size == 0) {
      head = 0;
      arena.clear();
    } else if (arena.size() > (1u << 20) && ring[head].off > arena.size() / 2) {
      // A client that never lets its pipeline drain: drop the consumed half of the arena.
      uint32_t cut = ring[head].off;
      arena.erase_front(cut);
      for (size_t i = 0; i < size; ++i) ring[(head + i) & (ring.size() - 1)].off -= cut;
    }
  }
};

bool parse_log_format(std::string_view s, LogFormat& out) {
  if (s == "json" || s == "jsonl") out = LogFormat::Json;
  else if (s == "text") out = LogFormat::Text;
  else return false;
  return true;
}

bool may_append_traffic_log(std::string_view head, bool whole_file, LogFormat want,
                            std::string& err) {
  if (head.empty()) return true;
  size_t nl = head.find('\n');
  if (nl == std::string_view::npos && !whole_file) {
    err = "it is not a faultline traffic log (no line break in its first bytes)";
    return false;
  }
  std::string_view line = head.substr(0, nl);
  // JSON Lines: every record opens with ts, proxy, session and client (begin_event, json_prefix).
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  bool json = j.is_object() && j.contains("ts") && j["ts"].is_string() && j.contains("proxy") &&
              j.contains("session") && j.contains("client");
  // Text: the time of day "HH:MM:SS.uuuuuu ", dimmed on a terminal.
  std::string_view t = line;
  if (t.rfind(kDim, 0) == 0) t.remove_prefix(std::strlen(kDim));
  auto digits = [&](size_t at, size_t n) {
    for (size_t i = at; i < at + n; ++i)
      if (i >= t.size() || t[i] < '0' || t[i] > '9') return false;
    return true;
  };
  bool text = !json && t.size() > 16 && digits(0, 2) && t[2] == ':' && digits(3, 2) &&
              t[5] == ':' && digits(6, 2) && t[8] == '.' && digits(9, 6) &&
              (t[15] == ' ' || t[15] == '\033');
  if (!json && !text) {
    err = "it is not a faultline traffic log (its first line is neither a JSON record nor a text "
          "one)";
    return false;
  }
  if (json != (want == LogFormat::Json)) {
    err = fmt::format("it is a faultline {} log; this asks for {}", json ? "JSON" : "text",
                      want == LogFormat::Json ? "JSON" : "text");
    return false;
  }
  return true;
}

void TrafficLogConfig::apply_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("expected a JSON object");
  for (const auto& [k, v] : j.items()) {
    if (k == "path") {
      if (v.is_null()) path.clear();
      else if (v.is_string()) path = v.get<std::string>();
      else throw std::invalid_argument("'path' must be a string or null");
    } else if (k == "enabled") {
      if (!v.is_boolean()) throw std::invalid_argument("'enabled' must be a boolean");
      if (!v.get<bool>()) path.clear();
      else if (path.empty() && !j.contains("path"))
        throw std::invalid_argument("'enabled': true needs a 'path' (a file, or \"-\")");
    } else if (k == "format") {
      LogFormat f;
      if (v.is_null()) format.reset();
      else if (!v.is_string() || !parse_log_format(v.get<std::string>(), f))
        throw std::invalid_argument("'format' must be \"json\" or \"text\"");
      else format = f;
    } else if (k == "max_arg_bytes") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 65535)
        throw std::invalid_argument("'max_arg_bytes' must be an integer from 1 to 65535");
      max_arg_bytes = v.get<uint32_t>();
    } else if (k == "commands" || k == "keys") {
      std::string s;
      if (v.is_string()) s = v.get<std::string>();
      else if (v.is_array())
        for (const auto& e : v) {
          if (!e.is_string()) throw std::invalid_argument("'" + k + "' must hold strings");
          s += (s.empty() ? "" : ",") + e.get<std::string>();
        }
      else if (!v.is_null()) throw std::invalid_argument("'" + k + "' must be a string");
      (k == "commands" ? commands : keys) = s;
    } else if (k == "slower_than_us") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        throw std::invalid_argument("'slower_than_us' must be a non-negative integer");
      slower_than_us = v.get<uint64_t>();
    } else if (k == "sample") {
      if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1)
        throw std::invalid_argument("'sample' must be a number from 0 to 1");
      sample = v.get<double>();
    } else if (k == "records" || k == "dropped" || k == "bytes_written" || k == "subscribers" ||
               k == "reopens" || k == "stream_dropped" || k == "delivery_held" ||
               k == "delivery_unfollowed") {
      // Read-only fields of GET /log, accepted so a GET body can be posted back.
    } else {
      throw std::invalid_argument("unknown field '" + k + "'");
    }
  }
}

nlohmann::json TrafficLogConfig::to_json() const {
  return {{"enabled", !path.empty()},
          {"path", path.empty() ? nlohmann::json() : nlohmann::json(path)},
          {"format", effective_format() == LogFormat::Json ? "json" : "text"},
          {"max_arg_bytes", max_arg_bytes},
          {"commands", commands},
          {"keys", keys},
          {"slower_than_us", slower_than_us},
          {"sample", sample}};
}

TrafficLog::TrafficLog(proxy::Registry& registry, uint64_t seed) : registry_(registry), rng_(seed) {
  uv_loop_t* loop = registry_.runtime().loop();
  uv_check_init(loop, &check_);
  uv_timer_init(loop, &timer_);
  uv_signal_init(loop, &sighup_);
  check_.data = timer_.data = sighup_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&sighup_));
  argv_.reserve(64);
  json_.room(1024);
  text_.reserve(1024);
  resync_clock();
}

TrafficLog::~TrafficLog() {
  if (registered_) registry_.runtime().remove_observer(this);
}

void TrafficLog::resync_clock() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  int64_t wall = int64_t(tv.tv_sec) * 1000000 + tv.tv_usec;
  int64_t mono = static_cast<int64_t>(uv_hrtime() / 1000);
  int64_t off = wall - mono;
  // Keep timestamps steady: follow the wall clock only when it moved noticeably.
  if (wall_offset_us_ == 0 || std::llabs(off - wall_offset_us_) > 1000) wall_offset_us_ = off;
}

uint64_t TrafficLog::now_wall_us() const { return wall_us(uv_hrtime() / 1000); }

bool TrafficLog::configure(const TrafficLogConfig& cfg_in, std::string& err) {
  if (closing_) {
    err = "shutting down";
    return false;
  }
  TrafficLogConfig cfg = cfg_in;
  if (cfg.max_arg_bytes == 0) {
    err = "max_arg_bytes must be at least 1";
    return false;
  }
  if (!(cfg.sample >= 0.0 && cfg.sample <= 1.0)) {
    err = "sample must be from 0 to 1";
    return false;
  }
  std::unique_ptr<toxics::RespFilter> filter;
  if (!cfg.commands.empty() || !cfg.keys.empty()) {
    nlohmann::json attrs = nlohmann::json::object();
    if (!cfg.commands.empty()) attrs["commands"] = cfg.commands;
    if (!cfg.keys.empty()) attrs["keys"] = cfg.keys;
    try {
      filter = std::make_unique<toxics::RespFilter>(attrs);
    } catch (const std::exception& e) {
      std::string what = e.what();
      if (what.rfind("attribute 'commands': ", 0) == 0) what = what.substr(22);
      err = "log commands: " + what;
      return false;
    }
  }
  LogSink* new_sink = nullptr;
  bool reopen_sink = !cfg.path.empty() && (!sink_ || cfg.path != cfg_.path);
  if (reopen_sink) {
    new_sink = LogSink::open(registry_.runtime().loop(), cfg.path, cfg.max_buffer_bytes, err,
                             cfg.open_file);
    if (!new_sink) return false;
  }
  if (reopen_sink || cfg.path.empty()) {
    if (sink_) {
      flush();
      sink_->close();
    }
    sink_ = new_sink;
    uv_signal_stop(&sighup_);
    if (sink_ && cfg.path != "-") {
      uv_signal_start(
          &sighup_, [](uv_signal_t* h, int) { static_cast<TrafficLog*>(h->data)->reopen(); },
          SIGHUP);
    }
  }
  cfg_ = std::move(cfg);
  filter_ = std::move(filter);
  format_ = cfg_.effective_format();
  color_ = sink_ && sink_->is_tty() && format_ == LogFormat::Text;
  update_registration();
  return true;
}

void TrafficLog::reopen() {
  if (sink_) sink_->reopen();
}

uint64_t TrafficLog::subscribe(std::string proxy, std::unique_ptr<TrafficSubscriber> sub,
                               bool text) {
  uint64_t id = next_sub_id_++;
  subs_.push_back({id, std::move(proxy), std::move(sub), {}, 0, 0, 0, text});
  update_registration();
  return id;
}

void TrafficLog::unsubscribe(uint64_t id) {
  for (auto& s : subs_)
    if (s.id == id) s.out.reset(); // swept in flush(): we may be inside a write
  schedule_flush();
}

size_t TrafficLog::subscribers() const {
  size_t n = 0;
  for (const auto& s : subs_) n += s.out != nullptr;
  return n;
}

uint64_t TrafficLog::dropped() const {
  uint64_t n = dropped_pending_;
  if (sink_) n += sink_->records_dropped();
  return n;
}

void TrafficLog::update_registration() {
  bool active = !closing_ && (sink_ != nullptr || subscribers() > 0);
  bool text_subs = false, json_subs = false;
  for (const auto& s : subs_) {
    if (!s.out) continue;
    (s.text ? text_subs : json_subs) = true;
  }
  want_text_ = (sink_ && format_ == LogFormat::Text) || text_subs;
  want_json_ = (sink_ && format_ == LogFormat::Json) || json_subs;
  auto& rt = registry_.runtime();
  if (active && !registered_) {
    // The parser keeps more of each request while the log is on (new sessions only).
    auto& cap = rt.mutable_options().capture;
    cap.max_args = std::max<uint32_t>(cap.max_args, 32);
    cap.arg_cap_bytes = std::max<uint32_t>(cap.arg_cap_bytes, std::max<uint32_t>(cfg_.max_arg_bytes, 32));
    cap.text_cap_bytes = std::max<uint32_t>(cap.text_cap_bytes, cfg_.max_arg_bytes);
    rt.add_observer(this);
    registered_ = true;
    resync_clock();
    poll_toxics(false);
    uv_timer_start(
        &timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<TrafficLog*>(t->data);
          self->resync_clock();
          self->poll_toxics(true);
          uint64_t d = self->dropped();
          if (d > self->dropped_noted_ && self->sink_ &&
              self->sink_->buffered() < self->cfg_.max_buffer_bytes / 2) {
            uint64_t delta = d - self->dropped_noted_;
            self->begin_event(nullptr, {}, self->now_wall_us(), "dropped");
            self->json_ += fmt::format(",\"records\":{},\"total\":{}", delta, d);
            self->text_ += fmt::format(" {} records dropped ({} in all)", delta, d);
            self->end_event();
            self->emit({});
            self->dropped_noted_ = self->dropped();
          }
        },
        kPollMs, kPollMs);
  } else if (active) {
    auto& cap = rt.mutable_options().capture;
    cap.arg_cap_bytes = std::max<uint32_t>(cap.arg_cap_bytes, cfg_.max_arg_bytes);
    cap.text_cap_bytes = std::max<uint32_t>(cap.text_cap_bytes, cfg_.max_arg_bytes);
  } else if (!active && registered_) {
    rt.remove_observer(this);
    registered_ = false;
    sessions_.clear();
    held_records_ = 0;
    held_bytes_ = 0;
    last_session_ = nullptr;
    last_state_ = nullptr;
    uv_timer_stop(&timer_);
  }
}

TrafficLog::SessionState& TrafficLog::state(proxy::Session& s) {
  if (&s == last_session_) return *last_state_;
  auto& slot = sessions_[&s];
  if (!slot) {
    slot = std::make_unique<SessionState>();
    slot->proxy = s.proxy().name();
    slot->json_prefix = "\"proxy\":\"";
    append_json_repr(slot->json_prefix, slot->proxy);
    slot->json_prefix += "\",\"session\":";
    append_uint(slot->json_prefix, s.id());
    slot->json_prefix += ",\"client\":\"";
    append_json_repr(slot->json_prefix, s.client_address());
    slot->json_prefix += '"';
    append_repr(slot->text_prefix, slot->proxy);
    slot->text_prefix += '#';
    append_uint(slot->text_prefix, s.id());
    slot->text_prefix += ' ';
    slot->text_prefix += s.client_address();
  }
  last_session_ = &s;
  last_state_ = slot.get();
  return *slot;
}

bool TrafficLog::wants(std::string_view proxy) const {
  if (sink_) return true;
  for (const auto& s : subs_)
    if (s.out && (s.proxy.empty() || s.proxy == proxy)) return true;
  return false;
}

void TrafficLog::on_request(proxy::Session& s, const resp::RequestFrame& f, proxy::PendingId id,
                            std::string_view fault) {
  if (f.argc == 0) return;
  if (filter_ && !filter_->matches(f, rng_)) return;
  if (cfg_.sample < 1.0 && !(unit_(rng_) < cfg_.sample)) return;
  SessionState& ss = state(s);
  if (ss.size >= kMaxPendingPerSession) {
    ++dropped_pending_;
    return;
  }
  const uint32_t max = cfg_.max_arg_bytes;
  Pending p{};
  p.id = id;
  p.off = static_cast<uint32_t>(ss.arena.size());
  RecordBuf& a = ss.arena;
  // Command name ("CLIENT SETNAME"), the fault named at request time, the key unless it is one
  // of the arguments shown, the arguments. Each piece makes room once and is stored directly.
  const size_t skip = f.sub.empty() ? 1 : 2;
  const size_t fl = std::min<size_t>(fault.size(), 255);
  const size_t name_len = f.name.size() + (f.sub.empty() ? 0 : 1 + f.sub.size());
  char* w = a.room(2 + name_len + fl);
  w = put<uint8_t>(w, static_cast<uint8_t>(name_len));
  w = write_bytes(w, f.name);
  if (!f.sub.empty()) {
    *w++ = ' ';
    w = write_bytes(w, f.sub);
  }
  w = put<uint8_t>(w, static_cast<uint8_t>(fl));
  w = write_bytes(w, fault.substr(0, fl));
  a.set_end(w);
  uint64_t mask = 0;
  if (may_carry_secret(f.name)) {
    argv_.clear();
    for (const auto& arg : f.args) argv_.push_back(arg.data);
    mask = secret_args(f.name, f.sub, argv_);
  }
  auto put_arg = [&](const resp::Arg& arg, bool secret) {
    uint16_t n = secret ? 0 : static_cast<uint16_t>(std::min<size_t>(arg.data.size(), max));
    uint32_t full = secret ? kRedactedLen
                           : static_cast<uint32_t>(std::min<uint64_t>(arg.len, kRedactedLen - 1));
    char* o = a.room(kArgHeader + n);
    o = put<uint32_t>(o, full);
    o = put<uint16_t>(o, n);
    if (n) std::memcpy(o, arg.data.data(), n);
    a.set_end(o + n);
  };
  // The key: most often one of the arguments shown (GET k), which the record then repeats, so
  // only its index is kept. Otherwise it is stored on its own, unless it is one of the secrets
  // (it never is for the commands above, but the parser's idea of a key and ours must not have
  // to agree for safety).
  p.key = kNoKey;
  size_t key_repeat = 0; // bytes of an argument the record shows again as the key
  if (f.has_key) {
    bool key_secret = false;
    if (mask)
      for (size_t i = 0; i < f.args.size() && i < 64; ++i)
        if ((mask >> i & 1) && f.args[i].data.data() == f.key.data.data()) key_secret = true;
    for (size_t i = skip; i < f.args.size() && i - skip < kKeyStored; ++i) {
      const resp::Arg& arg = f.args[i];
      if (arg.data.data() == f.key.data.data() && arg.data.size() == f.key.data.size() &&
          arg.len == f.key.len && (i < 64 && (mask >> i & 1)) == key_secret) {
        p.key = static_cast<uint16_t>(i - skip);
        key_repeat = key_secret ? 0 : std::min<size_t>(arg.data.size(), max);
        break;
      }
    }
    if (p.key == kNoKey) {
      p.key = kKeyStored;
      put_arg(f.key, key_secret);
    }
  }
  size_t n = f.args.size() > skip ? f.args.size() - skip : 0;
  for (size_t i = skip; i < f.args.size(); ++i) put_arg(f.args[i], i < 64 && (mask >> i & 1));
  p.nargs = static_cast<uint16_t>(n);
  p.len = static_cast<uint32_t>(a.size() - p.off + key_repeat);
  uint64_t total = f.argc > skip ? f.argc - skip : 0;
  p.more_args = total > n ? total - n : 0;
  ss.push(p);
}

void TrafficLog::on_reply(proxy::Session& s, const proxy::ReplyResult& r,
                          const resp::ReplyFrame* frame, std::string_view injected,
                          std::string_view fault) {
  SessionState* ssp;
  if (&s == last_session_) {
    ssp = last_state_;
  } else {
    auto it = sessions_.find(&s);
    if (it == sessions_.end()) return;
    ssp = it->second.get();
    last_session_ = &s;
    last_state_ = ssp;
  }
  SessionState& ss = *ssp;
  const proxy::PendingId id = r.request.id;
  while (ss.size && ss.front().id < id) ss.pop(); // requests that will never be answered
  if (!ss.size || ss.front().id != id) return;    // not logged (filters)
  Pending& p = ss.front();
  ++p.replies;
  if (!r.final) {
    p.bytes_out += frame ? frame->size_bytes() : injected.size();
    return;
  }
  if (r.latency_us < cfg_.slower_than_us) {
    ss.pop();
    return;
  }
  if (sink_ && sink_->saturated() && subs_.empty()) {
    // The destination cannot keep up: drop without formatting.
    sink_->dropped(1);
    ss.pop();
    return;
  }
  ReplySummary sum = frame ? summarize(*frame) : summarize_injected(injected);
  const char* cur = ss.arena.data() + p.off;
  uint8_t cmd_len = get<uint8_t>(cur);
  std::string_view cmd(cur, cmd_len);
  cur += cmd_len;
  uint8_t fl = get<uint8_t>(cur);
  std::string_view req_fault(cur, fl);
  cur += fl;
  if (fault.empty()) fault = req_fault;
  StoredArg key{};
  if (p.key == kKeyStored) key = read_arg(cur);
  const char* args = cur;
  const uint64_t ts = wall_us(r.request.start_us);
  const uint64_t bytes_in = r.request.req_bytes;
  const uint32_t max = cfg_.max_arg_bytes;

  // Held until the reply reaches the client (or never will), within the bound.
  bool hold = false;
  if (s.follows_deliveries()) {
    if (held_records_ < kMaxHeldRecords && held_bytes_ < kMaxHeldBytes)
      hold = s.follow_delivery(id);
    else
      ++delivery_unfollowed_;
  }
  char* in_sink = nullptr; // the record's start when it is formatted in the sink's buffer
  char* json_end = nullptr;
  if (want_json_) {
    // Room for the whole record at once, then plain stores: every stored byte escapes to at
    // most kJsonReprMaxPerByte bytes. A JSON log file takes it in place, without a copy.
    const size_t bound = kJsonCommandFixed + ss.json_prefix.size() +
                         kJsonReprMaxPerByte * (p.len + fault.size()) +
                         kJsonArgOverhead * (p.nargs + 1u) + reply_json_bound(sum, max) +
                         sizeof(",\"delivery\":null");
    if (sink_ && format_ == LogFormat::Json && !hold) in_sink = sink_->reserve(bound);
    json_.clear();
    char* const start = in_sink ? in_sink : json_.room(bound);
    char* o = start;
    o = write_lit(o, "{\"ts\":\"");
    o = ts_json_.write(o, ts);
    o = write_lit(o, "\",");
    o = write_bytes(o, ss.json_prefix);
    o = write_lit(o, ",\"db\":");
    o = write_int(o, r.request.db);
    o = write_lit(o, ",\"cmd\":\"");
    o = write_json_repr(o, cmd);
    o = write_lit(o, "\",\"args\":[");
    const char* c = args;
    std::string_view key_json; // the key's text when it is one of the arguments
    for (uint16_t i = 0; i < p.nargs; ++i) {
      StoredArg a = read_arg(c);
      if (i) *o++ = ',';
      *o++ = '"';
      char* from = o;
      if (a.full == kRedactedLen) o = write_bytes(o, kRedacted);
      else o = write_json_repr_truncated(o, a.shown, a.full, max);
      if (i == p.key) key_json = std::string_view(from, static_cast<size_t>(o - from));
      *o++ = '"';
    }
    *o++ = ']';
    if (p.more_args) {
      o = write_lit(o, ",\"more_args\":");
      o = write_uint(o, p.more_args);
    }
    if (p.key != kNoKey) {
      o = write_lit(o, ",\"key\":\"");
      if (p.key != kKeyStored) o = write_bytes(o, key_json);
      else if (key.full == kRedactedLen) o = write_bytes(o, kRedacted);
      else o = write_json_repr_truncated(o, key.shown, key.full, max);
      *o++ = '"';
    }
    o = write_lit(o, ",\"reply\":");
    o = write_reply_json(o, sum, max);
    if (p.replies > 1) {
      o = write_lit(o, ",\"replies\":");
      o = write_uint(o, p.replies);
    }
    o = write_lit(o, ",\"latency_us\":");
    o = write_uint(o, r.latency_us);
    o = write_lit(o, ",\"bytes_in\":");
    o = write_uint(o, bytes_in);
    o = write_lit(o, ",\"bytes_out\":");
    o = write_uint(o, p.bytes_out + sum.bytes);
    if (fault.empty()) {
      o = write_lit(o, ",\"fault\":null");
    } else {
      o = write_lit(o, ",\"fault\":\"");
      o = write_json_repr(o, fault);
      *o++ = '"';
    }
    // A held record gets its delivery, and its end, when the session says what became of it.
    if (!hold) o = write_lit(o, ",\"delivery\":null}\n");
    // Past the bound, the record has overrun its room: a broken bound, which the Debug and
    // sanitizer builds stop on here.
    assert(static_cast<size_t>(o - start) <= bound);
    json_end = o;
    if (!in_sink) json_.set_end(o);
  }
  if (want_text_) {
    std::string& o = text_;
    o.clear();
    if (color_) o += kDim;
    ts_text_.append_time_of_day(o, ts);
    if (color_) o += kReset;
    o += ' ';
    o += ss.text_prefix;
    if (r.request.db != 0) {
      lit(o, " db");
      append_int(o, r.request.db);
    }
    o += ' ';
    if (color_) o += kCmd;
    append_repr(o, cmd);
    if (color_) o += kReset;
    const char* c = args;
    for (uint16_t i = 0; i < p.nargs; ++i) {
      StoredArg a = read_arg(c);
      lit(o, " \"");
      if (a.full == kRedactedLen) o += kRedacted;
      else append_repr_truncated(o, a.shown, a.full, max);
      o += '"';
    }
    if (p.more_args) {
      lit(o, " ... (");
      append_uint(o, p.more_args);
      lit(o, " more)");
    }
    lit(o, " -> ");
    bool err = sum.is_error();
    if (color_ && err) o += kRed;
    append_reply_text(o, sum, max);
    if (color_ && err) o += kReset;
    o += ' ';
    append_uint(o, r.latency_us);
    lit(o, "us");
    if (!fault.empty()) {
      o += ' ';
      if (color_) o += kYellow;
      lit(o, "fault=");
      append_repr(o, fault);
      if (color_) o += kReset;
    }
    if (!hold) o += '\n';
  }
  ss.pop();
  if (hold) {
    hold_record(ss, id, r.request.start_us, json_end ? std::string_view(json_.view()) : "");
    return;
  }
  if (in_sink) emit_record(ss.proxy, {in_sink, static_cast<size_t>(json_end - in_sink)}, true);
  else emit(ss.proxy);
}

void TrafficLog::hold_record(SessionState& ss, proxy::PendingId id, uint64_t start_us,
                             std::string_view json) {
  std::string_view text = want_text_ ? std::string_view(text_) : std::string_view();
  SessionState::Held h{id, start_us, ss.held_arena.size(), static_cast<uint32_t>(json.size()),
                       static_cast<uint32_t>(text.size())};
  ss.held_arena.append(json);
  ss.held_arena.append(text);
  ss.held.push_back(h);
  ++held_records_;
  held_bytes_ += json.size() + text.size();
}

// The record held for reply `id` of this session, with its delivery (null: unknown), written.
void TrafficLog::release_held(SessionState& ss, const proxy::Delivery* d) {
  const SessionState::Held h = ss.held.front();
  ss.held.pop_front();
  --held_records_;
  held_bytes_ -= h.json_len + h.text_len;
  const std::string_view json(ss.held_arena.data() + h.off, h.json_len);
  const std::string_view text(ss.held_arena.data() + h.off + h.json_len, h.text_len);
  const uint64_t took_us = d && d->delivered && d->at_us > h.start_us ? d->at_us - h.start_us : 0;
  if (want_json_) {
    json_.clear();
    char* o =
        json_.room(json.size() + kJsonDeliveryFixed + kJsonReprMaxPerByte * (d ? d->by.size() : 0));
    o = write_bytes(o, json);
    if (!d) {
      o = write_lit(o, ",\"delivery\":null}\n");
    } else {
      if (d->delivered) {
        o = write_lit(o, ",\"delivery\":{\"delivered\":true,\"delivered_us\":");
        o = write_uint(o, took_us);
      } else {
        o = write_lit(o, ",\"delivery\":{\"delivered\":false,\"client\":\"");
        o = d->client_gone ? write_lit(o, "gone\"") : write_lit(o, "cut\"");
      }
      if (!d->by.empty()) {
        o = write_lit(o, ",\"by\":\"");
        o = write_json_repr(o, d->by);
        *o++ = '"';
      }
      o = write_lit(o, "}}\n");
    }
    json_.set_end(o);
  }
  if (want_text_) {
    text_.assign(text);
    if (d && d->delivered) {
      lit(text_, " delivered +");
      if (took_us < 1000) text_ += fmt::format("{}us", took_us);
      else text_ += fmt::format("{:.1f}ms", static_cast<double>(took_us) / 1000.0);
      if (!d->by.empty()) {
        lit(text_, " (");
        append_repr(text_, d->by);
        text_ += ')';
      }
    } else if (d) {
      text_ += ' ';
      if (color_) text_ += kRed;
      lit(text_, "not delivered: ");
      text_ += d->client_gone ? "client gone" : "cut";
      if (!d->by.empty()) {
        lit(text_, " (");
        append_repr(text_, d->by);
        text_ += ')';
      }
      if (color_) text_ += kReset;
    }
    text_ += '\n';
  }
  if (ss.held.empty()) ss.held_arena.clear();
  else if (ss.held_arena.size() > (1u << 20) && ss.held.front().off > ss.held_arena.size() / 2) {
    // Replies that never stop coming: drop the released half of the arena.
    const size_t cut = ss.held.front().off;
    ss.held_arena.erase_front(cut);
    for (auto& x : ss.held) x.off -= cut;
  }
  emit(ss.proxy);
}

void TrafficLog::on_delivery(proxy::Session& s, proxy::PendingId id, const proxy::Delivery& d) {
  auto it = sessions_.find(&s);
  if (it == sessions_.end()) return;
  SessionState& ss = *it->second;
  while (!ss.held.empty() && ss.held.front().id < id) release_held(ss, nullptr);
  if (!ss.held.empty() && ss.held.front().id == id) release_held(ss, &d);
}

void TrafficLog::begin_event(SessionState* ss, std::string_view proxy, uint64_t ts,
                             std::string_view ev) {
  if (want_json_) {
    json_.clear();
    lit(json_, "{\"ts\":\"");
    json_.set_end(ts_json_.write(json_.room(kTimestampChars), ts));
    lit(json_, "\",");
    if (ss) {
      json_ += ss->json_prefix;
    } else {
      lit(json_, "\"proxy\":");
      if (proxy.empty()) {
        lit(json_, "null");
      } else {
        json_ += '"';
        append_json_repr(json_, proxy);
        json_ += '"';
      }
      lit(json_, ",\"session\":null,\"client\":null");
    }
    lit(json_, ",\"event\":\"");
    json_ += ev;
    json_ += '"';
  }
  if (want_text_) {
    text_.clear();
    if (color_) text_ += kDim;
    ts_text_.append_time_of_day(text_, ts);
    text_ += ' ';
    if (ss) text_ += ss->text_prefix;
    else append_repr(text_, proxy.empty() ? std::string_view("-") : proxy);
    lit(text_, " -- ");
    text_ += ev;
    if (color_) text_ += kReset;
  }
}

void TrafficLog::end_event() {
  if (want_json_) lit(json_, "}\n");
  if (want_text_) text_ += '\n';
  // The proxy of the record is in json_; events are rare, so find it again from the state.
}

void TrafficLog::on_session_open(proxy::Session& s) {
  SessionState& ss = state(s);
  if (!wants(ss.proxy)) return;
  begin_event(&ss, {}, now_wall_us(), "open");
  end_event();
  emit(ss.proxy);
}

void TrafficLog::on_session_close(proxy::Session& s) {
  SessionState& ss = state(s);
  while (!ss.held.empty()) release_held(ss, nullptr);  // the session said nothing of them
  if (wants(ss.proxy)) {
    begin_event(&ss, {}, now_wall_us(), "close");
    std::string_view reason = proxy::to_string(s.close_reason());
    uint64_t in = s.bytes_from_client(), out = s.bytes_from_upstream();
    if (want_json_)
      json_ += fmt::format(",\"reason\":\"{}\",\"bytes_in\":{},\"bytes_out\":{},\"commands\":{}",
                           reason, in, out, s.commands_seen());
    if (want_text_)
      text_ += fmt::format(" {} in={}B out={}B commands={}", reason, in, out, s.commands_seen());
    end_event();
    emit(ss.proxy);
  }
  sessions_.erase(&s);
  last_session_ = nullptr;
  last_state_ = nullptr;
}

void TrafficLog::on_out_of_band(proxy::Session& s, const proxy::ReplyResult& r,
                                const resp::ReplyFrame& f) {
  SessionState& ss = state(s);
  ReplySummary sum = summarize(f);
  begin_event(&ss, {}, now_wall_us(), oob_event(r.kind));
  if (want_json_) {
    char* o = json_.room(64 + reply_json_bound(sum, cfg_.max_arg_bytes));
    o = write_lit(o, ",\"reply\":");
    o = write_reply_json(o, sum, cfg_.max_arg_bytes);
    o = write_lit(o, ",\"bytes_out\":");
    json_.set_end(write_uint(o, sum.bytes));
  }
  if (want_text_) {
    text_ += ' ';
    append_reply_text(text_, sum, cfg_.max_arg_bytes);
  }
  end_event();
  emit(ss.proxy);
}

void TrafficLog::on_raw_mode(proxy::Session& s, toxics::Stream dir, const resp::ParseError& e) {
  SessionState& ss = state(s);
  begin_event(&ss, {}, now_wall_us(), "raw");
  const char* d = dir == toxics::Stream::Upstream ? "upstream" : "downstream";
  std::string why;
  append_json_repr(why, e.reason ? e.reason : "?");
  if (want_json_)
    json_ += fmt::format(",\"direction\":\"{}\",\"offset\":{},\"error\":\"{}\"", d, e.offset, why);
  if (want_text_) text_ += fmt::format(" {} at byte {}: {}", d, e.offset, e.reason ? e.reason : "?");
  end_event();
  emit(ss.proxy);
}

void TrafficLog::profile_event(std::string_view event, std::string_view profile,
                               std::string_view proxy, std::string_view step,
                               std::string_view what, uint64_t elapsed_ms) {
  if (!registered_ || (!proxy.empty() && !wants(proxy))) return;
  begin_event(nullptr, proxy, now_wall_us(), event);
  if (want_json_) {
    lit(json_, ",\"profile\":\"");
    append_json_repr(json_, profile);
    json_ += '"';
    if (!step.empty()) {
      lit(json_, ",\"step\":\"");
      append_json_repr(json_, step);
      json_ += '"';
    }
    lit(json_, ",\"what\":\"");
    append_json_repr(json_, what);
    json_ += fmt::format("\",\"elapsed_ms\":{}", elapsed_ms);
  }
  if (want_text_) {
    text_ += fmt::format(" {} +{}.{:03}s", profile, elapsed_ms / 1000, elapsed_ms % 1000);
    if (!step.empty()) text_ += fmt::format(" {}:", step);
    text_ += ' ';
    text_ += what;
  }
  end_event();
  emit(proxy);
}

void TrafficLog::poll_toxics(bool emit_events) {
  std::vector<std::string> present;
  for (const auto& [name, p] : registry_.proxies()) {
    present.push_back(name);
    // Disabled / enabled, and accept modes: faults without a toxic.
    std::pair<bool, int> st{p->enabled(), static_cast<int>(p->accept_mode())};
    auto sit = states_seen_.find(name);
    if (sit == states_seen_.end()) {
      sit = states_seen_.emplace(name, std::pair<bool, int>{true, 0}).first;
      if (!emit_events) sit->second = st;
    }
    if (sit->second != st && emit_events && wants(name)) {
      static constexpr const char* kModes[] = {"normal", "reset", "hang"};
      if (sit->second.first != st.first) {
        begin_event(nullptr, name, now_wall_us(), st.first ? "proxy_enabled" : "proxy_disabled");
        end_event();
        emit(name);
      }
      if (sit->second.second != st.second) {
        begin_event(nullptr, name, now_wall_us(), "accept_mode");
        const char* m = kModes[std::clamp(st.second, 0, 2)];
        if (want_json_) json_ += fmt::format(",\"mode\":\"{}\"", m);
        if (want_text_) text_ += fmt::format(" {}", m);
        end_event();
        emit(name);
      }
    }
    sit->second = st;
    auto& seen = toxics_seen_[name];
    std::vector<std::pair<std::string, const void*>> now;
    for (const auto& t : p->toxics()) now.emplace_back(t.name, t.impl.get());
    if (now == seen) continue;
    if (emit_events && wants(name)) {
      for (const auto& t : p->toxics()) {
        auto it = std::find_if(seen.begin(), seen.end(),
                               [&](const auto& e) { return e.first == t.name; });
        if (it != seen.end() && it->second == t.impl.get()) continue;
        begin_event(nullptr, name, now_wall_us(),
                    it == seen.end() ? "toxic_added" : "toxic_updated");
        if (want_json_) json_ += ",\"toxic\":" + t.to_json().dump(-1, ' ', true);
        if (want_text_) text_ += fmt::format(" {} ({}, {})", t.name, t.type,
                                             t.stream == toxics::Stream::Upstream ? "upstream"
                                                                                  : "downstream");
        end_event();
        emit(name);
      }
      for (const auto& [tname, impl] : seen) {
        if (std::any_of(now.begin(), now.end(), [&](const auto& e) { return e.first == tname; }))
          continue;
        begin_event(nullptr, name, now_wall_us(), "toxic_removed");
        nlohmann::json tj = {{"name", tname}};
        if (want_json_) json_ += ",\"toxic\":" + tj.dump(-1, ' ', true);
        if (want_text_) text_ += " " + tname;
        end_event();
        emit(name);
      }
    }
    seen = std::move(now);
  }
  for (auto it = states_seen_.begin(); it != states_seen_.end();) {
    if (std::find(present.begin(), present.end(), it->first) == present.end())
      it = states_seen_.erase(it);
    else
      ++it;
  }
  for (auto it = toxics_seen_.begin(); it != toxics_seen_.end();) {
    if (std::find(present.begin(), present.end(), it->first) == present.end())
      it = toxics_seen_.erase(it);
    else
      ++it;
  }
}

namespace {
// The text line of a terminal log without its SGR sequences (ESC [ ... m).
void append_without_colours(std::string& out, std::string_view line) {
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\033' && i + 1 < line.size() && line[i + 1] == '[') {
      size_t m = line.find('m', i + 2);
      if (m != std::string_view::npos) {
        i = m;
        continue;
      }
    }
    out += line[i];
  }
}
} // namespace

void TrafficLog::emit(std::string_view proxy) { emit_record(proxy, json_.view(), false); }

void TrafficLog::emit_record(std::string_view proxy, std::string_view json, bool in_sink) {
  ++records_;
  // The subscribers first: a record formatted in the sink's buffer is only known to stay where
  // it is until the sink is next used.
  for (auto& s : subs_) {
    if (!s.out || !(s.proxy.empty() || s.proxy == proxy)) continue;
    std::string_view line = s.text ? std::string_view(text_) : json;
    if (s.buf.size() + line.size() > kMaxSubscriberBuffer) {
      ++s.dropped;
      continue;
    }
    if (s.text && color_) append_without_colours(s.buf, line);
    else s.buf += line;
    ++s.buf_records;
  }
  if (in_sink) sink_->commit(json.data() + json.size());
  else if (sink_) sink_->append(format_ == LogFormat::Json ? json : std::string_view(text_));
  schedule_flush();
}

void TrafficLog::schedule_flush() {
  if (check_active_ || closing_) return;
  check_active_ = true;
  uv_check_start(&check_, [](uv_check_t* h) {
    auto* self = static_cast<TrafficLog*>(h->data);
    uv_check_stop(h);
    self->check_active_ = false;
    self->flush();
  });
}

void TrafficLog::flush() {
  if (sink_) sink_->flush();
  bool removed = false;
  for (auto& s : subs_) {
    if (s.out && !s.buf.empty()) {
      if (s.out->pending_bytes() > kMaxSubscriberBuffer) {
        s.dropped += s.buf_records;
      } else if (s.out->write(s.buf)) {
        s.sent += s.buf_records;
      } else {
        s.out.reset();
      }
      s.buf.clear();
      s.buf_records = 0;
    }
    if (!s.out) removed = true;
  }
  if (removed) {
    std::erase_if(subs_, [](const Subscriber& s) { return !s.out; });
    update_registration();
  }
}

nlohmann::json TrafficLog::status_json() const {
  nlohmann::json j = cfg_.to_json();
  j["records"] = records_;
  j["dropped"] = dropped();
  j["bytes_written"] = sink_ ? sink_->bytes_written() : 0;
  j["reopens"] = sink_ ? sink_->reopens() : 0;
  uint64_t sd = 0;
  for (const auto& s : subs_) sd += s.dropped;
  j["delivery_held"] = held_records_;
  j["delivery_unfollowed"] = delivery_unfollowed_;
  j["subscribers"] = subscribers();
  j["stream_dropped"] = sd;
  return j;
}

void TrafficLog::append_prometheus(std::string& out) const {
  uint64_t sd = 0, ss = 0;
  for (const auto& s : subs_) {
    sd += s.dropped;
    ss += s.sent;
  }
  out += "# HELP faultline_log_records_total Traffic records written, by destination.\n"
         "# TYPE faultline_log_records_total counter\n";
  out += fmt::format("faultline_log_records_total{{sink=\"file\"}} {}\n",
                     sink_ ? sink_->records_written() : 0);
  out += fmt::format("faultline_log_records_total{{sink=\"stream\"}} {}\n", ss);
  out += "# HELP faultline_log_records_dropped_total Traffic records dropped because the "
         "destination could not keep up (the traffic itself is never slowed).\n"
         "# TYPE faultline_log_records_dropped_total counter\n";
  out += fmt::format("faultline_log_records_dropped_total{{sink=\"file\"}} {}\n", dropped());
  out += fmt::format("faultline_log_records_dropped_total{{sink=\"stream\"}} {}\n", sd);
  out += "# HELP faultline_log_delivery_unfollowed_total Command records written without their "
         "delivery because too many records waited for theirs.\n"
         "# TYPE faultline_log_delivery_unfollowed_total counter\n";
  out += fmt::format("faultline_log_delivery_unfollowed_total {}\n", delivery_unfollowed_);
  out += "# HELP faultline_log_delivery_held Command records waiting for their reply to reach "
         "the client.\n"
         "# TYPE faultline_log_delivery_held gauge\n";
  out += fmt::format("faultline_log_delivery_held {}\n", held_records_);
}

void TrafficLog::close(std::function<void()> on_done) {
  if (closing_) return;
  flush();
  closing_ = true;
  on_closed_ = std::move(on_done);
  if (sink_) {
    sink_->close();
    sink_ = nullptr;
  }
  subs_.clear();
  update_registration();
  auto cb = [](uv_handle_t* h) {
    auto* self = static_cast<TrafficLog*>(h->data);
    if (--self->pending_closes_ == 0 && self->on_closed_) {
      auto done = std::move(self->on_closed_);
      done();
    }
  };
  pending_closes_ = 3;
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&sighup_), cb);
}

} // namespace faultline::observe
