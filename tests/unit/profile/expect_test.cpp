#include "profile/expect.h"

#include <gtest/gtest.h>

namespace faultline::profile {
namespace {

using observe::ClientRecord;

constexpr uint64_t kMs = 1000;

observe::CommandIdent cmd(uint64_t h, uint32_t key, std::string_view name = "INCR") {
  return observe::CommandIdent{h, key, 0, false, name};
}

TEST(Expect, ParsesTheThreeKeys) {
  auto es = parse_expectations(nlohmann::json{
      {"recover_within", "2s"}, {"max_connects_per_second", 20}, {"resends", "none"}});
  ASSERT_EQ(es.size(), 3u);
  EXPECT_THROW(parse_expectations(nlohmann::json{{"recover_within", "soon"}}),
               std::invalid_argument);
  EXPECT_THROW(parse_expectations(nlohmann::json{{"resend", 1}}), std::invalid_argument);
  EXPECT_EQ(parse_expectations(nlohmann::json{{"recover_within", "1.5s"}})[0].limit, 1500u);
}

TEST(Expect, DecidesAsSoonAsItCan) {
  auto es = parse_expectations(nlohmann::json{{"recover_within", "500ms"}, {"resends", 0}});
  ClientRecord r;
  r.set_faults(0, true, {"down"});
  auto v = evaluate(es, r, 100 * kMs, false);
  EXPECT_EQ(v[0].state, ExpectVerdict::State::Pending);
  r.set_faults(1000 * kMs, false, {});
  // Ended, not recovered, within the limit: still pending even once the timeline ends.
  EXPECT_EQ(evaluate(es, r, 1200 * kMs, true)[0].state, ExpectVerdict::State::Pending);
  // Past the limit without a good reply: failed.
  v = evaluate(es, r, 1600 * kMs, false);
  EXPECT_EQ(v[0].state, ExpectVerdict::State::Fail);
  // Never recovered: said so, not "worst 600 ms".
  EXPECT_EQ(v[0].measured, "not recovered after 600 ms");
  ClientRecord ok;
  ok.set_faults(0, true, {"down"});
  ok.set_faults(1000 * kMs, false, {});
  ok.on_success(1300 * kMs);
  v = evaluate(es, ok, 2000 * kMs, true);
  EXPECT_EQ(v[0].state, ExpectVerdict::State::Pass);
  EXPECT_EQ(v[1].state, ExpectVerdict::State::Pass);
  ok.on_command_failed(2000 * kMs, cmd(1, 1), 1, "toxic");
  ok.on_request(2001 * kMs, cmd(1, 1), 2);
  EXPECT_EQ(evaluate(es, ok, 2002 * kMs, false)[1].state, ExpectVerdict::State::Fail);
}

} // namespace
} // namespace faultline::profile
