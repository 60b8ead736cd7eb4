#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/pairing.h"

// Byte streams below were captured from redis-server 7.0 (requests as redis-py sends them,
// replies exactly as the server wrote them), so the pairing is checked against real traffic.

namespace faultline::proxy {
namespace {

using resp::Protocol;

std::string mb(std::initializer_list<std::string_view> args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) s += "$" + std::to_string(a.size()) + "\r\n" + std::string(a) + "\r\n";
  return s;
}

struct Harness {
  resp::RequestParser req;
  resp::ReplyParser rep;
  Pairing pairing;
  uint64_t now_us = 1000;
  std::vector<RequestResult> sent;

  void send(std::string_view s, bool inject = false) {
    req.feed(s, [&](const resp::RequestFrame& f) {
      sent.push_back(inject ? pairing.on_injected(f, now_us) : pairing.on_request(f, now_us));
    });
  }
  // Feeds replies (in `chunk`-byte pieces) and describes each result: the paired command
  // ("GET", "CLIENT REPLY", "SUBSCRIBE+" when more replies follow) or the out-of-band kind.
  std::vector<std::string> recv(std::string_view s, size_t chunk = 0) {
    std::vector<std::string> out;
    auto sink = [&](const resp::ReplyFrame& f) {
      ReplyResult r = pairing.on_reply(f, now_us);
      if (r.kind != ReplyKind::Paired) {
        out.emplace_back(reply_kind_name(r.kind));
        return;
      }
      std::string name = r.request.cmd ? std::string(r.request.cmd->name) : "?";
      if (r.request.cmd && !r.request.cmd->sub.empty()) name += " " + std::string(r.request.cmd->sub);
      out.push_back(name + (r.final ? "" : "+"));
    };
    if (chunk == 0) chunk = s.size();
    for (size_t at = 0; at < s.size(); at += chunk) rep.feed(s.substr(at, chunk), sink);
    return out;
  }
};

using V = std::vector<std::string>;

TEST(Pairing, LongPipelineInOrder) {
  Harness h;
  std::string reqs, reps;
  for (int i = 0; i < 5000; ++i) {
    reqs += mb({i % 2 ? "GET" : "SET", "k" + std::to_string(i), "v"}).substr(0);
    reps += i % 2 ? "$1\r\nv\r\n" : "+OK\r\n";
  }
  h.send(reqs);
  EXPECT_EQ(h.pairing.pending(), 5000u);
  std::vector<PendingId> ids;
  h.rep.feed(reps, [&](const resp::ReplyFrame& f) {
    auto r = h.pairing.on_reply(f, h.now_us + 7);
    ASSERT_EQ(r.kind, ReplyKind::Paired);
    EXPECT_EQ(r.latency_us, 7u);
    ids.push_back(r.request.id);
  });
  ASSERT_EQ(ids.size(), 5000u);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], h.sent[i].id);
  EXPECT_EQ(h.pairing.pending(), 0u);
  EXPECT_EQ(h.pairing.unmatched_replies(), 0u);
}

TEST(Pairing, Resp2PubSub) {
  Harness h;
  h.send(mb({"SUBSCRIBE", "a", "b"}) + mb({"PSUBSCRIBE", "p*"}) + mb({"PING"}));
  EXPECT_EQ(h.recv("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:"
                   "2\r\n*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n",
                   7),
            (V{"SUBSCRIBE+", "SUBSCRIBE", "PSUBSCRIBE", "PING"}));
  EXPECT_TRUE(h.pairing.subscribed());
  EXPECT_EQ(h.pairing.subscriptions(), 3);
  h.send(mb({"UNSUBSCRIBE"}) + mb({"PUNSUBSCRIBE"}) + mb({"UNSUBSCRIBE"}) + mb({"PING"}));
  EXPECT_EQ(h.recv("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb"
                   "\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$12\r\npunsubscribe"
                   "\r\n$2\r\np*\r\n:0\r\n*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n+PONG\r\n",
                   1),
            (V{"pubsub_message", "UNSUBSCRIBE+", "UNSUBSCRIBE", "PUNSUBSCRIBE", "UNSUBSCRIBE",
               "PING"}));
  EXPECT_FALSE(h.pairing.subscribed());
  EXPECT_EQ(h.pairing.pending(), 0u);
  EXPECT_EQ(h.pairing.out_of_band(), 1u);
}

