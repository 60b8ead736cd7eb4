#pragma once
// Client verdicts: what the client did about the faults it met. faultline sees every connect,
// every command and every fault, so per proxy it can say how often the client reconnected (and
// whether its backoff backs off), how long it took to get a good reply once a fault ended, which
// commands it sent again after a failure, and which handshake it replayed on each connection.
//
//   sessions ──► ClientVerdicts (SessionObserver) ──► ClientRecord per proxy ──► JSON (profile/expect.h decides [expect] on it)
//   proxies  ──► poll (10 ms): enabled / accept mode / toxics  ──┘  opens and closes fault windows
//
// A fault window is a stretch of time during which the proxy was faulted (disabled, a non-normal
// accept mode, any toxic), merged with the point faults the data path reports (a failed upstream
// connect, dropped connections). Its "time to recover" runs from its end to the first
// successful reply. ClientRecord is pure (no libuv): time is passed in, so it is tested directly.

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>
#include <uv.h>

#include "proxy/observer.h"

namespace faultline::proxy {
class Registry;
class Proxy;
} // namespace faultline::proxy

namespace faultline::observe {

struct VerdictLimits {
  size_t recent_connects = 256;       // connect timestamps kept (ring)
  size_t recent_intervals = 64;       // reconnect intervals kept, per proxy and per window
  size_t windows = 64;                // fault windows kept
  size_t recent_resends = 64;         // resend details kept
  size_t recent_handshakes = 32;      // per-connection handshakes kept
  size_t candidates = 1024;           // failed commands watched for a resend
  uint64_t resend_window_us = 10'000'000; // a failed command seen again within this is a resend
  size_t timeline_seconds = 300;      // per-second connect counts kept
};

// A command as the resend tracker compares it: command (and subcommand) plus first key.
struct CommandIdent {
  uint64_t cmd_hash = 0;      // hash of the upper-cased name and subcommand
  uint32_t key_hash = 0;      // proxy::key_hash() of the first key, 0 if none
  std::string_view name;      // for display; must outlive the call (static table or copied)
};

// "growing", "constant", "shrinking", "irregular", or "unknown" (fewer than 3 intervals).
std::string_view classify_backoff(const std::vector<double>& intervals_ms);

// What one proxy's clients did. Times are microseconds on one monotonic clock.
class ClientRecord {
public:
  explicit ClientRecord(VerdictLimits limits = {}) : lim_(limits) {}

  // A connection was accepted. When the latest connection of this proxy ended in a failure
  // (reset, refused upstream, dropped...) before this one, the time from that failure to this
  // connect is a reconnect interval: the client's backoff.
  void on_connect(uint64_t now_us);
  // A connection ended; `failed` if it ended by a fault rather than by either peer's choice.
  void on_connection_end(uint64_t now_us, bool failed);
  // A request. True if it repeats a failed command (a resend); recorded.
  bool on_request(uint64_t now_us, const CommandIdent& c, uint64_t session);
  // A command failed (its connection broke before the reply reached the client, or it got an
  // injected or unavailability error): watch for it to come again.
  void on_command_failed(uint64_t now_us, const CommandIdent& c, uint64_t session,
                         std::string_view reason);
  // A successful reply reached the client.
  void on_success(uint64_t now_us);
  // The data path's shortcuts: when no failed command is watched, a request is only counted
  // (on_request() would return false at once); when no ended window waits for its recovery,
  // a success is only counted. Both spare the caller a clock read and any hashing.
  bool watching_resends() const { return !candidates_.empty(); }
  void count_request() { ++commands_seen_; }
  void count_requests(uint64_t n) { commands_seen_ += n; }
  bool recovery_pending() const {
    return !windows_.empty() && windows_.back().end_us && !windows_.back().recovered_us;
  }
  void count_success() { ++successes_; }
  void count_successes(uint64_t n) { successes_ += n; }
  // The proxy's fault state, as polled: faulted or not, and the faults in effect.
  void set_faults(uint64_t now_us, bool faulted, const std::vector<std::string>& faults);
  // A fault that has no duration (a failed upstream connect, dropped connections).
  void point_fault(uint64_t now_us, std::string_view label);
  // The handshake commands of one connection (recorded once, when it is complete).
  void on_handshake(uint64_t now_us, uint64_t session, const std::vector<std::string>& commands);
  void clear();

