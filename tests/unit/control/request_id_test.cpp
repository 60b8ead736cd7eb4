// X-Toxiproxy-Request-Id values: rs/xid's layout and encoding, which Toxiproxy's middleware uses.

#include <set>

#include <gtest/gtest.h>

#include "control/request_id.h"

namespace faultline::control {
namespace {

TEST(RequestIds, EncodeAsXid) {
  // rs/xid's own test vector: time 1300816219, machine 60f486, pid 0xe428, counter 4271561.
  EXPECT_EQ(
      RequestIds::encode({0x4d, 0x88, 0xe1, 0x5b, 0x60, 0xf4, 0x86, 0xe4, 0x28, 0x41, 0x2d, 0xc9}),
      "9m4e2mr0ui3e8a215n4g");
  RequestIds ids({0x60, 0xf4, 0x86}, 0xe428, 4271561);
  EXPECT_EQ(ids.next(1300816219), "9m4e2mr0ui3e8a215n4g");
  EXPECT_EQ(ids.next(1300816219), "9m4e2mr0ui3e8a215n50"); // the counter, in the last bytes
}

TEST(RequestIds, FreshAndWellFormed) {
  RequestIds ids;
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = ids.next();
    ASSERT_EQ(id.size(), 20u);
    for (char c : id)
      ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'v')) << id;
    ASSERT_TRUE(seen.insert(id).second) << id;
  }
  // The counter wraps at 24 bits without touching the rest.
  RequestIds wrap({1, 2, 3}, 4, 0xFFFFFF);
  std::string a = wrap.next(7), b = wrap.next(7);
  EXPECT_EQ(a.substr(0, 14), b.substr(0, 14));
  EXPECT_NE(a, b);
}

} // namespace
} // namespace faultline::control
