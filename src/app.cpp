#include "app.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>

#include <cxxopts.hpp>
#include <fmt/format.h>
#include <uv.h>

#include "control/api.h"
#include "control/ctl.h"
#include "control/http_server.h"
#include "observe/clients.h"
#include "profile/expect.h"
#include "observe/inspect.h"
#include "base/log.h"
#include "observe/metrics.h"
#include "observe/traffic_log.h"
#include "control/profiles.h"
#include "profile/profile.h"
#include "profile/runner.h"
#include "proxy/proxy.h"
#include "topology/actions.h"
#include "topology/cluster.h"
#include "topology/front.h"
#include "topology/sentinel.h"
#include "uv/address.h"
#include "uv/platform.h"

namespace faultline {

void add_app_options(cxxopts::Options& opts) {
  // clang-format off
  opts.add_options("Chaos profiles")
    ("profile", "run the chaos profile FILE (see profiles/), then keep serving clean traffic",
       cxxopts::value<std::string>())
    ("exit-after-profile", "exit 0 when the profile's timeline ends")
    ("profile-speed", "run profile timelines N times faster (toxic settings unchanged)",
       cxxopts::value<double>()->default_value("1"));
  opts.add_options("Deployments (docs/deployments.md)")
    ("cluster", "front a whole Redis Cluster found from node HOST:PORT (repeatable): a proxy per "
                "node, on --listen's port and the next ones",
       cxxopts::value<std::vector<std::string>>())
    ("sentinel", "front a Sentinel set-up: its sentinels and the nodes they report for --master "
                 "(repeatable)",
       cxxopts::value<std::vector<std::string>>())
    ("master", "the master name the sentinels monitor (with --sentinel)",
       cxxopts::value<std::string>())
    ("topology-refresh-ms", "look at the deployment's topology again this often",
       cxxopts::value<uint32_t>()->default_value("1000"))
    ("announce-host", "the host clients are told to connect to (default: --listen's host, "
                      "127.0.0.1 for a wildcard)",
       cxxopts::value<std::string>());
  opts.add_options("Traffic log and metrics")
    ("log", "write one record per command to FILE ('-': stdout)", cxxopts::value<std::string>())
    ("log-dir", "the directory POST /log may write in; without it the API writes no file",
       cxxopts::value<std::string>())
    ("log-format", "json (JSON Lines; default for files) or text (default for '-')",
       cxxopts::value<std::string>())
    ("log-max-arg-bytes", "bytes of each argument shown (the original length is noted)",
       cxxopts::value<uint32_t>()->default_value("64"))
    ("log-commands", "log only these commands: GET,SET,@write,CLIENT|SETNAME",
       cxxopts::value<std::string>()->default_value(""))
    ("log-keys", "log only commands whose first key matches this Redis glob",
       cxxopts::value<std::string>()->default_value(""))
    ("log-slower-than-us", "log only commands at least this slow",
       cxxopts::value<uint64_t>()->default_value("0"))
    ("log-sample", "log this fraction of commands (0..1)",
       cxxopts::value<double>()->default_value("1"))
    ("no-metrics", "do not keep per-command metrics (/metrics, /proxies/{name}/stats)");
  // clang-format on
}

bool read_app_options(const cxxopts::ParseResult& r, AppConfig& cfg, std::string& err) {
  if (r.count("profile")) cfg.profile = r["profile"].as<std::string>();
  cfg.exit_after_profile = r.count("exit-after-profile") > 0;
  cfg.profile_speed = r["profile-speed"].as<double>();
  if (!(cfg.profile_speed > 0) || cfg.profile_speed > 1e6) {
    err = "--profile-speed must be above 0";
    return false;
  }
  if (cfg.exit_after_profile && cfg.profile.empty()) {
    err = "--exit-after-profile needs --profile";
    return false;
  }
  // Seeds of a deployment: each a HOST:PORT with both parts.
  auto seeds = [&](const char* flag, const char* what, std::vector<std::string>& out) {
    if (r.count(flag)) out = r[flag].as<std::vector<std::string>>();
    for (const auto& c : out) {
      std::string e;
      auto ep = uv::parse_endpoint(c, e);
      if (!ep || ep->port == 0 || ep->host.empty()) {
        err = fmt::format("--{} {}: {}", flag, c, ep ? fmt::format("give {} HOST:PORT", what) : e);
        return false;
      }
    }
    return true;
  };
  if (!seeds("cluster", "a node's", cfg.cluster) || !seeds("sentinel", "a sentinel's", cfg.sentinels))
    return false;
  if (r.count("master")) cfg.master_name = r["master"].as<std::string>();
  if (!cfg.sentinels.empty() && cfg.master_name.empty()) {
    err = "--sentinel needs --master NAME (the name the sentinels monitor)";
    return false;
  }
  if (cfg.sentinels.empty() && !cfg.master_name.empty()) {
    err = "--master needs --sentinel HOST:PORT";
    return false;
  }
  if (!cfg.sentinels.empty() && !cfg.cluster.empty()) {
    err = "--cluster and --sentinel cannot be used together";
    return false;
  }
  cfg.topology_refresh_ms = r["topology-refresh-ms"].as<uint32_t>();
  if (cfg.topology_refresh_ms < 10 || cfg.topology_refresh_ms > 3600000) {
    err = "--topology-refresh-ms must be from 10 to 3600000";
    return false;
  }
  if (r.count("announce-host")) cfg.announce_host = r["announce-host"].as<std::string>();
  if (r.count("log")) cfg.log_path = r["log"].as<std::string>();
  if (r.count("log-format")) cfg.log_format = r["log-format"].as<std::string>();
  if (r.count("log-dir")) cfg.log_dir = r["log-dir"].as<std::string>();
  cfg.log_max_arg_bytes = r["log-max-arg-bytes"].as<uint32_t>();
  cfg.log_commands = r["log-commands"].as<std::string>();
  cfg.log_keys = r["log-keys"].as<std::string>();
  cfg.log_slower_than_us = r["log-slower-than-us"].as<uint64_t>();
  cfg.log_sample = r["log-sample"].as<double>();
  cfg.metrics = r.count("no-metrics") == 0;
  observe::LogFormat lf;
  if (!cfg.log_format.empty() && !observe::parse_log_format(cfg.log_format, lf)) {
    err = "--log-format must be json or text";
    return false;
  }
  if (cfg.log_max_arg_bytes == 0 || cfg.log_max_arg_bytes > 65535) {
    err = "--log-max-arg-bytes must be from 1 to 65535";
    return false;
  }
  if (!(cfg.log_sample >= 0 && cfg.log_sample <= 1)) {
    err = "--log-sample must be from 0 to 1";
    return false;
  }
  if (cfg.log_path.empty() && (!cfg.log_format.empty() || !cfg.log_commands.empty() ||
                               !cfg.log_keys.empty() || cfg.log_slower_than_us ||
                               cfg.log_sample < 1)) {
    err = "the --log-* filters need --log FILE (or --log -)";
    return false;
  }
  return true;
}

int run_subcommand(const std::string& name, int argc, char** argv) {
  if (name == "ctl") return control::run_ctl(argc, argv);
  if (name == "profile") return profile::run_profile_command(argc, argv);
  if (name == "inspect") return observe::run_inspect(argc, argv);
  fmt::print(stderr, "faultline: '{}' is not available in this build\n", name);
  return 2;
}

namespace {

struct App {
  uv_loop_t* loop;
  proxy::Runtime rt;
  proxy::Registry registry;
  control::Api api;
  observe::ClientVerdicts clients; // what clients did about faults: /proxies/{name}/clients
  std::unique_ptr<control::HttpServer> http; // null with --api off
  profile::Manager profiles;
  observe::Metrics metrics;  // per-command metrics: /metrics, /proxies/{name}/stats
  observe::TrafficLog traffic; // --log, GET /proxies/{name}/traffic; an observer only when on
  uv_signal_t sigint{}, sigterm{};
  // SIGHUP never ends faultline: logrotate's HUP reopens a file log (TrafficLog) and is
  // ignored otherwise. This watcher keeps libuv's handler installed whatever the log does.
  uv_signal_t sighup{};
  uv_timer_t after_profile{}; // --exit-after-profile: stops from its own callback, not the runner's
  bool after_profile_open = false;
  uv_timer_t deadline{};
  // Cluster mode: the proxies in front of the deployment and what keeps them up to date.
  std::unique_ptr<topology::Front> front;
  std::unique_ptr<topology::Cluster> cluster;
  std::unique_ptr<topology::Sentinel> sentinel;
  topology::Deployment deployment; // what profile actions act on (profiles' defaults point here)
  bool stopping = false;
  bool closed = false; // every handle closed: safe to destroy
  int closing_parts = 0;

