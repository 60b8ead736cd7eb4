#include "uv/address.h"

#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace faultline::uv {

std::string Endpoint::str() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::optional<Endpoint> parse_endpoint(std::string_view text, std::string& err) {
  Endpoint ep;
  std::string_view port;
  if (text.empty()) {
    err = "empty address (expected host:port)";
    return std::nullopt;
  }
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      err = fmt::format("bad address '{}' (expected [ipv6]:port)", text);
      return std::nullopt;
    }
    ep.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      err = fmt::format("bad address '{}' (expected host:port)", text);
      return std::nullopt;
    }
    if (text.find(':') != colon) {
      err = fmt::format("bad address '{}' (write IPv6 addresses as [addr]:port)", text);
      return std::nullopt;
    }
    ep.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value > 65535) {
    err = fmt::format("bad port '{}' in address '{}' (expected 0-65535)", port, text);
    return std::nullopt;
  }
  ep.port = static_cast<uint16_t>(value);
  return ep;
}

bool literal_address(const Endpoint& ep, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  std::string host = ep.host.empty() ? "0.0.0.0" : ep.host;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (uv_inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 0) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(ep.port);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (uv_inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 0) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(ep.port);
    return true;
  }
  return false;
}

bool resolve(const Endpoint& ep, sockaddr_storage& out, std::string& err, bool passive) {
  if (literal_address(ep, out)) return true;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(ep.host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    err = fmt::format("cannot resolve '{}': {}", ep.host, gai_strerror(rc));
    return false;
  }
  // A listener takes the first IPv4 address when there is one, as Go's net.Listen does
  // (Toxiproxy's "localhost:3310" listens on, and reads back as, 127.0.0.1:3310).
  const addrinfo* pick = res;
  if (passive)
    for (const addrinfo* a = res; a; a = a->ai_next)
      if (a->ai_family == AF_INET) {
        pick = a;
        break;
      }
  bool ok = first_address(pick, ep.port, out);
  freeaddrinfo(res);
  if (!ok) err = fmt::format("cannot resolve '{}': no usable address", ep.host);
  return ok;
}

bool first_address(const addrinfo* res, uint16_t port, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  if (!res || !res->ai_addr || res->ai_addrlen > sizeof out) return false;
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  if (out.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&out)->sin_port = htons(port);
    return true;
  }
  if (out.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&out)->sin6_port = htons(port);
    return true;
  }
  return false;
}

std::string format_address(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    uv_inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    return fmt::format("{}:{}", host, ntohs(v4->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    uv_inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    return fmt::format("[{}]:{}", host, ntohs(v6->sin6_port));
  }
  return "?";
}

uint16_t address_port(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  if (sa->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  return 0;
}

} // namespace faultline::uv
