#include <gtest/gtest.h>

#include "topology/cluster.h"
#include "topology/front.h"

// CLUSTER NODES as Redis 7 writes it: what cluster mode learns the topology from.

namespace faultline::topology {
namespace {

TEST(ClusterNodes, ParsesRolesSlotsHostNamesAndSkipsMigrationMarks) {
  const char* text =
      "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:7001@17001,host-a myself,master - 0 0 1 "
      "connected 0-5460 5462 [5461->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]\n"
      "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:7002@17002 master - 0 1426238316232 2 "
      "connected 5461 5463-10922 [5464-<-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]\n"
      "6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:7005@17005 slave "
      "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238316232 5 connected\n"
      "824fe116063bc5fcf9f4ffd895bc17aee7731ac3 :0@0 master,noaddr - 1426238317239 1426238316232 "
      "0 disconnected\n"
      "broken line\n";
  auto nodes = parse_cluster_nodes(text);
  ASSERT_EQ(nodes.size(), 4u);
  EXPECT_EQ(nodes[0].address, "127.0.0.1:7001");
  EXPECT_EQ(nodes[0].hostname, "host-a");
  EXPECT_TRUE(nodes[0].has("myself"));
  EXPECT_TRUE(nodes[0].is_master());
  EXPECT_EQ(nodes[0].slots, (std::vector<std::pair<int, int>>{{0, 5460}, {5462, 5462}}));
  EXPECT_EQ(nodes[1].slots, (std::vector<std::pair<int, int>>{{5461, 5461}, {5463, 10922}}));
  EXPECT_FALSE(nodes[2].is_master());
  EXPECT_TRUE(nodes[2].has("replica"));  // Redis's "slave"
  EXPECT_EQ(nodes[2].master_id, "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f");
  EXPECT_TRUE(nodes[3].has("noaddr"));
  EXPECT_EQ(nodes[3].address, ":0");
}

// Lines ending in CRLF (a text relayed by a tool that writes them) lose no last slot range.
TEST(ClusterNodes, CrlfLineEndsKeepTheLastSlotRange) {
  auto nodes = parse_cluster_nodes(
      "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:7001@17001 master - 0 0 1 connected "
      "0-5460\r\n"
      "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:7002@17002 master - 0 0 2 connected "
      "5461-16383\r\n");
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].slots, (std::vector<std::pair<int, int>>{{0, 5460}}));
  EXPECT_EQ(nodes[1].slots, (std::vector<std::pair<int, int>>{{5461, 16383}}));
}

TEST(ClusterNodes, ProxiesAreNamedAfterTheNode) {
  EXPECT_EQ(proxy_name("node", "127.0.0.1:7000"), "node-127.0.0.1-7000");
  EXPECT_EQ(proxy_name("sentinel", "[::1]:26379"), "sentinel---1-26379");
}

} // namespace
} // namespace faultline::topology
