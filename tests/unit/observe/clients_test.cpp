#include "observe/clients.h"

#include <gtest/gtest.h>

#include "resp/commands.h"

namespace faultline::observe {
namespace {

constexpr uint64_t kMs = 1000;

CommandIdent cmd(uint64_t h, uint32_t key, std::string_view name = "INCR", uint64_t args = 0) {
  return CommandIdent{h, key, args, false, name};
}
CommandIdent setup_cmd(uint64_t h, std::string_view name) {
  return CommandIdent{h, 0, 99, true, name};
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

TEST(ClassifyBackoff, SequencesAreClassifiedEachOnItsOwn) {
  // A growing backoff, then a one-off immediate reconnect (a stale pooled connection): still
  // growing, where one list [100, 200, 400, 1] would read "irregular".
  EXPECT_EQ(classify_backoff({100, 200, 400, 1}), "irregular");
  EXPECT_EQ(classify_retries({{100, 200, 400}, {1}}), "growing");
  EXPECT_EQ(classify_retries({{100, 200, 400}, {50, 100, 200, 400}}), "growing");
  EXPECT_EQ(classify_retries({{100, 200, 400}, {100, 100, 100}}), "irregular");
  EXPECT_EQ(classify_retries({{1}, {2, 3}}), "unknown");
}

// The case: a client created with client_name='app' sends CLIENT SETNAME on every
// connection, so after a reset it sends it again: that is its handshake, never a resend.
TEST(ConnectionSetup, TheTableAndTheHandshakeListDecide) {
  auto setup = [](std::string_view name, std::string_view sub = {}) {
    return is_connection_setup(name, sub, resp::lookup(name, sub));
  };
  for (auto [n, sub] : std::initializer_list<std::pair<std::string_view, std::string_view>>{
           {"AUTH", ""}, {"HELLO", ""}, {"SELECT", ""}, {"CLIENT", "SETNAME"},
           {"CLIENT", "SETINFO"}, {"READONLY", ""}, {"READWRITE", ""}, {"PING", ""},
           {"CLIENT", "TRACKING"}, {"CLIENT", "GETNAME"}, {"COMMAND", "DOCS"}, {"ECHO", ""},
           {"SUBSCRIBE", ""}})
    EXPECT_TRUE(setup(n, sub)) << n << ' ' << sub;
  for (auto [n, sub] : std::initializer_list<std::pair<std::string_view, std::string_view>>{
           {"INCR", ""}, {"GET", ""}, {"SET", ""}, {"CLIENT", "KILL"}, {"CLIENT", "PAUSE"},
           {"WAIT", ""}, {"EVAL", ""}, {"FLUSHALL", ""}})
    EXPECT_FALSE(setup(n, sub)) << n << ' ' << sub;
  // A name the table does not know is not setup unless the handshake list names it.
  EXPECT_FALSE(is_connection_setup("MYMODULE.CMD", "", nullptr));
}

TEST(ClientRecord, ClientSetnameAfterAResetIsNoResend) {
  ClientRecord r;
  // The first connection: CLIENT SETNAME app, then work; a reset cuts it off while both the
  // handshake reply and an INCR are in flight.
  r.on_connect(0);
  r.on_command_failed(10 * kMs, setup_cmd(5, "CLIENT SETNAME"), 1, "reset_peer");
  r.on_command_failed(10 * kMs, cmd(1, 7, "INCR", 42), 1, "reset_peer");
  r.on_connection_end(10 * kMs, true);
  r.on_connect(60 * kMs);
  EXPECT_FALSE(r.on_request(61 * kMs, setup_cmd(5, "CLIENT SETNAME"), 2));
  r.on_success(62 * kMs);
  auto j = r.to_json(100 * kMs, 0);
  EXPECT_EQ(j["resends"]["total"], 0) << j.dump();
  EXPECT_FALSE(j["resends"]["by_command"].contains("CLIENT SETNAME"));
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
  EXPECT_DOUBLE_EQ(*r.worst_time_to_recover_ms(), 250.0);
  EXPECT_EQ(r.windows().back().faults, std::vector<std::string>{"down"});
}

// A window that never recovered is reported as such, not as a measured time to recover.
TEST(ClientRecord, UnrecoveredWindowIsNotATimeToRecover) {
  ClientRecord r;
  r.set_faults(0, true, {"x"});
  r.set_faults(10 * kMs, false, {});
  EXPECT_FALSE(r.worst_time_to_recover_ms());
  EXPECT_EQ(r.unrecovered_windows(), 1u);
  EXPECT_DOUBLE_EQ(*r.longest_unrecovered_ms(510 * kMs), 500.0);
  auto j = r.to_json(510 * kMs, 0);
  EXPECT_TRUE(j["recovery"]["worst_time_to_recover_ms"].is_null());
  EXPECT_EQ(j["recovery"]["unrecovered_windows"], 1);
}

// The case: a growing backoff [100, 200, 400] and recovery, then one more ordinary
// connect and command (a pool opening a connection for the next r.get): still [100, 200, 400],
// "growing".
TEST(ClientRecord, BackoffEndsAtTheFirstGoodReply) {
  ClientRecord r;
  r.on_connect(0);
  r.on_connect(1 * kMs);  // a second pooled connection
  r.set_faults(5 * kMs, true, {"reset_peer"});
  r.on_connection_end(10 * kMs, true);
  r.on_connection_end(10 * kMs, true);  // both reset
  uint64_t t = 10 * kMs;
  for (uint64_t gap : {100, 200, 400}) {
    t += gap * kMs;
    r.on_connect(t);
    if (gap != 400) r.on_connection_end(t, true);
  }
  r.set_faults(t - 1, false, {});
  r.on_success(t + 1 * kMs);  // recovered on the last connect
  r.on_connect(t + 2 * kMs);  // the extra r.get's connection: ordinary
  r.on_success(t + 3 * kMs);
  auto j = r.to_json(t + 10 * kMs, 0);
  EXPECT_EQ(j["reconnect_intervals_ms"], (std::vector<double>{100, 200, 400})) << j.dump();
  EXPECT_EQ(j["backoff"], "growing");

  // A stale pooled connection that fails after the recovery and is reopened at once is a retry
  // sequence of its own: the backoff stays "growing".
  r.on_connection_end(t + 20 * kMs, true);
  r.on_connect(t + 21 * kMs);
  r.on_success(t + 22 * kMs);
  j = r.to_json(t + 30 * kMs, 0);
  EXPECT_EQ(j["backoff"], "growing") << j.dump();
  EXPECT_EQ(j["retries"].size(), 2u);
  EXPECT_EQ(j["retries"][1]["intervals_ms"], (std::vector<double>{1}));
  EXPECT_EQ(j["reconnect_intervals_ms"], (std::vector<double>{100, 200, 400}));
}

// The case as redis-py makes it: Retry(ExponentialBackoff) gives up under reset_peer
// after three retries (100, 200, 400 ms, each reset), the test lifts the toxic, and one extra
// r.get connects 1 ms after the last reset and succeeds. That connect is the application's, not
// a retry: the backoff stays [100, 200, 400], "growing".
TEST(ClientRecord, ConnectAfterTheFaultIsLiftedIsNoRetry) {
  ClientRecord r;
  r.set_faults(0, true, {"reset_peer_upstream"});
  uint64_t t = 10 * kMs;
  r.on_connect(t);
  r.on_connection_end(t, true);
  for (uint64_t gap : {100, 200, 400}) {
    t += gap * kMs;
    r.on_connect(t);
    r.on_connection_end(t, true);
  }
  r.set_faults(t + 500, false, {});  // the with-block ends: toxic removed
  r.on_connect(t + 1 * kMs);         // the extra r.get
  r.on_success(t + 2 * kMs);
  auto j = r.to_json(t + 10 * kMs, 0);
  EXPECT_EQ(j["reconnect_intervals_ms"], (std::vector<double>{100, 200, 400})) << j.dump();
  EXPECT_EQ(j["backoff"], "growing") << j.dump();
  EXPECT_EQ(j["windows"][0]["reconnect_intervals_ms"], (std::vector<double>{100, 200, 400}));
}

// When Redis itself fails (a refused or reset upstream: no fault set on the proxy), the
// client's reconnects are retries all the same.
TEST(ClientRecord, ReconnectsAfterRedisItselfFailedAreRetries) {
  ClientRecord r;
  uint64_t t = 0;
  r.on_connect(t);
  for (uint64_t gap : {50, 100, 200}) {
    r.point_fault(t, "connect_failed");
    r.on_connection_end(t, true);
    t += gap * kMs;
    r.on_connect(t);
  }
  r.on_success(t + 1 * kMs);
  EXPECT_EQ(r.backoff_intervals_ms(), (std::vector<double>{50, 100, 200}));
}

// A connect after a failure but after a good reply on another connection is no retry.
TEST(ClientRecord, ConnectAfterRecoveryOnAnotherConnectionIsNoRetry) {
  ClientRecord r;
  r.on_connect(0);
  r.on_connect(0);
  r.on_connection_end(10 * kMs, true);  // one of two connections fails
  r.on_success(11 * kMs);               // the other one carries on
  r.on_connect(500 * kMs);              // the pool replaces the first, later
  EXPECT_TRUE(r.reconnect_intervals_ms().empty());
  EXPECT_TRUE(r.backoff_intervals_ms().empty());
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
  r.on_connect(t + 300 * kMs);  // after a failure, the fault still on: counted
  r.on_connection_end(t + 300 * kMs, true);
  r.set_faults(t + 310 * kMs, false, {});
  r.on_connect(t + 400 * kMs);  // after the fault was lifted: the application's, not counted
  r.on_success(t + 401 * kMs);  // recovered: the window is complete
  r.on_connection_end(t + 500 * kMs, false);
  r.on_connect(t + 900 * kMs);  // after a clean close: not a reconnect
  const auto& w = r.windows().back();
  EXPECT_EQ(w.reconnect_intervals_ms, (std::vector<double>{20, 40, 80, 160, 300}));
  EXPECT_EQ(w.connects, 7u);
  EXPECT_EQ(r.reconnect_intervals_ms().size(), 5u);
  EXPECT_EQ(r.connects(), 8u);
  EXPECT_EQ(w.peak_connects_per_second, 7u);  // all seven within one second
}

TEST(ClientRecord, PeakConnectsUseASlidingSecond) {
  ClientRecord r;
  for (int i = 0; i < 10; ++i) r.on_connect(900 * kMs + i * 20 * kMs);  // across a second edge
  r.on_connect(3000 * kMs);
  EXPECT_EQ(r.peak_connects_per_second(), 10u);
}

TEST(ClientRecord, ResendIsTheSameArgumentsAfterTheFailure) {
  ClientRecord r;
  r.on_command_failed(10 * kMs, cmd(1, 7, "SET", 111), 1, "reset_peer");  // SET k 1
  EXPECT_FALSE(r.on_request(20 * kMs, cmd(1, 7, "SET", 222), 2));          // SET k 2: new work
  EXPECT_TRUE(r.on_request(30 * kMs, cmd(1, 7, "SET", 111), 2));           // SET k 1 again
  EXPECT_EQ(r.resends(), 1u);
}

// The case: INCR ctr cut off by a reset and sent again is a resend; the application's
// next INCR ctr after a good reply is its next increment, not a resend.
TEST(ClientRecord, NextLegitimateIncrIsNoResend) {
  ClientRecord r;
  r.on_command_failed(10 * kMs, cmd(1, 7, "INCR", 42), 1, "reset_peer");
  EXPECT_TRUE(r.on_request(50 * kMs, cmd(1, 7, "INCR", 42), 2));  // the retry
  r.on_success(51 * kMs);
  EXPECT_FALSE(r.on_request(60 * kMs, cmd(1, 7, "INCR", 42), 2));  // the next increment
  EXPECT_EQ(r.resends(), 1u);

  // A client that gave the cut-off INCR up: its next good reply to other work says so, and
  // the INCR after it is new work.
  ClientRecord g;
  g.on_command_failed(10 * kMs, cmd(1, 7, "INCR", 42), 1, "reset_peer");
  EXPECT_FALSE(g.on_request(50 * kMs, cmd(2, 9, "GET", 43), 2));
  g.moved_on(50 * kMs);  // the GET's good reply
  EXPECT_FALSE(g.on_request(60 * kMs, cmd(1, 7, "INCR", 42), 2));
  EXPECT_EQ(g.resends(), 0u);
}

// A command answered -LOADING was not run: sending it again is a retry after an error, which a
// well-behaved client does, not a resend (which risks running it twice).
TEST(ClientRecord, RetryAfterAnErrorReplyIsNoResend) {
  ClientRecord r;
  r.on_command_failed(10 * kMs, cmd(1, 7, "SET", 111), 1, "LOADING", false);
  EXPECT_TRUE(r.on_request(20 * kMs, cmd(1, 7, "SET", 111), 1));
  EXPECT_EQ(r.resends(), 0u);
  EXPECT_EQ(r.retries_after_errors(), 1u);
  auto j = r.to_json(30 * kMs, 0);
  EXPECT_EQ(j["resends"]["total"], 0);
  EXPECT_EQ(j["resends"]["after_errors"], 1);
  EXPECT_EQ(j["resends"]["recent"][0]["cut_off"], false);
}

// A failed request whose arguments were not hashed (sent with no fault in effect) is compared
// on command and first key.
TEST(ClientRecord, UnhashedFailureComparesCommandAndKey) {
  ClientRecord r;
  r.on_command_failed(10 * kMs, cmd(1, 7, "INCR", 0), 1, "upstream_reset");
  EXPECT_TRUE(r.on_request(20 * kMs, cmd(1, 7, "INCR", 42), 2));
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

// Per client and per time range: the log replays the selected events into a fresh record.
VerdictLog::Event ev(VerdictLog::Event::Kind k, uint64_t at, uint64_t session, bool flag = false) {
  VerdictLog::Event e;
  e.kind = k;
  e.at_us = at;
  e.session = session;
  e.flag = flag;
  return e;
}

TEST(VerdictLog, ViewsOneClientAndATimeRange) {
  using K = VerdictLog::Event::Kind;
  VerdictLog log;
  log.identify(1, "127.0.0.1");
  log.identify(1, "app");  // it named itself in its handshake
  log.identify(2, "127.0.0.1");
  auto fault = [&](uint64_t at, bool on) {
    auto e = ev(K::Faults, at, 0, on);
    if (on) e.list = {"reset_peer"};
    log.add(e);
  };
  log.add(ev(K::Connect, 0, 1));
  log.add(ev(K::Connect, 0, 2));
  fault(100 * kMs, true);
  log.add(ev(K::End, 110 * kMs, 1, true));
  log.add(ev(K::End, 110 * kMs, 2, true));
  log.identify(3, "app");
  log.identify(4, "127.0.0.1");
  log.add(ev(K::Connect, 115 * kMs, 4));  // the other one at once
  log.add(ev(K::Connect, 210 * kMs, 3));  // app retries after 100 ms
  fault(300 * kMs, false);
  log.add(ev(K::Success, 350 * kMs, 3));
  log.add(ev(K::Success, 900 * kMs, 4));
  auto c = ev(K::Counts, 950 * kMs, 3);
  c.n1 = 10;
  c.n2 = 9;
  log.add(c);

  EXPECT_EQ(log.clients(), (std::vector<std::string>{"127.0.0.1", "app"}));

  ClientRecord app;
  log.replay({std::string("app"), 0, UINT64_MAX}, app);
  auto j = app.to_json(1000 * kMs, 0);
  EXPECT_EQ(j["connects"]["total"], 2) << j.dump();
  EXPECT_EQ(j["reconnect_intervals_ms"], (std::vector<double>{100}));
  EXPECT_DOUBLE_EQ(j["recovery"]["worst_time_to_recover_ms"].get<double>(), 50.0);
  EXPECT_EQ(j["commands"], 10);

  ClientRecord other;
  log.replay({std::string("127.0.0.1"), 0, UINT64_MAX}, other);
  j = other.to_json(1000 * kMs, 0);
  EXPECT_DOUBLE_EQ(j["recovery"]["worst_time_to_recover_ms"].get<double>(), 600.0) << j.dump();

  // A range that starts during the fault: the fault is in it (from before), the connects
  // before it are not.
  ClientRecord range;
  log.replay({std::nullopt, 200 * kMs, 400 * kMs}, range);
  j = range.to_json(400 * kMs, 0);
  EXPECT_EQ(j["connects"]["total"], 1) << j.dump();
  ASSERT_EQ(j["windows"].size(), 1u);
  EXPECT_DOUBLE_EQ(j["windows"][0]["start_ms"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(j["recovery"]["worst_time_to_recover_ms"].get<double>(), 50.0);

  // A range after the window: no window, nothing to recover from.
  ClientRecord late;
  log.replay({std::nullopt, 2000 * kMs, UINT64_MAX}, late);
  j = late.to_json(3000 * kMs, 0);
  EXPECT_TRUE(j["windows"].empty()) << j.dump();
  EXPECT_EQ(j["connects"]["total"], 0);
}

TEST(VerdictLog, IsBounded) {
  VerdictLimits lim;
  lim.events = 4;
  lim.identities = 2;
  VerdictLog log(lim);
  for (uint64_t i = 1; i <= 10; ++i) {
    log.identify(i, "c" + std::to_string(i % 3));
    log.add(ev(VerdictLog::Event::Kind::Connect, i * kMs, i));
  }
  EXPECT_EQ(*log.complete_since_us(), 7 * kMs);
  EXPECT_EQ(log.identity(1), nullptr);
  EXPECT_NE(log.identity(10), nullptr);
}

// The log is a ring of blocks: past its bound the oldest go, and a replay still meets the
// events in the order they came, across block boundaries and the ring's wrap.
TEST(VerdictLog, KeepsItsBoundAndOrderAcrossBlocks) {
  using K = VerdictLog::Event::Kind;
  VerdictLimits lim;
  lim.events = VerdictLog::kBlock * 2 + 10;  // three blocks, the last one short
  VerdictLog log(lim);
  log.identify(1, "a");
  const uint64_t n = lim.events * 3 + 7;     // wraps the ring three times
  for (uint64_t i = 1; i <= n; ++i) {
    log.add(ev(K::Connect, i * kMs, 1));
    ASSERT_EQ(log.size(), std::min<size_t>(i, lim.events));
  }
  EXPECT_EQ(*log.complete_since_us(), (n - lim.events + 1) * kMs);

  ClientRecord all(lim);
  log.replay({}, all);
  auto j = all.to_json(n * kMs, 0);
  EXPECT_EQ(j["connects"]["total"], lim.events);
  const auto& recent = j["connects"]["recent_ms"];
  ASSERT_EQ(recent.size(), lim.recent_connects);
  for (size_t i = 0; i < recent.size(); ++i)
    EXPECT_DOUBLE_EQ(recent[i].get<double>(), double(n - lim.recent_connects + 1 + i)) << i;

  // A range stops at the first event past its end: in order, it holds exactly its events.
  ClientRecord range(lim);
  log.replay({std::string("a"), (n - 300) * kMs, (n - 20) * kMs}, range);
  EXPECT_EQ(range.to_json(n * kMs, 0)["connects"]["total"], 280);
}

// Counts ride on the events that have no use for n1 and n2; on the others those are hashes.
TEST(VerdictLog, CountsGoWithTheEventsThatCarryThem) {
  using K = VerdictLog::Event::Kind;
  VerdictLog log;
  log.identify(1, "127.0.0.1");
  auto c = ev(K::Connect, 0, 1);
  log.add(c);
  auto r = ev(K::Request, 1 * kMs, 1);
  r.set_ident({1234567, 7, 7654321, false, "INCR"});
  r.list = {"INCR"};
  log.add(r);
  auto s = ev(K::Success, 2 * kMs, 1);
  s.n1 = 4;  // requests counted before it
  s.n2 = 3;
  log.add(s);
  auto e = ev(K::End, 3 * kMs, 1);
  e.n1 = 2;
  e.n2 = 2;
  log.add(e);
  ClientRecord out;
  log.replay({std::string("127.0.0.1"), 0, UINT64_MAX}, out);
  auto j = out.to_json(4 * kMs, 0);
  EXPECT_EQ(j["commands"], 1 + 4 + 2) << j.dump();
  EXPECT_EQ(j["successful_replies"], 1 + 3 + 2);
  EXPECT_EQ(j["connects"]["total"], 1);
}

// Identities are kept once per text, whatever the number of connections, and by connection.
TEST(VerdictLog, IdentitiesAreSharedRenamedAndForgotten) {
  VerdictLimits lim;
  lim.identities = 3;
  VerdictLog log(lim);
  auto who = [&](uint64_t session) {
    const std::string* w = log.identity(session);
    return w ? *w : std::string("<none>");
  };
  log.identify(2, "127.0.0.1");
  log.identify(1, "127.0.0.1");  // out of order (a clear() identifies the open ones again)
  log.identify(3, "127.0.0.1");
  log.identify(2, "app");        // it named itself
  EXPECT_EQ(who(1), "127.0.0.1");
  EXPECT_EQ(who(2), "app");
  EXPECT_EQ(who(3), "127.0.0.1");
  EXPECT_EQ(log.identity(1), log.identity(3));  // one text for both
  log.identify(4, "127.0.0.1");
  EXPECT_EQ(who(1), "<none>");  // the oldest connection is forgotten
  EXPECT_EQ(who(3), "127.0.0.1");
  log.identify(5, "b");
  log.identify(6, "b");
  EXPECT_EQ(who(2), "<none>");
  EXPECT_EQ(who(3), "<none>");
  EXPECT_EQ(who(4), "127.0.0.1");
  EXPECT_EQ(who(6), "b");
  EXPECT_EQ(log.clients(), (std::vector<std::string>{"127.0.0.1", "app", "b"}));
}

TEST(ArgsHash, CoversEveryArgument) {
  resp::Arg a1[] = {{"INCR", 4}, {"ctr", 3}};
  resp::Arg a2[] = {{"INCR", 4}, {"cts", 3}};
  resp::Arg a3[] = {{"SET", 3}, {"k", 1}, {"1", 1}};
  resp::Arg a4[] = {{"SET", 3}, {"k", 1}, {"2", 1}};
  auto h = [](std::span<const resp::Arg> a) {
    resp::RequestFrame f;
    f.argc = a.size();
    f.args = a;
    return args_hash(f);
  };
  EXPECT_EQ(h(a1), h(a1));
  EXPECT_NE(h(a1), h(a2));
  EXPECT_NE(h(a3), h(a4));
  EXPECT_NE(h(a3), 0u);
}

} // namespace
} // namespace faultline::observe
