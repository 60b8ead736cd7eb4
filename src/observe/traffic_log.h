#pragma once
// The traffic log: one record per completed request (command, arguments, reply summary,
// latency, bytes, the fault that touched it, what became of the reply on its way to the client),
// plus records for out-of-band events (sessions opened and closed, pushes, pub/sub messages, raw
// mode, toxics added and removed). Records go to a file or stdout (JSON Lines or a compact text
// line) and to live subscribers (GET /proxies/{name}/traffic).
//
//   on_request ──► filter (commands, keys, sample) ──► per-session ring of pending requests
//                                                      (arguments copied, truncated, redacted)
//   on_reply   ──► pop the pending request ──► slower-than filter ──► format once into a reused
//                  buffer ──► LogSink (async, bounded, drops+counts) and subscribers' buffers
//                  (when the session follows deliveries: held, within a bound, until
//                  on_delivery says what became of the reply, then written with it)
//   uv_check (end of each loop iteration) ──► flush the batch to the sink and the subscribers
//
// Registered as an observer only while something consumes records (a log file or a live
// subscriber): with logging off the data path pays nothing. On the same loop as everything
// else: no locks.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>
#include <uv.h>

#include "observe/record.h"
#include "proxy/observer.h"
#include "toxics/resp_rule.h"

namespace faultline::proxy {
class Registry;
} // namespace faultline::proxy

namespace faultline::observe {

class LogSink;

enum class LogFormat { Json, Text };

struct TrafficLogConfig {
  std::string path;                 // "" = no log file; "-" = stdout
  std::optional<LogFormat> format;  // default: json for files, text for "-"
  uint32_t max_arg_bytes = 64;      // bytes of each argument (and reply text) shown
  std::string commands;             // "GET,SET,@write" (empty: every command)
  std::string keys;                 // Redis glob on the first key (empty: any)
  uint64_t slower_than_us = 0;      // only requests at least this slow
  double sample = 1.0;              // fraction of requests logged
  size_t max_buffer_bytes = 8 << 20; // per sink; beyond, records are dropped and counted
  // Opens `path` instead of open(2) (the API's files, confined to --log-dir; see LogSink::Opener).
  std::function<int(std::string& err)> open_file;

  LogFormat effective_format() const {
    return format ? *format : (path == "-" ? LogFormat::Text : LogFormat::Json);
  }
  // Applies the fields present in a JSON object (POST /log); throws std::invalid_argument.
  void apply_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

bool parse_log_format(std::string_view s, LogFormat& out);

// Whether a file that starts with `head` (its first bytes, at least its first line when it has
// one) may be appended to as a traffic log in `want` format: it is empty, or its first line is a
// faultline record in that format. False with err saying what the file is not.
bool may_append_traffic_log(std::string_view head, bool whole_file, LogFormat want,
                            std::string& err);

// A live consumer of records (the API's streaming response).
class TrafficSubscriber {
public:
  virtual ~TrafficSubscriber() = default;
  // Writes a batch of whole lines; false when the consumer is gone.
  virtual bool write(std::string_view lines) = 0;
  // Bytes accepted but not yet delivered: above a bound, batches are dropped instead.
  virtual size_t pending_bytes() const = 0;
};

class TrafficLog : public proxy::SessionObserver {
public:
  TrafficLog(proxy::Registry& registry, uint64_t seed);
  ~TrafficLog() override;
  TrafficLog(const TrafficLog&) = delete;
  TrafficLog& operator=(const TrafficLog&) = delete;

  // Validates and applies a configuration: opens the new file when the path changed. False
  // with err set (and the previous configuration kept) when it is invalid or cannot be opened.
  bool configure(const TrafficLogConfig& cfg, std::string& err);
  const TrafficLogConfig& config() const { return cfg_; }
  // Reopens the log file (SIGHUP does this).
  void reopen();

  // Live streams: records of one proxy ("" = every proxy), as JSON lines, or as the text lines
  // of `--log -` (without colours) when `text`.
  uint64_t subscribe(std::string proxy, std::unique_ptr<TrafficSubscriber> sub, bool text = false);
  void unsubscribe(uint64_t id);
  size_t subscribers() const;

  // Compares every proxy's toxics with what the log last saw and writes toxic_added /
  // toxic_updated / toxic_removed records. Runs every 100 ms; the API calls it after each
  // change so that short-lived toxics are not missed.
  void note_toxic_changes() {
    if (registered_) poll_toxics(true);
  }
  // A chaos profile's timeline changed (profile_start, step_start, step_end, profile_end):
  // one record, so a log shows what the profile did and when, whatever the step's action.
  void profile_event(std::string_view event, std::string_view profile, std::string_view proxy,
                     std::string_view step, std::string_view what, uint64_t elapsed_ms);

  // GET /log.
  nlohmann::json status_json() const;
  // faultline_log_* families for /metrics.
  void append_prometheus(std::string& out) const;
  uint64_t records() const { return records_; }
  uint64_t dropped() const;

