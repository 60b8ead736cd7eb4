#include <gtest/gtest.h>

#include "resp/parser.h"
#include "resp/writer.h"

namespace faultline::resp {
namespace {

TEST(Writer, Resp2) {
  std::string out;
  Writer w(out);
  w.error("LOADING Redis is loading\r\nthe dataset").simple("OK").bulk(std::string("a\0b", 3));
  w.null().null_array().integer(-7).bulk_array({"x", ""});
  using namespace std::string_literals;
  EXPECT_EQ(out, "-LOADING Redis is loading  the dataset\r\n+OK\r\n$3\r\na\0b\r\n"
                 "$-1\r\n*-1\r\n:-7\r\n*2\r\n$1\r\nx\r\n$0\r\n\r\n"s);
}

TEST(Writer, Resp3NullsAndPush) {
  std::string out;
  Writer w(out, Protocol::Resp3);
  w.null().null_array().push(1).simple("x").error("-ERR x");
  EXPECT_EQ(out, "_\r\n_\r\n>1\r\n+x\r\n-ERR x\r\n");
}

TEST(Writer, OutputParsesBack) {
  std::string out;
  Writer w(out);
  w.error("READONLY You can't write against a read only replica.").array(2).integer(1).null();
  ReplyParser p;
  std::vector<std::string> got;
  p.feed(out, [&](const ReplyFrame& f) {
    got.push_back(std::string(type_name(f.type)) + ":" + std::string(f.error_prefix()));
  });
  EXPECT_FALSE(p.failed());
  EXPECT_EQ(got, (std::vector<std::string>{"error:READONLY", "array:"}));
}

} // namespace
} // namespace faultline::resp
