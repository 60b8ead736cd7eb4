#include "control/http_server.h"

#include "base/log.h"

#include <llhttp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <fmt/format.h>

namespace faultline::control {

// ---------------------------------------------------------------------------------------------
// Small helpers

namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i]))
      return false;
  }
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Compares without an early exit, so response timing does not leak how much of a token matched.
bool constant_time_equals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> split_path(std::string_view raw_path) {
  std::vector<std::string_view> out;
  if (!raw_path.empty() && raw_path.front() == '/')
    raw_path.remove_prefix(1);
  // One trailing slash is tolerated: "/proxies/" is "/proxies".
  if (!raw_path.empty() && raw_path.back() == '/')
    raw_path.remove_suffix(1);
  if (raw_path.empty())
    return out;
  std::size_t start = 0;
  while (true) {
    std::size_t slash = raw_path.find('/', start);
    out.push_back(raw_path.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos)
      break;
    start = slash + 1;
  }
  return out;
}

std::string format_peer(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    uv_ip4_name(a, ip, sizeof ip);
    return fmt::format("{}:{}", ip, ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    uv_ip6_name(a, ip, sizeof ip);
    return fmt::format("[{}]:{}", ip, ntohs(a->sin6_port));
  }
  return "unknown";
}

std::string error_body(int status, std::string_view message) {
  return nlohmann::json{{"error", message}, {"status", status}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace

bool CaseInsensitiveLess::operator()(std::string_view a, std::string_view b) const noexcept {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const char x = lower(a[i]);
    const char y = lower(b[i]);
    if (x != y)
      return x < y;
  }
  return a.size() < b.size();
}

void Headers::add(std::string name, std::string value) {
  auto it = map_.find(name);
  if (it == map_.end()) {
    map_.emplace(std::move(name), std::move(value));
  } else {
    it->second += ", ";
    it->second += value;
  }
}

void Headers::set(std::string name, std::string value) {
  auto it = map_.find(name);
  if (it == map_.end()) {
    map_.emplace(std::move(name), std::move(value));
  } else {
    it->second = std::move(value);
  }
}

const std::string* Headers::find(std::string_view name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : &it->second;
}

std::string Headers::get(std::string_view name, std::string_view fallback) const {
  const std::string* v = find(name);
  return v ? *v : std::string(fallback);
}

const std::string& Request::param(const std::string& name) const {
  static const std::string empty;
  auto it = params.find(name);
  return it == params.end() ? empty : it->second;
}

std::string percent_decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

std::string percent_encode_segment(std::string_view in) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : in) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
                       u == '-' || u == '_' || u == '.' || u == '~';
    if (plain) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(digits[u >> 4]);
      out.push_back(digits[u & 15]);
    }
  }
  return out;
}

std::string_view status_reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 304:
    return "Not Modified";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 411:
    return "Length Required";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Content";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  default:
    break;
  }
  if (status >= 200 && status < 300)
    return "OK";
  if (status >= 400 && status < 500)
    return "Client Error";
  return "Server Error";
}

// ---------------------------------------------------------------------------------------------
// Connection and exchange

namespace detail {

// What a Response refers to. `conn` is cleared when the reply completes or the connection
// closes; from then on every Response method is a no-op.
struct Exchange {
  Connection* conn = nullptr;
  bool head = false;    // HEAD request: headers only
  bool started = false; // status line queued
  bool streaming = false;
  bool chunked = false;
  std::vector<std::pair<std::string, std::string>> extra_headers;
  std::function<void()> on_close;

  Exchange() = default;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;
  ~Exchange();
};

// One client connection. Owns its socket and timer by value; neither copyable nor movable, since
// libuv holds pointers into it. Freed by the server once both close callbacks have run.
//
//   read_cb ─► inbuf_ ─► pump(): llhttp, paused after each message ─► dispatch ─► handler
//                                       ▲                                             │
//                                       └──────── reply complete (finish) ◄───────────┘
class Connection {
public:
  explicit Connection(HttpServer* server);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int init(uv_loop_t* loop);
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  void start();
  void close();
  bool closing() const { return state_ != State::Open; }
  int open_handles() const { return open_handles_; }

  // Called by Response through the exchange.
  bool reply(Exchange& ex, int status, std::string_view content_type, std::string_view body);
  bool start_stream(Exchange& ex, int status, std::string_view content_type);
  bool write_chunk(Exchange& ex, std::string_view data);
  bool end_stream(Exchange& ex);
  void exchange_dropped(Exchange& ex);
  std::size_t pending_bytes() const { return pending_bytes_; }

private:
  enum class State { Open, Closing };
  enum class TimerMode { None, Request, Idle, Linger, Resume };

