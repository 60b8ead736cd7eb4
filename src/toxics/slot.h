#pragma once
// Redis Cluster's key hash slot: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384.

#include <cstdint>
#include <string_view>

namespace faultline::toxics {

uint16_t crc16(std::string_view data);
unsigned key_hash_slot(std::string_view key);

} // namespace faultline::toxics
