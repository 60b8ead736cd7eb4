#include "profile/runner.h"

#include "observe/clients.h"
#include "profile/expect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "base/log.h"
#include "proxy/proxy.h"

namespace faultline::profile {

std::string_view to_string(Event::Kind k) {
  switch (k) {
  case Event::Kind::ProfileStart: return "profile_start";
  case Event::Kind::StepStart: return "step_start";
  case Event::Kind::StepEnd: return "step_end";
  case Event::Kind::ProfileEnd: return "profile_end";
  }
  return "?";
}

namespace {

constexpr size_t kMaxRecords = 10000;

std::string seconds(uint64_t ms) { return fmt::format("{}.{:03}s", ms / 1000, ms % 1000); }

std::string_view state_name(Runner::State s) {
  switch (s) {
  case Runner::State::Idle: return "idle";
  case Runner::State::Running: return "running";
  case Runner::State::Finished: return "finished";
  case Runner::State::Stopped: return "stopped";
  }
  return "?";
}

bool delaying(const std::string& type) {
  return type == "latency" || type == "bandwidth" || type == "slicer" || type == "timeout" ||
         type == "resp_delay";
}

} // namespace

std::string_view to_string(Verdict::State s) {
  switch (s) {
  case Verdict::State::Pass: return "pass";
  case Verdict::State::Fail: return "FAIL";
  default: return "pending";
  }
}

Runner::Runner(proxy::Registry& registry, Profile profile, RunnerOptions opts)
    : registry_(registry), profile_(std::move(profile)), opts_(std::move(opts)) {
  if (!(opts_.speed > 0) || !std::isfinite(opts_.speed)) opts_.speed = 1.0;
}

Runner::~Runner() {
  if (state_ == State::Running) {
    bool print = opts_.print;
    opts_.print = false; // a runner destroyed while running is being shut down: no summary
    stop();
    opts_.print = print;
  }
}

proxy::Proxy* Runner::find_proxy(const std::string& name) { return registry_.find(name); }

uint64_t Runner::elapsed_ms() const {
  if (state_ == State::Idle) return 0;
  uint64_t now = state_ == State::Running ? uv_now(registry_.runtime().loop()) : end_real_;
  return now - start_real_;
}

bool Runner::start(std::string& err) {
  if (profile_.all_proxies) {
    // Cluster or sentinel mode, no [[proxies]]: every proxy of the deployment, as they are now.
    profile_.proxies.clear();
    for (const auto& [name, px] : registry_.proxies()) profile_.proxies.push_back({name, "", ""});
    for (const auto& s : profile_.steps)
      if (!s.on_deployment() && !registry_.find(s.proxy)) {
        err = fmt::format("profile {}: step '{}'{}: proxy '{}' does not exist", profile_.name,
                          s.label, s.line ? fmt::format(" (line {})", s.line) : "", s.proxy);
        return false;
      }
  }
  // Check every proxy first, so that a failure changes nothing.
  for (const auto& d : profile_.proxies) {
    if (registry_.find(d.name)) continue;
    if (d.listen.empty() || d.upstream.empty()) {
      err = fmt::format("profile {}: proxy '{}' does not exist and the profile gives no {} for "
                        "it (the command line's --listen/--upstream define 'redis')",
                        profile_.name, d.name, d.listen.empty() ? "listen" : "upstream");
      return false;
    }
  }
  for (const auto& d : profile_.proxies) {
    proxy::Proxy* p = registry_.find(d.name);
    if (!p) {
      p = registry_.create({d.name, d.listen, d.upstream, true}, err);
      if (!p) {
        err = fmt::format("profile {}: proxy '{}': {}", profile_.name, d.name, err);
        return false;
      }
      created_.push_back(d.name);
      continue;
    }
    if (!d.upstream.empty() && d.upstream != p->upstream_address() &&
        !p->set_upstream(d.upstream, err)) {
      err = fmt::format("profile {}: proxy '{}': {}", profile_.name, d.name, err);
      return false;
    }
    if (!d.listen.empty() && d.listen != p->config().listen && !p->set_listen(d.listen, err)) {
      err = fmt::format("profile {}: proxy '{}': {}", profile_.name, d.name, err);
      return false;
    }
  }
  if (profile_.seed)
    for (const auto& d : profile_.proxies)
      if (proxy::Proxy* p = registry_.find(d.name)) p->reseed(*profile_.seed);
  if (profile_.has_expectations() && opts_.judge.begin) opts_.judge.begin(profile_);

  uv_loop_t* loop = registry_.runtime().loop();
  uv_update_time(loop);
  start_real_ = uv_now(loop);
  timer_ = std::make_unique<uv::Timer>(loop);
  state_ = State::Running;
  if (opts_.print) {
    std::string seed = profile_.seed ? fmt::format("seed {}", *profile_.seed) : "no seed";
    std::string speed = opts_.speed != 1.0 ? fmt::format(", {}x speed", opts_.speed) : "";
    log::info("profile {}: started ({} steps over {}{}, {}{})", profile_.name,
              profile_.steps.size(), format_duration(profile_.length_ms),
              profile_.loop ? ", looping" : "", seed, speed);
  }
  emit(Event::Kind::ProfileStart, nullptr);
  if (opts_.print && opts_.tty) {
    status_timer_ = std::make_unique<uv::Timer>(loop);
    status_timer_->start(200, [this] { refresh_status(); }, 200);
  }
  start_pass();
  return true;
}

void Runner::start_pass() {
  ++pass_;
  pass_start_real_ = pass_ == 1 ? start_real_ : uv_now(registry_.runtime().loop());
  events_.clear();
  by_step_.assign(profile_.steps.size(), -1);
  for (size_t i = 0; i < profile_.steps.size(); ++i) {
    const Step& s = profile_.steps[i];
    events_.push_back({s.at_ms, false, i});
    if (!s.instantaneous()) events_.push_back({s.end_ms(profile_.length_ms), true, i});
  }
  // Ends before starts at the same time, so back-to-back steps on one toxic do not collide.
  std::stable_sort(events_.begin(), events_.end(), [](const Ev& a, const Ev& b) {
    if (a.at_ms != b.at_ms) return a.at_ms < b.at_ms;
    return a.end && !b.end;
  });
  next_ = 0;
  schedule();
}

void Runner::schedule() {
  if (state_ != State::Running) return;
  uint64_t target_ms =
      next_ < events_.size() ? events_[next_].at_ms : profile_.length_ms; // pass end
  auto real = static_cast<uint64_t>(std::llround(static_cast<double>(target_ms) / opts_.speed));
  uint64_t due = pass_start_real_ + real;
  uint64_t now = uv_now(registry_.runtime().loop());
  timer_->start(due > now ? due - now : 0, [this] { on_timer(); });
}

void Runner::on_timer() {
  if (state_ != State::Running) return;
  uint64_t now = uv_now(registry_.runtime().loop());
  auto profile_now = static_cast<uint64_t>(
      std::floor(static_cast<double>(now - pass_start_real_) * opts_.speed + 0.5));
  while (next_ < events_.size() && events_[next_].at_ms <= profile_now) {
    Ev e = events_[next_++];
    if (e.end) finish(e.step);
    else begin(e.step);
    if (state_ != State::Running) return;
  }
  if (next_ < events_.size() || profile_now < profile_.length_ms) {
    schedule();
    return;
  }
  // End of the pass: whatever is still active (an enable may have ended a disable early) ends.
  while (!open_.empty()) end_record(records_[open_.back()], "end of pass");
  if (profile_.loop) {
    start_pass();
    return;
  }
  finish_run(State::Finished);
}

void Runner::begin(size_t idx) {
  const Step& s = profile_.steps[idx];
  if (records_.size() >= kMaxRecords) {
    // A long loop: forget the oldest ended records (the open ones stay).
    auto it = std::find_if(records_.begin(), records_.end(), [](const Record& r) {
      return r.ended;
    });
    if (it != records_.end()) {
      size_t pos = static_cast<size_t>(it - records_.begin());
      records_.erase(it);
      ++dropped_records_;
      for (auto& o : open_)
        if (o > pos) --o;
      for (auto& b : by_step_)
        if (b > static_cast<std::ptrdiff_t>(pos)) --b;
        else if (b == static_cast<std::ptrdiff_t>(pos)) b = -1;
    }
  }
  records_.push_back({});
  Record& r = records_.back();
  size_t ri = records_.size() - 1;
  r.step = idx;
  r.pass = pass_;
  r.started_ms = uv_now(registry_.runtime().loop()) - start_real_;
  by_step_[idx] = static_cast<std::ptrdiff_t>(ri);
  if (s.on_deployment()) {
    begin_deployment(r, s);
    return;
  }

  proxy::Proxy* p = find_proxy(s.proxy);
  if (!p) {
    r.note = fmt::format("proxy '{}' no longer exists", s.proxy);
    r.ended = true;
    r.ended_ms = r.started_ms;
    log::warn("profile {}: step '{}': {}", profile_.name, s.label, r.note);
    return;
  }
  const auto& st = p->stats();
  r.base_connections = st.connections_total;
  r.base_refused = st.connections_refused;
  std::string err;
  switch (s.action) {
  case Action::AddToxic: {
    if (p->find_toxic(s.toxic.name)) {
      r.note = fmt::format("a toxic named '{}' already exists on proxy '{}'", s.toxic.name,
                           s.proxy);
      break;
    }
    toxics::Toxic t;
    t.name = s.toxic.name;
    t.type = s.toxic.type;
    t.stream = s.toxic.stream;
    t.toxicity = s.toxic.toxicity;
    try {
      t.impl = toxics::make_impl(t.type, s.toxic.attributes); // checked at load: cannot fail
    } catch (const std::exception& e) {
      r.note = e.what();
      break;
    }
    if (std::string why = p->refuses_toxic(t); !why.empty()) {
      r.note = why;
      break;
    }
    r.impl = t.impl;
    r.base_bytes = stream_bytes(*p, t.stream);
    p->add_toxic(std::move(t));
    r.active = true;
    break;
  }
  case Action::Disable:
    r.connections_dropped = p->session_count();
    if (!p->enabled()) {
      r.note = "already disabled";
      break;
    }
    if (!p->set_enabled(false, err)) {
      r.note = err;
      break;
    }
    r.active = true;
    break;
  case Action::Enable:
    // An enable ends the disable that holds the proxy (a disable without `for`).
    for (size_t oi = open_.size(); oi-- > 0;) {
      Record& o = records_[open_[oi]];
      const Step& os = profile_.steps[o.step];
      if (os.action == Action::Disable && os.proxy == s.proxy) end_record(o, "enabled");
    }
    if (!p->enabled() && !p->set_enabled(true, err)) r.note = err;
    break;
  case Action::DropConnections:
    r.connections_dropped = p->session_count();
    p->drop_connections(s.reset);
    break;
  case Action::AcceptReset:
  case Action::AcceptHang:
    p->set_accept_mode(s.action == Action::AcceptReset ? proxy::AcceptMode::Reset
                                                       : proxy::AcceptMode::Hang);
    r.active = true;
    break;
  case Action::ClusterFailover:
  case Action::MigrateSlots:
  case Action::SentinelFailover: break; // begin_deployment()
  }
  if (!r.note.empty())
    log::warn("profile {}: step '{}' did nothing: {}", profile_.name, s.label, r.note);
  if (r.active) {
    open_.push_back(ri);
  } else {
    r.ended = true;
    r.ended_ms = r.started_ms;
  }
  emit(Event::Kind::StepStart, &r);
  print_change(r, true);
}

void Runner::begin_deployment(Record& r, const Step& s) {
  r.ended = true;
  r.ended_ms = r.started_ms;
  const topology::Deployment* d = opts_.deployment;
  const bool cluster = s.action != Action::SentinelFailover;
  if (!d || (cluster ? !d->cluster : !d->sentinel)) {
    r.note = fmt::format("not in {} mode", cluster ? "cluster" : "sentinel");
    log::warn("profile {}: step '{}' did nothing: {}", profile_.name, s.label, r.note);
  } else {
    r.outcome = std::make_shared<Record::Outcome>();
    // The callbacks hold the outcome and a copy of what they print, never the runner: an action
    // may end after the runner is gone (it is cancelled when the run is stopped).
    auto report = [out = r.outcome, name = profile_.name, label = s.label,
                   print = opts_.print](bool done, bool ok, const std::string& text) {
      out->text = text;
      out->done = done;
      out->ok = ok;
      if (done && print) {
        if (ok) log::info("profile {}: {}: {}", name, label, text);
        else log::warn("profile {}: {} failed: {}", name, label, text);
      }
    };
    const DeploymentSpec& x = s.deployment;
    switch (s.action) {
    case Action::ClusterFailover:
      r.action = topology::cluster_failover(*d, x.master, x.mode, report);
      break;
    case Action::MigrateSlots:
      r.action = topology::migrate_slots(*d, x.first_slot, x.last_slot, x.to, x.batch,
                                         static_cast<uint64_t>(std::llround(
                                             static_cast<double>(x.pace_ms) / opts_.speed)),
                                         report);
      break;
    default: r.action = topology::sentinel_failover(*d, report); break;
    }
  }
  emit(Event::Kind::StepStart, &r);
  print_change(r, true);
}

void Runner::finish(size_t idx) {
  std::ptrdiff_t ri = by_step_[idx];
  if (ri < 0) return;
  Record& r = records_[static_cast<size_t>(ri)];
  if (r.active) end_record(r, "done");
}

uint64_t Runner::stream_bytes(proxy::Proxy& p, toxics::Stream s) const {
  const auto& st = p.stats();
  uint64_t total = s == toxics::Stream::Upstream ? st.bytes_from_client : st.bytes_from_upstream;
  for (const auto& [id, sess] : p.sessions())
    total += s == toxics::Stream::Upstream ? sess->bytes_from_client()
                                           : sess->bytes_from_upstream();
  return total;
}

void Runner::end_record(Record& r, const char*) {
  if (!r.active) return;
  r.active = false;
  r.ended = true;
  r.ended_ms = uv_now(registry_.runtime().loop()) - start_real_;
  size_t ri = static_cast<size_t>(&r - records_.data());
  std::erase(open_, ri);
  const Step& s = profile_.steps[r.step];
  proxy::Proxy* p = find_proxy(s.proxy);
  if (p) {
    const auto& st = p->stats();
    r.connections_affected = st.connections_total - r.base_connections;
    std::string err;
    switch (s.action) {
    case Action::AddToxic: {
      if (r.impl) {
        nlohmann::json a = r.impl->attributes();
        if (auto it = a.find("injected"); it != a.end() && it->is_number_unsigned())
          r.commands_faulted = it->get<uint64_t>();
        if (delaying(s.toxic.type))
          r.bytes_delayed = stream_bytes(*p, s.toxic.stream) - r.base_bytes;
      }
      const toxics::Toxic* t = p->find_toxic(s.toxic.name);
      if (t && t->impl == r.impl) p->remove_toxic(s.toxic.name); // not one the API replaced
      break;
    }
    case Action::Disable:
      if (!p->enabled() && !p->set_enabled(true, err))
        log::warn("profile {}: cannot enable proxy '{}' again: {}", profile_.name, s.proxy, err);
      break;
    case Action::AcceptReset:
    case Action::AcceptHang:
      r.connections_refused = st.connections_refused - r.base_refused;
      p->set_accept_mode(proxy::AcceptMode::Normal);
      break;
    default: break;
    }
  }
  emit(Event::Kind::StepEnd, &r);
  print_change(r, false);
}

void Runner::stop(std::string by) {
  if (judging_) {
    // Stopped while waiting for a verdict: what is still pending stays undecided.
    judging_ = false;
    if (judge_timer_) judge_timer_->stop();
    decide(opts_.judge.judge(profile_, true));
    return;
  }
  if (state_ != State::Running) return;
  // A deployment action still under way stops at its next command.
  for (auto& r : records_)
    if (r.action && r.outcome && !r.outcome->done) {
      r.action->cancel();
      r.outcome->done = true;
      r.outcome->text += " (stopped with the profile)";
    }
  stopped_by_ = std::move(by);
  if (!stopped_by_.empty()) log::info("profile {}: stopped by {}", profile_.name, stopped_by_);
  while (!open_.empty()) end_record(records_[open_.back()], "stopped");
  finish_run(State::Stopped);
}

void Runner::finish_run(State s) {
  state_ = s;
  end_real_ = uv_now(registry_.runtime().loop());
  if (timer_) timer_->stop();
  if (status_timer_) status_timer_->stop();
  emit(Event::Kind::ProfileEnd, nullptr, std::string(state_name(s)));
  if (opts_.print) {
    if (opts_.tty) std::fputs("\r\033[K", stderr);
    std::fputs(summary().c_str(), stderr);
    std::fflush(stderr);
  }
  if (profile_.has_expectations()) {
    if (s == State::Finished && opts_.judge.judge) {
      judging_ = true;
      judge_start_ = end_real_;
      judge_deadline_ms_ = judge_deadline_ms();
      judge_until_decided();
      return;
    }
    decide(opts_.judge.judge ? opts_.judge.judge(profile_, true) : std::vector<Verdict>{});
  }
  if (s == State::Finished && opts_.on_finished) {
    auto cb = opts_.on_finished; // may destroy what owns this runner's caller chain: copy
    cb();
  }
}

uint64_t Runner::judge_deadline_ms() const {
  // A recovery can be waited for as long as it is allowed to take, plus the verdicts' poll.
  uint64_t most = 0;
  for (const auto& e : parse_expectations(profile_.expect))
    if (e.kind == Expectation::Kind::RecoverWithin) most = std::max(most, e.limit);
  return most + 2000;
}

void Runner::judge_until_decided() {
  std::vector<Verdict> v = opts_.judge.judge(profile_, true);
  bool pending = std::any_of(v.begin(), v.end(),
                             [](const Verdict& x) { return x.state == Verdict::State::Pending; });
  uint64_t now = uv_now(registry_.runtime().loop());
  if (pending && now - judge_start_ < judge_deadline_ms_) {
    if (!judge_timer_) judge_timer_ = std::make_unique<uv::Timer>(registry_.runtime().loop());
    judge_timer_->start(20, [this] { judge_until_decided(); });
    return;
  }
  // Still undecided this long after the end (a fault that outlived the profile): a failure,
  // since what was promised could not be shown.
  for (auto& x : v)
    if (x.state == Verdict::State::Pending) {
      x.state = Verdict::State::Fail;
      x.measured += fmt::format(" (undecided {} after the end)", seconds(now - judge_start_));
    }
  judging_ = false;
  decide(std::move(v));
  if (opts_.on_finished) {
    auto cb = opts_.on_finished;
    cb();
  }
}

void Runner::decide(std::vector<Verdict> v) {
  verdicts_ = std::move(v);
  if (opts_.print && !verdicts_.empty()) {
    std::fputs((clients_text() + verdicts_text(verdicts_)).c_str(), stderr);
    std::fflush(stderr);
  }
  if (on_verdicts_) {
    auto cb = on_verdicts_;
    cb(expectations_failed());
  }
}

bool Runner::expectations_failed() const {
  return std::any_of(verdicts_.begin(), verdicts_.end(),
                     [](const Verdict& x) { return x.state == Verdict::State::Fail; });
}

std::string Runner::verdicts_text(const std::vector<Verdict>& v) const {
  size_t fails = 0, pending = 0;
  for (const auto& x : v) {
    fails += x.state == Verdict::State::Fail;
    pending += x.state == Verdict::State::Pending;
  }
  std::string out = fmt::format(
      "profile {}: expect: {}\n", profile_.name,
      fails ? fmt::format("{} of {} FAILED", fails, v.size())
      : pending ? fmt::format("{} of {} undecided", pending, v.size())
                : fmt::format("all {} passed", v.size()));
  for (const auto& x : v)
    out += fmt::format("  {:<8} {:<24} expected {:<12} measured {:<24} {}\n", x.proxy, x.key,
                       x.expected, x.measured, to_string(x.state));
  return out;
}

void Runner::emit(Event::Kind k, const Record* r, std::string what) {
  if (!opts_.on_event) return;
  Event e;
  e.kind = k;
  e.profile = profile_.name;
  e.elapsed_ms = elapsed_ms();
  if (r) {
    const Step& s = profile_.steps[r->step];
    e.step = s.label;
    e.proxy = s.proxy;
    e.what = k == Event::Kind::StepEnd ? injected_text(*r) : s.describe();
  } else {
    e.what = std::move(what);
  }
  opts_.on_event(e);
}

void Runner::print_change(const Record& r, bool start) {
  if (!opts_.print) return;
  if (opts_.tty) {
    refresh_status();
    return;
  }
  const Step& s = profile_.steps[r.step];
  bool instant = s.instantaneous() || !r.note.empty();
  std::string label = s.label == s.describe() ? s.label : fmt::format("{} ({})", s.label,
                                                                      s.describe());
  if (start)
    log::info("profile {}: +{} {} {}{}", profile_.name, seconds(r.started_ms),
              instant ? "step" : "start", label, instant ? ": " + injected_text(r) : "");
  else
    log::info("profile {}: +{} end {}: {}", profile_.name, seconds(r.ended_ms), s.label,
              injected_text(r));
}

std::string Runner::status_line() const {
  std::string active;
  for (size_t ri : open_) {
    if (!active.empty()) active += ", ";
    active += profile_.steps[records_[ri].step].describe();
  }
  std::string current = "-";
  if (!records_.empty()) current = profile_.steps[records_.back().step].label;
  // Both in real time: at --profile-speed 10 a 10 s profile shows "/ 1s".
  auto length = static_cast<uint64_t>(static_cast<double>(profile_.length_ms) / opts_.speed);
  std::string line = fmt::format("profile {} {} / {}{} | step: {} | active: {}", profile_.name,
                                 seconds(elapsed_ms()), format_duration(length),
                                 profile_.loop ? fmt::format(" (pass {})", pass_) : "", current,
                                 active.empty() ? "nothing" : active);
  if (line.size() > 160) line = line.substr(0, 157) + "...";
  return line;
}

void Runner::refresh_status() {
  if (state_ != State::Running) return;
  std::string line = "\r\033[K" + status_line();
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

std::string Runner::injected_text(const Record& r) const {
  if (!r.note.empty()) return "nothing (" + r.note + ")";
  const Step& s = profile_.steps[r.step];
  std::vector<std::string> parts;
  switch (s.action) {
  case Action::AddToxic:
    if (r.impl && r.impl->resp_rule()) parts.push_back(fmt::format("{} commands faulted",
                                                                   r.commands_faulted));
    if (delaying(s.toxic.type)) parts.push_back(fmt::format("{} bytes delayed", r.bytes_delayed));
    if (r.ended) parts.push_back(fmt::format("{} new connections", r.connections_affected));
    break;
  case Action::Disable:
    parts.push_back(fmt::format("{} connections dropped", r.connections_dropped));
    if (r.ended)
      parts.push_back(fmt::format("connects refused for {}", seconds(r.ended_ms - r.started_ms)));
    break;
  case Action::Enable: parts.push_back("enabled"); break;
  case Action::DropConnections:
    parts.push_back(fmt::format("{} connections dropped", r.connections_dropped));
    break;
  case Action::AcceptReset:
    if (r.ended) parts.push_back(fmt::format("{} connections refused", r.connections_refused));
    break;
  case Action::AcceptHang:
    if (r.ended) parts.push_back(fmt::format("{} connections held", r.connections_affected));
    break;
  case Action::ClusterFailover:
  case Action::MigrateSlots:
  case Action::SentinelFailover:
    if (r.outcome)
      parts.push_back(r.outcome->done ? (r.outcome->ok ? "" : "FAILED: ") + r.outcome->text
                                      : "under way: " + r.outcome->text);
    break;
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out.empty() ? "active" : out;
}

std::string Runner::summary() const {
  std::string out = fmt::format(
      "profile {}: {}{} after {}{}{}\n", profile_.name, state_name(state_),
      stopped_by_.empty() ? "" : " by " + stopped_by_, seconds(elapsed_ms()), profile_.seed ? fmt::format(" (seed {})", *profile_.seed) : "",
      opts_.speed != 1.0 ? fmt::format(" at {}x speed", opts_.speed) : "");
  size_t width = 4;
  for (const auto& r : records_) width = std::max(width, profile_.steps[r.step].label.size());
  width = std::min<size_t>(width, 48);
  out += fmt::format("  {:>9}  {:>9}  {:<{}}  {}\n", "start", "end", "step", width, "injected");
  if (dropped_records_)
    out += fmt::format("  ({} earlier steps not kept)\n", dropped_records_);
  for (const auto& r : records_) {
    const Step& s = profile_.steps[r.step];
    std::string end = r.ended ? seconds(r.ended_ms) : "-";
    out += fmt::format("  {:>9}  {:>9}  {:<{}}  {}\n", seconds(r.started_ms), end, s.label, width,
                       injected_text(r));
  }
  // With [expect], what the clients did is printed with the verdicts, once they are decided,
  // from the same records at the same moment (clients_text()), so the two never disagree.
  if (!(profile_.has_expectations() && opts_.judge.judge)) out += clients_text();
  return out;
}

std::string Runner::clients_text() const {
  std::string out;
  if (!opts_.judge.clients) return out;
  // What the clients did, from their verdicts (GET /proxies/{name}/clients has the detail).
  nlohmann::json all = opts_.judge.clients(profile_);
  for (const auto& [name, c] : all.items()) {
    const auto& rec = c["recovery"];
    std::string recovery;
    uint64_t unrecovered = rec.value("unrecovered_windows", uint64_t{0});
    if (unrecovered)
      recovery = fmt::format("{} fault window{} not recovered (waiting {:.0f} ms)", unrecovered,
                             unrecovered == 1 ? "" : "s",
                             rec["longest_unrecovered_ms"].get<double>());
    else if (rec["worst_time_to_recover_ms"].is_number())
      recovery = fmt::format("worst time to recover {:.0f} ms",
                             rec["worst_time_to_recover_ms"].get<double>());
    else
      recovery = "no fault window ended";
    out += fmt::format("  clients of {}: {} connects ({} failed, peak {}/s), backoff {}, {} resends, "
                       "{}\n",
                       name, c["connects"]["total"].get<uint64_t>(),
                       c["connects"]["failed"].get<uint64_t>(),
                       c["connects"]["peak_per_second"].get<uint64_t>(),
                       c["backoff"].get<std::string>(), c["resends"]["total"].get<uint64_t>(),
                       recovery);
  }
  return out;
}

nlohmann::json Runner::record_json(const Record& r) const {
  const Step& s = profile_.steps[r.step];
  nlohmann::json j = {{"label", s.label},     {"proxy", s.proxy},
                      {"action", std::string(to_string(s.action))},
                      {"pass", r.pass},       {"started_ms", r.started_ms},
                      {"active", r.active},   {"injected", injected_text(r)}};
  j["ended_ms"] = r.ended ? nlohmann::json(r.ended_ms) : nlohmann::json(nullptr);
  nlohmann::json c = nlohmann::json::object();
  if (s.action == Action::AddToxic) {
    c["new_connections"] = r.connections_affected;
    if (r.impl && r.impl->resp_rule()) c["commands_faulted"] = r.commands_faulted;
    if (delaying(s.toxic.type)) c["bytes_delayed"] = r.bytes_delayed;
    j["toxic"] = s.toxic.name;
  } else if (s.action == Action::Disable || s.action == Action::DropConnections) {
    c["connections_dropped"] = r.connections_dropped;
  } else if (s.action == Action::AcceptReset) {
    c["connections_refused"] = r.connections_refused;
  } else if (s.action == Action::AcceptHang) {
    c["connections_held"] = r.connections_affected;
  } else if (s.on_deployment() && r.outcome) {
    j["outcome"] = {{"done", r.outcome->done},
                    {"ok", r.outcome->done ? nlohmann::json(r.outcome->ok) : nlohmann::json()},
                    {"text", r.outcome->text}};
  }
  j["counts"] = c;
  if (!r.note.empty()) j["note"] = r.note;
  if (!s.phase.empty()) {
    j["phase"] = s.phase;
    j["repetition"] = s.repetition;
  }
  return j;
}

nlohmann::json Runner::report() const {
  nlohmann::json j = {{"name", profile_.name},
                      {"source", profile_.source},
                      {"state", std::string(state_name(state_))},
                      {"loop", profile_.loop},
                      {"length", format_duration(profile_.length_ms)},
                      {"speed", opts_.speed},
                      {"elapsed_ms", elapsed_ms()},
                      {"pass", pass_}};
  if (!profile_.description.empty()) j["description"] = profile_.description;
  if (state_ == State::Stopped)
    j["stopped_by"] = stopped_by_.empty() ? nlohmann::json(nullptr) : nlohmann::json(stopped_by_);
  j["seed"] = profile_.seed ? nlohmann::json(*profile_.seed) : nlohmann::json(nullptr);
  nlohmann::json active = nlohmann::json::array();
  for (size_t ri : open_) active.push_back(profile_.steps[records_[ri].step].label);
  j["active"] = active;
  nlohmann::json timeline = nlohmann::json::array();
  for (const auto& s : profile_.steps) timeline.push_back(to_json(s));
  j["timeline"] = timeline;
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& r : records_) steps.push_back(record_json(r));
  j["steps"] = steps;
  if (profile_.has_expectations()) {
    // Live while the profile runs or its verdicts are being decided; final afterwards.
    std::vector<Verdict> v = verdicts_;
    bool live = (state_ == State::Running || judging_) && opts_.judge.judge;
    if (live) v = opts_.judge.judge(profile_, false);
    nlohmann::json e = nlohmann::json::array();
    for (const auto& x : v)
      e.push_back({{"proxy", x.proxy},
                   {"key", x.key},
                   {"expected", x.expected},
                   {"measured", x.measured},
                   {"state", std::string(to_string(x.state))}});
    j["expect"] = {{"declared", profile_.expect},
                   {"decided", !live && state_ != State::Idle && !verdicts_.empty()},
                   {"failed", expectations_failed()},
                   {"verdicts", e}};
  }
  if (opts_.judge.clients) j["clients"] = opts_.judge.clients(profile_);
  return j;
}

// ---- Manager ----

Runner& Manager::start(Profile p, bool replace, std::function<void()> on_finished,
                       std::optional<double> speed) {
  if (Runner* cur = running()) {
    if (!replace)
      throw Conflict(fmt::format("profile '{}' is running; stop it first (DELETE /profiles/{}) "
                                 "or ask to replace it (?replace=true)",
                                 cur->profile().name, cur->profile().name));
  }
  RunnerOptions o = defaults_;
  if (on_finished) o.on_finished = std::move(on_finished);
  if (speed) o.speed = *speed;
  auto r = std::make_unique<Runner>(registry_, std::move(p), std::move(o));
  if (Runner* cur = running(); cur && replace) {
    log::info("profile {}: replaced by profile {}", cur->profile().name, r->profile().name);
    cur->stop(fmt::format("profile {} (replace)", r->profile().name));
  }
  std::string err;
  if (!r->start(err)) throw std::runtime_error(err);
  // Keep the reports of the last few runs; a finished runner holds no handle but its timers.
  runners_.push_back(std::move(r));
  while (runners_.size() > 8) {
    auto it = std::find_if(runners_.begin(), runners_.end(), [](const auto& x) {
      return x->state() != Runner::State::Running;
    });
    if (it == runners_.end()) break;
    runners_.erase(it);
  }
  return *runners_.back();
}

Runner* Manager::running() {
  for (auto& r : runners_)
    if (r->state() == Runner::State::Running) return r.get();
  return nullptr;
}

bool Manager::stop(std::string_view name, std::string by) {
  Runner* r = running();
  if (!r || r->profile().name != name) return false;
  r->stop(std::move(by));
  return true;
}

std::string Manager::stop_running(std::string by) {
  Runner* r = running();
  if (!r) return {};
  std::string name = r->profile().name;
  r->stop(std::move(by));
  return name;
}

const Runner* Manager::find(std::string_view name) const {
  for (auto it = runners_.rbegin(); it != runners_.rend(); ++it)
    if ((*it)->profile().name == name) return it->get();
  return nullptr;
}

nlohmann::json Manager::list() const {
  nlohmann::json out = nlohmann::json::array();
  for (auto it = runners_.rbegin(); it != runners_.rend(); ++it) out.push_back((*it)->report());
  return out;
}

void Manager::shutdown() {
  for (auto& r : runners_) r->stop();
  runners_.clear();
}

} // namespace faultline::profile