  struct WriteReq {
    uv_write_t req;
    std::string data;
    Connection* conn;
  };

  static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_timer(uv_timer_t* t);
  static void on_close_handle(uv_handle_t* h);

  static int cb_message_begin(llhttp_t* p);
  static int cb_url(llhttp_t* p, const char* at, std::size_t len);
  static int cb_header_field(llhttp_t* p, const char* at, std::size_t len);
  static int cb_header_value(llhttp_t* p, const char* at, std::size_t len);
  static int cb_headers_complete(llhttp_t* p);
  static int cb_body(llhttp_t* p, const char* at, std::size_t len);
  static int cb_message_complete(llhttp_t* p);
  static const llhttp_settings_t& settings();

  int count_header_bytes(std::size_t n);
  void commit_header();
  void pump();
  void dispatch_current();
  void fail_parse(llhttp_errno_t err);
  void send_error_and_close(int status, std::string_view message);
  void finish(Exchange& ex);
  void write(std::string data);
  void close_after_flush();
  void begin_shutdown();
  void arm_timer(TimerMode mode, std::uint64_t ms);
  void maybe_resume_reading();
  void maybe_resume_reading_for_drain();
  std::size_t pipeline_limit() const {
    return std::max<std::size_t>(64 * 1024, opts_.max_header_bytes);
  }
  std::string head(const Exchange* ex, int status, std::string_view content_type,
                   std::string_view framing) const;

  HttpServer* server_;
  const HttpServerOptions& opts_;
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  int open_handles_ = 0;
  State state_ = State::Open;
  TimerMode timer_mode_ = TimerMode::None;

  llhttp_t parser_{};
  std::string inbuf_;
  std::array<char, 16 * 1024> readbuf_{};
  bool reading_ = false;

  // The request being parsed.
  Request req_;
  std::string field_;
  std::string value_;
  bool in_value_ = false;
  bool in_message_ = false;
  std::size_t header_bytes_ = 0;
  int parse_error_status_ = 0;
  std::string parse_error_message_;
  bool message_keep_alive_ = true;

  // The request being answered.
  Exchange* current_ = nullptr;
  bool busy_ = false;
  bool keep_alive_ = true;
  int http_minor_ = 1;
  bool in_pump_ = false;

  bool peer_eof_ = false;
  bool close_after_flush_ = false; // no more requests: shut down once the writes are done
  bool draining_ = false;          // shut down; discarding input until EOF or linger timeout
  std::size_t pending_bytes_ = 0;
  std::string peer_;
};

Exchange::~Exchange() {
  if (conn != nullptr)
    conn->exchange_dropped(*this);
}

Connection::Connection(HttpServer* server) : server_(server), opts_(server->options_) {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
}

int Connection::init(uv_loop_t* loop) {
  int rc = uv_tcp_init(loop, &tcp_);
  if (rc != 0)
    return rc;
  tcp_.data = this;
  ++open_handles_;
  rc = uv_timer_init(loop, &timer_);
  if (rc != 0)
    return rc;
  timer_.data = this;
  ++open_handles_;
  return 0;
}

const llhttp_settings_t& Connection::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_message_begin = &Connection::cb_message_begin;
    v.on_url = &Connection::cb_url;
    v.on_header_field = &Connection::cb_header_field;
    v.on_header_value = &Connection::cb_header_value;
    v.on_headers_complete = &Connection::cb_headers_complete;
    v.on_body = &Connection::cb_body;
    v.on_message_complete = &Connection::cb_message_complete;
    return v;
  }();
  return s;
}

void Connection::start() {
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer_ = format_peer(ss);
  }
  // The first request gets the request timeout from the moment of accept, so a client that
  // connects and says nothing does not hold a slot for the (longer) idle timeout.
  arm_timer(TimerMode::Request, opts_.request_timeout_ms);
  if (uv_read_start(stream(), &Connection::on_alloc, &Connection::on_read) != 0) {
    close();
    return;
  }
  reading_ = true;
}

