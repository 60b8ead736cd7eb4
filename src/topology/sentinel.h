#pragma once
// Sentinel mode (--sentinel HOST:PORT ... --master NAME): faultline in front of a Sentinel
// set-up. Every sentinel and every data node the sentinels report for the master (the master
// and its replicas) get a proxy of their own (front.h); Sentinel's answers, ROLE and INFO
// replication are rewritten to name those proxies, so a client that asks a sentinel where the
// master is connects to faultline. Looks again every refresh_ms: after a failover, the new
// master (already fronted as a replica) is reported as the master.
//
// One look at a time, against one sentinel (the last that answered first, then the others, then
// the seeds): SENTINEL MASTER, SENTINEL REPLICAS and SENTINEL SENTINELS for the master's name.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <uv.h>

#include "topology/front.h"

namespace faultline::topology {

struct SentinelOptions {
  std::vector<std::string> seeds;  // sentinels, IP:port
  std::string master;              // the name the sentinels monitor
  uint32_t refresh_ms = 1000;
  uint32_t timeout_ms = 2000;
};

struct SentinelNode {
  std::string address;   // ip:port
  std::string role;      // sentinel, master, replica
  std::string flags;     // as the sentinel reports them (s_down, o_down, disconnected...)
};

class Sentinel {
public:
  Sentinel(uv_loop_t* loop, Front& front, SentinelOptions opts);
  ~Sentinel();
  Sentinel(const Sentinel&) = delete;
  Sentinel& operator=(const Sentinel&) = delete;

  void start(std::function<void(std::string err)> done);
  void refresh_soon();
  void close(std::function<void()> done);
  const std::vector<SentinelNode>& nodes() const { return nodes_; }
  nlohmann::json json() const;

private:
  void look();
  void looked(std::string err, std::vector<SentinelNode> nodes, const std::string& from);

  uv_loop_t* loop_;
  Front& front_;
  SentinelOptions opts_;
  uv_timer_t* timer_;
  std::vector<SentinelNode> nodes_;
  std::string last_good_, last_error_;
  bool looking_ = false, again_ = false, closed_ = false;
  std::function<void(std::string)> first_;
  uint64_t looks_ = 0, failures_ = 0;
  std::shared_ptr<bool> alive_;
};

} // namespace faultline::topology
