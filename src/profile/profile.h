#pragma once
// A chaos profile: the proxies it acts on and a timeline of steps, read from TOML (toml++) or
// from the same structure in JSON (the control API). Loading validates everything that can be
// known without a running proxy (keys, types, durations, toxic attributes, overlaps, steps past
// the end) and flattens phases into one sorted list of step instances, so the runner only has
// to follow a list. Errors read "FILE:LINE:COL: what is wrong".

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "toxics/toxic.h"

namespace faultline::profile {

enum class Action {
  AddToxic,        // toxic = {...}; removed when the step ends
  Disable,         // close the listener and every connection; re-enabled when the step ends
  Enable,          // instantaneous
  DropConnections, // instantaneous: close every current connection (reset = true: RST)
  AcceptReset,     // accept, then reset every new connection; normal again when the step ends
  AcceptHang,      // accept, then never forward; normal again when the step ends
  // On the real deployment behind faultline (topology/actions.h); no proxy, started at `at`
  // and left to run (no `for`): what they change is Redis's own doing and is not undone.
  ClusterFailover, // CLUSTER FAILOVER on a replica of `master`
  MigrateSlots,    // move `slots` to the master `to`
  SentinelFailover,// SENTINEL FAILOVER <--master>
};
std::string_view to_string(Action a);

struct ProxyDecl {
  std::string name;
  std::string listen;   // empty: the proxy must already exist (command line)
  std::string upstream; // empty: idem
};

// What a run fronts: profile actions on the deployment need the matching mode.
enum class Mode { Single, Cluster, Sentinel };
std::string_view to_string(Mode m);

struct LoadOptions {
  // The run's mode (--cluster, --sentinel, neither). Unset (`faultline profile check`): actions
  // are not checked against a mode.
  std::optional<Mode> mode;
};

// The fields of a deployment action (Action::ClusterFailover, MigrateSlots, SentinelFailover).
struct DeploymentSpec {
  std::string master;  // cluster_failover: the master a replica of which takes over
  std::string mode;    // cluster_failover: "", "force", "takeover"
  int first_slot = 0, last_slot = 0; // migrate_slots: `slots`
  std::string to;      // migrate_slots: the destination master
  uint32_t batch = 10; // migrate_slots: keys per MIGRATE
  uint64_t pace_ms = 0; // migrate_slots: pause after each batch and each slot
};

// What a toxic step adds, as the API would receive it. The implementation is made afresh each
// time the step starts (RESP toxics count their matches), after being checked once at load.
struct ToxicSpec {
  std::string name; // default "<type>_<stream>", as Toxiproxy names toxics
  std::string type;
  toxics::Stream stream = toxics::Stream::Downstream;
  double toxicity = 1.0;
  nlohmann::json attributes = nlohmann::json::object();
};

// One occurrence of a step on the flattened timeline.
struct Step {
  std::string label;     // the step's name, or a description of what it does
  std::string proxy;     // empty for deployment actions
  Action action = Action::AddToxic;
  ToxicSpec toxic;       // AddToxic
  bool reset = false;    // DropConnections: RST instead of FIN
  DeploymentSpec deployment; // ClusterFailover, MigrateSlots, SentinelFailover
  uint64_t at_ms = 0;    // from the start of the profile (one pass, when it loops)
  std::optional<uint64_t> for_ms; // none: lasts until the end of the pass (or instantaneous)
  std::string phase;     // empty for top-level steps
  int repetition = 0;    // 1-based within its phase, 0 outside phases
  int line = 0;          // where the step is written (0 when it came from JSON)

  bool instantaneous() const {
    return action == Action::Enable || action == Action::DropConnections || on_deployment();
  }
  bool on_deployment() const {
    return action == Action::ClusterFailover || action == Action::MigrateSlots ||
           action == Action::SentinelFailover;
  }
  // When what the step did is undone (end of the pass when it has no `for`).
  uint64_t end_ms(uint64_t length_ms) const {
    return instantaneous() ? at_ms : for_ms ? at_ms + *for_ms : length_ms;
  }
  std::string describe() const; // "resp_error loading on redis", "disable redis", ...
};

struct Profile {
  std::string name;
  std::string description;
  std::string source; // file path, or "POST /profiles"
  std::optional<uint64_t> seed;
  bool loop = false;
  uint64_t length_ms = 0; // one pass: `duration`, or the end of the last step
  // Default {"redis"}; in cluster or sentinel mode, a profile that declares none acts on every
  // proxy of the deployment: empty here, filled with them when the run starts (all_proxies).
  std::vector<ProxyDecl> proxies;
  bool all_proxies = false;
  std::vector<Step> steps;        // sorted by at_ms, then by order of writing
  // `[expect]`: what the clients must have done (observe::parse_expectations checks it at
  // load); judged against each declared proxy's client verdicts once the timeline ends.
  nlohmann::json expect = nlohmann::json::object();
  bool has_expectations() const { return !expect.empty(); }
};

struct LoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws LoadError ("FILE:LINE:COL: message"; "FILE: message" when there is no position).
Profile load_file(const std::string& path, const LoadOptions& opts = {});
Profile load_toml(std::string_view text, const std::string& source_name,
                  const LoadOptions& opts = {});
Profile load_json(const nlohmann::json& doc, const std::string& source_name,
                  const LoadOptions& opts = {});

// "250ms", "5s", "1.5s", "2m", "1m30s". False with err set otherwise.
bool parse_duration(std::string_view text, uint64_t& ms, std::string& err);
std::string format_duration(uint64_t ms); // "0s", "250ms", "3s", "1.5s", "2m", "1m30s"

nlohmann::json to_json(const Step& s);

} // namespace faultline::profile