void Connection::close() {
  if (state_ != State::Open)
    return;
  state_ = State::Closing;
  if (current_ != nullptr) {
    Exchange* ex = current_;
    current_ = nullptr;
    ex->conn = nullptr;
    // Moved out first: the callback may drop the last Response, destroying the exchange.
    auto callback = std::move(ex->on_close);
    ex->on_close = nullptr;
    if (callback) {
      try {
        callback();
      } catch (...) {
        // A listener's failure must not escape into libuv.
      }
    }
  }
  if (timer_.data != nullptr) {
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &Connection::on_close_handle);
  }
  if (tcp_.data != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Connection::on_close_handle);
  }
}

void Connection::on_close_handle(uv_handle_t* h) {
  auto* self = static_cast<Connection*>(h->data);
  if (--self->open_handles_ == 0)
    self->server_->connection_closed(self);
}

void Connection::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(h->data);
  buf->base = self->readbuf_.data();
  buf->len = self->readbuf_.size();
}

void Connection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(s->data);
  if (self->closing() || nread == 0)
    return;
  if (nread < 0) {
    if (nread != UV_EOF || self->draining_) {
      self->close();
      return;
    }
    // libuv stops reading after EOF by itself.
    self->peer_eof_ = true;
    self->reading_ = false;
    if (self->busy_) {
      // A streaming client that leaves is gone. Otherwise the client may have half-closed after
      // its requests: it still gets its replies (finish() and pump() close afterwards).
      if (self->current_ != nullptr && self->current_->streaming)
        self->close();
      return;
    }
    self->pump();
    return;
  }
  if (self->draining_)
    return; // after an error reply the rest of the input is discarded
  self->inbuf_.append(buf->base, static_cast<std::size_t>(nread));
  // While a reply is in progress, pipelined input waits here; bounded, so a client cannot make
  // the server buffer without limit by sending requests it never reads the answers to.
  if (self->busy_ && self->inbuf_.size() > self->pipeline_limit()) {
    uv_read_stop(s);
    self->reading_ = false;
  }
  self->pump();
}

// --- parsing ------------------------------------------------------------------------------------

int Connection::count_header_bytes(std::size_t n) {
  header_bytes_ += n;
  if (header_bytes_ > opts_.max_header_bytes) {
    parse_error_status_ = 431;
    parse_error_message_ =
        fmt::format("request headers larger than {} bytes", opts_.max_header_bytes);
    llhttp_set_error_reason(&parser_, "header too large");
    return HPE_USER;
  }
  return 0;
}

void Connection::commit_header() {
  if (!field_.empty())
    req_.headers.add(std::move(field_), std::string(trim(value_)));
  field_.clear();
  value_.clear();
  in_value_ = false;
}

int Connection::cb_message_begin(llhttp_t* p) {
  auto* self = static_cast<Connection*>(p->data);
  self->req_ = Request{};
  self->field_.clear();
  self->value_.clear();
  self->in_value_ = false;
  self->header_bytes_ = 0;
  self->in_message_ = true;
  // The whole request must arrive within the request timeout, however slowly it trickles in.
  self->arm_timer(TimerMode::Request, self->opts_.request_timeout_ms);
  return 0;
}

int Connection::cb_url(llhttp_t* p, const char* at, std::size_t len) {
  auto* self = static_cast<Connection*>(p->data);
  self->req_.target.append(at, len);
  return self->count_header_bytes(len);
}

int Connection::cb_header_field(llhttp_t* p, const char* at, std::size_t len) {
  auto* self = static_cast<Connection*>(p->data);
  if (self->in_value_)
    self->commit_header();
  self->field_.append(at, len);
  return self->count_header_bytes(len + 4); // ": " and CRLF
}

int Connection::cb_header_value(llhttp_t* p, const char* at, std::size_t len) {
  auto* self = static_cast<Connection*>(p->data);
  self->in_value_ = true;
  self->value_.append(at, len);
  return self->count_header_bytes(len);
}

