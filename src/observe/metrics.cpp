#include "observe/metrics.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include <fmt/format.h>

#include "observe/prometheus.h"
#include "observe/record.h"
#include "proxy/proxy.h"
#include "proxy/session.h"
#include "resp/commands.h"

namespace faultline::observe {

namespace {
// kFirst[w]: the first bucket whose bound is >= the smallest value of bit width w.
constexpr std::array<uint8_t, 65> first_buckets() {
  std::array<uint8_t, 65> t{};
  constexpr auto& b = LatencyHistogram::kBoundsUs;
  for (size_t w = 0; w <= 64; ++w) {
    const uint64_t lo = w == 0 ? 0 : uint64_t(1) << (w - 1);
    size_t i = 0;
    while (i < b.size() && b[i] < lo) ++i;
    t[w] = uint8_t(i);
  }
  return t;
}
constexpr std::array<uint8_t, 65> kFirst = first_buckets();
} // namespace

size_t LatencyHistogram::bucket_of(uint64_t us) {
  size_t i = kFirst[size_t(std::bit_width(us))];
  while (i < kBoundsUs.size() && kBoundsUs[i] < us) ++i;
  return i;
}

double LatencyHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * double(count_))));
  uint64_t cum = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    if (buckets_[i] == 0) continue;
    if (cum + buckets_[i] >= rank) {
      double lo = i == 0 ? 0.0 : double(kBoundsUs[i - 1]);
      double hi = i < kBoundsUs.size() ? double(kBoundsUs[i]) : double(max_us_);
      hi = std::min(hi, double(max_us_));
      lo = std::min(lo, hi);
      double frac = double(rank - cum) / double(buckets_[i]);
      return lo + (hi - lo) * frac;
    }
    cum += buckets_[i];
  }
  return double(max_us_);
}

nlohmann::json LatencyHistogram::to_json() const {
  auto r = [](double v) { return std::round(v * 10) / 10; };
  return {{"count", count_},
          {"p50", r(quantile(0.5))},
          {"p90", r(quantile(0.9))},
          {"p99", r(quantile(0.99))},
          {"p999", r(quantile(0.999))},
          {"max", max_us_},
          {"mean", count_ ? r(double(sum_us_) / double(count_)) : 0.0}};
}

void LabelCounts::add(std::string_view label, uint64_t n) {
  for (auto& [k, v] : items_)
    if (k == label) {
      v += n;
      return;
    }
  if (items_.size() >= kMaxLabels) {
    for (auto& [k, v] : items_)
      if (k == "other") {
        v += n;
        return;
      }
    items_.back().first = "other"; // the last slot becomes the catch-all
    items_.back().second += n;
    return;
  }
  // Label values stay printable: bytes outside ASCII become '?'.
  std::string l(label.substr(0, 64));
  for (auto& c : l)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  items_.emplace_back(std::move(l), n);
}

nlohmann::json LabelCounts::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : items_) j[k] = v;
  return j;
}

Metrics::Metrics() = default;

std::string Metrics::command_label(size_t index) {
  auto all = resp::all_commands();
  if (index >= all.size()) return "unknown";
  const auto& c = all[index];
  if (c.sub.empty()) return std::string(c.name);
  return fmt::format("{} {}", c.name, c.sub);
}

void Metrics::on_session_close(proxy::Session&) {
  last_proxy_ = nullptr;
  last_metrics_ = nullptr;
}

// Both inline into the observer callbacks: the common case is a compare and a load; what
// allocates (a new proxy, a command seen for the first time) stays out of line.
void LatencyHistogram::merge(const LatencyHistogram& o) {
  for (size_t i = 0; i < kBuckets; ++i) buckets_[i] += o.buckets_[i];
  count_ += o.count_;
  sum_us_ += o.sum_us_;
  max_us_ = std::max(max_us_, o.max_us_);
}