TEST(Pairing, Resp2PatternMessagesAndShardChannels) {
  Harness h;
  h.send(mb({"PSUBSCRIBE", "n*"}) + mb({"SSUBSCRIBE", "s1"}));
  EXPECT_EQ(h.recv("*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n*3\r\n$10\r\nssubscribe\r\n$2\r\ns1"
                   "\r\n:1\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$2\r\nnx\r\n$1\r\nm\r\n*3\r\n$8\r\n"
                   "smessage\r\n$2\r\ns1\r\n$1\r\nm\r\n"),
            (V{"PSUBSCRIBE", "SSUBSCRIBE", "pubsub_message", "pubsub_message"}));
  h.send(mb({"SUNSUBSCRIBE"}));
  EXPECT_EQ(h.recv("*3\r\n$12\r\nsunsubscribe\r\n$2\r\ns1\r\n:0\r\n"), (V{"SUNSUBSCRIBE"}));
  EXPECT_EQ(h.pairing.subscriptions(), 1);
}

TEST(Pairing, Resp3PubSubAndPushes) {
  Harness h;
  h.send(mb({"HELLO", "3"}));
  EXPECT_EQ(h.recv("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\npro"
                   "to\r\n:3\r\n$2\r\nid\r\n:9\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$"
                   "6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"),
            (V{"HELLO"}));
  EXPECT_EQ(h.pairing.protocol(), Protocol::Resp3);
  h.send(mb({"SUBSCRIBE", "a"}) + mb({"PING"}));
  EXPECT_EQ(h.recv(">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n+PONG\r\n"), (V{"SUBSCRIBE", "PING"}));
  h.send(mb({"GET", "x"}) + mb({"UNSUBSCRIBE"}));
  EXPECT_EQ(h.recv(">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n_\r\n>3\r\n$11\r\nunsubscribe\r\n$"
                   "1\r\na\r\n:0\r\n"),
            (V{"push", "GET", "UNSUBSCRIBE"}));
  EXPECT_FALSE(h.pairing.subscribed());
  // In RESP3 an array starting with "message" is an ordinary reply.
  h.send(mb({"LRANGE", "l", "0", "-1"}));
  EXPECT_EQ(h.recv("*1\r\n$7\r\nmessage\r\n"), (V{"LRANGE"}));
}