  App(uv_loop_t* l, const proxy::DataPathOptions& o, uint64_t seed)
      : loop(l), rt(l, o), registry(rt, seed), api(registry), clients(registry),
        profiles(registry, {}), traffic(registry, seed) {
    api.set_profiles(&profiles);
    profiles.defaults().judge = client_judge();
    rt.add_observer(&clients);
    api.set_client_verdicts(&clients);
    clients.start(l);
    api.set_observability(&traffic, &metrics);
    api.add_metrics_section([this](std::string& out) {
      if (observers_metrics) metrics.append_prometheus(out, registry);
      traffic.append_prometheus(out);
    });
  }

  // A profile's [expect] is decided from what the client verdicts recorded for its proxies.
  profile::ClientJudge client_judge() {
    profile::ClientJudge j;
    j.begin = [this](const profile::Profile& p) {
      for (const auto& d : p.proxies) clients.clear(d.name);
    };
    j.judge = [this](const profile::Profile& p, bool finished) {
      std::vector<profile::Verdict> out;
      const auto es = profile::parse_expectations(p.expect);
      for (const auto& d : p.proxies) {
        proxy::Proxy* px = registry.find(d.name);
        if (!px) {
          for (const auto& e : es)
            out.push_back({d.name, e.key, "-", "the proxy was deleted",
                           profile::Verdict::State::Fail});
          continue;
        }
        observe::ClientRecord& rec = clients.record(*px);
        for (auto& v : profile::evaluate(es, rec, clients.now_us(), finished)) {
          using S = profile::ExpectVerdict::State;
          out.push_back({d.name, v.key, v.expected, v.measured,
                         v.state == S::Pass   ? profile::Verdict::State::Pass
                         : v.state == S::Fail ? profile::Verdict::State::Fail
                                              : profile::Verdict::State::Pending});
        }
      }
      return out;
    };
    j.clients = [this](const profile::Profile& p) {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& d : p.proxies)
        if (proxy::Proxy* px = registry.find(d.name)) o[d.name] = clients.json_for(*px);
      return o;
    };
    return j;
  }
  int exit_code = 0; // 1 when the command line's profile's [expect] failed

