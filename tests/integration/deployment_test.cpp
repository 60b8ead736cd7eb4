// The deployments of issue 21 themselves, without faultline: a cluster forms, a failover flips
// roles, a migration moves a slot, a sentinel failover changes the master. The faultline tests
// stand on these helpers, so they are checked here against Redis's own answers.

#include "support/harness.h"

#include <algorithm>

#include <gtest/gtest.h>

using namespace fltest;

namespace {
// The first slot a master owns (-1 if it is not a master the nodes agree on).
int first_slot(RedisCluster& c, uint16_t master) {
  for (auto& n : c.topology())
    if (n.port == master && !n.slots.empty())
      return n.slots.front().first;
  return -1;
}
} // namespace

TEST(Deployment, ClusterForms) {
  RedisCluster c;
  ASSERT_TRUE(c.start()) << c.error();
  auto masters = c.masters(), replicas = c.replicas();
  ASSERT_EQ(masters.size(), 3u);
  ASSERT_EQ(replicas.size(), 3u);
  for (auto r : replicas) {
    const uint16_t m = c.master_of(r);
    EXPECT_NE(std::find(masters.begin(), masters.end(), m), masters.end()) << r;
  }
  // Every master serves a key of its own, and the others send the client there.
  for (auto m : masters) {
    const int slot = first_slot(c, m);
    ASSERT_GE(slot, 0);
    const std::string key = key_in_slot(slot);
    EXPECT_EQ(query(m, {"SET", key, "v"}).str, "OK");
    EXPECT_EQ(query(m, {"CLUSTER", "KEYSLOT", key}).num, slot);
    for (auto other : masters) {
      if (other == m)
        continue;
      Resp r = query(other, {"GET", key});
      EXPECT_EQ(r.str, "MOVED " + std::to_string(slot) + " 127.0.0.1:" + std::to_string(m));
    }
  }
}

TEST(Deployment, ClusterFailoverFlipsRoles) {
  RedisCluster c;
  ASSERT_TRUE(c.start()) << c.error();
  const uint16_t replica = c.replicas().front();
  const uint16_t old_master = c.master_of(replica);
  ASSERT_NE(old_master, 0);
  const int slot = first_slot(c, old_master);
  ASSERT_GE(slot, 0);
  const std::string key = key_in_slot(slot);
  ASSERT_EQ(query(old_master, {"SET", key, "before"}).str, "OK");
  ASSERT_TRUE(c.failover(replica)) << c.error();
  auto masters = c.masters();
  EXPECT_NE(std::find(masters.begin(), masters.end(), replica), masters.end());
  EXPECT_EQ(c.master_of(old_master), replica);
  EXPECT_EQ(query(replica, {"ROLE"}).items.at(0).str, "master");
  EXPECT_EQ(query(old_master, {"ROLE"}).items.at(0).str, "slave");
  // The data came along, and the old master now redirects.
  EXPECT_EQ(query(replica, {"GET", key}).str, "before");
  EXPECT_EQ(query(old_master, {"SET", key, "after"}).str.rfind("MOVED ", 0), 0u);
}

TEST(Deployment, ClusterMigrationMovesSlot) {
  RedisCluster c;
  ASSERT_TRUE(c.start()) << c.error();
  auto masters = c.masters();
  const int slot = key_slot("migrating");
  const uint16_t from = c.owner(slot);
  const uint16_t to = masters.front() == from ? masters.back() : masters.front();
  // 250 keys in the slot (hash tag), so MIGRATE runs in several batches of 100.
  for (int i = 0; i < 250; ++i)
    ASSERT_EQ(query(from, {"SET", "{migrating}" + std::to_string(i), std::to_string(i)}).str, "OK");
  bool saw_ask = false;
  ASSERT_TRUE(c.migrate_slots(slot, slot, from, to, 0ms, 100, [&](int) {
    // Keys gone from the source, slot not yet handed over: the source answers ASK.
    Resp r = query(from, {"GET", "{migrating}7"});
    saw_ask = r.str == "ASK " + std::to_string(slot) + " 127.0.0.1:" + std::to_string(to);
  })) << c.error();
  EXPECT_TRUE(saw_ask);
  EXPECT_EQ(c.owner(slot), to);
  Resp moved = query(from, {"GET", "{migrating}7"});
  EXPECT_EQ(moved.str, "MOVED " + std::to_string(slot) + " 127.0.0.1:" + std::to_string(to));
  for (int i = 0; i < 250; ++i)
    EXPECT_EQ(query(to, {"GET", "{migrating}" + std::to_string(i)}).str, std::to_string(i));
  EXPECT_EQ(query(to, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}).num, 250);
  // Every node, replicas too, sends the client to the new owner.
  for (auto p : c.ports()) {
    if (p == to || c.master_of(p) == to)
      continue;
    EXPECT_EQ(query(p, {"GET", "{migrating}7"}).str.rfind("MOVED ", 0), 0u) << p;
  }
}

TEST(Deployment, SentinelFailoverChangesMaster) {
  SentinelDeployment s;
  ASSERT_TRUE(s.start()) << s.error();
  ASSERT_EQ(s.sentinel_ports().size(), 3u);
  const uint16_t old = s.master();
  ASSERT_NE(old, 0);
  ASSERT_EQ(s.replicas().size(), 2u);
  ASSERT_EQ(query(old, {"SET", "k", "before"}).str, "OK");
  Conn w(old);
  ASSERT_EQ(call(w, {"WAIT", "2", "5000"}), ":2\r\n");
  const uint16_t now = s.failover(SentinelDeployment::Settle::Sentinels);
  ASSERT_NE(now, 0) << s.error();
  EXPECT_NE(now, old);
  for (auto p : s.sentinel_ports()) {
    Resp r = query(p, {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.master_name()});
    ASSERT_EQ(r.items.size(), 2u);
    EXPECT_EQ(r.items[0].str, "127.0.0.1");
    EXPECT_EQ(r.items[1].str, std::to_string(now));
  }
  EXPECT_EQ(query(now, {"ROLE"}).items.at(0).str, "master");
  // The old master is demoted when a sentinel next reads its INFO.
  ASSERT_TRUE(s.wait_ready()) << s.error();
  EXPECT_EQ(s.master(), now);
  EXPECT_EQ(query(old, {"ROLE"}).items.at(0).str, "slave");
  EXPECT_EQ(query(now, {"GET", "k"}).str, "before");
  EXPECT_EQ(query(now, {"SET", "k", "after"}).str, "OK");
  EXPECT_EQ(query(old, {"SET", "k", "x"}).str.rfind("READONLY", 0), 0u);
}
