#pragma once
// Runs one profile's timeline on the loop: one timer walks the sorted start/end events of a
// pass, each step does its one thing to a proxy and is undone when its `for` runs out (or at the
// end of the pass), a looping profile starts the next pass, and every step leaves a record of
// what it injected for the summary and the API.
//
//   pass start ─► [events sorted by time, ends before starts] ─► pass end ─► loop? ─► finished
//
// Proxies are looked up by name at each event, so a proxy deleted through the API while a
// profile runs only makes its steps no-ops (logged). The runner never owns a proxy.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "profile/profile.h"
#include "topology/actions.h"
#include "uv/timer.h"

namespace faultline::proxy {
class Proxy;
class Registry;
} // namespace faultline::proxy

namespace faultline::profile {

// A change on the timeline, for the traffic log (fault windows in `faultline inspect`).
struct Event {
  enum class Kind { ProfileStart, StepStart, StepEnd, ProfileEnd };
  Kind kind;
  std::string profile;
  uint64_t elapsed_ms = 0; // since the profile started (real time)
  std::string step;        // label (steps only)
  std::string proxy;       // steps only
  std::string what;        // Step::describe(), or the profile's end state
};
std::string_view to_string(Event::Kind k);

// One `[expect]` verdict for one proxy of a profile.
struct Verdict {
  enum class State { Pending, Pass, Fail };
  std::string proxy, key, expected, measured;
  State state = State::Pending;
};
std::string_view to_string(Verdict::State s); // "pending", "pass", "FAIL"

// What clients did is known to the App's client verdicts, not to the runner: it asks through
// these. Unset: a profile's [expect] is reported as undecided and never fails anything.
struct ClientJudge {
  // The profile starts: forget what its proxies' clients did before (only with [expect]).
  std::function<void(const Profile&)> begin;
  // The verdicts now, for every declared proxy; `finished`: the timeline is over.
  std::function<std::vector<Verdict>(const Profile&, bool finished)> judge;
  // What the clients of each declared proxy did: {proxy: GET /proxies/{name}/clients}.
  std::function<nlohmann::json(const Profile&)> clients;
};

struct RunnerOptions {
  double speed = 1.0;  // the timeline runs this many times faster (toxic attributes unchanged)
  bool print = true;   // step changes and the summary on stderr
  bool tty = false;    // with print: one rewritten status line instead of a line per change
  std::function<void(const Event&)> on_event;
  std::function<void()> on_finished; // the timeline reached its end and every [expect]
                                     // verdict is decided (not on stop())
  ClientJudge judge;
  // What deployment actions (cluster_failover, migrate_slots, sentinel_failover) act on; null
  // outside cluster and sentinel mode (such a step then does nothing, with a note).
  const topology::Deployment* deployment = nullptr;
};

class Runner {
public:
  enum class State { Idle, Running, Finished, Stopped };

  Runner(proxy::Registry& registry, Profile profile, RunnerOptions opts);
  ~Runner(); // stops (and undoes) a running timeline
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Finds or creates the declared proxies, applies the seed and starts the first pass.
  // False with err set (nothing changed) when a proxy is missing or cannot be created.
  bool start(std::string& err);
  // Undoes whatever is active and ends the run. Idempotent. `by` says who stopped it (the
  // report's "stopped_by": "DELETE /profiles/NAME", "POST /reset", ...).
  void stop(std::string by = {});

  State state() const { return state_; }
  // The timeline ended and [expect] verdicts are still being decided.
  bool judging() const { return judging_; }
  // Final verdicts (empty until decided, or without [expect]).
  const std::vector<Verdict>& verdicts() const { return verdicts_; }
  bool expectations_failed() const;
  // Called once the verdicts are final (with whether any failed).
  void on_verdicts(std::function<void(bool failed)> cb) { on_verdicts_ = std::move(cb); }
  const Profile& profile() const { return profile_; }
  uint64_t elapsed_ms() const;
  nlohmann::json report() const;
  std::string summary() const; // the end-of-run table
  // What the clients of its proxies did, one line each (ClientJudge::clients); with [expect],
  // printed above the verdicts rather than in summary().
  std::string clients_text() const;
  std::string status_line() const;

private:
  struct Record {
    size_t step;           // index into profile_.steps
    uint64_t pass = 1;
    uint64_t started_ms = 0, ended_ms = 0; // real time since the profile started
    bool active = false, ended = false;
    std::string note;      // why nothing happened, when nothing did
    // What the step injected.
    std::shared_ptr<const toxics::ToxicImpl> impl; // AddToxic: the instance we added
    uint64_t commands_faulted = 0;
    uint64_t connections_dropped = 0;
    uint64_t connections_refused = 0;
    uint64_t connections_affected = 0; // opened while a toxic, disable or accept mode was active
    uint64_t bytes_delayed = 0;        // through a delaying toxic's stream during its window
    uint64_t base_connections = 0, base_refused = 0, base_bytes = 0;
    // A deployment action: it runs on after its step (the record is ended at once); its
    // progress and outcome land here, shared with the action's callbacks.
    struct Outcome {
      std::string text;
      bool done = false, ok = false;
    };
    std::shared_ptr<Outcome> outcome;
    std::shared_ptr<topology::ActionHandle> action;
  };
  struct Ev {
    uint64_t at_ms; // profile time within the pass
    bool end;
    size_t step;
  };

