#pragma once
// One whole RESP2/RESP3 reply as a tree, for the few places that must change a reply rather than
// forward it (the address rewriting of Cluster and Sentinel deployments, resp/rewrite.h).
//
// decode() reads one complete frame; encode() writes a tree back so that decoding and encoding
// an unchanged reply gives back the very same bytes. That holds because decode() accepts only
// the canonical spelling of what it turns into numbers (lengths and integers without a sign,
// padding or leading zeros, "-1" for the RESP2 nulls): anything else is refused, and the caller
// forwards the original bytes. Lines (simple strings, errors, doubles, big numbers) are kept as
// text, so a double is written back as Redis spelled it.
//
// The data path never builds these: a Value is for a reply a caller has decided to rewrite, at
// the cost of copying it. Input is bounded like the streaming parser's (resp/parser.h, Limits):
// at most kMaxDepth nested aggregates, and no length beyond the bytes at hand.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "resp/parser.h"

namespace faultline::resp {

struct Value {
  // resp::Type, as the streaming parser reports it; Type::Attribute is never a Value's own type
  // (an attribute is kept on the value it decorates), Type::None never comes out of decode().
  Type type = Type::Null;
  bool is_null = false;         // RESP2's null bulk $-1 (type Bulk) or null array *-1 (type Array)
  std::string str;              // + - , ( lines; $ ! payloads; = payload after "fmt:"
  std::string format;           // verbatim (=) only: its three-byte format, "txt" or "mkd"
  int64_t integer = 0;          // : value; # as 1 (t) or 0 (f)
  std::vector<Value> elems;     // * ~ > elements; % as key, value, key, value...
  bool has_attribute = false;   // a | attribute came before this value
  std::vector<Value> attribute; // its key, value, key, value...

  bool is_aggregate() const;
  // The text of a string-like value (simple, bulk, verbatim payload); nullptr for anything else
  // (and for the RESP2 nulls).
  const std::string* text() const;
  std::string* text();
};

inline constexpr int kMaxDepth = 64;  // nested aggregates, attributes included

// Decodes the one frame at the start of `bytes`; *used = its length. nullopt if the bytes are
// incomplete, not RESP, deeper than kMaxDepth, or spelled in a way encode() would not give back
// (a streamed $? / *? included: Redis never sends them as replies).
std::optional<Value> decode(std::string_view bytes, size_t* used = nullptr);

// Appends the bytes of v to out.
void encode(const Value& v, std::string& out);
std::string encode(const Value& v);

} // namespace faultline::resp
