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
//
// Per client and per time range: besides the live ClientRecord of a proxy, the observer keeps a
// bounded log of the events that fed it (VerdictLog), each with its connection, and the client
// each connection belongs to (its name, else its address). A view for one client or a time range
// replays the selected events into a fresh ClientRecord: the same rules, fewer facts.

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
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
  size_t retry_sequences = 16;        // retry sequences (failure to first success) kept
  size_t events = 16384;              // verdict events kept per proxy, for per-client views
  size_t identities = 4096;           // connections whose client identity is remembered
  size_t clients = 256;               // client identities listed per proxy
};

// A command as the resend tracker compares it: command (and subcommand), first key, and a hash
// of the whole argument list. The arguments themselves are never kept (they may be secrets).
struct CommandIdent {
  uint64_t cmd_hash = 0;      // hash of the upper-cased name and subcommand
  uint32_t key_hash = 0;      // proxy::key_hash() of the first key, 0 if none
  uint64_t args_hash = 0;     // args_hash() of the request; 0 when not known
  bool setup = false;         // connection setup (is_connection_setup): never a resend
  std::string_view name;      // for display; must outlive the call (static table or copied)
};

// A 64-bit hash of a request: its argument count, its size in bytes, and each argument the
// parser recorded, length and bytes (by default the name and the next two arguments, each
// whole, or its first 64 bytes when the frame spanned reads; 32 arguments and longer prefixes
// while the traffic log is on). Requests that differ only past those, with the same size,
// compare equal. Never 0.
uint64_t args_hash(const resp::RequestFrame& f);

// Commands that set a connection up rather than do the application's work, and that a client
// replays on every new connection: AUTH, HELLO, SELECT, CLIENT SETNAME/SETINFO/TRACKING/NO-EVICT/
// NO-TOUCH, READONLY, READWRITE, the SUBSCRIBE family, and what the command table puts in the
// @connection category without @admin or @dangerous (PING, ECHO, COMMAND, CLIENT ID, RESET, ...).
// They are never resends. `cmd` may be null (a name the table does not know).
bool is_connection_setup(std::string_view name, std::string_view sub,
                         const resp::CommandInfo* cmd);

// "growing", "constant", "shrinking", "irregular", or "unknown" (fewer than 3 intervals).
std::string_view classify_backoff(const std::vector<double>& intervals_ms);
// The backoff of several retry sequences: the shape the classified ones (3 or more intervals)
// agree on, "irregular" when they disagree, "unknown" when none has 3 intervals.
std::string_view classify_retries(const std::vector<std::vector<double>>& sequences_ms);

// What one proxy's clients did. Times are microseconds on one monotonic clock.
class ClientRecord {
public:
  explicit ClientRecord(VerdictLimits limits = {}) : lim_(limits) {}