int Connection::cb_headers_complete(llhttp_t* p) {
  auto* self = static_cast<Connection*>(p->data);
  self->commit_header();
  Request& r = self->req_;
  r.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(p)));
  r.http_major = llhttp_get_http_major(p);
  r.http_minor = llhttp_get_http_minor(p);
  r.peer = self->peer_;

  std::string_view target = r.target;
  // Absolute form ("http://host:port/path") as some proxies send it.
  if (auto scheme = target.find("://"); scheme != std::string_view::npos && target.front() != '/') {
    auto slash = target.find('/', scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (auto hash = target.find('#'); hash != std::string_view::npos)
    target = target.substr(0, hash);
  std::string_view query;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    query = target.substr(q + 1);
    target = target.substr(0, q);
  }
  r.raw_path = std::string(target);
  r.path = percent_decode(target, false);
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty())
      continue;
    auto eq = pair.find('=');
    std::string key = percent_decode(pair.substr(0, eq), true);
    std::string value =
        eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
    r.query[std::move(key)] = std::move(value);
  }

  const bool has_body = (p->flags & F_CHUNKED) != 0 || p->content_length > 0;
  if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > self->opts_.max_body_bytes) {
    self->parse_error_status_ = 413;
    self->parse_error_message_ =
        fmt::format("request body larger than {} bytes", self->opts_.max_body_bytes);
    llhttp_set_error_reason(p, "body too large");
    return -1;
  }
  if (has_body && r.http_major == 1 && r.http_minor >= 1) {
    if (const std::string* expect = r.headers.find("Expect");
        expect != nullptr && iequals(trim(*expect), "100-continue")) {
      self->write("HTTP/1.1 100 Continue\r\n\r\n");
    }
  }
  return 0;
}

int Connection::cb_body(llhttp_t* p, const char* at, std::size_t len) {
  auto* self = static_cast<Connection*>(p->data);
  if (self->req_.body.size() + len > self->opts_.max_body_bytes) {
    self->parse_error_status_ = 413;
    self->parse_error_message_ =
        fmt::format("request body larger than {} bytes", self->opts_.max_body_bytes);
    llhttp_set_error_reason(p, "body too large");
    return HPE_USER;
  }
  self->req_.body.append(at, len);
  return 0;
}

int Connection::cb_message_complete(llhttp_t* p) {
  auto* self = static_cast<Connection*>(p->data);
  self->message_keep_alive_ = llhttp_should_keep_alive(p) != 0;
  self->in_message_ = false;
  // Stop after each request: the next one (pipelined) is parsed only once this one is answered.
  return HPE_PAUSED;
}

void Connection::pump() {
  if (in_pump_)
    return; // a synchronous reply inside dispatch: the loop below carries on
  in_pump_ = true;
  while (!closing() && !busy_ && !draining_ && !close_after_flush_ && !inbuf_.empty()) {
    const llhttp_errno_t err = llhttp_execute(&parser_, inbuf_.data(), inbuf_.size());
    if (err == HPE_OK) {
      inbuf_.clear();
      break;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      const char* pos = llhttp_get_error_pos(&parser_);
      const auto consumed = static_cast<std::size_t>(pos - inbuf_.data());
      inbuf_.erase(0, std::min(consumed, inbuf_.size()));
      if (err == HPE_PAUSED) {
        llhttp_resume(&parser_);
      } else {
        // No protocol upgrades here: answer the request, then close.
        message_keep_alive_ = false;
        llhttp_resume_after_upgrade(&parser_);
      }
      dispatch_current();
      continue;
    }
    fail_parse(err);
    break;
  }
  in_pump_ = false;
  if (closing() || busy_ || draining_ || close_after_flush_)
    return;
  if (peer_eof_) {
    // Every complete request is answered; a partial one can never complete.
    close_after_flush();
    return;
  }
  // Between requests: a partial one keeps its request timer, an empty connection goes idle.
  if (!in_message_)
    arm_timer(TimerMode::Idle, opts_.idle_timeout_ms);
  maybe_resume_reading();
}

void Connection::maybe_resume_reading() {
  if (reading_ || closing() || peer_eof_ || draining_)
    return;
  if (uv_read_start(stream(), &Connection::on_alloc, &Connection::on_read) == 0)
    reading_ = true;
}

void Connection::fail_parse(llhttp_errno_t err) {
  int status = parse_error_status_ != 0 ? parse_error_status_ : 400;
  std::string message =
      parse_error_status_ != 0
          ? parse_error_message_
          : fmt::format("malformed HTTP request: {}", llhttp_get_error_reason(&parser_) != nullptr
                                                          ? llhttp_get_error_reason(&parser_)
                                                          : llhttp_errno_name(err));
  inbuf_.clear();
  send_error_and_close(status, message);
}

void Connection::send_error_and_close(int status, std::string_view message) {
  keep_alive_ = false;
  const std::string body = error_body(status, message);
  std::string out =
      head(nullptr, status, "application/json", fmt::format("Content-Length: {}\r\n", body.size()));
  out += body;
  write(std::move(out));
  close_after_flush();
}

