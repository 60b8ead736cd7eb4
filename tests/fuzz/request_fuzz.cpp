// libFuzzer target: the request parser (multibulk and inline) and the pairing's request side.
#include "fuzz_common.h"
#include "proxy/pairing.h"

using namespace faultline;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::check_splits(data, size, [](std::string_view in, const std::vector<size_t>& cuts) {
    return resp::test::requests(in, cuts);
  });
  fuzz::check_splits(data, size, [](std::string_view in, const std::vector<size_t>& cuts) {
    return resp::test::requests(in, cuts, fuzz::small_limits(), fuzz::small_capture());
  });
  {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    fuzz::check_offers<resp::RequestParser>(data, size, resp::test::requests(in), {}, {});
    fuzz::check_offers<resp::RequestParser>(
        data, size, resp::test::requests(in, {}, fuzz::small_limits(), fuzz::small_capture()),
        fuzz::small_limits(), fuzz::small_capture());
  }
  // Every frame's facts are usable by the pairing, whatever the bytes were.
  resp::RequestParser parser;
  proxy::Pairing pairing(8);
  uint64_t now = 0;
  parser.feed(reinterpret_cast<const char*>(data), size, [&](const resp::RequestFrame& f) {
    if (f.argc > 0) fuzz::check(f.args.size() >= 1 && f.args[0].len >= f.name.size(), "name");
    if (f.has_key) fuzz::check(f.key.data.size() <= f.key.len, "key length");
    pairing.on_request(f, ++now, 0);
    if (now % 3 == 0) pairing.on_injected(f, now, 0);
    while (pairing.next_injected()) {
    }
  });
  return 0;
}