  // Closes the log file (after writing what is buffered) and the loop handles; on_done runs
  // from the last close callback. The object may be destroyed after that.
  void close(std::function<void()> on_done);

  // SessionObserver.
  void on_session_open(proxy::Session& s) override;
  void on_session_close(proxy::Session& s) override;
  void on_request(proxy::Session& s, const resp::RequestFrame& f, proxy::PendingId id,
                  std::string_view fault) override;
  void on_reply(proxy::Session& s, const proxy::ReplyResult& r, const resp::ReplyFrame* frame,
                std::string_view injected, std::string_view fault) override;
  void on_out_of_band(proxy::Session& s, const proxy::ReplyResult& r,
                      const resp::ReplyFrame& f) override;
  void on_raw_mode(proxy::Session& s, toxics::Stream dir, const resp::ParseError& e) override;
  bool wants_delivery() const override { return true; }
  void on_delivery(proxy::Session& s, proxy::PendingId id, const proxy::Delivery& d) override;

  struct SessionState;

private:
  // Pending::key: no key, a key stored on its own, or else the index of the stored argument
  // that is the key.
  static constexpr uint16_t kNoKey = UINT16_MAX, kKeyStored = UINT16_MAX - 1;
  struct Pending {
    proxy::PendingId id;
    uint32_t off;        // start of its data in the session's arena
    uint32_t len;        // bytes of its data there, plus the key's when it repeats an
                         // argument (what the record shows escaped: its bound)
    uint16_t nargs;      // arguments stored
    uint16_t replies;    // replies seen so far (SUBSCRIBE a b gets two)
    uint16_t key;        // kNoKey, kKeyStored, or an argument's index
    uint64_t more_args;  // arguments not stored (beyond the capture limit)
    uint64_t bytes_out = 0; // of the replies before the final one (SUBSCRIBE a b c)
  };
  struct Subscriber {
    uint64_t id;
    std::string proxy;
    std::unique_ptr<TrafficSubscriber> out;
    std::string buf;
    uint64_t buf_records = 0;
    uint64_t sent = 0, dropped = 0;
    bool text = false;
  };

  SessionState& state(proxy::Session& s);
  void update_registration();
  void poll_toxics(bool emit);
  bool wants(std::string_view proxy) const;
  // Hands the record in json_ / text_ to the sink and the subscribers of `proxy`.
  void emit(std::string_view proxy);
  // The same for a JSON record held elsewhere: in the sink's buffer (in_sink: reserved there and
  // committed here) or in json_.
  void emit_record(std::string_view proxy, std::string_view json, bool in_sink);
  void begin_event(SessionState* ss, std::string_view proxy, uint64_t ts_us, std::string_view ev);
  void end_event();
  void hold_record(SessionState& ss, proxy::PendingId id, uint64_t start_us, std::string_view json);
  void release_held(SessionState& ss, const proxy::Delivery* d);
  void schedule_flush();
  void flush();
  uint64_t wall_us(uint64_t mono_us) const { return mono_us + wall_offset_us_; }
  uint64_t now_wall_us() const;
  void resync_clock();

  proxy::Registry& registry_;
  TrafficLogConfig cfg_;
  LogFormat format_ = LogFormat::Json;
  bool color_ = false;
  std::unique_ptr<toxics::RespFilter> filter_; // null: every command
  LogSink* sink_ = nullptr;                    // frees itself on close()
  std::vector<Subscriber> subs_;
  uint64_t next_sub_id_ = 1;
  bool registered_ = false;
  bool want_json_ = false, want_text_ = false;

  std::unordered_map<const proxy::Session*, std::unique_ptr<SessionState>> sessions_;
  const proxy::Session* last_session_ = nullptr;
  SessionState* last_state_ = nullptr;

  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> unit_{0.0, 1.0};
  TimestampFormatter ts_json_, ts_text_;
  int64_t wall_offset_us_ = 0;
  RecordBuf json_;          // the record being formatted, reused
  std::string text_;        // its text form, reused
  std::vector<std::string_view> argv_; // redaction scratch

  uint64_t records_ = 0;
  uint64_t dropped_pending_ = 0;  // requests not logged because a session had too many pending
  uint64_t dropped_noted_ = 0;    // drops already reported in a "dropped" record
  size_t held_records_ = 0, held_bytes_ = 0; // records waiting for their delivery (all sessions)
  uint64_t delivery_unfollowed_ = 0; // written without delivery: past the bound on held records
  std::unordered_map<std::string, std::vector<std::pair<std::string, const void*>>> toxics_seen_;
  // Per proxy: enabled, and its accept mode (0 normal, 1 reset, 2 hang), as last logged.
  std::unordered_map<std::string, std::pair<bool, int>> states_seen_;

  uv_check_t check_{};
  uv_timer_t timer_{};
  uv_signal_t sighup_{};
  bool check_active_ = false;
  bool closing_ = false;
  int pending_closes_ = 0;
  std::function<void()> on_closed_;
};

} // namespace faultline::observe
