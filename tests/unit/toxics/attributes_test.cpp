// Attribute parsing of the connection-level toxics: Toxiproxy's names and units, defaults,
// and errors that name the field.

#include <gtest/gtest.h>

#include "toxics/toxic.h"

namespace faultline::toxics {
namespace {

using nlohmann::json;

void expect_error(const char* type, const json& attrs, const std::string& field) {
  try {
    make_impl(type, attrs);
    ADD_FAILURE() << type << " accepted " << attrs.dump();
  } catch (const ToxicError& e) {
    EXPECT_NE(std::string(e.what()).find("'" + field + "'"), std::string::npos)
        << type << " " << attrs.dump() << ": " << e.what();
  }
}

TEST(ToxicAttributes, AllConnectionLevelTypesAreRegistered) {
  for (const char* t :
       {"latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data"})
    EXPECT_TRUE(known_type(t)) << t;
}

TEST(ToxicAttributes, RoundTripWithToxiproxyNames) {
  json slicer = {{"average_size", 64}, {"size_variation", 32}, {"delay", 10}};
  EXPECT_EQ(make_impl("slicer", slicer)->attributes(), slicer);
  EXPECT_EQ(make_impl("bandwidth", {{"rate", 100}})->attributes(), json({{"rate", 100}}));
  EXPECT_EQ(make_impl("slow_close", {{"delay", 5}})->attributes(), json({{"delay", 5}}));
  EXPECT_EQ(make_impl("timeout", {{"timeout", 7}})->attributes(), json({{"timeout", 7}}));
  EXPECT_EQ(make_impl("reset_peer", {{"timeout", 9}})->attributes(), json({{"timeout", 9}}));
  EXPECT_EQ(make_impl("limit_data", {{"bytes", 11}})->attributes(), json({{"bytes", 11}}));
  // Whole numbers sent as floats by some clients are fine.
  EXPECT_EQ(make_impl("bandwidth", {{"rate", 100.0}})->attributes(), json({{"rate", 100}}));
}

TEST(ToxicAttributes, DefaultsAreToxiproxysZeroValues) {
  EXPECT_EQ(make_impl("bandwidth", json::object())->attributes(), json({{"rate", 0}}));
  EXPECT_EQ(make_impl("slow_close", json::object())->attributes(), json({{"delay", 0}}));
  EXPECT_EQ(make_impl("timeout", json::object())->attributes(), json({{"timeout", 0}}));
  EXPECT_EQ(make_impl("reset_peer", json::object())->attributes(), json({{"timeout", 0}}));
  EXPECT_EQ(make_impl("limit_data", nullptr)->attributes(), json({{"bytes", 0}}));
  EXPECT_EQ(make_impl("slicer", {{"average_size", 10}})->attributes(),
            json({{"average_size", 10}, {"size_variation", 0}, {"delay", 0}}));
}

TEST(ToxicAttributes, BadValuesNameTheField) {
  expect_error("latency", {{"latency", -1}}, "latency");
  expect_error("latency", {{"jitter", "x"}}, "jitter");
  expect_error("bandwidth", {{"rate", -1}}, "rate");
  expect_error("bandwidth", {{"rate", "fast"}}, "rate");
  expect_error("bandwidth", {{"rate", 1.5}}, "rate");
  expect_error("bandwidth", {{"rate", 1e18}}, "rate");
  expect_error("slow_close", {{"delay", -5}}, "delay");
  expect_error("slow_close", {{"delay", true}}, "delay");
  expect_error("timeout", {{"timeout", -1}}, "timeout");
  expect_error("timeout", {{"timeout", 1e12}}, "timeout");
  expect_error("reset_peer", {{"timeout", -1}}, "timeout");
  expect_error("reset_peer", {{"timeout", json::array()}}, "timeout");
  expect_error("slicer", json::object(), "average_size");
  expect_error("slicer", {{"average_size", 0}}, "average_size");
  expect_error("slicer", {{"average_size", 10}, {"size_variation", 11}}, "size_variation");
  expect_error("latency", {{"latncy", 300}}, "latncy");
  expect_error("slicer", {{"average_size", 10}, {"size_variation", -1}}, "size_variation");
  expect_error("slicer", {{"average_size", 10}, {"delay", -1}}, "delay");
  expect_error("limit_data", {{"bytes", -1}}, "bytes");
  expect_error("limit_data", {{"bytes", 18446744073709551615ull}}, "bytes");
  expect_error("limit_data", {{"bytes", "10"}}, "bytes");
}

} // namespace
} // namespace faultline::toxics