  void start_metrics(bool on) {
    observers_metrics = on;
    if (on) rt.add_observer(&metrics);
    else api.set_observability(&traffic, nullptr);
  }
  bool observers_metrics = false;

  // Closes the API server and every proxy; `then` runs once all their handles are closed.
  void close_all(std::function<void()> then) {
    closing_parts = (http ? 4 : 3) + (cluster ? 1 : 0) + (sentinel ? 1 : 0);
    auto part_done = [this, then] {
      if (--closing_parts == 0) then();
    };
    profiles.shutdown(); // undoes what a running profile injected, prints its summary
    if (cluster) cluster->close(part_done);
    if (sentinel) sentinel->close(part_done);
    if (http) http->close(part_done);
    clients.close(part_done);
    traffic.close(part_done);
    registry.shutdown(part_done);
  }

  void stop(int signum) {
    if (stopping) return;
    stopping = true;
    log::info("{}: stopping", signum == 0 ? "profile ended" : uv::platform::signal_name(signum));
    // Whatever still runs after a second is cut short: exit within a second.
    uv_timer_init(loop, &deadline);
    deadline.data = this;
    uv_timer_start(&deadline, [](uv_timer_t* t) { uv_stop(t->loop); }, 900, 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&deadline));
    close_all([this] {
      uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&sighup), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&deadline), nullptr);
      if (after_profile_open) uv_close(reinterpret_cast<uv_handle_t*>(&after_profile), nullptr);
      closed = true;
      // A lookup of an upstream host name may still wait for a slow resolver on the thread pool;
      // nothing needs its answer, so do not wait for it (run_app exits without libuv's cleanup).
      if (rt.lookups_in_flight() > 0) uv_stop(loop);
    });
  }
};

bool is_loopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