  // A connection was accepted. When the latest connection of this proxy ended in a failure
  // (reset, refused upstream, dropped...) before this one, with no good reply since, and the
  // fault that failed it is still in effect (or none was set: Redis itself failed it), the time
  // from that failure to this connect is a reconnect interval: the client's backoff.
  void on_connect(uint64_t now_us);
  // A connection ended; `failed` if it ended by a fault rather than by either peer's choice.
  void on_connection_end(uint64_t now_us, bool failed);
  // A request. True if it repeats a failed command (the same command with the same arguments,
  // after its failure); recorded. It is a resend when the failure cut the reply off (the
  // client cannot know whether Redis ran it), a retry after an error otherwise (LOADING,
  // READONLY, an injected error: Redis did not run it). Connection setup is neither.
  bool on_request(uint64_t now_us, const CommandIdent& c, uint64_t session);
  // A command failed: `cut_off`, its connection broke before the reply reached the client;
  // else it got an injected or unavailability error. Watch for it to come again. Setup
  // commands are not watched.
  void on_command_failed(uint64_t now_us, const CommandIdent& c, uint64_t session,
                         std::string_view reason, bool cut_off = true);
  // The client moved on: a request it sent at `sent_us`, neither a resend nor setup, got a good
  // reply. Whatever failed before then and was not sent again was given up: the same command
  // later is the application's next one, not a resend.
  void moved_on(uint64_t sent_us);
  // A successful reply reached the client. Ends a retry sequence and a fault window's wait.
  void on_success(uint64_t now_us);
  // The data path's shortcuts: when no failed command is watched, a request is only counted
  // (on_request() would return false at once); when no ended window waits for its recovery
  // and no retry sequence for its first good reply, a success is only counted. Both spare the
  // caller a clock read and any hashing.
  bool watching_resends() const { return !candidates_.empty(); }
  void count_request() { ++commands_seen_; }
  void count_requests(uint64_t n) { commands_seen_ += n; }
  bool recovery_pending() const {
    return retrying_ ||
           (!windows_.empty() && windows_.back().end_us && !windows_.back().recovered_us);
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
    bool cut_off;              // a resend; false: a retry after an error reply
  };
  struct Handshake {
    uint64_t at_us;
    uint64_t session;
    std::vector<std::string> commands;
  };
  // The connects from a failed connection to the first good reply after it: the client's
  // retries. Their intervals are its backoff; connects after the good reply are ordinary ones.
  struct RetrySequence {
    uint64_t start_us = 0;                 // the failure
    std::optional<uint64_t> recovered_us;  // the first good reply after it
    std::vector<double> intervals_ms;      // failure (or failed attempt) to the next connect
  };

  uint64_t connects() const { return connects_; }
  uint64_t peak_connects_per_second() const { return peak_cps_; }
  uint64_t resends() const { return resends_; }
  uint64_t retries_after_errors() const { return error_retries_; }
  bool faulted() const { return faulted_; }
  const std::vector<std::string>& faults() const { return faults_; }
  const std::deque<Window>& windows() const { return windows_; }
  const std::deque<double>& reconnect_intervals_ms() const { return intervals_; }
  // Retry sequences, oldest first; the last one may still be open (no good reply yet).
  const std::deque<RetrySequence>& retries() const { return retries_; }
  // The backoff over the retry sequences (classify_retries), and the intervals it shows: the
  // latest sequence with 3 or more intervals, else the latest with any.
  std::string_view backoff() const;
  std::vector<double> backoff_intervals_ms() const;
  // Worst time to recover over the windows that ended and recovered; nullopt when none did.
  std::optional<double> worst_time_to_recover_ms() const;
  // Windows that ended and have not recovered (yet), and how long the oldest has waited.
  size_t unrecovered_windows() const;
  std::optional<double> longest_unrecovered_ms(uint64_t now_us) const;
  // For a view of a time range: forgets the windows that were over (ended and recovered)
  // before `since_us`.
  void drop_windows_before(uint64_t since_us);

  // `epoch_us`: the instant times are shown relative to.
  nlohmann::json to_json(uint64_t now_us, uint64_t epoch_us) const;

private:
  Window* current();       // the window events belong to: open, or ended and not yet recovered
  void open_window(uint64_t now_us);
  void add_fault_labels(Window& w, const std::vector<std::string>& faults);

  VerdictLimits lim_;
  uint64_t connects_ = 0, failed_connections_ = 0, resends_ = 0, successes_ = 0;
  uint64_t error_retries_ = 0;
  uint64_t peak_cps_ = 0, peak_at_us_ = 0;
  std::deque<uint64_t> recent_connects_;
  std::deque<uint64_t> last_second_;
  std::deque<std::pair<uint64_t, uint64_t>> per_second_;  // (second since epoch 0, count)
  // The latest connection event was a failure (at last_failure_us_): the next connect is a
  // reconnect, and the wait before it is the client's backoff.
  bool last_failed_ = false;
  uint64_t last_failure_us_ = 0;
  bool last_failure_faulted_ = false;  // the proxy was faulted when it failed
  std::deque<double> intervals_;
  // A failed connection with no good reply since: connects now are retries.
  bool retrying_ = false;
  std::deque<RetrySequence> retries_;
  std::deque<Window> windows_;
  bool faulted_ = false;
  std::vector<std::string> faults_;
  struct Candidate {
    uint64_t at_us;
    uint64_t cmd_hash;
    uint32_t key_hash;
    uint64_t args_hash;  // 0: not known (sent before any fault): compared on command and key
    uint64_t session;
    std::string reason;
    bool cut_off;
  };
  std::deque<Candidate> candidates_;
  std::deque<Resend> recent_resends_;
  std::map<std::string, uint64_t> resent_by_command_;
  std::deque<Handshake> handshakes_;
  std::map<std::string, uint64_t> handshake_counts_;
  uint64_t handshake_connections_ = 0;
  uint64_t commands_seen_ = 0;
};

