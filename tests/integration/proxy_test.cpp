// The transparent proxy against a real redis-server and a byte-level echo server.

#include <arpa/inet.h>
#include <csignal>
#include <cstring>
#include <netinet/in.h>
#include <random>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/harness.h"

using namespace fltest;

namespace {

struct ProxyFixture : ::testing::Test {
  Redis redis;
  Faultline fl;
  void SetUp() override {
    ASSERT_TRUE(redis.start());
    ASSERT_TRUE(fl.start(redis.port())) << fl.process().log();
  }
  void TearDown() override {
    if (fl.process().running()) {
      EXPECT_EQ(fl.stop(), 0) << fl.process().log();
    }
  }
};

std::string cli(uint16_t port, const std::string& args, int* status = nullptr) {
  return run_cmd("redis-cli -p " + std::to_string(port) + " " + args + " 2>&1", status);
}

} // namespace

TEST_F(ProxyFixture, PingAndSetGetThroughRedisCli) {
  EXPECT_EQ(cli(fl.port(), "PING"), "PONG\n");
  EXPECT_EQ(cli(fl.port(), "SET k hello"), "OK\n");
  EXPECT_EQ(cli(fl.port(), "GET k"), "hello\n");
}

TEST_F(ProxyFixture, LargeValueRoundTrip) {
  std::string value(10 * 1024 * 1024, '\0');
  std::mt19937 rng(1);
  for (auto& c : value) c = static_cast<char>(rng());
  Conn c(fl.port());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(call(c, {"SET", "big", value}), "+OK\r\n");
  std::string reply = call(c, {"GET", "big"});
  std::string expect = "$" + std::to_string(value.size()) + "\r\n" + value + "\r\n";
  ASSERT_EQ(reply.size(), expect.size());
  EXPECT_TRUE(reply == expect);
}

TEST_F(ProxyFixture, PipelineOf10000MatchesDirect) {
  std::string pipeline;
  for (int i = 0; i < 10000; ++i) {
    if (i % 2 == 0) pipeline += cmd({"SET", "key:" + std::to_string(i), std::to_string(i * 7)});
    else pipeline += cmd({"GET", "key:" + std::to_string(i - 1)});
  }
  auto run = [&](uint16_t port) {
    Conn c(port);
    EXPECT_TRUE(c.send_all(pipeline));
    std::string all;
    for (int i = 0; i < 10000; ++i) {
      auto r = c.read_reply(10s);
      if (!r) break;
      all += *r;
    }
    return all;
  };
  std::string via = run(fl.port());
  std::string direct = run(redis.port());
  EXPECT_EQ(via.size(), direct.size());
  EXPECT_TRUE(via == direct);
}

TEST(Proxy, ByteExactRandomChunksBothWays) {
  EchoServer echo;
  Faultline fl;
  ASSERT_TRUE(fl.start(echo.port())) << fl.process().log();
  std::mt19937_64 rng(42);
  const size_t total = 100u * 1024 * 1024;
  Conn c(fl.port());
  ASSERT_TRUE(c.ok());
  std::string sent_hash, recv_hash;
  // Writer thread sends random bytes in random chunk sizes; this thread reads the echo.
  std::string data(total, '\0');
  for (size_t i = 0; i < total; i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, std::min<size_t>(8, total - i));
  }
  std::thread writer([&] {
    std::mt19937 r(7);
    size_t off = 0;
    while (off < total) {
      size_t n = std::min<size_t>(total - off, 1 + r() % 100000);
      if (!c.send_all(std::string_view(data).substr(off, n))) break;
      off += n;
    }
    c.shutdown_write();
  });
  std::string got;
  got.reserve(total);
  int end_errno = -1;
  got = c.read_to_end(120s, &end_errno);
  writer.join();
  EXPECT_EQ(end_errno, 0);
  ASSERT_EQ(got.size(), total);
  EXPECT_EQ(sha_like_hash(got), sha_like_hash(data));
  EXPECT_EQ(fl.stop(), 0);
}