// Starts the control API on cfg.api. False (message printed) if it cannot listen. bound_out
// receives the address it listens on (port 0 resolved).
bool start_api(App& app, const AppConfig& cfg, std::string& bound_out) {
  std::string err;
  auto ep = uv::parse_endpoint(cfg.api, err);
  sockaddr_storage ss{};
  if (!ep || !uv::resolve(*ep, ss, err, true)) {
    fmt::print(stderr, "faultline: --api: {}\n", err);
    return false;
  }
  control::HttpServerOptions opts;
  opts.max_body_bytes = 1 << 20;
  opts.token = cfg.api_token;
  opts.request_id_header = "X-Toxiproxy-Request-Id";
  app.http = std::make_unique<control::HttpServer>(app.loop, opts, app.api.router());
  const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
  if (int rc = app.http->listen(sa); rc != 0) {
    fmt::print(stderr, "faultline: cannot listen on --api {}: {}\n", cfg.api, uv_strerror(rc));
    return false;
  }
  uv::Endpoint bound = *ep;
  bound.port = static_cast<uint16_t>(app.http->bound_port());
  bound_out = bound.str();
  log::info("control API on http://{}{}", bound.str(),
            cfg.api_token.empty() ? "" : " (bearer token required)");
  if (!is_loopback(sa))
    log::warn("control API on {} is reachable from the network: anyone who can connect can "
              "break your Redis traffic{}",
              bound.str(), cfg.api_token.empty() ? "; consider --api-token" : "");
  return true;
}

// Seeds by name are looked up once, here, at start-up (deployments report their nodes by IP).
bool resolve_seeds(const std::vector<std::string>& in, const char* flag,
                   std::vector<std::string>& out) {
  for (const auto& s : in) {
    std::string err;
    auto ep = uv::parse_endpoint(s, err);
    sockaddr_storage ss{};
    if (!ep || !uv::resolve(*ep, ss, err)) {
      fmt::print(stderr, "faultline: {} {}: {}\n", flag, s, err);
      return false;
    }
    out.push_back(uv::format_address(reinterpret_cast<const sockaddr*>(&ss)));
  }
  return true;
}

// Cluster or Sentinel mode: the first look at the deployment, run on the loop before anything
// else starts, so that every node has its listener when the port file is written. False
// (printed) if no seed answered.
bool start_deployment(App& app, const AppConfig& cfg, std::string& first_listen) {
  const bool cluster = !cfg.cluster.empty();
  const char* flag = cluster ? "--cluster" : "--sentinel";
  if (!cfg.parse_resp) {
    fmt::print(stderr, "faultline: {} needs RESP parsing (drop --no-resp): replies that name "
                       "nodes are rewritten\n", flag);
    return false;
  }
  topology::FrontOptions fo;
  fo.listen = cfg.listen;
  fo.announce_host = cfg.announce_host;
  fo.redirects = cluster;
  app.front = std::make_unique<topology::Front>(app.registry, fo);
  bool done = false;
  std::string first_err;
  auto on_first = [&](std::string e) {
    done = true;
    first_err = std::move(e);
  };
  if (cluster) {
    topology::ClusterOptions co;
    co.refresh_ms = cfg.topology_refresh_ms;
    co.timeout_ms = cfg.connect_timeout_ms;
    if (!resolve_seeds(cfg.cluster, flag, co.seeds)) return false;
    app.cluster = std::make_unique<topology::Cluster>(app.loop, *app.front, co);
    app.cluster->start(on_first);
  } else {
    topology::SentinelOptions so;
    so.refresh_ms = cfg.topology_refresh_ms;
    so.timeout_ms = cfg.connect_timeout_ms;
    so.master = cfg.master_name;
    if (!resolve_seeds(cfg.sentinels, flag, so.seeds)) return false;
    app.sentinel = std::make_unique<topology::Sentinel>(app.loop, *app.front, so);
    app.sentinel->start(on_first);
  }
  while (!done) uv_run(app.loop, UV_RUN_ONCE);
  if (!first_err.empty()) {
    fmt::print(stderr, "faultline: {}: cannot front the {}: {}\n", flag,
               cluster ? "cluster" : "sentinels' master " + cfg.master_name, first_err);
    return false;
  }
  if (cluster) {
    app.api.set_topology([c = app.cluster.get()] { return c->json(); });
    for (const auto& n : app.cluster->nodes())
      if (auto* p = app.front->proxy_for(n.address)) {
        first_listen = p->listen_address();
        break;
      }
  } else {
    app.api.set_topology([s = app.sentinel.get()] { return s->json(); });
    if (auto* p = app.front->proxy_for(app.sentinel->json()["seeds"][0].get<std::string>()))
      first_listen = p->listen_address();
  }
  app.deployment.loop = app.loop;
  app.deployment.front = app.front.get();
  app.deployment.cluster = app.cluster.get();
  app.deployment.sentinel = app.sentinel.get();
  app.deployment.master_name = cfg.master_name;
  app.deployment.timeout_ms = cfg.connect_timeout_ms;
  app.profiles.defaults().deployment = &app.deployment;
  log::info("{}: {} nodes fronted", cluster ? "cluster" : "sentinel", app.front->fronted().size());
  return true;
}

