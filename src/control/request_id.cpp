#include "control/request_id.h"

#include <chrono>
#include <random>

#include <uv.h>

namespace faultline::control {

RequestIds::RequestIds() {
  std::random_device rd;
  uint32_t r = rd();
  machine_ = {static_cast<uint8_t>(r), static_cast<uint8_t>(r >> 8), static_cast<uint8_t>(r >> 16)};
  pid_ = static_cast<uint16_t>(uv_os_getpid());
  counter_ = rd() & 0xFFFFFF;
}

RequestIds::RequestIds(std::array<uint8_t, 3> machine, uint16_t pid, uint32_t counter)
    : machine_(machine), pid_(pid), counter_(counter & 0xFFFFFF) {}

std::string RequestIds::next(uint32_t t) {
  uint32_t c = counter_;
  counter_ = (counter_ + 1) & 0xFFFFFF;
  std::array<uint8_t, 12> id{static_cast<uint8_t>(t >> 24),
                             static_cast<uint8_t>(t >> 16),
                             static_cast<uint8_t>(t >> 8),
                             static_cast<uint8_t>(t),
                             machine_[0],
                             machine_[1],
                             machine_[2],
                             static_cast<uint8_t>(pid_ >> 8),
                             static_cast<uint8_t>(pid_),
                             static_cast<uint8_t>(c >> 16),
                             static_cast<uint8_t>(c >> 8),
                             static_cast<uint8_t>(c)};
  return encode(id);
}

std::string RequestIds::next() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return next(static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(now).count()));
}

std::string RequestIds::encode(const std::array<uint8_t, 12>& id) {
  static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuv";
  // 96 bits, five at a time from the most significant; the last character holds the final four
  // bits followed by a zero bit.
  std::string out;
  out.reserve(20);
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : id) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += kAlphabet[(acc >> bits) & 0x1F];
    }
  }
  if (bits > 0)
    out += kAlphabet[(acc << (5 - bits)) & 0x1F];
  return out;
}

} // namespace faultline::control