  // Facts the JSON and the expectations are built from.
  struct Window {
    uint64_t start_us = 0;
    std::optional<uint64_t> end_us;        // unset while the fault lasts
    std::optional<uint64_t> recovered_us;  // first successful reply after end_us
    std::vector<std::string> faults;       // every fault seen in the window, in order
    uint64_t connects = 0;
    uint64_t failed_connections = 0;
    uint64_t resends = 0;
    uint64_t peak_connects_per_second = 0;
    std::vector<double> reconnect_intervals_ms;
    std::deque<uint64_t> last_second;      // connects of the last second (peak rate)
    std::optional<double> time_to_recover_ms() const;
  };
  struct Resend {
    uint64_t at_us;
    std::string command;
    std::string reason;
    double after_ms;           // since the failure
    bool same_connection;
  };
  struct Handshake {
    uint64_t at_us;
    uint64_t session;
    std::vector<std::string> commands;
  };

  uint64_t connects() const { return connects_; }
  uint64_t peak_connects_per_second() const { return peak_cps_; }
  uint64_t resends() const { return resends_; }
  bool faulted() const { return faulted_; }
  const std::deque<Window>& windows() const { return windows_; }
  const std::deque<double>& reconnect_intervals_ms() const { return intervals_; }
  // Worst time to recover over the windows that ended before `now_us`; unrecovered windows
  // count as now - end. nullopt when no window ended.
  std::optional<double> worst_time_to_recover_ms(uint64_t now_us) const;

  // `epoch_us`: the instant times are shown relative to.
  nlohmann::json to_json(uint64_t now_us, uint64_t epoch_us) const;

private:
  Window* current();       // the window events belong to: open, or ended and not yet recovered
  void open_window(uint64_t now_us);
  void add_fault_labels(Window& w, const std::vector<std::string>& faults);

  VerdictLimits lim_;
  uint64_t connects_ = 0, failed_connections_ = 0, resends_ = 0, successes_ = 0;
  uint64_t peak_cps_ = 0, peak_at_us_ = 0;
  std::deque<uint64_t> recent_connects_;
  std::deque<uint64_t> last_second_;
  std::deque<std::pair<uint64_t, uint64_t>> per_second_;  // (second since epoch 0, count)
  // The latest connection event was a failure (at last_failure_us_): the next connect is a
  // reconnect, and the wait before it is the client's backoff.
  bool last_failed_ = false;
  uint64_t last_failure_us_ = 0;
  std::deque<double> intervals_;
  std::deque<Window> windows_;
  bool faulted_ = false;
  std::vector<std::string> faults_;
  struct Candidate {
    uint64_t at_us;
    uint64_t cmd_hash;
    uint32_t key_hash;
    uint64_t session;
    std::string reason;
  };
  std::deque<Candidate> candidates_;
  std::deque<Resend> recent_resends_;
  std::map<std::string, uint64_t> resent_by_command_;
  std::deque<Handshake> handshakes_;
  std::map<std::string, uint64_t> handshake_counts_;
  uint64_t handshake_connections_ = 0;
  uint64_t commands_seen_ = 0;
};

// The observer: keeps one ClientRecord per proxy name, follows sessions, polls fault state.
class ClientVerdicts final : public proxy::SessionObserver {
public:
  using Clock = std::function<uint64_t()>;  // microseconds, monotonic
  ClientVerdicts(proxy::Registry& registry, VerdictLimits limits = {}, Clock clock = {});
  ~ClientVerdicts() override;
  ClientVerdicts(const ClientVerdicts&) = delete;
  ClientVerdicts& operator=(const ClientVerdicts&) = delete;