// --port-file: one "listen ADDR" line and, unless --api off, one "api ADDR" line, the addresses
// actually bound. Written to FILE.tmp and renamed, so whoever waits for FILE reads it whole.
bool write_port_file(const std::string& path, const std::string& listen, const std::string& api) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return false;
  std::string text = "listen " + listen + "\n" + (api.empty() ? "" : "api " + api + "\n");
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fclose(f) == 0 && ok;
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

} // namespace

int run_app(const AppConfig& cfg) {
  std::string err;
  for (const auto* a : {&cfg.listen, &cfg.upstream}) {
    if (!uv::parse_endpoint(*a, err)) {
      fmt::print(stderr, "faultline: --{}: {}\n", a == &cfg.listen ? "listen" : "upstream", err);
      return 2;
    }
  }
  // A bad profile is rejected before anything starts.
  profile::LoadOptions load_opts;
  load_opts.mode = !cfg.cluster.empty()     ? profile::Mode::Cluster
                   : !cfg.sentinels.empty() ? profile::Mode::Sentinel
                                            : profile::Mode::Single;
  std::optional<profile::Profile> prof;
  if (!cfg.profile.empty()) {
    try {
      prof = profile::load_file(cfg.profile, load_opts);
    } catch (const profile::LoadError& e) {
      fmt::print(stderr, "faultline: {}\n", e.what());
      return 2;
    }
  }
  uint64_t seed = cfg.seed ? *cfg.seed
                           : static_cast<uint64_t>(
                                 std::chrono::steady_clock::now().time_since_epoch().count());
  uv::ConfinedDir log_dir;
  if (!cfg.log_dir.empty() && !log_dir.set(cfg.log_dir, err)) {
    fmt::print(stderr, "faultline: --log-dir {}\n", err);
    return 2;
  }
  proxy::DataPathOptions dp;
  dp.connect_timeout_ms = cfg.connect_timeout_ms;
  dp.parse_resp = cfg.parse_resp;
  // Linux cuts a larger backlog to somaxconn; asking for it lets an accept storm queue whole.
  dp.backlog = cfg.backlog > 0 ? cfg.backlog : std::max(uv::platform::max_listen_backlog(), 511);

  uv_loop_t* loop = uv_default_loop();
  auto app = std::make_unique<App>(loop, dp, seed);
  app->profiles.load_options() = load_opts;
  log::info("faultline {} (seed {})", FAULTLINE_VERSION, seed);
  // Each client costs two descriptors (its socket and the upstream's): as many as allowed.
  uint64_t fd_before = 0;
  uint64_t fds = uv::platform::raise_fd_limit(fd_before);
  std::string fd_text = fds == 0            ? ""
                        : fds > fd_before ? fmt::format("file descriptors: {} (soft limit raised "
                                                        "from {}), ",
                                                        fds, fd_before)
                                          : fmt::format("file descriptors: {}, ", fds);
  log::info("{}listen backlog: {}", fd_text, dp.backlog);
  app->registry.runtime().set_fd_limit(fds);
  app->start_metrics(cfg.metrics && cfg.parse_resp);
  app->api.set_file_dir(log_dir);
  if (!cfg.log_path.empty()) {
    // Before the first proxy: sessions take the log's capture options when they start.
    observe::TrafficLogConfig lc;
    lc.path = cfg.log_path;
    if (!cfg.log_format.empty()) {
      observe::LogFormat f;
      observe::parse_log_format(cfg.log_format, f);
      lc.format = f;
    }
    lc.max_arg_bytes = cfg.log_max_arg_bytes;
    lc.commands = cfg.log_commands;
    lc.keys = cfg.log_keys;
    lc.slower_than_us = cfg.log_slower_than_us;
    lc.sample = cfg.log_sample;
    if (!cfg.parse_resp) log::warn("--log with --no-resp: only session records are written");
    if (!app->traffic.configure(lc, err)) {
      fmt::print(stderr, "faultline: --log: {}\n", err);
      app->close_all([&app] { app->closed = true; });
      uv_run(loop, UV_RUN_DEFAULT);
      return err.rfind("log commands", 0) == 0 ? 2 : 1;
    }
  }

  std::string first_listen;
  if (!cfg.cluster.empty() || !cfg.sentinels.empty()) {
    if (!start_deployment(*app, cfg, first_listen)) {
      app->close_all([&app] { app->closed = true; });
      uv_run(loop, UV_RUN_DEFAULT);
      return 1;
    }
  } else {
    proxy::ProxyConfig pc{"redis", cfg.listen, cfg.upstream, true};
    proxy::Proxy* p = app->registry.create(pc, err);
    if (!p) {
      fmt::print(stderr, "faultline: {}\n", err);
      return err.rfind("cannot resolve", 0) == 0 ? 2 : 1;
    }
    first_listen = p->listen_address();
  }

  std::string api_bound;
  if (cfg.api != "off" && !start_api(*app, cfg, api_bound)) {
    // Close what was opened so nothing is freed under libuv's feet, then fail.
    app->close_all([&app] { app->closed = true; });
    uv_run(loop, UV_RUN_DEFAULT);
    return 1;
  }
  if (!cfg.port_file.empty() &&
      !write_port_file(cfg.port_file, first_listen, api_bound)) {
    fmt::print(stderr, "faultline: --port-file {}: {}\n", cfg.port_file, std::strerror(errno));
    app->close_all([&app] { app->closed = true; });
    uv_run(loop, UV_RUN_DEFAULT);
    return 1;
  }

  uv_signal_init(loop, &app->sigint);
  uv_signal_init(loop, &app->sigterm);
  app->sigint.data = app->sigterm.data = app.get();
  auto on_signal = [](uv_signal_t* h, int signum) { static_cast<App*>(h->data)->stop(signum); };
  uv_signal_start(&app->sigint, on_signal, uv::platform::interrupt_signal());
  uv_signal_start(&app->sigterm, on_signal, uv::platform::terminate_signal());
  uv_signal_init(loop, &app->sighup);
  uv_signal_start(&app->sighup, [](uv_signal_t*, int) { log::debug("SIGHUP"); }, SIGHUP);
  uv_unref(reinterpret_cast<uv_handle_t*>(&app->sighup));

  app->profiles.defaults().speed = cfg.profile_speed;
  app->profiles.defaults().tty = uv::platform::is_terminal(2);
  // A profile's toxics reach the traffic log the moment a step changes them, so `faultline
  // inspect` shows its fault windows even when a step is shorter than the log's poll period.
  app->profiles.defaults().on_event = [a = app.get()](const profile::Event& e) {
    a->traffic.note_toxic_changes();
    a->traffic.profile_event(profile::to_string(e.kind), e.profile, e.proxy, e.step, e.what,
                             e.elapsed_ms);
  };
  if (prof) {
    std::function<void()> on_end;
    if (cfg.exit_after_profile) {
      uv_timer_init(loop, &app->after_profile);
      app->after_profile.data = app.get();
      app->after_profile_open = true;
      on_end = [a = app.get()] {
        uv_timer_start(&a->after_profile,
                       [](uv_timer_t* t) { static_cast<App*>(t->data)->stop(0); }, 0, 0);
      };
    }
    try {
      profile::Runner& run = app->profiles.start(std::move(*prof), false, on_end);
      run.on_verdicts([a = app.get()](bool failed) {
        if (!failed) return;
        a->exit_code = 1;
        log::error("the clients did not do what the profile expects: exiting with 1");
      });
    } catch (const std::exception& e) {
      fmt::print(stderr, "faultline: {}\n", e.what());
      app->stop(0);
      uv_run(loop, UV_RUN_DEFAULT);
      return 1;
    }
  }

  uv_run(loop, UV_RUN_DEFAULT);
  if (!app->closed) {
    // The deadline cut shutdown short: handles are still open, so the App cannot be destroyed.
    log::info("stopped (forced after the shutdown deadline)");
    std::fflush(nullptr);
    std::_Exit(app->exit_code);
  }
  if (app->rt.lookups_in_flight() > 0) {
    // libuv's exit handler would join the thread pool, and so wait for the resolver.
    log::info("stopped (without waiting for a host name lookup)");
    std::fflush(nullptr);
    std::_Exit(app->exit_code);
  }
  log::info("stopped");
  return app->exit_code;
}

} // namespace faultline
