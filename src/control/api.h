#pragma once

// The control API: Toxiproxy's HTTP API (same paths, JSON field names, status codes and error
// strings, so existing Toxiproxy clients work unchanged), plus faultline's additions beside it:
// a proxy's `accept` mode, its live connections, and Prometheus metrics on /metrics.
//
// Every handler runs on the loop that owns the proxies; there is no locking. Handlers report bad
// input by throwing ApiError, and one wrapper turns that (and JSON or toxic parse errors) into
// the {"error": "...", "status": N} reply, so no handler formats its own error.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/http_server.h"
#include "uv/confined_open.h"

namespace faultline::proxy {
class Proxy;
class Registry;
} // namespace faultline::proxy

namespace faultline::observe {
class ClientVerdicts;
class Metrics;
class TrafficLog;
struct TrafficLogConfig;
} // namespace faultline::observe

namespace faultline::profile {
class Manager;
} // namespace faultline::profile

namespace faultline::control {

// An error reply: Toxiproxy's message text and status code.
struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& message) : std::runtime_error(message), status(status) {}
  int status;
};

class Api {
public:
  // Appends one or more complete metric families to the /metrics body.
  using MetricsSection = std::function<void(std::string& out)>;

  explicit Api(proxy::Registry& registry);
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  // The one route table. The Router refers to this Api, which must outlive the server using it.
  Router router();

  // Later parts (per-command metrics) add their families here; they follow the proxy families.
  void add_metrics_section(MetricsSection section) { metrics_.push_back(std::move(section)); }
  std::string metrics_text() const;

  // What clients did about the faults (GET/DELETE /proxies/{name}/clients). Not owned; without
  // it those routes answer 404.
  void set_client_verdicts(observe::ClientVerdicts* v) { clients_ = v; }

  // The traffic log (GET|POST /log, GET /proxies/{name}/traffic) and per-command metrics
  // (GET /proxies/{name}/stats). Not owned; without them those routes answer 404.
  void set_observability(observe::TrafficLog* traffic, observe::Metrics* metrics) {
    traffic_ = traffic;
    command_metrics_ = metrics;
  }

  // The directory requests may name files in (--log-dir). Empty: a request that names a file
  // (POST /log with a path) is refused with 403.
  void set_file_dir(uv::ConfinedDir dir) { file_dir_ = std::move(dir); }

  // Chaos profiles (/profiles). Not owned; without it those routes answer 404.
  void set_profiles(profile::Manager* m) { profiles_ = m; }

  // GET /topology: the deployment faultline fronts (topology/cluster.h). Without it, the
  // proxies as they are ("mode": "single").
  void set_topology(std::function<nlohmann::json()> f) { topology_ = std::move(f); }

  // JSON of one proxy as GET /proxies/{name} shows it.
  static nlohmann::json proxy_json(const proxy::Proxy& p);

private:
  void version(Request& req, Response& res);
  void list_proxies(Request& req, Response& res);
  void create_proxy(Request& req, Response& res);
  void populate(Request& req, Response& res);
  void reset(Request& req, Response& res);
  void show_proxy(Request& req, Response& res);
  void update_proxy(Request& req, Response& res);
  void delete_proxy(Request& req, Response& res);
  void list_toxics(Request& req, Response& res);
  void create_toxic(Request& req, Response& res);
  void show_toxic(Request& req, Response& res);
  void update_toxic(Request& req, Response& res);
  void delete_toxic(Request& req, Response& res);
  void list_connections(Request& req, Response& res);
  void drop_connections(Request& req, Response& res);
  void metrics(Request& req, Response& res);
  void proxy_stats(Request& req, Response& res);
  void proxy_traffic(Request& req, Response& res);
  void show_log(Request& req, Response& res);
  void update_log(Request& req, Response& res);
  void show_clients(Request& req, Response& res);
  void show_topology(Request& req, Response& res);
  void clear_clients(Request& req, Response& res);

  void start_profile(Request& req, Response& res);
  void list_profiles(Request& req, Response& res);
  void show_profile(Request& req, Response& res);
  void stop_profile(Request& req, Response& res);

  proxy::Proxy& find_proxy(const Request& req);
  void confine_log_file(const std::string& previous_path, observe::TrafficLogConfig& cfg) const;
  profile::Manager& profiles() const;
  void append_proxy_metrics(std::string& out) const;

  proxy::Registry& registry_;
  std::vector<MetricsSection> metrics_;
  profile::Manager* profiles_ = nullptr;
  std::function<nlohmann::json()> topology_;
  observe::ClientVerdicts* clients_ = nullptr;
  observe::TrafficLog* traffic_ = nullptr;
  observe::Metrics* command_metrics_ = nullptr;
  uv::ConfinedDir file_dir_;
};

} // namespace faultline::control
