#pragma once

// The control plane's HTTP/1.1 server: libuv for the sockets, llhttp for the parsing, on the same
// single loop as the proxy data path. No threads, no locks.
//
// A connection handles one request at a time, in order (pipelined requests wait in the input
// buffer, the parser paused after each message), so replies can never overtake each other.
// Handlers reply through a Response, synchronously or later; a Response is a small handle that
// becomes inert when its connection goes away, so an asynchronous producer (the traffic log
// streaming records) can hold one without keeping the connection alive.

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/request_id.h"

namespace faultline::control {

// Header names compare case-insensitively (RFC 9110); values are kept as received.
struct CaseInsensitiveLess {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept;
};

// Request or response headers. A repeated header keeps its values joined with ", ", which is
// what RFC 9110 allows for every header the API cares about.
class Headers {
public:
  void add(std::string name, std::string value);
  void set(std::string name, std::string value);
  const std::string* find(std::string_view name) const;
  std::string get(std::string_view name, std::string_view fallback = {}) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  auto begin() const { return map_.begin(); }
  auto end() const { return map_.end(); }
  std::size_t size() const { return map_.size(); }

private:
  std::map<std::string, std::string, CaseInsensitiveLess> map_;
};

struct Request {
  std::string method;                       // upper-case, as llhttp names it: "GET", "POST", ...
  std::string target;                       // the request target as sent, e.g. "/proxies/a%20b?x=1"
  std::string raw_path;                     // target without query, still percent-encoded
  std::string path;                         // raw_path percent-decoded
  std::map<std::string, std::string> query; // decoded; the last of repeated keys wins
  std::map<std::string, std::string> params; // path parameters, filled by Router
  Headers headers;
  std::string body;
  std::string peer; // "127.0.0.1:53124" or "[::1]:53124"
  int http_major = 1;
  int http_minor = 1;

  const std::string* header(std::string_view name) const { return headers.find(name); }
  // A path parameter by name ("" when absent).
  const std::string& param(const std::string& name) const;
};

class HttpServer;
namespace detail {
struct Exchange;
class Connection;
} // namespace detail

// The reply to one request. Cheap to copy: copies refer to the same exchange, so a handler that
// answers later keeps a copy (e.g. in a lambda). Every method is a no-op returning false once the
// client has gone or the reply is complete. If every copy is dropped without a reply, the server
// answers 500 itself (or ends the stream), so a forgetful handler cannot hang a connection.
class Response {
public:
  // Extra response headers; only before the reply starts. Content-Length, Transfer-Encoding and
  // Connection are the server's.
  Response& header(std::string name, std::string value);

  bool json(int status, const nlohmann::json& body);
  bool text(int status, std::string_view content_type, std::string_view body);
  // {"error":"message","status":N}, the error shape of Toxiproxy's API.
  bool error(int status, std::string_view message);
  // A reply without a body, e.g. 204.
  bool empty(int status);

  // Streaming: chunked transfer encoding (HTTP/1.1) or close-delimited (HTTP/1.0).
  bool start_stream(int status, std::string_view content_type);
  bool write_chunk(std::string_view data);
  bool end();

  // Called once if the client goes away (or the server closes) before the reply is complete.
  void on_close(std::function<void()> callback);

