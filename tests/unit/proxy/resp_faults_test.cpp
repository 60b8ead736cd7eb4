#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <uv.h>

#include "proxy/resp_faults.h"

// Fault execution against a fake session: the port records what would have gone to Redis, to
// the client, been dropped or ended the connection. No sockets; a real uv loop for the timers.

namespace faultline::proxy {
namespace {

using K = toxics::RespActionKind;
using toxics::Stream;

struct FakePort final : FaultPort {
  uv_loop_t uvloop;
  uv::BufferPool pool;
  RespFaults* faults = nullptr;
  std::vector<std::string> events;  // in order: "redis:<bytes>", "client:<bytes>", "eof:redis", ...
  size_t dropped_up = 0, dropped_down = 0;
  bool ended_ = false, closing_ = false, expected = false, client_stopped = false;
  uint32_t drain_ms = 2000;

  FakePort() { uv_loop_init(&uvloop); }
  ~FakePort() {
    uv_run(&uvloop, UV_RUN_NOWAIT);  // the timers' close callbacks
    uv_loop_close(&uvloop);
  }
  uv::Chunk chunk(std::string_view s) { return pool.make_chunk(s.data(), s.size()); }

  void to_redis(uv::Chunk c) override { events.push_back("redis:" + std::string(c.data(), c.len)); }
  void to_client(uv::Chunk c) override {
    events.push_back("client:" + std::string(c.data(), c.len));
  }
  void eof(Stream dir) override {
    events.push_back(dir == Stream::Upstream ? "eof:redis" : "eof:client");
  }
  void inject(std::string_view bytes) override { faults->reply(chunk(bytes)); }
  void dropped(Stream dir, size_t n) override {
    (dir == Stream::Upstream ? dropped_up : dropped_down) += n;
  }
  uv::Chunk keep(Stream, uv::Chunk c) override { return c; }
  void stop_client() override { client_stopped = true; }
  void end(bool rst) override {
    ended_ = true;
    events.push_back(rst ? "end:rst" : "end:fin");
  }
  bool ended() const override { return ended_ || closing_; }
  bool closing() const override { return closing_; }
  bool reply_expected() const override { return expected; }
  uint32_t drain_timeout_ms() const override { return drain_ms; }
  uv_loop_t* loop() override { return &uvloop; }
  // Rewrite: every collected reply becomes "[" + kind + "]" + reply, unless it holds "keep".
  size_t limit = 1 << 20;
  std::vector<size_t> too_large;
  size_t released = 0;
  size_t rewrite_limit() const override { return limit; }
  bool rewrite(uint8_t kind, std::string_view frame, std::string& out) override {
    if (frame.find("keep") != std::string_view::npos) return false;
    out = "[" + std::to_string(kind) + "]" + std::string(frame);
    return true;
  }
  void rewrite_too_large(uint8_t, size_t bytes) override { too_large.push_back(bytes); }
  uv::Chunk replacement(size_t n, std::string_view bytes) override {
    released += n;
    return chunk(bytes);
  }