// The events that fed a proxy's ClientRecord, each with its connection, so that a view for one
// client or a time range is rebuilt by replaying the selected ones into a fresh ClientRecord.
// Bounded (VerdictLimits::events, 48 bytes each: 0.8 MB per proxy at most, plus the strings of
// failure, fault and handshake events): the oldest go first, so a range older than the log is
// incomplete (complete_since_us() says from when it is whole). Plain requests and replies are
// not one event each: a connection's counts are logged with its next event (or just before it,
// when that event needs n1 and n2 for itself), its end, or the query.
//
// Kept in blocks of kBlock events, each allocated once, when the log first grows into it: a few
// large allocations instead of one small one every few connections, which would lie between
// the connections' short-lived buffers and keep the heap from giving their pages back.
class VerdictLog {
public:
  // The strings an event carries, which few kinds need: one pointer, null while empty.
  class Strings {
  public:
    Strings() = default;
    Strings(const Strings& o) { *this = o; }
    Strings(Strings&&) noexcept = default;
    Strings& operator=(const Strings& o) {
      if (this != &o) v_ = o.v_ ? std::make_unique<std::vector<std::string>>(*o.v_) : nullptr;
      return *this;
    }
    Strings& operator=(Strings&&) noexcept = default;
    Strings& operator=(std::vector<std::string> v) {
      v_ = v.empty() ? nullptr : std::make_unique<std::vector<std::string>>(std::move(v));
      return *this;
    }
    Strings& operator=(std::initializer_list<std::string> l) {
      return *this = std::vector<std::string>(l);
    }
    const std::vector<std::string>& get() const { return v_ ? *v_ : none(); }
    operator const std::vector<std::string>&() const { return get(); }
    bool empty() const { return !v_; }
    std::string_view at(size_t i) const {
      return v_ && i < v_->size() ? std::string_view((*v_)[i]) : std::string_view();
    }

  private:
    static const std::vector<std::string>& none();
    std::unique_ptr<std::vector<std::string>> v_;
  };
  // 48 bytes: what only some kinds need shares fields (n1, n2) or sits behind one pointer.
  struct Event {
    enum class Kind : uint8_t {
      Faults, PointFault, Connect, End, Request, Failed, MovedOn, Success, Handshake, Counts
    };
    Kind kind = Kind::Counts;
    bool flag = false;             // Faults: faulted; End: failed; Failed: cut off
    bool setup = false;            // Request: connection setup
    uint32_t key_hash = 0;         // Request, Failed
    uint64_t at_us = 0;
    uint64_t session = 0;          // 0 for the proxy's own events (faults)
    // Counts, and the counts logged with a Connect, End, Success or Handshake: requests and
    // successes. MovedOn: n1, the request's time. Request, Failed: the command's hash
    // (CommandIdent::cmd_hash) and its arguments' (args_hash).
    uint64_t n1 = 0, n2 = 0;
    // Faults: their labels; Handshake: its commands; Request, Failed: the command, then (Failed)
    // the reason; PointFault: the fault.
    Strings list;