  bool connected() const; // the client is still there and the reply is not complete
  bool started() const;   // status line sent (or reply complete)
  bool finished() const;  // reply complete, or the client is gone
  // Bytes handed to the socket but not yet written: a streaming writer drops records above its
  // own threshold instead of letting a slow reader make the server buffer without bound.
  std::size_t pending_bytes() const;

private:
  friend class detail::Connection;
  explicit Response(std::shared_ptr<detail::Exchange> exchange) : ex_(std::move(exchange)) {}
  std::shared_ptr<detail::Exchange> ex_;
};

using Handler = std::function<void(Request&, Response&)>;

// One route table for the API. Patterns are literal segments and {name} placeholders, each
// matching one non-empty path segment (percent-decoded into Request::params). A known path with
// another method gets 405 with an Allow header, an unknown path 404, both as JSON errors.
// A Router is itself a Handler: HttpServer server(loop, options, std::move(router)).
class Router {
public:
  Router& add(std::string_view method, std::string_view pattern, Handler handler);
  void operator()(Request& req, Response& res) const;

private:
  struct Route {
    std::string method;
    std::vector<std::string> segments; // "{name}" marks a parameter
    Handler handler;
  };
  static bool match(const Route& route, const std::vector<std::string>& segments,
                    std::map<std::string, std::string>* params);
  std::vector<Route> routes_;
};

struct HttpServerOptions {
  std::size_t max_body_bytes = 1 << 20;      // larger bodies: 413
  std::size_t max_header_bytes = 64 << 10;   // request line + headers; larger: 431
  std::uint64_t request_timeout_ms = 10'000; // first byte to last byte of a request
  std::uint64_t idle_timeout_ms = 60'000;    // keep-alive connection with no request
  std::uint64_t linger_ms = 2'000;           // draining input after an error reply
  std::size_t max_connections = 256;         // beyond: accepted, then closed at once
  std::string token;                         // non-empty: "Authorization: Bearer <token>"
  // Like Toxiproxy, refuse requests whose User-Agent starts with "Mozilla/" (403): a web page
  // must not be able to drive a local fault injector.
  bool reject_browsers = true;
  // Non-empty: every response carries this header with a fresh request id (request_id.h), as
  // Toxiproxy's API sets X-Toxiproxy-Request-Id.
  std::string request_id_header;
};

// The server. Owns its listener and its connections; frees them only from libuv close callbacks,
// so it must outlive the completion of close(): call close() and run the loop until on_closed.
class HttpServer {
public:
  using Options = HttpServerOptions;

  HttpServer(uv_loop_t* loop, Options options, Handler handler);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  // Bind and listen; returns 0 or a libuv error code (uv_strerror() explains it).
  int listen(const sockaddr* addr, int backlog = 128);
  int bound_port() const { return bound_port_; }
  // Closes the listener and every connection (in-flight streams see on_close). on_closed runs
  // from the last close callback. Idempotent; a second call's callback is ignored.
  void close(std::function<void()> on_closed = {});

  std::size_t connection_count() const { return connections_.size(); }
  // From the listener's close callback.
  void listener_closed();
  const Options& options() const { return options_; }
  uv_loop_t* loop() const { return loop_; }

private:
  friend class detail::Connection;
  enum class State { Idle, Listening, Closing, Closed };

  static void on_connection(uv_stream_t* server, int status);
  void accept_one();
  // Out of descriptors (EMFILE/ENFILE) with libuv's spare one gone too, the listener would be
  // offered the same connection again at once, for ever: it is closed instead, and listens
  // again on the same address after kFdBackoffMs (clients are refused meanwhile), as the
  // proxies' listeners do.
  static constexpr uint64_t kFdBackoffMs = 100;
  int open_listener();
  void pause_accepting(int status);
  void on_pause_over();
  void connection_closed(detail::Connection* conn);
  void maybe_finish_close();
  void dispatch(Request& req, Response& res);

  uv_loop_t* loop_;
  Options options_;
  Handler handler_;
  uv_tcp_t listener_{};
  State state_ = State::Idle;
  bool listener_open_ = false; // uv_tcp_init done, close callback not yet run
  int bound_port_ = 0;
  sockaddr_storage addr_{};     // where it listens (with the bound port), to listen again
  int backlog_ = 128;
  uv_timer_t* pause_timer_ = nullptr; // heap, made on the first pause, freed by its close callback
  bool accept_paused_ = false;
  std::unordered_map<detail::Connection*, std::unique_ptr<detail::Connection>> connections_;
  std::function<void()> on_closed_;
  RequestIds request_ids_;
};

// Shared helpers (also used by the client).
std::string percent_decode(std::string_view in, bool plus_is_space);
std::string percent_encode_segment(std::string_view in);
std::string_view status_reason(int status);

} // namespace faultline::control
