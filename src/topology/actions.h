#pragma once
// What a profile can do to the real deployment behind faultline (profile actions
// `cluster_failover`, `migrate_slots`, `sentinel_failover`), so clients meet Redis's own replies
// to a real failover or resharding. Every step is one command to one node (redis_call.h): the
// loop never blocks. When an action has done its part, the deployment is asked to look again
// (refresh_soon), so the fronted topology follows.
//
//   cluster_failover   CLUSTER FAILOVER [FORCE|TAKEOVER] to a replica of the target master, then
//                      ROLE on it until it says master (bounded)
//   migrate_slots      per slot: SETSLOT IMPORTING on the destination, SETSLOT MIGRATING on the
//                      source, GETKEYSINSLOT + MIGRATE in batches (a pause of `pace` after each
//                      batch and each slot) until the slot is empty, SETSLOT NODE on the
//                      destination, the source and the other masters
//   sentinel_failover  SENTINEL FAILOVER <master> to a sentinel (the next if one cannot be
//                      reached), then GET-MASTER-ADDR-BY-NAME until the master changes (bounded)

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

#include "topology/cluster.h"

namespace faultline::topology {

class Front;
class Sentinel;

// What the actions act on: the running deployment (one of cluster/sentinel is set).
struct Deployment {
  uv_loop_t* loop = nullptr;
  Front* front = nullptr;
  Cluster* cluster = nullptr;
  Sentinel* sentinel = nullptr;
  std::string master_name;     // sentinel mode: --master
  uint32_t timeout_ms = 2000;  // each command
};

// A master named in a profile: "slot N" (the master serving slot N when the action runs), a
// node's "IP:PORT", its 40-character node id, or the name of its proxy ("node-IP-PORT").
// check_master_spec: the form only (at load); empty when good, else what is wrong.
std::string check_master_spec(std::string_view spec);
// The master `spec` names among `nodes`; nullptr with err set when none (or not a master).
const ClusterNode* find_master(const std::vector<ClusterNode>& nodes, std::string_view spec,
                               std::string& err);

// Progress and outcome of an action: `done` false while it runs (text: how far it got; the
// first one may come from inside the start function), then true once, always from the loop
// (ok: it did what it was asked).
using ActionReport = std::function<void(bool done, bool ok, const std::string& text)>;

// Running actions hold this; cancel() makes them stop at their next step and report nothing
// more (a migration cancelled mid-slot leaves that slot MIGRATING/IMPORTING, as redis-cli does).
class ActionHandle {
public:
  void cancel() { *cancelled_ = true; }
  std::shared_ptr<bool> token() const { return cancelled_; }

private:
  std::shared_ptr<bool> cancelled_ = std::make_shared<bool>(false);
};

// mode: "" | "force" | "takeover".
std::shared_ptr<ActionHandle> cluster_failover(const Deployment& d, const std::string& master,
                                               const std::string& mode, ActionReport report);
std::shared_ptr<ActionHandle> migrate_slots(const Deployment& d, int first, int last,
                                            const std::string& to, uint32_t batch,
                                            uint64_t pace_ms, ActionReport report);
std::shared_ptr<ActionHandle> sentinel_failover(const Deployment& d, ActionReport report);

} // namespace faultline::topology