    // Whether n1 and n2 are free to carry the connection's counts.
    static bool carries_counts(Kind k) {
      return k == Kind::Connect || k == Kind::End || k == Kind::Success ||
             k == Kind::Handshake || k == Kind::Counts;
    }
    std::string_view name() const { return list.at(0); }
    std::string_view reason() const { return list.at(1); }
    CommandIdent ident() const { return {n1, key_hash, n2, setup, name()}; }
    void set_ident(const CommandIdent& c) {
      n1 = c.cmd_hash;
      key_hash = c.key_hash;
      n2 = c.args_hash;
      setup = c.setup;
    }
  };
  struct Filter {
    std::optional<std::string> client;  // a name or an address, as clients() lists them
    uint64_t since_us = 0;
    uint64_t until_us = UINT64_MAX;
  };
  static constexpr size_t kBlock = 256;  // events per block (12 kB)

  explicit VerdictLog(VerdictLimits limits = {}) : lim_(limits) {}
  void add(Event e);
  // The client a connection belongs to: its address at first, its name once it sets one.
  void identify(uint64_t session, std::string client);
  const std::string* identity(uint64_t session) const;
  // Replays what the filter selects into `out` (a fresh record): the connections' events in
  // the range, of the client if one is given; the proxy's fault events before the range's end
  // whatever the client (so a fault in effect at since_us is one), then drops the windows that
  // ended before since_us.
  void replay(const Filter& f, ClientRecord& out) const;
  // Client identities seen, oldest first.
  std::vector<std::string> clients() const;
  // The time of the oldest event kept, when older ones were dropped.
  std::optional<uint64_t> complete_since_us() const;
  size_t size() const { return size_; }
  void clear();

private:
  // The i-th event kept, oldest first.
  const Event& at(size_t i) const {
    size_t p = (head_ + i) % lim_.events;
    return blocks_[p / kBlock][p % kBlock];
  }

  VerdictLimits lim_;
  // A ring of lim_.events slots; the block of slot p is blocks_[p / kBlock].
  std::vector<std::unique_ptr<Event[]>> blocks_;
  size_t head_ = 0, size_ = 0;
  bool dropped_ = false;
  // Client identities, each kept once however many connections it names (the connections of
  // one address share it): the text, and how many connections it names.
  using Ident = std::pair<const std::string, size_t>;
  std::map<std::string, size_t, std::less<>> idents_;
  // Connection -> client (newest), by connection id, oldest first: 16 bytes a connection.
  std::deque<std::pair<uint64_t, Ident*>> identity_;
  void unref(Ident* who);
  std::map<std::string, uint64_t, std::less<>> clients_;    // client -> order first seen
  uint64_t next_client_ = 0;
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

