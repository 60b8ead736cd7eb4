// Traffic record formatting: the pieces the traffic log runs per command, composed the way
// TrafficLog::on_reply composes them for a JSON record and a text line.

#include <benchmark/benchmark.h>

#include <string>

#include "observe/record.h"
#include "resp/parser.h"

using namespace faultline;
using namespace faultline::observe;

namespace {

const std::string kPrefix = R"("proxy":"redis","session":42,"client":"127.0.0.1:53124")";

void format_json(std::string& o, TimestampFormatter& ts, uint64_t t, std::string_view cmd,
                 std::string_view key, std::string_view value, const ReplySummary& reply) {
  o.clear();
  o += "{\"ts\":\"";
  ts.append(o, t);
  o += "\",";
  o += kPrefix;
  o += ",\"db\":0,\"cmd\":\"";
  append_json_repr(o, cmd);
  o += "\",\"args\":[\"";
  append_json_repr_truncated(o, key, key.size(), 64);
  o += '"';
  if (!value.empty()) {
    o += ",\"";
    append_json_repr_truncated(o, value, value.size(), 64);
    o += '"';
  }
  o += "],\"key\":\"";
  append_json_repr_truncated(o, key, key.size(), 64);
  o += "\",\"reply\":";
  append_reply_json(o, reply, 64);
  o += ",\"latency_us\":";
  append_uint(o, 123);
  o += ",\"bytes_in\":";
  append_uint(o, 45);
  o += ",\"bytes_out\":";
  append_uint(o, reply.bytes);
  o += ",\"fault\":null}\n";
}

void BM_JsonRecordSet(benchmark::State& state) {
  std::string o;
  o.reserve(1024);
  TimestampFormatter ts;
  ReplySummary ok = summarize_injected("+OK\r\n");
  uint64_t t = 1795929000000000ULL;
  for (auto _ : state) {
    format_json(o, ts, t++, "SET", "key:000000123456", "xxx", ok);
    benchmark::DoNotOptimize(o.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(o.size()));
}
BENCHMARK(BM_JsonRecordSet);

void BM_JsonRecordGetBinary(benchmark::State& state) {
  std::string o;
  o.reserve(1024);
  TimestampFormatter ts;
  std::string value(100, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 7);
  std::string reply = "$100\r\n" + value + "\r\n";
  ReplySummary sum = summarize_injected(reply);
  uint64_t t = 1795929000000000ULL;
  for (auto _ : state) {
    format_json(o, ts, t++, "GET", "key:000000123456", {}, sum);
    benchmark::DoNotOptimize(o.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(o.size()));
}
BENCHMARK(BM_JsonRecordGetBinary);

void BM_TextLine(benchmark::State& state) {
  std::string o;
  o.reserve(1024);
  TimestampFormatter ts;
  ReplySummary ok = summarize_injected("+OK\r\n");
  uint64_t t = 1795929000000000ULL;
  for (auto _ : state) {
    o.clear();
    ts.append_time_of_day(o, t++);
    o += " redis#42 127.0.0.1:53124 SET \"";
    append_repr(o, "key:000000123456");
    o += "\" \"xxx\" -> ";
    append_reply_text(o, ok, 64);
    o += ' ';
    append_uint(o, 123);
    o += "us\n";
    benchmark::DoNotOptimize(o.data());
  }
}
BENCHMARK(BM_TextLine);

void BM_Redaction(benchmark::State& state) {
  std::string_view argv[] = {"HELLO", "3", "AUTH", "default", "secret", "SETNAME", "x"};
  for (auto _ : state) benchmark::DoNotOptimize(secret_args("HELLO", "", argv));
}
BENCHMARK(BM_Redaction);

} // namespace
