#pragma once
// Request ids as Toxiproxy's API hands them out in X-Toxiproxy-Request-Id (zerolog's hlog
// RequestIDHandler, which makes an rs/xid): 12 bytes, written as 20 characters of lowercase
// base32hex without padding ("cq1v0mh8h6hc7p2ol2u0"):
//
//   [ unix seconds, 4 bytes BE ][ machine, 3 ][ pid, 2 BE ][ counter, 3 BE ]
//
// The machine bytes are random per process (xid's own fallback) and the counter starts at a
// random value, so ids from two processes on one machine do not collide. Ids sort by time.

#include <array>
#include <cstdint>
#include <string>

namespace faultline::control {

class RequestIds {
public:
  RequestIds(); // random machine bytes and counter start
  RequestIds(std::array<uint8_t, 3> machine, uint16_t pid, uint32_t counter);
  std::string next(uint32_t unix_seconds);
  std::string next(); // at the current time

  // The 20-character form of 12 bytes.
  static std::string encode(const std::array<uint8_t, 12>& id);

private:
  std::array<uint8_t, 3> machine_{};
  uint16_t pid_ = 0;
  uint32_t counter_ = 0; // 24 bits used
};

} // namespace faultline::control