  // Runs the loop until `done` or 5 s (bounded: a hang fails the test, it does not stall it).
  template <class F> bool run_until(F done) {
    const uint64_t deadline = uv_hrtime() + 5'000'000'000ULL;
    while (!done() && uv_hrtime() < deadline) uv_run(&uvloop, UV_RUN_ONCE);
    return done();
  }
};

// A port and its fault executor, destroyed in the right order (the executor's timers first).
struct Rig {
  FakePort port;
  std::unique_ptr<RespFaults> f = std::make_unique<RespFaults>(port);
  Rig() { port.faults = f.get(); }
  ~Rig() { f.reset(); }
  // The session's delivery toward the client: through the executor only when it intercepts.
  void from_redis(std::string_view s) {
    if (f->intercepts_replies()) f->reply(port.chunk(s));
    else port.to_client(port.chunk(s));
  }
  void to_redis(std::string_view s) {
    if (f->holds_requests()) f->request(port.chunk(s));
    else port.to_redis(port.chunk(s));
  }
  void flag_and_start(PendingId id, K kind, uint64_t delay_ms = 0, uint64_t bytes = 0) {
    f->flag({id, kind, delay_ms, bytes, "t"});
    f->begin_collect(id);
  }
  size_t count(std::string_view e) const {
    return size_t(std::count(port.events.begin(), port.events.end(), std::string(e)));
  }
};

using Events = std::vector<std::string>;

TEST(RespFaults, InjectedRepliesGoOutInTheirTurnAndInOrder) {
  Rig r;
  r.f->queue_injection("-ERR first\r\n", "e1");
  r.f->queue_injection("-ERR second\r\n", "e2");
  EXPECT_EQ(r.f->injected_bytes(), 25u);
  EXPECT_TRUE(r.f->has_injections());
  // The pairing says: a real reply, then the two injected ones, one after the other.
  r.from_redis("+OK\r\n");
  std::string payload, fault;
  ASSERT_TRUE(r.f->next_injection(payload, fault));
  EXPECT_EQ(fault, "e1");
  r.f->deliver_injection(payload);
  r.from_redis("$1\r\nx\r\n");
  ASSERT_TRUE(r.f->next_injection(payload, fault));
  EXPECT_EQ(fault, "e2");
  r.f->deliver_injection(payload);
  EXPECT_FALSE(r.f->next_injection(payload, fault));
  EXPECT_EQ(r.f->injected_bytes(), 0u);
  EXPECT_EQ(r.port.events,
            (Events{"client:+OK\r\n", "client:-ERR first\r\n", "client:$1\r\nx\r\n",
                    "client:-ERR second\r\n"}));
}

// A deployment's proxy: the reply is collected whole across chunks, then replaced.
TEST(RespFaults, RewrittenReplyIsCollectedWholeAndReplaced) {
  Rig r;
  r.flag_and_start(3, K::Rewrite, 0, 5);
  r.f->collect(r.port.chunk("*2\r\n$3\r\nabc"));
  r.f->collect(r.port.chunk("\r\n:1\r\n"));
  EXPECT_TRUE(r.port.events.empty());  // nothing goes on before the reply is whole
  r.f->finish_collect();
  EXPECT_EQ(r.port.events, (Events{"client:[5]*2\r\n$3\r\nabc\r\n:1\r\n"}));
  EXPECT_EQ(r.port.released, 17u);
  // One the rewriter leaves alone goes on as it came, chunk by chunk.
  r.port.events.clear();
  r.flag_and_start(4, K::Rewrite, 0, 5);
  r.f->collect(r.port.chunk("$4\r\n"));
  r.f->collect(r.port.chunk("keep\r\n"));
  r.f->finish_collect();
  EXPECT_EQ(r.port.events, (Events{"client:$4\r\n", "client:keep\r\n"}));
}

// A request that may only be redirected: an error is collected, anything else streams.
TEST(RespFaults, RedirectOnlyCollectsErrorsAndStreamsTheRest) {
  Rig r;
  r.flag_and_start(1, K::Rewrite, 0, 1);  // ReplyRewriter::kRedirectOnly
  r.f->collect(r.port.chunk("$3\r\n"));
  EXPECT_EQ(r.port.events, (Events{"client:$3\r\n"}));  // at once
  r.f->collect(r.port.chunk("bar\r\n"));
  r.f->finish_collect();
  EXPECT_EQ(r.port.events, (Events{"client:$3\r\n", "client:bar\r\n"}));
  r.port.events.clear();
  r.flag_and_start(2, K::Rewrite, 0, 1);
  r.f->collect(r.port.chunk("-MOVED 1 127"));
  r.f->collect(r.port.chunk(".0.0.1:7000\r\n"));
  EXPECT_TRUE(r.port.events.empty());
  r.f->finish_collect();
  EXPECT_EQ(r.port.events, (Events{"client:[1]-MOVED 1 127.0.0.1:7000\r\n"}));
  // RESP3's blob error is an error too.
  r.port.events.clear();
  r.flag_and_start(3, K::Rewrite, 0, 1);
  r.f->collect(r.port.chunk("!25\r\nMOVED 1 "));
  r.f->collect(r.port.chunk("127.0.0.1:7000\r\n"));
  EXPECT_TRUE(r.port.events.empty());
  r.f->finish_collect();
  EXPECT_EQ(r.port.events, (Events{"client:[1]!25\r\nMOVED 1 127.0.0.1:7000\r\n"}));
}

// A sentinel's proxy, subscribed: the next frame, whatever it answers, is collected whole as a
// message; a flagged request whose reply went by as one is forgotten, not left waiting.
TEST(RespFaults, MessagesAreCollectedWholeAndFlagsTheyPassedAreForgotten) {
  Rig r;
  r.f->begin_collect_unpaired(2);
  ASSERT_TRUE(r.f->collecting());
  EXPECT_EQ(r.f->collect_id(), RespFaults::kUnpairedId);
  r.f->collect(r.port.chunk(">3\r\n$7\r\nmessage\r\n"));
  r.f->collect(r.port.chunk("$1\r\nc\r\n$1\r\np\r\n"));
  EXPECT_TRUE(r.port.events.empty());
  r.f->finish_collect();
  EXPECT_FALSE(r.f->collecting());
  EXPECT_EQ(r.port.events,
            (Events{"client:[2]>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n"}));
  r.f->flag({5, K::DelayReply, 100, 0, "t"});
  ASSERT_TRUE(r.f->has_flagged());
  r.f->forget_flag(5);
  EXPECT_FALSE(r.f->has_flagged());
}

// Past the limit the reply goes on as it came (collecting never waits for bytes the watermark
// would stop it from reading), and the rewriter hears of it.
TEST(RespFaults, RewriteOverTheLimitStreamsUnchanged) {
  Rig r;
  r.port.limit = 8;
  r.flag_and_start(1, K::Rewrite, 0, 5);
  r.f->collect(r.port.chunk("$10\r\n"));
  EXPECT_TRUE(r.port.events.empty());
  r.f->collect(r.port.chunk("0123456789"));
  EXPECT_EQ(r.port.events, (Events{"client:$10\r\n", "client:0123456789"}));
  r.f->collect(r.port.chunk("\r\n"));
  r.f->finish_collect();
  EXPECT_EQ(r.port.events, (Events{"client:$10\r\n", "client:0123456789", "client:\r\n"}));
  EXPECT_EQ(r.port.too_large, (std::vector<size_t>{15}));
  EXPECT_EQ(r.port.released, 0u);
}

// Redis closing in the middle of a collected reply: what came goes on.
TEST(RespFaults, RewriteCutByRedisEofDeliversWhatCame) {
  Rig r;
  r.flag_and_start(1, K::Rewrite, 0, 5);
  r.f->collect(r.port.chunk("*3\r\n"));
  r.f->upstream_eof();
  EXPECT_EQ(r.port.events, (Events{"client:*3\r\n", "eof:client"}));
}

TEST(RespFaults, ReplacedReplyIsSwallowedAndTheInjectedOneDelivered) {
  // resp_reply / EXECABORT: Redis's own answer (the DISCARD's +OK) is not the client's; the
  // injected one is.
  Rig r;
  r.f->queue_injection("-EXECABORT Transaction discarded\r\n", "x");
  r.flag_and_start(7, K::Inject);
  ASSERT_TRUE(r.f->collecting());
  EXPECT_EQ(r.f->collect_id(), 7u);
  r.f->collect(r.port.chunk("+OK\r\n"));
  r.f->finish_collect();
  EXPECT_FALSE(r.f->collecting());
  std::string payload, fault;
  ASSERT_TRUE(r.f->next_injection(payload, fault));
  r.f->deliver_injection(payload);
  EXPECT_EQ(r.port.events, (Events{"client:-EXECABORT Transaction discarded\r\n"}));
  EXPECT_EQ(r.port.dropped_down, 5u);
}

TEST(RespFaults, EmptyInjectionOrClosingDeliversNothing) {
  Rig r;
  r.f->queue_injection("", "quiet");  // CLIENT REPLY OFF: counted, not sent
  std::string payload, fault;
  ASSERT_TRUE(r.f->next_injection(payload, fault));
  r.f->deliver_injection(payload);
  r.f->queue_injection("-ERR x\r\n", "e");
  r.port.closing_ = true;
  ASSERT_TRUE(r.f->next_injection(payload, fault));
  r.f->deliver_injection(payload);
  EXPECT_TRUE(r.port.events.empty());
  EXPECT_EQ(r.f->injected_bytes(), 0u);
}

TEST(RespFaults, DelayedRequestIsHeldThenReleasedByTheTimerWithWhatFollows) {
  Rig r;
  const uint64_t t0 = uv_hrtime();
  const uint64_t due = r.f->request_due(50);
  std::vector<std::string> frame = {"*2\r\n$3\r\nGET\r\n", "$1\r\nk\r\n"};
  r.f->delay_request(
      due, [&](auto&& fn) { for (auto& s : frame) fn(r.port.chunk(s)); }, true, true);
  EXPECT_TRUE(r.f->holds_requests());
  r.to_redis("*1\r\n$4\r\nPING\r\n");  // later: behind it
  r.f->client_eof();                   // the FIN too
  EXPECT_TRUE(r.port.events.empty());
  ASSERT_TRUE(r.port.run_until([&] { return r.count("eof:redis") == 1; }));
  EXPECT_GE((uv_hrtime() - t0) / 1'000'000, 45u);
  EXPECT_EQ(r.port.events, (Events{"redis:*2\r\n$3\r\nGET\r\n", "redis:$1\r\nk\r\n",
                                   "redis:*1\r\n$4\r\nPING\r\n", "eof:redis"}));
  EXPECT_FALSE(r.f->holds_requests());
}

TEST(RespFaults, DelayedReplyHoldsItAndEveryLaterReplyUntilDue) {
  Rig r;
  const uint64_t t0 = uv_hrtime();
  r.flag_and_start(1, K::DelayReply, 50);
  r.f->collect(r.port.chunk("$5\r\nhel"));
  r.f->collect(r.port.chunk("lo\r\n"));
  r.f->finish_collect();
  r.from_redis("+later\r\n");
  r.f->queue_injection("-ERR injected\r\n", "e");  // an injected reply waits behind it too
  std::string payload, fault;
  ASSERT_TRUE(r.f->next_injection(payload, fault));
  r.f->deliver_injection(payload);
  r.f->upstream_eof();
  EXPECT_TRUE(r.port.events.empty());
  ASSERT_TRUE(r.port.run_until([&] { return r.count("eof:client") == 1; }));
  EXPECT_GE((uv_hrtime() - t0) / 1'000'000, 45u);
  EXPECT_EQ(r.port.events, (Events{"client:$5\r\nhel", "client:lo\r\n", "client:+later\r\n",
                                   "client:-ERR injected\r\n", "eof:client"}));
}

TEST(RespFaults, HangDropsTheReplyAndEveryLaterOneAndCountsThem) {
  Rig r;
  r.flag_and_start(3, K::Hang);
  r.f->collect(r.port.chunk("$5\r\nhello\r\n"));
  r.f->finish_collect();
  EXPECT_TRUE(r.f->intercepts_replies());
  r.from_redis("+OK\r\n");
  r.f->queue_injection("-ERR x\r\n", "e");
  std::string payload, fault;
  ASSERT_TRUE(r.f->next_injection(payload, fault));
  r.f->deliver_injection(payload);
  EXPECT_TRUE(r.port.events.empty());
  EXPECT_EQ(r.port.dropped_down, 11u + 5u + 8u);
  EXPECT_FALSE(r.port.ended_);  // a hang never ends the connection itself
}

TEST(RespFaults, ResetBeforeWaitsForEarlierRepliesThenResets) {
  Rig r;
  r.port.expected = true;  // Redis owes a reply to an earlier command
  r.f->begin_end(true, false);
  EXPECT_TRUE(r.f->stopped());
  EXPECT_EQ(r.f->ending(), RespFaults::Ending::ResetBefore);
  EXPECT_TRUE(r.port.client_stopped);
  EXPECT_FALSE(r.port.ended_);
  r.from_redis("+earlier\r\n");  // delivered: it precedes the end point
  r.port.expected = false;
  r.f->maybe_end();
  r.from_redis("+after\r\n");  // after the end point: not delivered
  EXPECT_EQ(r.port.events, (Events{"client:+earlier\r\n", "end:rst"}));
  EXPECT_EQ(r.port.dropped_down, 8u);  // "+after\r\n"
}

TEST(RespFaults, CloseBeforeWithNothingOwedClosesAtOnce) {
  Rig r;
  r.f->begin_end(false, false);
  EXPECT_EQ(r.port.events, (Events{"end:fin"}));
}

TEST(RespFaults, EndBeforeIsBoundedByTheDrainTime) {
  Rig r;
  r.port.drain_ms = 30;
  r.port.expected = true;  // and Redis never answers
  r.f->begin_end(true, false);
  EXPECT_FALSE(r.port.ended_);
  ASSERT_TRUE(r.port.run_until([&] { return r.port.ended_; }));
  EXPECT_EQ(r.port.events, (Events{"end:rst"}));
}

TEST(RespFaults, ResetAfterDropsTheReplyThenResets) {
  Rig r;
  r.port.expected = true;  // later replies owed do not delay an after-phase end
  r.flag_and_start(2, K::ResetAfter);
  r.f->collect(r.port.chunk("+OK\r\n"));
  EXPECT_TRUE(r.port.events.empty());
  r.f->finish_collect();
  EXPECT_EQ(r.f->ending(), RespFaults::Ending::ResetAfter);
  EXPECT_EQ(r.port.events, (Events{"end:rst"}));
  EXPECT_EQ(r.port.dropped_down, 5u);
}

TEST(RespFaults, CloseAfterWaitsForAHeldReplyFirst) {
  Rig r;
  r.flag_and_start(1, K::DelayReply, 30);
  r.f->collect(r.port.chunk("+first\r\n"));
  r.f->finish_collect();
  r.flag_and_start(2, K::CloseAfter);
  r.f->collect(r.port.chunk("+second\r\n"));
  r.f->finish_collect();
  EXPECT_TRUE(r.port.events.empty());
  ASSERT_TRUE(r.port.run_until([&] { return r.port.ended_; }));
  EXPECT_EQ(r.port.events, (Events{"client:+first\r\n", "end:fin"}));
}

TEST(RespFaults, TruncateDeliversNBytesOfAStreamedReplyThenResets) {
  Rig r;
  r.flag_and_start(4, K::Truncate, 0, 7);
  r.f->collect(r.port.chunk("$10\r\n"));          // 5 bytes: all delivered
  r.f->collect(r.port.chunk("0123456789\r\n"));   // 2 more delivered, 10 dropped
  r.f->collect(r.port.chunk(""));
  EXPECT_FALSE(r.port.ended_);                    // the cut is made when the reply ends
  r.f->finish_collect();
  EXPECT_EQ(r.port.events, (Events{"client:$10\r\n", "client:01", "end:rst"}));
  EXPECT_EQ(r.port.dropped_down, 10u);
}

TEST(RespFaults, AReplyNotFlaggedIsNotCollected) {
  Rig r;
  r.f->flag({5, K::Hang, 0, 0, "h"});
  r.f->begin_collect(6);
  EXPECT_FALSE(r.f->collecting());
  EXPECT_TRUE(r.f->has_flagged());
  r.f->begin_collect(5);
  EXPECT_TRUE(r.f->collecting());
  EXPECT_FALSE(r.f->has_flagged());
}

} // namespace
} // namespace faultline::proxy