TEST(Proxy, UpstreamRefusedClosesClientPromptlyAndRecovers) {
  uint16_t redis_port = unused_port(); // nothing listens here yet; Redis starts on it below
  Faultline fl;
  ASSERT_TRUE(fl.start(redis_port, {"--connect-timeout-ms", "500"})) << fl.process().log();
  Conn c(fl.port());
  ASSERT_TRUE(c.ok());
  auto t0 = std::chrono::steady_clock::now();
  int err = -1;
  c.read_to_end(5s, &err);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  EXPECT_NE(err, ETIMEDOUT);
  Redis redis;
  ASSERT_TRUE(redis.start(redis_port));
  Conn c2(fl.port());
  EXPECT_EQ(call(c2, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(fl.stop(), 0);
}

TEST(Proxy, UpstreamThatNeverAnswersTimesOut) {
  // A listener with a backlog of 1 that never accepts: once the backlog is full, SYNs go
  // unanswered and the connect hangs. 10.255.255.1 is not used: tests stay on loopback.
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  ::listen(lfd, 0);
  uint16_t port = ntohs(a.sin_port);
  // Fill the accept queue with real (blocking-completed) connections.
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    held.push_back(fd);
  }
  Faultline fl;
  ASSERT_TRUE(fl.start(port, {"--connect-timeout-ms", "700"})) << fl.process().log();
  Conn c(fl.port());
  ASSERT_TRUE(c.ok());
  c.send_all(cmd({"PING"}));
  auto t0 = std::chrono::steady_clock::now();
  int err = -1;
  std::string got = c.read_to_end(10s, &err);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(got, "");
  EXPECT_NE(err, ETIMEDOUT);
  EXPECT_LT(took, 3s);
  EXPECT_GT(took, 400ms);
  for (int fd : held) ::close(fd);
  ::close(lfd);
  EXPECT_EQ(fl.stop(), 0);
}

TEST(Proxy, RedisKilledMidTrafficAndRestarted) {
  Redis redis;
  ASSERT_TRUE(redis.start());
  uint16_t port = redis.port();
  Faultline fl;
  ASSERT_TRUE(fl.start(port)) << fl.process().log();
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  redis.stop();
  int err = -1;
  c.read_to_end(5s, &err);
  EXPECT_NE(err, ETIMEDOUT);
  Redis again;
  ASSERT_TRUE(again.start(port));
  Conn c2(fl.port());
  EXPECT_EQ(call(c2, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(fl.stop(), 0);
}

TEST_F(ProxyFixture, SlowReaderKeepsMemoryBounded) {
  // 200 MB value; the client asks for it and does not read for a while.
  {
    Conn w(redis.port());
    std::string chunk(1 << 20, 'v');
    ASSERT_EQ(call(w, {"SET", "huge", chunk}), "+OK\r\n");
    for (int i = 0; i < 199; ++i) ASSERT_EQ(call(w, {"APPEND", "huge", chunk}).substr(0, 1), ":");
  }
  long idle = fl.rss_kb();
  Conn c(fl.port());
  ASSERT_TRUE(c.send_all(cmd({"GET", "huge"})));
  long peak = 0;
  for (int i = 0; i < 20; ++i) { // ~2 s of not reading while sampling RSS
    std::this_thread::sleep_for(100ms);
    peak = std::max(peak, fl.rss_kb());
  }
  EXPECT_LT(peak - idle, 16 * 1024) << "idle " << idle << " kB, peak " << peak << " kB";
  std::string head = c.read_exact(12, 10s);
  EXPECT_EQ(head, "$209715200\r\n");
  size_t left = 209715200 + 2;
  size_t got = 0;
  while (got < left) {
    auto r = c.read_some(1 << 20, 20s);
    if (!r || r->empty()) break;
    got += r->size();
    peak = std::max(peak, got % (16 << 20) == 0 ? fl.rss_kb() : peak);
  }
  EXPECT_EQ(got, left);
  EXPECT_LT(fl.rss_kb() - idle, 16 * 1024);
}

TEST_F(ProxyFixture, HalfCloseStillDeliversReply) {
  Conn c(fl.port());
  ASSERT_TRUE(c.send_all(cmd({"PING", "after-fin"})));
  c.shutdown_write();
  int err = -1;
  std::string got = c.read_to_end(5s, &err);
  EXPECT_EQ(got, "$9\r\nafter-fin\r\n");
  EXPECT_EQ(err, 0);
}

TEST_F(ProxyFixture, ReplyBeforeRedisClosesIsDelivered) {
  // QUIT: Redis replies +OK and closes, while the client keeps writing.
  Conn c(fl.port());
  std::string burst = cmd({"QUIT"});
  for (int i = 0; i < 2000; ++i) burst += cmd({"SET", "x", std::string(100, 'y')});
  ASSERT_TRUE(c.send_all(burst));
  int err = -1;
  std::string got = c.read_to_end(5s, &err);
  EXPECT_EQ(got, "+OK\r\n");
  // A protocol error: Redis writes the error then closes.
  Conn d(fl.port());
  ASSERT_TRUE(d.send_all("*1\r\n$abc\r\n" + std::string(10000, 'z')));
  std::string err_reply = d.read_to_end(5s, &err);
  EXPECT_EQ(err_reply.rfind("-ERR Protocol error", 0), 0u) << err_reply;
}

TEST_F(ProxyFixture, ThousandConcurrentConnectionsNoFdLeak) {
  // No connection has been made yet (the harness learns the ports from --port-file): idle.
  int idle_fds = fl.open_fds();
  std::vector<Conn> conns;
  conns.reserve(1000);
  for (int i = 0; i < 1000; ++i) {
    conns.emplace_back(fl.port());
    ASSERT_TRUE(conns.back().ok()) << i;
  }
  for (auto& c : conns) ASSERT_TRUE(c.send_all(cmd({"PING"})));
  for (auto& c : conns) ASSERT_EQ(c.read_reply(10s).value_or("<none>"), "+PONG\r\n");
  conns.clear();
  EXPECT_TRUE(wait_until([&] { return fl.open_fds() == idle_fds; }, 10s))
      << fl.open_fds() << " open, idle was " << idle_fds;
}

TEST_F(ProxyFixture, SigtermWithOpenSessionsExitsZero) {
  std::vector<Conn> conns;
  for (int i = 0; i < 20; ++i) {
    conns.emplace_back(fl.port());
    EXPECT_EQ(call(conns.back(), {"PING"}), "+PONG\r\n");
  }
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(fl.stop(), 0) << fl.process().log();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  EXPECT_EQ(fl.process().log().find("runtime error"), std::string::npos);
  EXPECT_EQ(fl.process().log().find("AddressSanitizer"), std::string::npos);
}

TEST(Cli, HelpVersionAndBadFlags) {
  int st = -1;
  std::string bin = FAULTLINE_BIN;
  std::string out = run_cmd(bin + " --help", &st);
  EXPECT_EQ(st, 0);
  EXPECT_NE(out.find("--upstream"), std::string::npos);
  out = run_cmd(bin + " --version", &st);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(out.rfind("faultline ", 0), 0u);
  out = run_cmd(bin + " --no-such-flag 2>&1", &st);
  EXPECT_EQ(st, 2);
  out = run_cmd(bin + " --listen nonsense 2>&1", &st);
  EXPECT_EQ(st, 2);
  EXPECT_NE(out.find("nonsense"), std::string::npos);
  out = run_cmd(bin + " --upstream 127.0.0.1:99999 2>&1", &st);
  EXPECT_EQ(st, 2);
  out = run_cmd(bin + " --log-level loud 2>&1", &st);
  EXPECT_EQ(st, 2);
}

TEST(Proxy, Ipv6AndHostNames) {
  Redis redis;
  ASSERT_TRUE(redis.start());
  Faultline fl;
  ASSERT_TRUE(fl.start_args({"--listen", "[::1]:0", "--upstream",
                             "localhost:" + std::to_string(redis.port()), "--api", "127.0.0.1:0"}))
      << fl.process().log();
  Conn c(fl.port(), "::1");
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(fl.stop(), 0);
}