TEST(Pairing, ClientSideCachingInvalidation) {
  Harness h;
  h.send(mb({"HELLO", "3"}) + mb({"CLIENT", "TRACKING", "on"}) + mb({"GET", "t"}));
  EXPECT_EQ(h.recv("%1\r\n$5\r\nproto\r\n:3\r\n+OK\r\n_\r\n"),
            (V{"HELLO", "CLIENT TRACKING", "GET"}));
  h.send(mb({"PING"}));
  EXPECT_EQ(h.recv(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nt\r\n+PONG\r\n"), (V{"push", "PING"}));
}

TEST(Pairing, HelloSwitchesOnlyOnSuccess) {
  Harness h;
  h.send(mb({"HELLO", "3", "AUTH", "u", "wrong"}));
  EXPECT_EQ(h.recv("-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
            (V{"HELLO"}));
  EXPECT_EQ(h.pairing.protocol(), Protocol::Resp2);
  h.send(mb({"HELLO", "4"}));
  h.recv("-NOPROTO unsupported protocol version\r\n");
  EXPECT_EQ(h.pairing.protocol(), Protocol::Resp2);
  h.send(mb({"HELLO", "3"}) + mb({"HELLO"}) + mb({"HELLO", "2"}));
  h.recv("%1\r\n$5\r\nproto\r\n:3\r\n");
  EXPECT_EQ(h.pairing.protocol(), Protocol::Resp3);
  h.recv("%1\r\n$5\r\nproto\r\n:3\r\n");  // HELLO without a version keeps it
  EXPECT_EQ(h.pairing.protocol(), Protocol::Resp3);
  h.recv("*2\r\n$5\r\nproto\r\n:2\r\n");
  EXPECT_EQ(h.pairing.protocol(), Protocol::Resp2);
}

TEST(Pairing, MultiExecWatchAndExecAbort) {
  Harness h;
  h.send(mb({"SET", "w", "1"}) + mb({"WATCH", "w"}) + mb({"MULTI"}) + mb({"SET", "w", "3"}));
  EXPECT_TRUE(h.pairing.in_multi());
  h.send(mb({"EXEC"}));
  EXPECT_FALSE(h.pairing.in_multi());
  EXPECT_EQ(h.recv("+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n"),
            (V{"SET", "WATCH", "MULTI", "SET", "EXEC"}));
  // A queued error aborts at EXEC; the count of replies does not change.
  h.send(mb({"MULTI"}) + mb({"SET", "w", "3"}) + mb({"FOO"}) + mb({"EXEC"}));
  EXPECT_EQ(h.recv("+OK\r\n+QUEUED\r\n-ERR unknown command 'FOO', with args beginning with: \r\n"
                   "-EXECABORT Transaction discarded because of previous errors.\r\n"),
            (V{"MULTI", "SET", "?", "EXEC"}));
  EXPECT_EQ(h.pairing.pending(), 0u);
}

// A session frees its RESP state while idle (Session::trim_if_idle) only when its pairing is
// quiet, and the pairing made with the next byte goes on from resume_state().
TEST(Pairing, QuietPairingResumesWithItsIdsDatabaseAndProtocol) {
  Harness h;
  EXPECT_TRUE(h.pairing.quiet());
  h.send(mb({"HELLO", "3"}) + mb({"SELECT", "4"}));
  EXPECT_FALSE(h.pairing.quiet());  // replies pending
  h.recv("%1\r\n$5\r\nproto\r\n:3\r\n+OK\r\n");
  ASSERT_TRUE(h.pairing.quiet());
  const Pairing::Resume r = h.pairing.resume_state();
  Harness next;
  next.pairing.resume(r);
  EXPECT_EQ(next.pairing.db(), 4);
  EXPECT_EQ(next.pairing.protocol(), Protocol::Resp3);
  next.send(mb({"GET", "k"}));
  ASSERT_EQ(next.sent.size(), 1u);
  EXPECT_EQ(next.sent[0].id, 3u);  // after HELLO (1) and SELECT (2)
  std::optional<PendingInfo> head = next.pairing.expected();
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->db, 4);
  EXPECT_EQ(next.recv("$1\r\nv\r\n"), (V{"GET"}));
  // State a Resume does not carry keeps a pairing from being quiet.
  h.send(mb({"MULTI"}));
  h.recv("+OK\r\n");
  EXPECT_FALSE(h.pairing.quiet());
  Harness sub;
  sub.send(mb({"SUBSCRIBE", "a"}));
  sub.recv("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
  EXPECT_FALSE(sub.pairing.quiet());
}

TEST(Pairing, SelectTracksDbIncludingInsideTransactions) {
  Harness h;
  h.send(mb({"SELECT", "3"}) + mb({"SELECT", "99"}));
  h.recv("+OK\r\n-ERR DB index is out of range\r\n");
  EXPECT_EQ(h.pairing.db(), 3);
  h.send(mb({"MULTI"}) + mb({"SELECT", "2"}) + mb({"EXEC"}));
  EXPECT_EQ(h.recv("+OK\r\n+QUEUED\r\n"), (V{"MULTI", "SELECT"}));
  EXPECT_EQ(h.pairing.db(), 3);  // not before EXEC
  h.recv("*1\r\n+OK\r\n");
  EXPECT_EQ(h.pairing.db(), 2);
  h.send(mb({"MULTI"}) + mb({"SELECT", "5"}) + mb({"DISCARD"}));
  h.recv("+OK\r\n+QUEUED\r\n+OK\r\n");
  EXPECT_EQ(h.pairing.db(), 2);
  h.send(mb({"GET", "k"}));
  h.recv("$-1\r\n");
}

TEST(Pairing, ClientReplyOffOnSkip) {
  Harness h;
  h.send(mb({"CLIENT", "REPLY", "OFF"}) + mb({"PING"}) + mb({"CLIENT", "REPLY", "ON"}) +
         mb({"CLIENT", "REPLY", "SKIP"}) + mb({"PING"}) + mb({"PING", "x"}));
  ASSERT_EQ(h.sent.size(), 6u);
  EXPECT_FALSE(h.sent[0].expects_reply);
  EXPECT_FALSE(h.sent[1].expects_reply);
  EXPECT_TRUE(h.sent[2].expects_reply);
  EXPECT_FALSE(h.sent[3].expects_reply);
  EXPECT_FALSE(h.sent[4].expects_reply);
  EXPECT_TRUE(h.sent[5].expects_reply);
  EXPECT_EQ(h.recv("+OK\r\n$1\r\nx\r\n"), (V{"CLIENT REPLY", "PING"}));
  EXPECT_EQ(h.pairing.unmatched_replies(), 0u);
  // An empty command consumes a SKIP, as in Redis's resetClient().
  h.send(mb({"CLIENT", "REPLY", "SKIP"}) + "\r\n" + mb({"PING"}));
  EXPECT_TRUE(h.sent.back().expects_reply);
  // RESET answers even when replies are off.
  h.recv("+PONG\r\n");
  h.send(mb({"CLIENT", "REPLY", "OFF"}) + mb({"RESET"}));
  EXPECT_TRUE(h.sent.back().expects_reply);
  EXPECT_EQ(h.recv("+RESET\r\n"), (V{"RESET"}));
  EXPECT_EQ(h.pairing.reply_mode(), ReplyMode::On);
}

TEST(Pairing, MonitorThenReset) {
  Harness h;
  h.send(mb({"MONITOR"}));
  EXPECT_EQ(h.recv("+OK\r\n"), (V{"MONITOR"}));
  EXPECT_TRUE(h.pairing.monitoring());
  h.send(mb({"PING"}));
  EXPECT_EQ(h.recv("+1795928995.667255 [0 127.0.0.1:53342] \"SET\" \"m\" \"1\"\r\n+PONG\r\n+1795928"
                   "996.068812 [0 127.0.0.1:41346] \"PING\"\r\n"),
            (V{"monitor", "PING", "monitor"}));
  h.send(mb({"RESET"}) + mb({"PING"}));
  EXPECT_EQ(h.recv("+RESET\r\n+PONG\r\n"), (V{"RESET", "PING"}));
  EXPECT_FALSE(h.pairing.monitoring());
}

TEST(Pairing, ResetLeavesEverything) {
  Harness h;
  h.send(mb({"HELLO", "3"}) + mb({"SELECT", "4"}) + mb({"SUBSCRIBE", "c"}));
  h.recv("%1\r\n$5\r\nproto\r\n:3\r\n+OK\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
  EXPECT_EQ(h.pairing.db(), 4);
  EXPECT_TRUE(h.pairing.subscribed());
  h.send(mb({"MULTI"}) + mb({"RESET"}));  // RESET is not queued
  EXPECT_FALSE(h.pairing.in_multi());
  EXPECT_EQ(h.recv("+OK\r\n+RESET\r\n"), (V{"MULTI", "RESET"}));
  EXPECT_EQ(h.pairing.protocol(), Protocol::Resp2);
  EXPECT_EQ(h.pairing.db(), 0);
  EXPECT_FALSE(h.pairing.subscribed());
}

TEST(Pairing, BlockingCommandRepliesLater) {
  Harness h;
  h.send(mb({"BLPOP", "q", "0"}));
  h.now_us += 5'000'000;
  std::vector<ReplyResult> rs;
  h.rep.feed("*2\r\n$1\r\nq\r\n$1\r\nv\r\n", [&](const resp::ReplyFrame& f) {
    rs.push_back(h.pairing.on_reply(f, h.now_us));
  });
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].kind, ReplyKind::Paired);
  EXPECT_EQ(rs[0].latency_us, 5'000'000u);
  EXPECT_TRUE(rs[0].request.cmd->is_blocking());
  EXPECT_EQ(rs[0].request.req_bytes, mb({"BLPOP", "q", "0"}).size());
  EXPECT_NE(key_hash("q"), key_hash("r"));
  EXPECT_NE(key_hash("12345678a"), key_hash("12345678b"));
}

TEST(Pairing, UnmatchedAndQuit) {
  Harness h;
  EXPECT_EQ(h.recv("+OK\r\n-ERR x\r\n"), (V{"unmatched", "unmatched"}));
  EXPECT_EQ(h.pairing.unmatched_replies(), 2u);
  h.send(mb({"QUIT"}));
  EXPECT_EQ(h.recv("+OK\r\n"), (V{"QUIT"}));
  EXPECT_TRUE(h.pairing.quitting());
}

TEST(Pairing, InjectedRepliesWaitTheirTurn) {
  Harness h;
  h.send(mb({"GET", "a"}));
  h.send(mb({"GET", "b"}), /*inject=*/true);
  EXPECT_FALSE(h.pairing.next_injected());  // GET a still unanswered
  h.send(mb({"GET", "c"}));
  EXPECT_EQ(h.pairing.pending(), 3u);
  EXPECT_EQ(h.recv("$1\r\nA\r\n"), (V{"GET"}));
  auto inj = h.pairing.next_injected();
  ASSERT_TRUE(inj);
  EXPECT_EQ(inj->id, h.sent[1].id);
  EXPECT_TRUE(inj->injected);
  EXPECT_FALSE(h.pairing.next_injected());
  EXPECT_EQ(h.recv("$1\r\nC\r\n"), (V{"GET"}));
  EXPECT_EQ(h.pairing.pending(), 0u);
  // Nothing pending: an injected reply goes out at once.
  h.send(mb({"GET", "d"}), true);
  EXPECT_TRUE(h.pairing.next_injected());
  // A caller that has not drained: the real reply still pairs with the real request, and the
  // injected entries keep their order.
  h.send(mb({"GET", "e"}), true);
  h.send(mb({"GET", "f"}), true);
  h.send(mb({"GET", "g"}));
  std::vector<ReplyResult> rs;
  h.rep.feed("$1\r\nG\r\n",
             [&](const resp::ReplyFrame& f) { rs.push_back(h.pairing.on_reply(f, h.now_us)); });
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].request.id, h.sent.back().id);
  EXPECT_EQ(h.pairing.next_injected()->id, h.sent[h.sent.size() - 3].id);
  EXPECT_EQ(h.pairing.next_injected()->id, h.sent[h.sent.size() - 2].id);
  EXPECT_FALSE(h.pairing.next_injected());
}