void CommandMetrics::merge(const CommandMetrics& o) {
  calls += o.calls;
  errors += o.errors;
  faults += o.faults;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  for (const auto& [label, n] : o.errors_by_prefix.items()) errors_by_prefix.add(label, n);
  for (const auto& [label, n] : o.faults_by_toxic.items()) faults_by_toxic.add(label, n);
  latency.merge(o.latency);
}

CommandMetrics ProxyMetrics::total() const {
  CommandMetrics t;
  for (const auto& c : commands)
    if (c) t.merge(*c);
  t.bytes_out += out_of_band_bytes;
  return t;
}

[[gnu::always_inline]] inline ProxyMetrics& Metrics::proxy_metrics(proxy::Session& s) {
  const proxy::Proxy* p = &s.proxy();
  if (p == last_proxy_) [[likely]]
    return *last_metrics_;
  return [&]() __attribute__((noinline)) -> ProxyMetrics& {
    auto it = proxies_.find(p->name());
    if (it == proxies_.end()) {
      auto pm = std::make_unique<ProxyMetrics>();
      pm->name = p->name();
      pm->commands.resize(resp::all_commands().size() + 1);
      it = proxies_.emplace(p->name(), std::move(pm)).first;
    }
    last_proxy_ = p;
    last_metrics_ = it->second.get();
    return *last_metrics_;
  }();
}

[[gnu::always_inline]] inline CommandMetrics& Metrics::command(ProxyMetrics& pm,
                                                               const resp::CommandInfo* cmd) {
  const size_t last = pm.commands.size() - 1;
  const size_t idx = cmd && cmd->id < last ? cmd->id : last;
  auto& slot = pm.commands[idx];
  if (!slot) [[unlikely]]
    [&]() __attribute__((noinline)) { slot = std::make_unique<CommandMetrics>(); }();
  return *slot;
}

void Metrics::on_reply(proxy::Session& s, const proxy::ReplyResult& r,
                       const resp::ReplyFrame* frame, std::string_view injected,
                       std::string_view fault) {
  ProxyMetrics& pm = proxy_metrics(s);
  CommandMetrics& cm = command(pm, r.request.cmd);
  uint64_t out_bytes = frame ? frame->size_bytes() : injected.size();
  cm.bytes_out += out_bytes;
  if (frame ? frame->is_error()
            : !injected.empty() && (injected[0] == '-' || injected[0] == '!')) [[unlikely]] {
    [&]() __attribute__((noinline)) {
      std::string_view prefix;
      ReplySummary sum;
      if (frame) {
        prefix = frame->error_prefix();
      } else {
        sum = summarize_injected(injected);
        prefix = sum.error_prefix();
      }
      ++cm.errors;
      cm.errors_by_prefix.add(prefix);
    }();
  }
  if (!r.final) return;
  ++cm.calls;
  cm.bytes_in += r.request.req_bytes;
  cm.latency.record(r.latency_us);
  if (!fault.empty()) [[unlikely]] {
    [&]() __attribute__((noinline)) {
      ++cm.faults;
      cm.faults_by_toxic.add(fault);
    }();
  }
}

void Metrics::on_plain_replies(proxy::Session& s, std::span<const proxy::PlainReplies> groups) {
  ProxyMetrics& pm = proxy_metrics(s);
  const resp::CommandInfo* last = groups.front().cmd;
  CommandMetrics* cm = &command(pm, last);
  for (const proxy::PlainReplies& g : groups) {
    if (g.cmd != last) [[unlikely]] {
      last = g.cmd;
      cm = &command(pm, last);
    }
    cm->calls += g.count;
    cm->bytes_in += g.bytes_in;
    cm->bytes_out += g.bytes_out;
    cm->latency.record_n(g.latency_us, g.count);
  }
}