void Connection::dispatch_current() {
  busy_ = true;
  keep_alive_ = message_keep_alive_;
  http_minor_ = req_.http_minor;
  arm_timer(TimerMode::None, 0);

  auto ex = std::make_shared<Exchange>();
  ex->conn = this;
  ex->head = req_.method == "HEAD";
  current_ = ex.get();
  Request req = std::move(req_);
  req_ = Request{};
  Response res(std::move(ex));
  try {
    server_->dispatch(req, res);
  } catch (const std::exception& e) {
    if (!res.started()) {
      res.error(500, e.what());
    } else if (!res.finished()) {
      close(); // a half-sent stream cannot carry an error; ending it abruptly is the signal
    }
  } catch (...) {
    if (!res.started()) {
      res.error(500, "internal error");
    } else if (!res.finished()) {
      close();
    }
  }
  // `res` goes out of scope here: if the handler kept no copy and did not reply, the exchange's
  // destructor answers 500 (see exchange_dropped).
}

// --- replying -----------------------------------------------------------------------------------

std::string Connection::head(const Exchange* ex, int status, std::string_view content_type,
                             std::string_view framing) const {
  std::string out =
      fmt::format("HTTP/1.{} {} {}\r\n", http_minor_ == 0 ? 0 : 1, status, status_reason(status));
  if (!content_type.empty())
    out += fmt::format("Content-Type: {}\r\n", content_type);
  if (ex != nullptr) {
    for (const auto& [name, value] : ex->extra_headers)
      out += fmt::format("{}: {}\r\n", name, value);
  }
  out += framing;
  out += keep_alive_ ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "\r\n";
  return out;
}

bool Connection::reply(Exchange& ex, int status, std::string_view content_type,
                       std::string_view body) {
  if (ex.started || closing())
    return false;
  ex.started = true;
  const bool bodiless = status == 204 || status == 304 || (status >= 100 && status < 200);
  std::string out;
  if (bodiless) {
    out = head(&ex, status, {}, {});
  } else {
    out = head(&ex, status, content_type, fmt::format("Content-Length: {}\r\n", body.size()));
    if (!ex.head)
      out += body;
  }
  write(std::move(out));
  finish(ex);
  return true;
}

bool Connection::start_stream(Exchange& ex, int status, std::string_view content_type) {
  if (ex.started || closing())
    return false;
  ex.started = true;
  ex.streaming = true;
  std::string framing;
  if (http_minor_ >= 1) {
    ex.chunked = true;
    framing = "Transfer-Encoding: chunked\r\n";
  } else {
    keep_alive_ = false; // HTTP/1.0: the end of the body is the end of the connection
  }
  write(head(&ex, status, content_type, framing));
  return !closing();
}

bool Connection::write_chunk(Exchange& ex, std::string_view data) {
  if (!ex.streaming || closing())
    return false;
  if (data.empty() || ex.head)
    return true; // an empty chunk would end a chunked body
  if (ex.chunked) {
    std::string out = fmt::format("{:x}\r\n", data.size());
    out.reserve(out.size() + data.size() + 2);
    out += data;
    out += "\r\n";
    write(std::move(out));
  } else {
    write(std::string(data));
  }
  return !closing();
}

bool Connection::end_stream(Exchange& ex) {
  if (!ex.streaming || closing())
    return false;
  if (ex.chunked && !ex.head)
    write("0\r\n\r\n");
  finish(ex);
  return true;
}

void Connection::exchange_dropped(Exchange& ex) {
  // Every Response copy is gone and the reply is incomplete: nobody else can finish it.
  if (closing())
    return;
  if (!ex.started) {
    reply(ex, 500, "application/json", error_body(500, "the handler did not reply"));
  } else if (ex.streaming) {
    end_stream(ex);
  }
}

void Connection::finish(Exchange& ex) {
  ex.conn = nullptr;
  ex.on_close = nullptr;
  if (current_ == &ex)
    current_ = nullptr;
  busy_ = false;
  if (!keep_alive_) {
    close_after_flush();
    return;
  }
  if (in_pump_)
    return; // synchronous reply: pump's loop goes on to the next request
  // An asynchronous reply: parse the next request from a fresh loop iteration, not from inside
  // whatever callback produced this reply.
  arm_timer(TimerMode::Resume, 0);
}

void Connection::write(std::string data) {
  if (closing() || data.empty())
    return;
  auto* w = new WriteReq{uv_write_t{}, std::move(data), this};
  w->req.data = w;
  const uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  const int rc = uv_write(&w->req, stream(), &buf, 1, &Connection::on_write);
  if (rc != 0) {
    delete w;
    close();
    return;
  }
  pending_bytes_ += buf.len;
}

