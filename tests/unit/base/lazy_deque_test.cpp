// LazyDeque: a std::deque that costs one pointer until the first element arrives.

#include "base/lazy_deque.h"

#include <string>
#include <utility>

#include <gtest/gtest.h>

namespace faultline {
namespace {

TEST(LazyDeque, EmptyUntilFirstElementAndIteratesAsNothing) {
  LazyDeque<int> q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.begin(), q.end());
  const LazyDeque<int>& c = q;
  EXPECT_EQ(c.begin(), c.end());
  int seen = 0;
  for (int v : q) seen += v + 1;
  EXPECT_EQ(seen, 0);
  q.clear();    // nothing to clear
  q.release();  // nothing to free
  EXPECT_TRUE(q.empty());
  static_assert(sizeof(LazyDeque<int>) == sizeof(void*), "one pointer while empty");
}

TEST(LazyDeque, KeepsFifoOrderAsADeque) {
  LazyDeque<std::string> q;
  q.push_back("a");
  std::string b = "b";
  q.push_back(b);
  q.emplace_back(3, 'c');
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q.front(), "a");
  EXPECT_EQ(q.back(), "ccc");
  EXPECT_EQ(q[1], "b");
  std::string all;
  for (const auto& s : q) all += s;
  EXPECT_EQ(all, "abccc");
  q.pop_front();
  EXPECT_EQ(q.front(), "b");
  q.pop_back();
  EXPECT_EQ(q.back(), "b");
  q.push_back("d");
  q.push_back("e");
  q.erase(q.begin() + 1);  // "d"
  all.clear();
  for (const auto& s : q) all += s;
  EXPECT_EQ(all, "be");
}

TEST(LazyDeque, ReleaseFreesOnlyAnEmptyQueue) {
  LazyDeque<int> q;
  q.push_back(1);
  q.release();  // not empty: kept
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q.front(), 1);
  q.clear();
  EXPECT_TRUE(q.empty());
  q.release();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.begin(), q.end());
  // Usable again after a release.
  q.push_back(7);
  q.push_back(8);
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.front(), 7);
  EXPECT_EQ(q.back(), 8);
}

TEST(LazyDeque, MovesItsElementsIn) {
  LazyDeque<std::pair<int, std::string>> q;
  std::string big(100, 'x');
  q.push_back({1, std::move(big)});
  EXPECT_EQ(q.front().second.size(), 100u);
  auto& e = q.emplace_back(2, "two");
  EXPECT_EQ(&e, &q.back());
  EXPECT_EQ(q.back().first, 2);
}

} // namespace
} // namespace faultline