void Metrics::on_out_of_band(proxy::Session& s, const proxy::ReplyResult& r,
                             const resp::ReplyFrame& f) {
  ProxyMetrics& pm = proxy_metrics(s);
  switch (r.kind) {
  case proxy::ReplyKind::Push: ++pm.pushes; break;
  case proxy::ReplyKind::PubSubMessage: ++pm.messages; break;
  case proxy::ReplyKind::Monitor: ++pm.monitor_lines; break;
  default: ++pm.unmatched; break;
  }
  pm.out_of_band_bytes += f.size_bytes();
}

void Metrics::on_raw_mode(proxy::Session& s, toxics::Stream, const resp::ParseError&) {
  ++proxy_metrics(s).raw_mode;
}

const ProxyMetrics* Metrics::find(std::string_view proxy) const {
  auto it = proxies_.find(proxy);
  return it == proxies_.end() ? nullptr : it->second.get();
}

std::string us_to_seconds(uint64_t us) {
  uint64_t sec = us / 1000000, frac = us % 1000000;
  if (frac == 0) return fmt::format("{}", sec);
  std::string f = fmt::format("{:06d}", frac);
  while (!f.empty() && f.back() == '0') f.pop_back();
  return fmt::format("{}.{}", sec, f);
}

void Metrics::append_prometheus(std::string& out, const proxy::Registry& registry) const {
  struct Row {
    std::string proxy, cmd;
    const CommandMetrics* m;
  };
  std::vector<Row> rows;
  for (const auto& [name, pm] : proxies_)
    for (size_t i = 0; i < pm->commands.size(); ++i)
      if (pm->commands[i])
        rows.push_back({escape_label_value(name), escape_label_value(command_label(i)),
                        pm->commands[i].get()});

  append_metric_header(out, "faultline_connections_refused_total",
                       "Client connections accepted and then refused (accept mode reset, or the "
                       "upstream could not be reached).",
                       "counter");
  for (const auto& [name, p] : registry.proxies())
    out += fmt::format("faultline_connections_refused_total{{proxy=\"{}\"}} {}\n",
                       escape_label_value(name), p->stats().connections_refused);

  append_metric_header(out, "faultline_commands_total",
                       "Commands that completed (got their reply), by proxy and command.",
                       "counter");
  for (const auto& r : rows)
    out += fmt::format("faultline_commands_total{{proxy=\"{}\",cmd=\"{}\"}} {}\n", r.proxy, r.cmd,
                       r.m->calls);

  append_metric_header(out, "faultline_command_errors_total",
                       "Error replies, by proxy, command and error prefix (ERR, LOADING...).",
                       "counter");
  for (const auto& r : rows)
    for (const auto& [prefix, n] : r.m->errors_by_prefix.items())
      out += fmt::format("faultline_command_errors_total{{proxy=\"{}\",cmd=\"{}\",error=\"{}\"}} "
                         "{}\n",
                         r.proxy, r.cmd, escape_label_value(prefix), n);

  append_metric_header(out, "faultline_faults_injected_total",
                       "Commands a toxic acted on, by proxy, command and toxic.", "counter");
  for (const auto& r : rows)
    for (const auto& [toxic, n] : r.m->faults_by_toxic.items())
      out += fmt::format("faultline_faults_injected_total{{proxy=\"{}\",cmd=\"{}\",toxic=\"{}\"}} "
                         "{}\n",
                         r.proxy, r.cmd, escape_label_value(toxic), n);

  append_metric_header(out, "faultline_command_bytes_total",
                       "Bytes of requests (in) and replies (out), by proxy and command.",
                       "counter");
  for (const auto& r : rows) {
    out += fmt::format("faultline_command_bytes_total{{proxy=\"{}\",cmd=\"{}\",direction=\"in\"}} "
                       "{}\n",
                       r.proxy, r.cmd, r.m->bytes_in);
    out += fmt::format("faultline_command_bytes_total{{proxy=\"{}\",cmd=\"{}\",direction=\"out\"}} "
                       "{}\n",
                       r.proxy, r.cmd, r.m->bytes_out);
  }

  append_metric_header(out, "faultline_command_duration_seconds",
                       "Time from the request leaving faultline for Redis to its reply, by proxy "
                       "and command.",
                       "histogram");
  for (const auto& r : rows) {
    const LatencyHistogram& h = r.m->latency;
    uint64_t cum = 0;
    for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
      cum += h.bucket(i);
      std::string le = i < LatencyHistogram::kBoundsUs.size()
                           ? us_to_seconds(LatencyHistogram::kBoundsUs[i])
                           : std::string("+Inf");
      out += fmt::format(
          "faultline_command_duration_seconds_bucket{{proxy=\"{}\",cmd=\"{}\",le=\"{}\"}} {}\n",
          r.proxy, r.cmd, le, cum);
    }
    out += fmt::format("faultline_command_duration_seconds_sum{{proxy=\"{}\",cmd=\"{}\"}} {}\n",
                       r.proxy, r.cmd, us_to_seconds(h.sum_us()));
    out += fmt::format("faultline_command_duration_seconds_count{{proxy=\"{}\",cmd=\"{}\"}} {}\n",
                       r.proxy, r.cmd, h.count());
  }

  append_metric_header(out, "faultline_out_of_band_total",
                       "Frames from Redis that answer no request: RESP3 pushes, pub/sub "
                       "messages, MONITOR lines, unmatched replies.",
                       "counter");
  for (const auto& [name, pm] : proxies_) {
    std::string p = escape_label_value(name);
    const std::pair<const char*, uint64_t> kinds[] = {{"push", pm->pushes},
                                                      {"message", pm->messages},
                                                      {"monitor", pm->monitor_lines},
                                                      {"unmatched", pm->unmatched}};
    for (const auto& [kind, n] : kinds)
      out += fmt::format("faultline_out_of_band_total{{proxy=\"{}\",kind=\"{}\"}} {}\n", p, kind,
                         n);
  }
}