  // JSON for GET /proxies/{name}/clients: every client over all time, or a view of one client
  // and/or a time range (times in the JSON's clock: ms since epoch_us()).
  struct Query {
    std::optional<std::string> client;
    std::optional<double> since_ms, until_ms;
  };
  nlohmann::json json_for(const proxy::Proxy& p, const Query& q = {});
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
    uint64_t args_hash = 0;  // from SessionState::hashes, when it was sent under a fault
    std::string name;  // "NAME SUB" as sent, when cmd is null
    size_t split = 0;  // where NAME ends in `name`
  };
  static constexpr size_t kMaxAtRisk = 256;  // the newest, when a pipeline is longer
  // A proxy's live record, the log a per-client view is replayed from, and a count of the fault
  // windows that ended (each connection logs its first good reply after each).
  struct Tracked {
    explicit Tracked(const VerdictLimits& l) : rec(l), log(l) {}
    ClientRecord rec;
    VerdictLog log;
    uint64_t ended = 0;
  };
  // A FIFO of (request id, hash of its arguments) in one vector: 16 bytes an entry (a std::deque
  // takes some 600 bytes for its first).
  class HashFifo {
  public:
    using Entry = std::pair<proxy::PendingId, uint64_t>;
    bool empty() const { return head_ == v_.size(); }
    size_t size() const { return v_.size() - head_; }
    const Entry& front() const { return v_[head_]; }
    void push_back(Entry e) { v_.push_back(e); }
    void pop_front() {
      if (++head_ == v_.size()) {
        v_.clear();
        head_ = 0;
      } else if (head_ >= 32 && 2 * head_ >= v_.size()) {
        v_.erase(v_.begin(), v_.begin() + ptrdiff_t(head_));
        head_ = 0;
      }
    }
    std::vector<Entry>::const_iterator begin() const { return v_.begin() + ptrdiff_t(head_); }
    std::vector<Entry>::const_iterator end() const { return v_.end(); }

  private:
    std::vector<Entry> v_;
    size_t head_ = 0;
  };
  // What a connection needs only after a failure, under a fault, or during its handshake:
  // allocated when first needed, freed when its handshake is done or at the observer's sweep
  // once nothing in it is in use.
  struct Rare {
    // The hash of each request's arguments sent while a fault was in effect (or a failed
    // command was watched, or the handshake was open), until its reply: what a failure cuts
    // off is compared on it. At most kMaxAtRisk, 16 bytes each.
    HashFifo hashes;
    // The first request since a failed command was watched that is neither a resend nor setup:
    // its good reply means the client moved on (ClientRecord::moved_on).
    proxy::PendingId new_work = 0;
    uint64_t new_work_us = 0;
    // The text of pending requests the command table does not name, oldest first.
    std::vector<Pending> names;
    // The request whose reply a fault acted on last (SessionState::faulted).
    Pending faulted_req;
    // The handshake so far; dropped once it is done and recorded.
    std::vector<std::string> handshake;
    // Nothing a later event needs (faulted_req counts only while SessionState::faulted).
    bool idle() const {
      return hashes.empty() && !new_work && names.empty() && handshake.empty();
    }
  };
  // 56 bytes a connection; the rest, when needed, in Rare.
  struct SessionState {
    Tracked* tracked = nullptr;
    uint64_t id = 0;
    // Counted, not yet logged (VerdictLog: logged with the connection's next event).
    uint64_t requests = 0, successes = 0;
    // Tracked::ended at the last good reply logged; ~0: none yet.
    uint64_t success_logged = ~uint64_t{0};
    std::unique_ptr<Rare> rare;
    // The latest reply was one a fault acted on (delayed, truncated, the connection reset once
    // Redis answered): if the connection breaks before another reply, the client never had it
    // (Rare::faulted_req).
    bool faulted = false;
    bool handshake_done = false;
    ClientRecord& rec() const { return tracked->rec; }
    Rare& more() {
      if (!rare) rare = std::make_unique<Rare>();
      return *rare;
    }
  };
  Pending at_risk_of(SessionState& st, const proxy::PendingInfo& info) const;
  // Replies answered up to `id` (inclusive): bookkeeping that waits for them.
  void answered(SessionState& st, proxy::PendingId id, bool good);
  void log(SessionState& st, VerdictLog::Event e);
  void flush_counts(SessionState& st, uint64_t now);
  void good_reply(SessionState& st);
  // The slow path for a reply: something waits for a good one, or for its id.
  static bool reply_watch(const SessionState& st) {
    return (st.rare && (!st.rare->names.empty() || !st.rare->hashes.empty() ||
                        st.rare->new_work)) ||
           st.success_logged != st.tracked->ended || st.rec().recovery_pending();
  }
  SessionState* state(const proxy::Session& s);
  static CommandIdent ident_of(const Pending& p, std::string& display);
  Tracked& tracked_named(const std::string& name);
  ClientRecord& record_named(const std::string& name) { return tracked_named(name).rec; }
  void sync(const proxy::Proxy& p, Tracked& t, uint64_t now);
  void poll();
  // Once a second (every polls_per_sweep_ polls): frees the Rare parts nothing uses any more.
  void sweep();
  void finish_handshake(SessionState& st, uint64_t now);

  proxy::Registry& registry_;
  VerdictLimits lim_;
  Clock clock_;
  uint64_t epoch_us_;
  std::map<std::string, std::unique_ptr<Tracked>, std::less<>> records_;
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
  uint32_t polls_per_sweep_ = 100, polls_ = 0;
};

} // namespace faultline::observe
