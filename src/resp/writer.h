#pragma once
// Encodes the replies faultline injects (errors, statuses, bulks, nulls, integers and arrays of
// those) in the protocol the client negotiated. Appends to a caller-owned std::string so a
// toxic can build a reply into a pooled buffer.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace faultline::resp {

enum class Protocol : uint8_t { Resp2 = 2, Resp3 = 3 };

class Writer {
public:
  explicit Writer(std::string& out, Protocol proto = Protocol::Resp2) : out_(out), proto_(proto) {}

  // "-LOADING Redis is loading the dataset in memory\r\n". CR/LF in text become spaces so the
  // frame stays one line; a leading '-' is not added twice.
  Writer& error(std::string_view text);
  Writer& simple(std::string_view text);  // "+OK\r\n", CR/LF become spaces
  Writer& bulk(std::string_view data);    // "$5\r\nhello\r\n", binary safe
  Writer& null();                         // RESP2 "$-1\r\n", RESP3 "_\r\n"
  Writer& null_array();                   // RESP2 "*-1\r\n", RESP3 "_\r\n"
  Writer& integer(int64_t v);             // ":42\r\n"
  Writer& array(size_t n);                // "*N\r\n", then N values
  Writer& push(size_t n);                 // RESP3 ">N\r\n" (RESP2: "*N\r\n")
  Writer& bulk_array(std::initializer_list<std::string_view> items);

  Protocol protocol() const { return proto_; }

private:
  void header(char type, int64_t n);
  void line(char type, std::string_view text);
  std::string& out_;
  Protocol proto_;
};

} // namespace faultline::resp