TEST(Pairing, InjectedChangesNoState) {
  Harness h;
  h.send(mb({"SELECT", "7"}), true);
  h.send(mb({"MULTI"}), true);
  EXPECT_FALSE(h.pairing.in_multi());
  while (h.pairing.next_injected()) {
  }
  EXPECT_EQ(h.pairing.db(), 0);
  EXPECT_EQ(h.pairing.pending(), 0u);
}

TEST(Pairing, RingGrowsAndWraps) {
  Pairing p(8);
  resp::RequestParser rq;
  resp::ReplyParser rp;
  std::string one = mb({"INCR", "n"});
  uint64_t paired = 0;
  for (int round = 0; round < 50; ++round) {
    int n = 1 + round * 37 % 300;
    for (int i = 0; i < n; ++i)
      rq.feed(one, [&](const resp::RequestFrame& f) { p.on_request(f, 0); });
    std::string reps;
    for (int i = 0; i < n; ++i) reps += ":" + std::to_string(i) + "\r\n";
    rp.feed(reps, [&](const resp::ReplyFrame& f) {
      if (p.on_reply(f, 0).kind == ReplyKind::Paired) ++paired;
    });
    EXPECT_EQ(p.pending(), 0u);
  }
  EXPECT_EQ(p.unmatched_replies(), 0u);
  EXPECT_GT(paired, 0u);
}

