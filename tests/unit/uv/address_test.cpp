#include "uv/address.h"

#include <gtest/gtest.h>

using namespace faultline::uv;

TEST(Address, ParsesHostPort) {
  std::string err;
  auto ep = parse_endpoint("127.0.0.1:6381", err);
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 6381);
  ep = parse_endpoint("[::1]:6381", err);
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->str(), "[::1]:6381");
  ep = parse_endpoint("redis.internal:6379", err);
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "redis.internal");
  ep = parse_endpoint(":0", err);
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "");
}

TEST(Address, RejectsBadInput) {
  std::string err;
  for (const char* bad : {"", "6381", "host:", "host:65536", "host:12ab", "::1:6381", "[::1]6381",
                          "[::1"}) {
    EXPECT_FALSE(parse_endpoint(bad, err)) << bad;
    EXPECT_FALSE(err.empty());
  }
}

TEST(Address, LiteralAndResolve) {
  sockaddr_storage ss;
  std::string err;
  Endpoint ep{"::1", 7};
  ASSERT_TRUE(literal_address(ep, ss));
  EXPECT_EQ(format_address(reinterpret_cast<sockaddr*>(&ss)), "[::1]:7");
  Endpoint name{"localhost", 9};
  EXPECT_FALSE(literal_address(name, ss));
  ASSERT_TRUE(resolve(name, ss, err)) << err;
  EXPECT_EQ(address_port(reinterpret_cast<sockaddr*>(&ss)), 9);
  Endpoint bogus{"no-such-host.invalid", 1};
  EXPECT_FALSE(resolve(bogus, ss, err));
}
