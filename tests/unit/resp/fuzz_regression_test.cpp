// Inputs the fuzzers found: each must parse to the same frames whole and byte by byte.
#include <gtest/gtest.h>

#include "resp_test_util.h"

using namespace faultline::resp;
using namespace faultline::resp::test;

namespace {
void print(const ReqRun& r, const char* what) {
  for (const auto& f : r.frames)
    std::printf("%s: [%llu,%llu) argc=%llu name=%s sub=%s key=%s has_key=%d cmd=%d args=%zu\n",
                what, (unsigned long long)f.start, (unsigned long long)f.end,
                (unsigned long long)f.argc, f.name.c_str(), f.sub.c_str(), f.key.c_str(),
                f.has_key, f.cmd_id, f.args.size());
}
} // namespace

// SORT whose first argument is not a plain key, an empty multibulk, then XREAD ... STREAMS.
TEST(RequestFuzzRegression, SortEmptyMultibulkXread) {
  std::string in =
      "*6\r\n$4\r\nSORT\r\n$8\r\nre-urn 1\r\n$1\r\n2\r\n$2\r\nk1\r\n$2\r\nk2\r\n$1\r\na\r\n"
      "*0\r\n$5\r\nXREAD\r\n$7\r\nSTREAMS\r\n$1\r\ns\r\n$1\r\n0\r\n$1\r\n0ue";
  ReqRun whole = requests(in);
  ReqRun bytes = requests(in, bytewise(in.size()));
  if (!(whole == bytes)) {
    print(whole, "whole");
    print(bytes, "bytes");
  }
  EXPECT_TRUE(whole == bytes);
}
