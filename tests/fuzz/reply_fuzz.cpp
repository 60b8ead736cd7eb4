// libFuzzer target: the reply parser (RESP2 and RESP3) and the pairing's reply side.
#include "fuzz_common.h"
#include "proxy/pairing.h"

using namespace faultline;

namespace {
std::string mb(std::initializer_list<std::string_view> args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) s += "$" + std::to_string(a.size()) + "\r\n" + std::string(a) + "\r\n";
  return s;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::check_splits(data, size, [](std::string_view in, const std::vector<size_t>& cuts) {
    return resp::test::replies(in, cuts);
  });
  fuzz::check_splits(data, size, [](std::string_view in, const std::vector<size_t>& cuts) {
    return resp::test::replies(in, cuts, fuzz::small_limits(), fuzz::small_capture());
  });
  {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    fuzz::check_offers<resp::ReplyParser>(data, size, resp::test::replies(in), {}, {});
    fuzz::check_offers<resp::ReplyParser>(
        data, size, resp::test::replies(in, {}, fuzz::small_limits(), fuzz::small_capture()),
        fuzz::small_limits(), fuzz::small_capture());
  }
  // Replies against a pending mix of stateful commands: never a crash, whatever arrives.
  static const std::string requests =
      mb({"HELLO", "3"}) + mb({"SUBSCRIBE", "a", "b"}) + mb({"UNSUBSCRIBE"}) + mb({"MULTI"}) +
      mb({"SELECT", "2"}) + mb({"EXEC"}) + mb({"MONITOR"}) + mb({"CLIENT", "REPLY", "SKIP"}) +
      mb({"GET", "k"}) + mb({"PSUBSCRIBE", "p"}) + mb({"PUNSUBSCRIBE"}) + mb({"RESET"}) +
      mb({"BLPOP", "q", "0"}) + mb({"QUIT"});
  resp::RequestParser rq;
  resp::ReplyParser rp;
  proxy::Pairing pairing(8);
  uint64_t now = 0;
  rq.feed(requests, [&](const resp::RequestFrame& f) { pairing.on_request(f, ++now, 0); });
  rp.feed(reinterpret_cast<const char*>(data), size, [&](const resp::ReplyFrame& f) {
    fuzz::check(f.type != resp::Type::Attribute && f.type != resp::Type::None, "frame type");
    auto r = pairing.on_reply(f, ++now);
    if (r.kind == proxy::ReplyKind::Paired) fuzz::check(r.request.id > 0, "paired id");
  });
  return 0;
}