  void start_pass();
  void schedule();
  void on_timer();
  void begin(size_t step);
  void begin_deployment(Record& r, const Step& s);
  void finish(size_t step); // the step's time is up
  void end_record(Record& r, const char* how);
  void finish_run(State s);
  void judge_until_decided(); // polls the judge after the timeline until nothing is pending
  void decide(std::vector<Verdict> v);
  std::string verdicts_text(const std::vector<Verdict>& v) const;
  uint64_t judge_deadline_ms() const; // how long after the end pending verdicts may wait
  void emit(Event::Kind k, const Record* r, std::string what = {});
  void print_change(const Record& r, bool start);
  void refresh_status();
  proxy::Proxy* find_proxy(const std::string& name);
  uint64_t stream_bytes(proxy::Proxy& p, toxics::Stream s) const;
  std::string injected_text(const Record& r) const;
  nlohmann::json record_json(const Record& r) const;

  proxy::Registry& registry_;
  Profile profile_;
  RunnerOptions opts_;
  State state_ = State::Idle;
  std::unique_ptr<uv::Timer> timer_, status_timer_;
  uint64_t start_real_ = 0;      // uv_now at start
  uint64_t pass_start_real_ = 0; // uv_now at the start of the current pass
  uint64_t pass_ = 0;
  uint64_t end_real_ = 0;
  std::vector<Ev> events_;
  size_t next_ = 0;
  std::vector<Record> records_;       // every step started, in order (bounded)
  std::vector<size_t> open_;          // records_ indices of active steps
  std::vector<std::ptrdiff_t> by_step_; // step index → its record in this pass (-1: none)
  std::vector<std::string> created_;  // proxies the profile created
  size_t dropped_records_ = 0;
  bool judging_ = false;
  uint64_t judge_start_ = 0;
  uint64_t judge_deadline_ms_ = 0; // judge_deadline_ms(), worked out once when judging starts
  std::unique_ptr<uv::Timer> judge_timer_;
  std::vector<Verdict> verdicts_;
  std::function<void(bool)> on_verdicts_;
  std::string stopped_by_; // who stopped a Stopped run
};

// Holds the profile that runs (at most one at a time) and the reports of the last few that
// ended. The command line's --profile and the API's /profiles both go through it.
class Manager {
public:
  Manager(proxy::Registry& registry, RunnerOptions defaults)
      : registry_(registry), defaults_(std::move(defaults)) {}
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  struct Conflict : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  // Starts p. Another one running: Conflict unless replace (then it is stopped first).
  // Start failures throw std::runtime_error with the message.
  Runner& start(Profile p, bool replace, std::function<void()> on_finished = {},
                std::optional<double> speed = std::nullopt);
  // Stops the running profile of that name. False if none runs under that name.
  bool stop(std::string_view name, std::string by = {});
  // Stops whatever profile runs (POST /reset). The name of the one stopped, or empty.
  std::string stop_running(std::string by);
  Runner* running();
  const Runner* find(std::string_view name) const; // running, or the latest that ended
  nlohmann::json list() const;
  // Stops everything and frees the runners' timers (call before the loop ends).
  void shutdown();
  RunnerOptions& defaults() { return defaults_; }
  // How profiles given to this run are loaded (its mode: POST /profiles checks actions by it).
  LoadOptions& load_options() { return load_options_; }

private:
  proxy::Registry& registry_;
  RunnerOptions defaults_;
  LoadOptions load_options_;
  std::vector<std::unique_ptr<Runner>> runners_; // the last is the newest
};

} // namespace faultline::profile
