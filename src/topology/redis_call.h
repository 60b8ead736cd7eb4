#pragma once
// One command to one Redis node, on the loop: connect, send, read one whole reply, close. What a
// deployment's front (cluster.h, sentinel.h) uses to learn its topology and to act on it
// (CLUSTER FAILOVER, SETSLOT, SENTINEL FAILOVER...). Never blocks: the address is a literal IP
// (node addresses as Redis reports them), bounded in time (timeout_ms from the call to the
// reply) and in size (a reply over max_reply_bytes is an error).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <uv.h>

namespace faultline::topology {

struct CallResult {
  std::string error;  // empty: `reply` holds one whole RESP reply (which may be a Redis error)
  std::string reply;
  bool ok() const { return error.empty(); }
  // The reply is a RESP error ("-ERR ..."): its text, without the '-' and CRLF.
  bool redis_error() const { return ok() && !reply.empty() && reply[0] == '-'; }
  std::string redis_error_text() const;
};

using CallDone = std::function<void(CallResult)>;

// `done` runs exactly once, from the loop (never from inside call()), unless the loop stops first.
void call(uv_loop_t* loop, const std::string& address, std::vector<std::string> args,
          uint32_t timeout_ms, CallDone done, size_t max_reply_bytes = 8u << 20);

// The payload of a bulk-string reply ("$5\r\nhello\r\n" -> "hello"); false for any other reply.
bool bulk_payload(std::string_view reply, std::string& out);

} // namespace faultline::topology
