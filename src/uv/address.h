#pragma once
// Endpoint strings ("127.0.0.1:6381", "[::1]:6381", "redis.internal:6379") and socket addresses.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <uv.h> // sockaddr_storage: <sys/socket.h> on POSIX, winsock on Windows

struct addrinfo;

namespace faultline::uv {

struct Endpoint {
  std::string host; // without brackets; empty means "all addresses" for a listener
  uint16_t port = 0;
  std::string str() const; // host:port with brackets for IPv6
};

// Parses "host:port", "[v6]:port" or ":port". On failure returns nullopt and sets err to one line.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::string& err);

// Literal IPv4/IPv6 host to sockaddr without a lookup; false if host is a name.
bool literal_address(const Endpoint& ep, sockaddr_storage& out);

// Blocking lookup (getaddrinfo), for start-up (the listen and API addresses). Never for an
// upstream on the loop: a slow resolver would stall every connection (proxies use
// uv_getaddrinfo). First result wins, IPv4 before IPv6 only as the resolver orders them;
// `passive` (a listener's address) takes the first IPv4 address if any, as Go does.
// Returns false with err set.
bool resolve(const Endpoint& ep, sockaddr_storage& out, std::string& err, bool passive = false);

// The first address of a getaddrinfo answer with the port set; false if the answer is empty or of
// an unknown family.
bool first_address(const addrinfo* res, uint16_t port, sockaddr_storage& out);

std::string format_address(const sockaddr* sa);
uint16_t address_port(const sockaddr* sa);

} // namespace faultline::uv
