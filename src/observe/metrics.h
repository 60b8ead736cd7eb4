#pragma once
// Per proxy and per command metrics: calls, errors by error prefix, injected faults by toxic,
// bytes, and latency histograms with fixed log-spaced buckets in microseconds. Fed by the
// observer interface (on the data path: a few increments and one binary search per reply, no
// allocation once a command has been seen), read by /metrics (Prometheus text format) and by
// GET /proxies/{name}/stats (JSON).

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/observer.h"

namespace faultline::proxy {
class Proxy;
class Registry;
} // namespace faultline::proxy

namespace faultline::observe {

// Latency histogram. Bucket i counts values v with kBoundsUs[i-1] < v <= kBoundsUs[i]; the last
// bucket is +Inf. Bounds follow 1, 2, 3, 5, 7 per decade from 1 us to 10 s.
class LatencyHistogram {
public:
  static constexpr std::array<uint64_t, 36> kBoundsUs = {
      1,      2,      3,      5,      7,       10,      20,      30,      50,
      70,     100,    200,    300,    500,     700,     1000,    2000,    3000,
      5000,   7000,   10000,  20000,  30000,   50000,   70000,   100000,  200000,
      300000, 500000, 700000, 1000000, 2000000, 3000000, 5000000, 7000000, 10000000};
  static constexpr size_t kBuckets = kBoundsUs.size() + 1;

  void record(uint64_t us) { record_in(bucket_of(us), us); }
  // n values of `us` (a pipeline's replies, timed alike).
  void record_n(uint64_t us, uint64_t n) {
    buckets_[bucket_of(us)] += n;
    count_ += n;
    sum_us_ += us * n;
    if (us > max_us_) max_us_ = us;
  }
  // The bucket of a value: a table by bit width gives the first candidate, and at most two
  // bounds share a power of two, so no search.
  static size_t bucket_of(uint64_t us);
  void record_in(size_t bucket, uint64_t us) {
    ++buckets_[bucket];
    ++count_;
    sum_us_ += us;
    if (us > max_us_) max_us_ = us;
  }
  uint64_t count() const { return count_; }
  uint64_t sum_us() const { return sum_us_; }
  uint64_t max_us() const { return max_us_; }
  uint64_t bucket(size_t i) const { return buckets_[i]; }
  void merge(const LatencyHistogram& o);
  // Estimated q-quantile (0..1) in microseconds: the bucket holding the rank, interpolated
  // linearly inside it, never above the largest value seen. 0 when empty.
  double quantile(double q) const;
  // {"p50":..,"p90":..,"p99":..,"p999":..,"max":..,"mean":..,"count":..}
  nlohmann::json to_json() const;

private:
  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0, sum_us_ = 0, max_us_ = 0;
};

// A small map for labels with few values (error prefixes, toxic names): linear search, bounded
// size (values beyond the bound are counted under "other").
class LabelCounts {
public:
  static constexpr size_t kMaxLabels = 32;
  void add(std::string_view label, uint64_t n = 1);
  const std::vector<std::pair<std::string, uint64_t>>& items() const { return items_; }
  nlohmann::json to_json() const;

private:
  std::vector<std::pair<std::string, uint64_t>> items_;
};

struct CommandMetrics {
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t faults = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  LabelCounts errors_by_prefix;
  LabelCounts faults_by_toxic;
  LatencyHistogram latency;
  void merge(const CommandMetrics& o);
};

struct ProxyMetrics {
  std::string name;
  // Indexed by CommandInfo::id; the last slot is for commands Redis's table does not know.
  std::vector<std::unique_ptr<CommandMetrics>> commands;
  // The proxy's totals are the sum of its commands, worked out when read (total()), so each
  // reply updates one set of counters; out-of-band frames add their bytes here.
  uint64_t out_of_band_bytes = 0;
  CommandMetrics total() const;
  uint64_t pushes = 0, messages = 0, monitor_lines = 0, unmatched = 0;
  uint64_t raw_mode = 0;
};

class Metrics : public proxy::SessionObserver {
public:
  Metrics();
  bool wants_requests() const override { return false; }
  bool takes_plain_replies() const override { return true; }
  void on_plain_replies(proxy::Session& s, std::span<const proxy::PlainReplies> groups) override;
  void on_session_close(proxy::Session& s) override;
  void on_reply(proxy::Session& s, const proxy::ReplyResult& r, const resp::ReplyFrame* frame,
                std::string_view injected, std::string_view fault) override;
  void on_out_of_band(proxy::Session& s, const proxy::ReplyResult& r,
                      const resp::ReplyFrame& f) override;
  void on_raw_mode(proxy::Session& s, toxics::Stream dir, const resp::ParseError& e) override;

  // Metric families for /metrics (per command; the proxy-level families are the API's).
  void append_prometheus(std::string& out, const proxy::Registry& registry) const;
  // GET /proxies/{name}/stats.
  nlohmann::json proxy_json(const proxy::Proxy& p) const;

  const ProxyMetrics* find(std::string_view proxy) const;
  // Command label: "GET", "CLIENT SETNAME", "unknown".
  static std::string command_label(size_t index);

private:
  ProxyMetrics& proxy_metrics(proxy::Session& s);
  CommandMetrics& command(ProxyMetrics& pm, const resp::CommandInfo* cmd);

  std::map<std::string, std::unique_ptr<ProxyMetrics>, std::less<>> proxies_;
  // Cache: the proxy of the previous event. A proxy is only removed after its sessions close,
  // and every close clears this, so an address reused by a new proxy is never mistaken.
  const proxy::Proxy* last_proxy_ = nullptr;
  ProxyMetrics* last_metrics_ = nullptr;
};

// "0.000001": microseconds as decimal seconds, exactly (no exponent), for le labels and sums.
std::string us_to_seconds(uint64_t us);

} // namespace faultline::observe
