#pragma once

// A small blocking HTTP/1.1 client for `faultline ctl` and for tests: libuv on a private loop,
// run until each step is done, so it works wherever libuv does (POSIX, Windows). One
// connection, reused while the server keeps it alive. Replies are parsed with llhttp, so
// Content-Length, chunked and close-delimited bodies all work.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "control/http_server.h" // Headers

namespace faultline::control {

struct HttpResult {
  int status = 0; // 0 when there was no reply
  Headers headers;
  std::string body;  // empty for stream()
  std::string error; // transport failure, said plainly; empty on success

  bool ok() const { return error.empty(); }
};

class HttpClient {
public:
  // Called with each piece of a streamed body as it arrives; return false to stop reading.
  using DataCallback = std::function<bool(std::string_view)>;

  HttpClient(std::string host, std::uint16_t port, std::string token = {});
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  ~HttpClient();

  // Connect and whole-request timeout for request(); the connect timeout for stream().
  void set_timeout_ms(int ms) { timeout_ms_ = ms; }
  void set_user_agent(std::string ua) { user_agent_ = std::move(ua); }

  HttpResult request(std::string_view method, std::string_view path, std::string_view body = {},
                     std::string_view content_type = "application/json");

  // For long-lived replies (the traffic stream): on_data gets the decoded body as it arrives,
  // chunk by chunk (only for a 2xx reply; any other reply's body lands in HttpResult::body, so
  // its error can be shown). Returns when the body ends, on_data returns false, or no byte arrives
  // for idle_timeout_ms (0: wait forever). The connection is not reused afterwards.
  HttpResult stream(std::string_view method, std::string_view path, const DataCallback& on_data,
                    int idle_timeout_ms = 0);

  void close();
  // "host:port", as error messages name it.
  std::string address() const;
  // TCP connections opened so far: lets tests see keep-alive at work.
  int connects() const { return connects_; }

private:
  bool connect(std::string* error);
  HttpResult exchange(std::string_view method, std::string_view path, std::string_view body,
                      std::string_view content_type, const DataCallback* on_data,
                      int idle_timeout_ms);

  std::string host_;
  std::uint16_t port_;
  std::string token_;
  std::string user_agent_ = "faultline-ctl";
  int timeout_ms_ = 10'000;
  struct Transport; // the loop and the TCP handle (http_client.cpp)
  std::unique_ptr<Transport> conn_;
  int connects_ = 0;
};

} // namespace faultline::control
