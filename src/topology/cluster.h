#pragma once
// Cluster mode (--cluster HOST:PORT): faultline in front of a whole Redis Cluster. Discovers the
// cluster from a seed node (CLUSTER NODES), fronts every node with its own proxy (front.h), and
// looks again every refresh_ms, and at once after a MOVED or a reply naming an unknown node,
// so a failover or a new node is followed: new nodes get proxies; a node that left keeps its
// proxy (clients may still hold its address).
//
// One look at a time, each a CLUSTER NODES to one node (the last that answered first, then the
// others, then the seeds), bounded by timeout_ms.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <uv.h>

#include "topology/front.h"

namespace faultline::topology {

struct ClusterNode {
  std::string id;
  std::string address;        // ip:port as the cluster reports it
  std::string hostname;       // cluster-announce-hostname, if any
  std::vector<std::string> flags;
  std::string master_id;      // a replica's master
  std::vector<std::pair<int, int>> slots;  // masters: the ranges they serve
  bool has(std::string_view flag) const;
  bool is_master() const { return has("master"); }
};

// Parses CLUSTER NODES's text. Lines it cannot read are skipped.
std::vector<ClusterNode> parse_cluster_nodes(std::string_view text);

struct ClusterOptions {
  std::vector<std::string> seeds;   // host:port
  uint32_t refresh_ms = 1000;
  uint32_t timeout_ms = 2000;
};

class Cluster {
public:
  Cluster(uv_loop_t* loop, Front& front, ClusterOptions opts);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // The first look; `done` with an empty error once every node has its proxy.
  void start(std::function<void(std::string err)> done);
  // Look again as soon as the look in flight (if any) ends.
  void refresh_soon();
  // Stops looking; `done` once its timer is closed.
  void close(std::function<void()> done);

  const std::vector<ClusterNode>& nodes() const { return nodes_; }
  // The node serving `slot` (its address), or empty.
  std::string owner_of(unsigned slot) const;
  nlohmann::json json() const;

private:
  void look();
  void looked(std::string err, std::vector<ClusterNode> nodes, const std::string& from);
  std::vector<std::string> candidates() const;

  uv_loop_t* loop_;
  Front& front_;
  ClusterOptions opts_;
  uv_timer_t* timer_;
  std::vector<ClusterNode> nodes_;
  std::string last_good_;
  bool looking_ = false, again_ = false, closed_ = false;
  std::function<void(std::string)> first_;
  uint64_t looks_ = 0, failures_ = 0;
  uint64_t looked_ms_ = 0;
  std::string last_error_;
  std::shared_ptr<bool> alive_;     // calls in flight check it: the Cluster may be gone
};

} // namespace faultline::topology