// Plain replies pair through a shortcut while no injected entry waits; once injected entries
// come and go, the shortcut must see the ring exactly as the general path does.
TEST(Pairing, PlainPathAroundInjectedEntries) {
  Harness h;
  for (int round = 0; round < 20; ++round) {
    h.send(mb({"GET", "a"}));
    if (round % 3 == 0) h.send(mb({"GET", "x"}), true);
    h.send(mb({"SET", "b", "v"}));
    if (round % 5 == 0) h.send(mb({"GET", "y"}), true);
    EXPECT_EQ(h.recv("$1\r\nA\r\n"), (V{"GET"}));
    while (h.pairing.next_injected()) {
    }
    ASSERT_TRUE(h.pairing.expected().has_value());
    EXPECT_EQ(h.pairing.expected()->id, h.sent[h.sent.size() - 1 - (round % 5 == 0)].id);
    EXPECT_EQ(h.recv("+OK\r\n"), (V{"SET"}));
    while (h.pairing.next_injected()) {
    }
    EXPECT_EQ(h.pairing.pending(), 0u);
    EXPECT_FALSE(h.pairing.expected().has_value());
  }
  EXPECT_EQ(h.pairing.unmatched_replies(), 0u);
}

// take_plain() pops a chunk's simple replies at once: the same groups as plain_reply() one by
// one, and only while every pending entry is plain.
TEST(Pairing, TakePlainMatchesPlainReplyOneByOne) {
  Harness a, b;
  std::vector<uint32_t> sizes;
  for (int chunk = 0; chunk < 6; ++chunk) {
    std::string reqs;
    for (int i = 0; i < 10; ++i) reqs += mb({i % 3 ? "GET" : "SET", "k" + std::to_string(i), "v"});
    a.send(reqs);
    b.send(reqs);
    a.now_us += 100;
    b.now_us += 100;
  }
  for (int i = 0; i < 60; ++i) sizes.push_back(uint32_t(5 + i % 4));
  ASSERT_EQ(b.pairing.plain_ahead(), 60u);
  PlainRun one, all;
  one.begin(5000);
  all.begin(5000);
  for (uint32_t n : sizes) {
    PlainReply pr;
    ASSERT_TRUE(a.pairing.plain_reply(uint64_t(n), pr));
    one.add(pr);
  }
  b.pairing.take_plain(sizes.data(), 25, all);  // two commits, as a chunk may need
  b.pairing.take_plain(sizes.data() + 25, 35, all);
  auto ga = one.groups(), gb = all.groups();
  ASSERT_EQ(ga.size(), gb.size());
  uint64_t replies = 0;
  for (size_t i = 0; i < ga.size(); ++i) {
    EXPECT_EQ(ga[i].cmd, gb[i].cmd);
    EXPECT_EQ(ga[i].latency_us, gb[i].latency_us);
    EXPECT_EQ(ga[i].count, gb[i].count);
    EXPECT_EQ(ga[i].bytes_in, gb[i].bytes_in);
    EXPECT_EQ(ga[i].bytes_out, gb[i].bytes_out);
    EXPECT_EQ(ga[i].last_id, gb[i].last_id);
    replies += gb[i].count;
  }
  EXPECT_EQ(replies, 60u);
  EXPECT_EQ(gb.back().last_id, b.sent.back().id);
  EXPECT_EQ(b.pairing.pending(), 0u);
  EXPECT_EQ(gb.front().latency_us, 5000u - 1000u);

  // A special entry anywhere in the ring (PING), or an injected one, stops the shortcut.
  b.send(mb({"GET", "x"}) + mb({"PING"}) + mb({"GET", "y"}));
  EXPECT_EQ(b.pairing.plain_ahead(), 0u);
  EXPECT_EQ(b.recv("$1\r\nx\r\n+PONG\r\n"), (V{"GET", "PING"}));
  EXPECT_EQ(b.pairing.plain_ahead(), 1u);
  b.send(mb({"GET", "z"}), true);
  EXPECT_EQ(b.pairing.plain_ahead(), 0u);
  EXPECT_EQ(b.recv("$1\r\ny\r\n"), (V{"GET"}));
  ASSERT_TRUE(b.pairing.next_injected().has_value());
  EXPECT_EQ(b.pairing.plain_ahead(), 0u);  // empty
  b.send(mb({"SUBSCRIBE", "c"}));
  EXPECT_EQ(b.recv("*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"), (V{"SUBSCRIBE"}));
  b.send(mb({"GET", "q"}));  // subscribed: out-of-band messages may come
  EXPECT_EQ(b.pairing.plain_ahead(), 0u);
}