void Connection::on_write(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  Connection* self = w->conn; // still alive: libuv reports writes before the close callback
  self->pending_bytes_ -= w->data.size();
  delete w;
  if (self->closing())
    return;
  if (status < 0) {
    self->close();
    return;
  }
  if (self->close_after_flush_ && self->pending_bytes_ == 0)
    self->begin_shutdown();
}

void Connection::close_after_flush() {
  if (close_after_flush_ || closing())
    return;
  close_after_flush_ = true;
  arm_timer(TimerMode::Linger, opts_.linger_ms + opts_.request_timeout_ms);
  if (pending_bytes_ == 0)
    begin_shutdown();
}

// After the last reply: send FIN, then read and discard until the client closes (or the linger
// timeout), so unread request bytes do not make the kernel answer with RST and destroy the reply
// before the client has read it.
void Connection::begin_shutdown() {
  if (draining_ || closing())
    return;
  draining_ = true;
  if (peer_eof_) {
    close();
    return;
  }
  auto* req = new uv_shutdown_t{};
  req->data = this;
  if (uv_shutdown(req, stream(), &Connection::on_shutdown) != 0) {
    delete req;
    close();
    return;
  }
  arm_timer(TimerMode::Linger, opts_.linger_ms);
  maybe_resume_reading_for_drain();
}

void Connection::maybe_resume_reading_for_drain() {
  if (reading_ || closing())
    return;
  if (uv_read_start(stream(), &Connection::on_alloc, &Connection::on_read) == 0)
    reading_ = true;
}

void Connection::on_shutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<Connection*>(req->data);
  delete req;
  if (status < 0 && status != UV_ECANCELED && !self->closing())
    self->close();
}

void Connection::arm_timer(TimerMode mode, std::uint64_t ms) {
  if (closing())
    return;
  timer_mode_ = mode;
  if (mode == TimerMode::None) {
    uv_timer_stop(&timer_);
    return;
  }
  uv_timer_start(&timer_, &Connection::on_timer, ms, 0);
}

