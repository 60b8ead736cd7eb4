// What the traffic log appends to: may_append_traffic_log decides from a file's first bytes
// whether it is a faultline log of the wanted format (the API never appends to anything else).

#include <string>

#include <gtest/gtest.h>

#include "observe/traffic_log.h"

namespace faultline::observe {
namespace {

bool may(std::string_view head, LogFormat f, std::string* why = nullptr, bool whole = true) {
  std::string err;
  bool ok = may_append_traffic_log(head, whole, f, err);
  if (why) *why = err;
  return ok;
}

TEST(MayAppendTrafficLog, EmptyFilesAndOwnRecords) {
  EXPECT_TRUE(may("", LogFormat::Json));
  EXPECT_TRUE(may("", LogFormat::Text));
  const std::string json_rec =
      R"({"ts":"2026-11-29T09:05:38.262214Z","proxy":"redis","session":5,"client":"127.0.0.1:5)"
      R"(5710","db":0,"cmd":"GET","args":["k"],"reply":null,"latency_us":80})"
      "\n";
  const std::string json_event =
      R"({"ts":"2026-11-29T09:05:42.322871Z","proxy":"redis","session":null,"client":null,)"
      R"("event":"toxic_added"})"
      "\n";
  EXPECT_TRUE(may(json_rec + json_event, LogFormat::Json));
  EXPECT_TRUE(may(json_event, LogFormat::Json));
  EXPECT_TRUE(may("09:05:38.262214 redis#5 127.0.0.1:55710 GET \"k\" -> (nil) 80us\n",
                  LogFormat::Text));
  EXPECT_TRUE(may("\x1b[2m09:05:38.262214\x1b[0m redis#5 127.0.0.1:55710 -- open\n",
                  LogFormat::Text));
}

TEST(MayAppendTrafficLog, AnythingElseIsRefusedWithWhy) {
  std::string why;
  EXPECT_FALSE(may("my notes\n", LogFormat::Json, &why));
  EXPECT_NE(why.find("not a faultline traffic log"), std::string::npos) << why;
  EXPECT_FALSE(may("{\"a\": 1}\n", LogFormat::Json, &why));
  EXPECT_FALSE(may("{\"ts\": \"x\"}\n", LogFormat::Json, &why)) << "a ts alone is not a record";
  EXPECT_FALSE(may("12:00:00 lunch\n", LogFormat::Text, &why));
  EXPECT_FALSE(may("#!/bin/sh\nrm -rf /\n", LogFormat::Text, &why));
  // No line break in the bytes read of a longer file: not a log either.
  EXPECT_FALSE(may(std::string(100, 'x'), LogFormat::Json, &why, /*whole=*/false));
  // The other format: appending would mix two formats in one file.
  EXPECT_FALSE(may("09:05:38.262214 redis#5 127.0.0.1:55710 -- open\n", LogFormat::Json, &why));
  EXPECT_NE(why.find("faultline text log"), std::string::npos) << why;
  EXPECT_FALSE(may(R"({"ts":"t","proxy":null,"session":null,"client":null,"event":"e"})"
                   "\n",
                   LogFormat::Text, &why));
  EXPECT_NE(why.find("faultline JSON log"), std::string::npos) << why;
}

} // namespace
} // namespace faultline::observe
