#include "observe/clients.h"

#include <gtest/gtest.h>

namespace faultline::observe {
namespace {

constexpr uint64_t kMs = 1000;

CommandIdent cmd(uint64_t h, uint32_t key, std::string_view name = "INCR") {
  return CommandIdent{h, key, name};
}

TEST(ClassifyBackoff, NamesTheShape) {
  EXPECT_EQ(classify_backoff({10, 20}), "unknown");
  EXPECT_EQ(classify_backoff({16, 32, 64, 128}), "growing");
  EXPECT_EQ(classify_backoff({100, 102, 99, 101}), "constant");
  EXPECT_EQ(classify_backoff({400, 200, 100}), "shrinking");
  EXPECT_EQ(classify_backoff({50, 400, 20, 300, 10}), "irregular");
  // Capped exponential backoff still grows.
  EXPECT_EQ(classify_backoff({100, 200, 400, 500, 500}), "growing");
}

TEST(ClientRecord, WindowRecoveryIsFromFaultEndToFirstSuccess) {
  ClientRecord r;
  r.on_success(1 * kMs);
  r.set_faults(100 * kMs, true, {"down"});
  r.on_success(150 * kMs);  // a reply during the fault is no recovery
  r.set_faults(1100 * kMs, false, {});
  EXPECT_FALSE(r.windows().back().recovered_us);
  r.on_success(1350 * kMs);
  r.on_success(1400 * kMs);
  ASSERT_EQ(r.windows().size(), 1u);
  EXPECT_DOUBLE_EQ(*r.windows().back().time_to_recover_ms(), 250.0);
  EXPECT_DOUBLE_EQ(*r.worst_time_to_recover_ms(2000 * kMs), 250.0);
  EXPECT_EQ(r.windows().back().faults, std::vector<std::string>{"down"});
}

TEST(ClientRecord, UnrecoveredWindowCountsUntilNow) {
  ClientRecord r;
  r.set_faults(0, true, {"x"});
  r.set_faults(10 * kMs, false, {});
  EXPECT_DOUBLE_EQ(*r.worst_time_to_recover_ms(510 * kMs), 500.0);
}

TEST(ClientRecord, ReconnectIntervalsFollowFailedConnections) {
  ClientRecord r;
  r.set_faults(0, true, {"reset_peer"});
  uint64_t t = 0;
  for (uint64_t gap : {0, 20, 40, 80, 160}) {
    t += gap * kMs;
    r.on_connect(t);
    r.on_connection_end(t, true);  // reset at once: the gap to the next connect is the backoff
  }
  r.set_faults(t + 10, false, {});
  r.on_connect(t + 300 * kMs);  // after a failure: counted
  r.on_success(t + 301 * kMs);  // recovered: the window is complete
  r.on_connection_end(t + 400 * kMs, false);
  r.on_connect(t + 900 * kMs);  // after a clean close: not a reconnect
  const auto& w = r.windows().back();
  EXPECT_EQ(w.reconnect_intervals_ms, (std::vector<double>{20, 40, 80, 160, 300}));
  EXPECT_EQ(w.connects, 6u);
  EXPECT_EQ(r.reconnect_intervals_ms().size(), 5u);
  EXPECT_EQ(r.connects(), 7u);
  EXPECT_EQ(w.peak_connects_per_second, 6u);  // all six within one second
}

TEST(ClientRecord, PeakConnectsUseASlidingSecond) {
  ClientRecord r;
  for (int i = 0; i < 10; ++i) r.on_connect(900 * kMs + i * 20 * kMs);  // across a second edge
  r.on_connect(3000 * kMs);
  EXPECT_EQ(r.peak_connects_per_second(), 10u);
}

TEST(ClientRecord, ResendIsTheSameCommandAndKeyAfterAFailure) {
  ClientRecord r;
  EXPECT_FALSE(r.on_request(0, cmd(1, 7), 1));
  r.on_command_failed(10 * kMs, cmd(1, 7), 1, "toxic");
  EXPECT_FALSE(r.on_request(20 * kMs, cmd(1, 8), 2));  // other key
  EXPECT_FALSE(r.on_request(20 * kMs, cmd(2, 7), 2));  // other command
  EXPECT_TRUE(r.on_request(30 * kMs, cmd(1, 7), 2));
  EXPECT_FALSE(r.on_request(40 * kMs, cmd(1, 7), 2));  // one failure, one resend
  EXPECT_EQ(r.resends(), 1u);
  // Too late: not a resend.
  r.on_command_failed(100 * kMs, cmd(1, 7), 3, "toxic");
  EXPECT_FALSE(r.on_request(100 * kMs + 11'000'000, cmd(1, 7), 3));
  auto j = r.to_json(20'000'000, 0);
  EXPECT_EQ(j["resends"]["total"], 1);
  EXPECT_EQ(j["resends"]["recent"][0]["command"], "INCR");
  EXPECT_EQ(j["resends"]["recent"][0]["same_connection"], false);
  EXPECT_DOUBLE_EQ(j["resends"]["recent"][0]["after_ms"].get<double>(), 20.0);
}

TEST(ClientRecord, PointFaultsMakeOrExtendAWindow) {
  ClientRecord r;
  r.point_fault(100 * kMs, "dropped");
  r.point_fault(200 * kMs, "connect_failed");
  ASSERT_EQ(r.windows().size(), 1u);
  EXPECT_EQ(*r.windows().back().end_us, 200 * kMs);
  r.on_success(260 * kMs);
  EXPECT_DOUBLE_EQ(*r.windows().back().time_to_recover_ms(), 60.0);
  r.point_fault(400 * kMs, "dropped");
  EXPECT_EQ(r.windows().size(), 2u);
}

TEST(ClientRecord, HandshakesAreCounted) {
  ClientRecord r;
  r.on_handshake(0, 1, {"CLIENT SETNAME", "SELECT 2"});
  r.on_handshake(5, 2, {"CLIENT SETNAME", "SELECT 2"});
  auto j = r.to_json(10, 0);
  EXPECT_EQ(j["handshake"]["connections"], 2);
  EXPECT_EQ(j["handshake"]["commands"]["SELECT 2"], 2);
  EXPECT_EQ(j["handshake"]["recent"][1]["connection"], 2);
}

} // namespace
} // namespace faultline::observe
