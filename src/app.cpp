#include "app.h"

#include <chrono>
#include <memory>

#include <cxxopts.hpp>
#include <fmt/format.h>
#include <uv.h>

#include "observe/log.h"
#include "proxy/proxy.h"
#include "uv/address.h"

namespace faultline {

void add_app_options(cxxopts::Options&) {}
bool read_app_options(const cxxopts::ParseResult&, AppConfig&, std::string&) { return true; }

int run_subcommand(const std::string& name, int, char**) {
  fmt::print(stderr, "faultline: '{}' is not available in this build\n", name);
  return 2;
}

namespace {

struct App {
  uv_loop_t* loop;
  proxy::Runtime rt;
  proxy::Registry registry;
  uv_signal_t sigint{}, sigterm{};
  uv_timer_t deadline{};
  bool stopping = false;

  App(uv_loop_t* l, const proxy::DataPathOptions& o, uint64_t seed)
      : loop(l), rt(l, o), registry(rt, seed) {}

  void stop(int signum) {
    if (stopping) return;
    stopping = true;
    log::info("{}: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    // Whatever still runs after a second is cut short: exit within a second.
    uv_timer_init(loop, &deadline);
    deadline.data = this;
    uv_timer_start(&deadline, [](uv_timer_t* t) { uv_stop(t->loop); }, 900, 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&deadline));
    registry.shutdown([this] {
      uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&deadline), nullptr);
    });
  }
};

} // namespace

int run_app(const AppConfig& cfg) {
  std::string err;
  for (const auto* a : {&cfg.listen, &cfg.upstream}) {
    if (!uv::parse_endpoint(*a, err)) {
      fmt::print(stderr, "faultline: --{}: {}\n", a == &cfg.listen ? "listen" : "upstream", err);
      return 2;
    }
  }
  uint64_t seed = cfg.seed ? *cfg.seed
                           : static_cast<uint64_t>(
                                 std::chrono::steady_clock::now().time_since_epoch().count());
  proxy::DataPathOptions dp;
  dp.connect_timeout_ms = cfg.connect_timeout_ms;
  dp.parse_resp = cfg.parse_resp;

  uv_loop_t* loop = uv_default_loop();
  auto app = std::make_unique<App>(loop, dp, seed);
  log::info("faultline {} (seed {})", FAULTLINE_VERSION, seed);

  proxy::ProxyConfig pc{"redis", cfg.listen, cfg.upstream, true};
  if (!app->registry.create(pc, err)) {
    fmt::print(stderr, "faultline: {}\n", err);
    return err.rfind("cannot resolve", 0) == 0 ? 2 : 1;
  }

  uv_signal_init(loop, &app->sigint);
  uv_signal_init(loop, &app->sigterm);
  app->sigint.data = app->sigterm.data = app.get();
  auto on_signal = [](uv_signal_t* h, int signum) { static_cast<App*>(h->data)->stop(signum); };
  uv_signal_start(&app->sigint, on_signal, SIGINT);
  uv_signal_start(&app->sigterm, on_signal, SIGTERM);

  uv_run(loop, UV_RUN_DEFAULT);
  log::info("stopped");
  return 0;
}

} // namespace faultline