void Connection::on_timer(uv_timer_t* t) {
  auto* self = static_cast<Connection*>(t->data);
  if (self->closing())
    return;
  const TimerMode mode = self->timer_mode_;
  self->timer_mode_ = TimerMode::None;
  switch (mode) {
  case TimerMode::Resume:
    self->pump();
    break;
  case TimerMode::Request:
    if (self->in_message_ && !self->busy_ && !self->close_after_flush_) {
      self->inbuf_.clear();
      self->send_error_and_close(408, "request not completed within the request timeout");
    } else {
      self->close();
    }
    break;
  case TimerMode::Idle:
  case TimerMode::Linger:
    self->close();
    break;
  case TimerMode::None:
    break;
  }
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// Response

Response& Response::header(std::string name, std::string value) {
  if (ex_ && !ex_->started)
    ex_->extra_headers.emplace_back(std::move(name), std::move(value));
  return *this;
}

bool Response::json(int status, const nlohmann::json& body) {
  if (!ex_ || ex_->conn == nullptr)
    return false;
  // Invalid UTF-8 in a string must not throw out of a reply: replace it.
  return ex_->conn->reply(*ex_, status, "application/json",
                          body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

bool Response::text(int status, std::string_view content_type, std::string_view body) {
  if (!ex_ || ex_->conn == nullptr)
    return false;
  return ex_->conn->reply(*ex_, status, content_type, body);
}

bool Response::error(int status, std::string_view message) {
  if (!ex_ || ex_->conn == nullptr)
    return false;
  return ex_->conn->reply(*ex_, status, "application/json", error_body(status, message));
}

bool Response::empty(int status) {
  if (!ex_ || ex_->conn == nullptr)
    return false;
  return ex_->conn->reply(*ex_, status, {}, {});
}

bool Response::start_stream(int status, std::string_view content_type) {
  if (!ex_ || ex_->conn == nullptr)
    return false;
  return ex_->conn->start_stream(*ex_, status, content_type);
}

bool Response::write_chunk(std::string_view data) {
  if (!ex_ || ex_->conn == nullptr)
    return false;
  return ex_->conn->write_chunk(*ex_, data);
}

bool Response::end() {
  if (!ex_ || ex_->conn == nullptr)
    return false;
  return ex_->conn->end_stream(*ex_);
}

void Response::on_close(std::function<void()> callback) {
  if (ex_ && ex_->conn != nullptr)
    ex_->on_close = std::move(callback);
}

bool Response::connected() const {
  return ex_ && ex_->conn != nullptr;
}
bool Response::started() const {
  return !ex_ || ex_->started || ex_->conn == nullptr;
}
bool Response::finished() const {
  return !ex_ || ex_->conn == nullptr;
}

std::size_t Response::pending_bytes() const {
  return ex_ && ex_->conn != nullptr ? ex_->conn->pending_bytes() : 0;
}

// ---------------------------------------------------------------------------------------------
// Router

Router& Router::add(std::string_view method, std::string_view pattern, Handler handler) {
  Route route;
  route.method = std::string(method);
  for (auto& c : route.method)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (std::string_view seg : split_path(pattern))
    route.segments.emplace_back(seg);
  route.handler = std::move(handler);
  routes_.push_back(std::move(route));
  return *this;
}

bool Router::match(const Route& route, const std::vector<std::string>& segments,
                   std::map<std::string, std::string>* params) {
  if (route.segments.size() != segments.size())
    return false;
  std::map<std::string, std::string> found;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const std::string& pat = route.segments[i];
    if (pat.size() >= 2 && pat.front() == '{' && pat.back() == '}') {
      if (segments[i].empty())
        return false;
      found[pat.substr(1, pat.size() - 2)] = segments[i];
    } else if (pat != segments[i]) {
      return false;
    }
  }
  if (params != nullptr)
    *params = std::move(found);
  return true;
}

void Router::operator()(Request& req, Response& res) const {
  std::vector<std::string> segments;
  // Split before decoding, so an encoded '/' (%2F) stays inside one name.
  for (std::string_view seg : split_path(req.raw_path))
    segments.push_back(percent_decode(seg, false));

  const Route* get_route = nullptr;
  std::string allowed;
  for (const Route& route : routes_) {
    if (!match(route, segments, nullptr))
      continue;
    if (route.method == req.method) {
      match(route, segments, &req.params);
      route.handler(req, res);
      return;
    }
    if (route.method == "GET" && get_route == nullptr)
      get_route = &route;
    if (allowed.find(route.method) == std::string::npos) {
      if (!allowed.empty())
        allowed += ", ";
      allowed += route.method;
    }
  }
  if (req.method == "HEAD" && get_route != nullptr) {
    // HEAD is GET without the body; the server drops the body.
    match(*get_route, segments, &req.params);
    get_route->handler(req, res);
    return;
  }
  if (!allowed.empty()) {
    res.header("Allow", allowed);
    res.error(405, fmt::format("method {} not allowed on {}", req.method, req.path));
    return;
  }
  res.error(404, fmt::format("no such endpoint: {}", req.path));
}

// ---------------------------------------------------------------------------------------------
// HttpServer

HttpServer::HttpServer(uv_loop_t* loop, Options options, Handler handler)
    : loop_(loop), options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  if (listener_open_ || !connections_.empty()) {
    // libuv still points into this object; freeing it now would be a use-after-free later.
    std::fprintf(stderr, "faultline: HttpServer destroyed before close() completed\n");
    std::abort();
  }
}

int HttpServer::listen(const sockaddr* addr, int backlog) {
  if (state_ != State::Idle)
    return UV_EINVAL;
  std::memcpy(&addr_, addr,
              addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
  backlog_ = backlog;
  state_ = State::Listening;
  int rc = open_listener();
  if (rc != 0)
    return rc;
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    bound_port_ = ss.ss_family == AF_INET6
                      ? ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port)
                      : ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
    addr_ = ss;  // listening again takes the same port, even when port 0 was asked
  }
  return 0;
}

int HttpServer::open_listener() {
  int rc = uv_tcp_init(loop_, &listener_);
  if (rc != 0)
    return rc;
  listener_.data = this;
  listener_open_ = true;
  rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr_), 0);
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), backlog_, &on_connection);
  return rc;
}

void HttpServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<HttpServer*>(server->data);
  if (status == UV_EMFILE || status == UV_ENFILE) {
    self->pause_accepting(status);
    return;
  }
  if (status < 0 || self->state_ != State::Listening)
    return;
  self->accept_one();
}

namespace {
void close_listener_handle(uv_tcp_t* listener) {
  uv_close(reinterpret_cast<uv_handle_t*>(listener), [](uv_handle_t* h) {
    auto* self = static_cast<HttpServer*>(h->data);
    self->listener_closed();
  });
}
} // namespace