  // Starts polling the proxies' fault state (a 10 ms timer that does not keep the loop alive).
  void start(uv_loop_t* loop, uint32_t poll_ms = 10);
  // Stops polling; `done` runs once the timer handle is closed.
  void close(std::function<void()> done);

  // JSON for GET /proxies/{name}/clients.
  nlohmann::json json_for(const proxy::Proxy& p);
  // Forgets what the clients of a proxy did (DELETE /proxies/{name}/clients).
  void clear(std::string_view proxy);
  // The record of a proxy (created on demand), after bringing its fault state up to date.
  ClientRecord& record(const proxy::Proxy& p);
  uint64_t now_us() const { return clock_(); }
  uint64_t epoch_us() const { return epoch_us_; }

  void on_session_open(proxy::Session& s) override;
  void on_session_close(proxy::Session& s) override;
  void on_request(proxy::Session& s, const resp::RequestFrame& f, proxy::PendingId id,
                  std::string_view fault) override;
  void on_reply(proxy::Session& s, const proxy::ReplyResult& r, const resp::ReplyFrame* frame,
                std::string_view injected, std::string_view fault) override;
  bool takes_plain_replies() const override { return true; }
  void on_plain_replies(proxy::Session& s, std::span<const proxy::PlainReplies> groups) override;
  // Plain requests need only counting once the handshake is over and no failed command is
  // watched for a resend (a chunk's requests were sent before any failure it causes).
  bool takes_plain_requests() const override { return true; }
  bool plain_requests_now(proxy::Session& s) override;
  void on_plain_requests(proxy::Session& s, uint64_t n) override;

private:
  // A request at risk: sent and unanswered, or answered under a fault. The pending ones are
  // read from the session's pairing FIFO when the connection fails (which already keeps each
  // one's command and key hash), so the data path keeps nothing per request here. The command
  // is its table entry when that names it exactly; `name` is filled only for commands the table
  // does not name.
  struct Pending {
    proxy::PendingId id = 0;
    const resp::CommandInfo* cmd = nullptr;
    uint32_t key_hash = 0;
    std::string name;  // "NAME SUB" as sent, when cmd is null
    size_t split = 0;  // where NAME ends in `name`
  };
  static constexpr size_t kMaxAtRisk = 256;  // the newest, when a pipeline is longer
  struct SessionState {
    ClientRecord* record = nullptr;
    uint64_t id = 0;
    // The text of pending requests the command table does not name, oldest first (rare).
    std::vector<Pending> names;
    // The latest reply was one a fault acted on (delayed, truncated, the connection reset once
    // Redis answered): if the connection breaks before another reply, the client never had it.
    bool faulted = false;
    Pending faulted_req;
    std::vector<std::string> handshake;
    bool handshake_done = false;
  };
  Pending at_risk_of(SessionState& st, const proxy::PendingInfo& info) const;
  SessionState* state(const proxy::Session& s);
  static CommandIdent ident_of(const Pending& p, std::string& display);
  ClientRecord& record_named(const std::string& name);
  void sync(const proxy::Proxy& p, ClientRecord& rec, uint64_t now);
  void poll();
  void finish_handshake(SessionState& st, uint64_t now);

  proxy::Registry& registry_;
  VerdictLimits lim_;
  Clock clock_;
  uint64_t epoch_us_;
  std::map<std::string, std::unique_ptr<ClientRecord>, std::less<>> records_;
  std::unordered_map<const proxy::Session*, SessionState> sessions_;
  // Sessions' states by address, direct-mapped: many sessions take turns chunk by chunk, and
  // a hash-map lookup (a division, two dependent loads) per chunk shows.
  struct StateSlot {
    const proxy::Session* session = nullptr;
    SessionState* state = nullptr;
  };
  std::array<StateSlot, 64> state_cache_{};
  StateSlot& state_slot(const proxy::Session* s) {
    return state_cache_[(reinterpret_cast<uintptr_t>(s) >> 6) % state_cache_.size()];
  }
  uv_timer_t* timer_ = nullptr;  // heap: freed by its close callback
};

} // namespace faultline::observe