// A run of simple requests makes the entries the requests one by one would (ids, sizes, key
// hashes, db, start), across the ring's growth; a run of replies of one size pairs as the
// same replies one by one do. Outside the plain state (inside MULTI) a run is declined.
TEST(Pairing, RunsMatchOneByOne) {
  const resp::CommandInfo* get = resp::lookup("GET");
  ASSERT_NE(get, nullptr);
  std::string frames;
  for (int i = 0; i < 100; ++i) frames += mb({"GET", "key:" + std::to_string(100000 + i)});
  const uint32_t size = uint32_t(frames.size() / 100);
  ASSERT_EQ(size, 30u);
  // Where the key is taken from in each 30-byte frame, "*2\r\n$3\r\nGET\r\n$10\r\nkey:100000\r\n":
  // the key itself, and windows of 3, 12 and 17 bytes ending in it (each of key_hash()'s cases).
  for (auto [key_at, key_len] : {std::pair{18, 10}, {25, 3}, {16, 12}, {11, 17}, {-1, 0}}) {
    Pairing one(4), run(4);  // small rings: the run grows them
    resp::SimpleRun r;
    r.start = 0;
    r.data = frames.data();
    r.size = size;
    r.count = 100;
    r.cmd = get;
    r.key_at = key_at;
    r.key_len = uint32_t(key_len);
    for (uint32_t i = 0; i < r.count; ++i) ASSERT_TRUE(one.on_simple_request(r.frame(i), 77));
    ASSERT_TRUE(run.on_simple_run(r, 77));
    ASSERT_EQ(one.pending(), run.pending());
    std::vector<PendingInfo> a, b;
    one.each_pending([&](const PendingInfo& p) { a.push_back(p); });
    run.each_pending([&](const PendingInfo& p) { b.push_back(p); });
    ASSERT_EQ(a.size(), 100u);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].id, b[i].id) << i;
      EXPECT_EQ(a[i].cmd, b[i].cmd) << i;
      EXPECT_EQ(a[i].start_us, b[i].start_us) << i;
      EXPECT_EQ(a[i].req_bytes, b[i].req_bytes) << i;
      EXPECT_EQ(a[i].key_hash, b[i].key_hash) << key_len << " " << i;
      EXPECT_EQ(a[i].db, b[i].db) << i;
    }
    // Keys that differ hash differently (the hash reads each frame's own key).
    if (key_len) {
      EXPECT_NE(b[0].key_hash, b[1].key_hash);
    }

    PlainRun ga, gb;
    ga.begin(1000);
    gb.begin(1000);
    std::vector<uint32_t> sizes(100, 7);
    one.take_plain(sizes.data(), 100, ga);
    run.take_plain(uint32_t(7), 60, gb);
    run.take_plain(uint32_t(7), 40, gb);
    auto x = ga.groups(), y = gb.groups();
    ASSERT_EQ(x.size(), 1u);
    ASSERT_EQ(y.size(), 1u);
    EXPECT_EQ(x[0].count, y[0].count);
    EXPECT_EQ(x[0].bytes_in, y[0].bytes_in);
    EXPECT_EQ(x[0].bytes_out, 700u);
    EXPECT_EQ(y[0].bytes_out, 700u);
    EXPECT_EQ(x[0].last_id, y[0].last_id);
    EXPECT_EQ(run.pending(), 0u);
  }
  // Runs, single requests and full frames mixed, sent at three times, paired in pieces that
  // cut runs: the groups are those of one-by-one pairing.
  {
    Pairing one, run;
    resp::SimpleRun r;
    r.data = frames.data();
    r.size = size;
    r.cmd = get;
    r.key_at = 18;
    r.key_len = 10;
    auto both = [&](uint32_t count, uint64_t now) {
      r.count = count;
      for (uint32_t i = 0; i < count; ++i) ASSERT_TRUE(one.on_simple_request(r.frame(i), now));
      ASSERT_TRUE(run.on_simple_run(r, now));
    };
    both(1, 10);
    both(5, 20);
    both(1, 20);
    both(4, 20);
    both(3, 30);
    ASSERT_EQ(run.plain_ahead(), 14u);
    PlainRun ga, gb;
    ga.begin(100);
    gb.begin(100);
    std::vector<uint32_t> sizes(14, 9);
    one.take_plain(sizes.data(), 14, ga);
    for (size_t piece : {2, 3, 1, 4, 1, 3}) run.take_plain(uint32_t(9), piece, gb);
    auto x = ga.groups(), y = gb.groups();
    ASSERT_EQ(x.size(), 3u);
    ASSERT_EQ(y.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(x[i].count, y[i].count) << i;
      EXPECT_EQ(x[i].latency_us, y[i].latency_us) << i;
      EXPECT_EQ(x[i].bytes_in, y[i].bytes_in) << i;
      EXPECT_EQ(x[i].bytes_out, y[i].bytes_out) << i;
      EXPECT_EQ(x[i].last_id, y[i].last_id) << i;
    }
    EXPECT_EQ(y[1].count, 10u);
    EXPECT_EQ(run.pending(), 0u);
  }
  Harness h;
  h.send(mb({"MULTI"}));
  resp::SimpleRun r;
  r.data = frames.data();
  r.size = size;
  r.count = 3;
  r.cmd = get;
  EXPECT_FALSE(h.pairing.on_simple_run(r, 5));
  EXPECT_EQ(h.pairing.pending(), 1u);
}

} // namespace
} // namespace faultline::proxy