void HttpServer::pause_accepting(int status) {
  if (state_ != State::Listening || accept_paused_ || !listener_open_)
    return;
  log::warn("api: out of file descriptors ({}): new API clients are refused for {} ms at a time "
            "until some close",
            uv_strerror(status), kFdBackoffMs);
  close_listener_handle(&listener_);
  if (!pause_timer_) {
    pause_timer_ = new uv_timer_t;
    uv_timer_init(loop_, pause_timer_);
    pause_timer_->data = this;
  }
  accept_paused_ = true;
  uv_timer_start(
      pause_timer_, [](uv_timer_t* t) { static_cast<HttpServer*>(t->data)->on_pause_over(); },
      kFdBackoffMs, 0);
}

void HttpServer::on_pause_over() {
  if (!accept_paused_ || state_ != State::Listening)
    return;
  // The listener's close callback has run (a loop iteration ago) unless the loop is very busy;
  // either way the handle cannot be opened again before it has.
  if (!listener_open_ && open_listener() == 0) {
    accept_paused_ = false;
    log::info("api: listening again");
    return;
  }
  if (listener_open_ && uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)) == 0)
    close_listener_handle(&listener_);  // opened but could not listen: try again later
  uv_timer_start(
      pause_timer_, [](uv_timer_t* t) { static_cast<HttpServer*>(t->data)->on_pause_over(); },
      kFdBackoffMs, 0);
}

void HttpServer::listener_closed() {
  listener_open_ = false;
  maybe_finish_close();
}

void HttpServer::accept_one() {
  if (connections_.size() >= options_.max_connections) {
    // Over the limit: accept (so the backlog does not fill) and close at once.
    auto* tmp = new uv_tcp_t{};
    if (uv_tcp_init(loop_, tmp) != 0) {
      delete tmp;
      return;
    }
    (void)uv_accept(reinterpret_cast<uv_stream_t*>(&listener_),
                    reinterpret_cast<uv_stream_t*>(tmp));
    uv_close(reinterpret_cast<uv_handle_t*>(tmp),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    return;
  }
  auto conn = std::make_unique<detail::Connection>(this);
  detail::Connection* raw = conn.get();
  connections_.emplace(raw, std::move(conn));
  if (raw->init(loop_) != 0 ||
      uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), raw->stream()) != 0) {
    raw->close();
    // Handles that never opened have no close callback to free the connection.
    if (raw->open_handles() == 0)
      connections_.erase(raw);
    return;
  }
  raw->start();
}

void HttpServer::connection_closed(detail::Connection* conn) {
  connections_.erase(conn);
  maybe_finish_close();
}

void HttpServer::close(std::function<void()> on_closed) {
  if (state_ == State::Closed) {
    if (on_closed)
      on_closed();
    return;
  }
  if (state_ == State::Closing)
    return;
  state_ = State::Closing;
  on_closed_ = std::move(on_closed);
  if (pause_timer_) {
    accept_paused_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(pause_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    pause_timer_ = nullptr;
  }
  if (listener_open_ && uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)) == 0)
    close_listener_handle(&listener_);
  // close() never erases synchronously (that happens in close callbacks), so this is safe;
  // a connection whose init failed may have no open handles to wait for, handled below.
  for (auto& [raw, conn] : connections_)
    conn->close();
  maybe_finish_close();
}

void HttpServer::maybe_finish_close() {
  if (state_ != State::Closing || listener_open_ || !connections_.empty())
    return;
  state_ = State::Closed;
  auto callback = std::move(on_closed_);
  on_closed_ = nullptr;
  if (callback)
    callback();
}

void HttpServer::dispatch(Request& req, Response& res) {
  if (!options_.request_id_header.empty())
    res.header(options_.request_id_header, request_ids_.next());
  if (options_.reject_browsers) {
    if (const std::string* ua = req.header("User-Agent");
        ua != nullptr && ua->starts_with("Mozilla/")) {
      res.error(403, "User agent not allowed");
      return;
    }
  }
  if (!options_.token.empty()) {
    const std::string* auth = req.header("Authorization");
    std::string_view presented;
    if (auth != nullptr && istarts_with(*auth, "Bearer "))
      presented = trim(std::string_view(*auth).substr(7));
    if (presented.empty() || !constant_time_equals(presented, options_.token)) {
      res.header("WWW-Authenticate", "Bearer realm=\"faultline\"");
      res.error(401, auth == nullptr ? "missing API token (Authorization: Bearer <token>)"
                                     : "invalid API token");
      return;
    }
  }
  if (handler_) {
    handler_(req, res);
  } else {
    res.error(404, "no handler");
  }
}

} // namespace faultline::control