nlohmann::json Metrics::proxy_json(const proxy::Proxy& p) const {
  uint64_t from_client = p.stats().bytes_from_client, from_upstream = p.stats().bytes_from_upstream;
  for (const auto& [id, s] : p.sessions()) {
    from_client += s->bytes_from_client();
    from_upstream += s->bytes_from_upstream();
  }
  nlohmann::json j = {
      {"proxy", p.name()},
      {"connections",
       {{"current", p.session_count()},
        {"total", p.stats().connections_total},
        {"refused", p.stats().connections_refused},
        {"connect_failures", p.stats().connect_failures},
        {"resolve_failures", p.stats().resolve_failures},
        {"fd_exhausted", p.stats().fd_exhausted},
        {"accept_pauses", p.stats().accept_pauses}}},
      {"bytes", {{"from_client", from_client}, {"from_upstream", from_upstream}}},
  };
  const ProxyMetrics* pm = find(p.name());
  auto cmd_json = [](const CommandMetrics& m) {
    return nlohmann::json{{"calls", m.calls},
                          {"errors", m.errors},
                          {"errors_by_prefix", m.errors_by_prefix.to_json()},
                          {"faults", m.faults},
                          {"faults_by_toxic", m.faults_by_toxic.to_json()},
                          {"bytes_in", m.bytes_in},
                          {"bytes_out", m.bytes_out},
                          {"latency_us", m.latency.to_json()}};
  };
  j["total"] = cmd_json(pm ? pm->total() : CommandMetrics{});
  nlohmann::json cmds = nlohmann::json::object();
  if (pm) {
    for (size_t i = 0; i < pm->commands.size(); ++i)
      if (pm->commands[i]) cmds[command_label(i)] = cmd_json(*pm->commands[i]);
    j["out_of_band"] = {{"push", pm->pushes},
                        {"message", pm->messages},
                        {"monitor", pm->monitor_lines},
                        {"unmatched", pm->unmatched}};
    j["raw_mode_sessions"] = pm->raw_mode;
  }
  j["commands"] = std::move(cmds);
  return j;
}

} // namespace faultline::observe
