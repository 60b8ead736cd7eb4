#include "control/http_client.h"

#include <llhttp.h>

#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <uv.h>

namespace faultline::control {

namespace {

using Clock = std::chrono::steady_clock;

// What the llhttp callbacks fill in while a reply is read.
struct ReplyState {
  HttpResult* result = nullptr;
  const HttpClient::DataCallback* on_data = nullptr;
  bool head = false;
  bool complete = false;
  bool stopped = false; // on_data asked to stop
  std::string field;
  std::string value;
  bool in_value = false;

  void commit() {
    if (!field.empty())
      result->headers.add(std::move(field), std::move(value));
    field.clear();
    value.clear();
    in_value = false;
  }
};

ReplyState& state(llhttp_t* p) {
  return *static_cast<ReplyState*>(p->data);
}

const llhttp_settings_t& reply_settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_header_field = [](llhttp_t* p, const char* at, std::size_t len) {
      ReplyState& st = state(p);
      if (st.in_value)
        st.commit();
      st.field.append(at, len);
      return 0;
    };
    v.on_header_value = [](llhttp_t* p, const char* at, std::size_t len) {
      ReplyState& st = state(p);
      st.in_value = true;
      st.value.append(at, len);
      return 0;
    };
    v.on_headers_complete = [](llhttp_t* p) {
      ReplyState& st = state(p);
      st.commit();
      st.result->status = llhttp_get_status_code(p);
      return st.head ? 1 : 0; // a reply to HEAD has no body, whatever its headers say
    };
    v.on_body = [](llhttp_t* p, const char* at, std::size_t len) {
      ReplyState& st = state(p);
      const int status = st.result->status;
      if (st.on_data != nullptr && status >= 200 && status < 300) {
        if (!(*st.on_data)(std::string_view(at, len))) {
          st.stopped = true;
          return static_cast<int>(HPE_USER);
        }
      } else {
        st.result->body.append(at, len);
      }
      return 0;
    };
    v.on_message_complete = [](llhttp_t* p) {
      ReplyState& st = state(p);
      if (st.result->status >= 100 && st.result->status < 200) {
        // An interim reply (100 Continue): the real one follows.
        st.result->headers = Headers{};
        st.result->status = 0;
        return 0;
      }
      st.complete = true;
      return static_cast<int>(HPE_PAUSED);
    };
    return v;
  }();
  return s;
}

int remaining_ms(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

} // namespace

// The blocking steps (connect, write all, read some), each running the private loop until it
// is done or its timeout fires. A timeout < 0 waits forever.
struct HttpClient::Transport {
  uv_loop_t loop{};
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  bool open = false;    // tcp is initialised and not closed
  bool closing = false; // uv_close called, its callback not yet run
  bool timed_out = false;
  bool reading = false;
  std::string pending; // bytes read and not yet taken by read()
  int read_status = 0; // UV_EOF or an error once the stream has ended
  char buf[64 * 1024];

  Transport() {
    uv_loop_init(&loop);
    uv_timer_init(&loop, &timer);
    timer.data = tcp.data = this;
  }
  ~Transport() {
    close_tcp();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }

  // Runs the loop until done() or the timeout; false on timeout (or if nothing is left to run).
  template <class Done> bool run_until(Done done, int timeout_ms) {
    timed_out = false;
    if (timeout_ms >= 0) {
      uv_timer_start(
          &timer, [](uv_timer_t* t) { static_cast<Transport*>(t->data)->timed_out = true; },
          static_cast<uint64_t>(timeout_ms), 0);
    }
    while (!done() && !timed_out) {
      if (uv_run(&loop, UV_RUN_ONCE) == 0 && !done()) break;
    }
    uv_timer_stop(&timer);
    return done();
  }

  void close_tcp() {
    if (!open) return;
    open = false;
    closing = true;
    reading = false;
    pending.clear();
    read_status = 0;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp),
             [](uv_handle_t* h) { static_cast<Transport*>(h->data)->closing = false; });
    // Cancelled requests (connect, write) get their callbacks before the close's.
    while (closing) uv_run(&loop, UV_RUN_ONCE);
  }

  // 0, or a libuv error (UV_ETIMEDOUT when timeout_ms passed).
  int connect(const sockaddr* sa, int timeout_ms) {
    uv_tcp_init(&loop, &tcp);
    tcp.data = this;
    open = true;
    uv_connect_t req;
    int status = 1;
    req.data = &status;
    int rc = uv_tcp_connect(&req, &tcp, sa, [](uv_connect_t* r, int st) {
      *static_cast<int*>(r->data) = st;
    });
    if (rc == 0 && !run_until([&] { return status != 1; }, timeout_ms)) rc = UV_ETIMEDOUT;
    if (rc == 0) rc = status;
    if (rc != 0) {
      close_tcp();
      return rc;
    }
    uv_tcp_nodelay(&tcp, 1);
    return 0;
  }

  // Writes all of data: 0, or a libuv error (UV_ETIMEDOUT when timeout_ms passed).
  int write(std::string_view data, int timeout_ms) {
    uv_write_t req;
    int status = 1;
    req.data = &status;
    uv_buf_t b = uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
    int rc = uv_write(&req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1,
                      [](uv_write_t* r, int st) { *static_cast<int*>(r->data) = st; });
    if (rc != 0) return rc;
    if (!run_until([&] { return status != 1; }, timeout_ms)) {
      close_tcp(); // cancels the write, whose callback runs first
      return UV_ETIMEDOUT;
    }
    return status;
  }

  // Like recv(): >0 bytes copied to out, 0 at end of stream, or a libuv error (UV_ETIMEDOUT
  // when nothing arrived within timeout_ms).
  int read(char* out, size_t cap, int timeout_ms) {
    if (pending.empty() && read_status == 0) {
      if (!reading) {
        reading = true;
        uv_read_start(
            reinterpret_cast<uv_stream_t*>(&tcp),
            [](uv_handle_t* h, size_t, uv_buf_t* b) {
              auto* t = static_cast<Transport*>(h->data);
              *b = uv_buf_init(t->buf, sizeof t->buf);
            },
            [](uv_stream_t* st, ssize_t n, const uv_buf_t* b) {
              auto* t = static_cast<Transport*>(st->data);
              if (n > 0) t->pending.append(b->base, static_cast<size_t>(n));
              if (n < 0) t->read_status = static_cast<int>(n);
              if (n != 0) { // take one piece at a time: nothing piles up unread
                uv_read_stop(st);
                t->reading = false;
              }
            });
      }
      if (!run_until([&] { return !pending.empty() || read_status != 0; }, timeout_ms))
        return UV_ETIMEDOUT;
    }
    if (!pending.empty()) {
      const size_t n = std::min(cap, pending.size());
      std::memcpy(out, pending.data(), n);
      pending.erase(0, n);
      return static_cast<int>(n);
    }
    return read_status == UV_EOF ? 0 : read_status;
  }
};

HttpClient::HttpClient(std::string host, std::uint16_t port, std::string token)
    : host_(std::move(host)), port_(port), token_(std::move(token)) {}

HttpClient::~HttpClient() = default;

void HttpClient::close() {
  if (conn_) conn_->close_tcp();
}

std::string HttpClient::address() const {
  if (host_.find(':') != std::string::npos)
    return fmt::format("[{}]:{}", host_, port_);
  return fmt::format("{}:{}", host_, port_);
}

bool HttpClient::connect(std::string* error) {
  if (!conn_) conn_ = std::make_unique<Transport>();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  const std::string port = std::to_string(port_);
  uv_getaddrinfo_t gai;
  // No callback: the lookup runs here, synchronously.
  if (const int rc = uv_getaddrinfo(&conn_->loop, &gai, nullptr, host_.c_str(), port.c_str(),
                                    &hints);
      rc != 0) {
    *error = fmt::format("cannot resolve {}: {}", host_, uv_strerror(rc));
    return false;
  }
  std::string last = "no address";
  for (addrinfo* ai = gai.addrinfo; ai != nullptr; ai = ai->ai_next) {
    const int err = conn_->connect(ai->ai_addr, timeout_ms_);
    if (err == 0) {
      ++connects_;
      uv_freeaddrinfo(gai.addrinfo);
      return true;
    }
    last = err == UV_ETIMEDOUT      ? fmt::format("timed out after {} ms", timeout_ms_)
           : err == UV_ECONNREFUSED ? std::string("connection refused")
                                    : std::string(uv_strerror(err));
  }
  uv_freeaddrinfo(gai.addrinfo);
  *error = fmt::format("cannot connect to {}: {}", address(), last);
  return false;
}

HttpResult HttpClient::request(std::string_view method, std::string_view path,
                               std::string_view body, std::string_view content_type) {
  return exchange(method, path, body, content_type, nullptr, 0);
}

HttpResult HttpClient::stream(std::string_view method, std::string_view path,
                              const DataCallback& on_data, int idle_timeout_ms) {
  HttpResult r = exchange(method, path, {}, {}, &on_data, idle_timeout_ms);
  close();
  return r;
}

HttpResult HttpClient::exchange(std::string_view method, std::string_view path,
                                std::string_view body, std::string_view content_type,
                                const DataCallback* on_data, int idle_timeout_ms) {
  std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n"
                                "Accept: application/json\r\n",
                                method, path, address(), user_agent_);
  if (!token_.empty())
    req += fmt::format("Authorization: Bearer {}\r\n", token_);
  const bool sends_body = !body.empty() || method == "POST" || method == "PUT" || method == "PATCH";
  if (sends_body) {
    if (!body.empty() && !content_type.empty())
      req += fmt::format("Content-Type: {}\r\n", content_type);
    req += fmt::format("Content-Length: {}\r\n", body.size());
  }
  req += "\r\n";
  req += body;

  for (int attempt = 0;; ++attempt) {
    HttpResult result;
    const bool reused = conn_ && conn_->open;
    // A kept-alive connection the server has meanwhile closed fails before any reply byte;
    // then, and only then, the request is sent once more on a fresh connection.
    const bool may_retry = reused && attempt == 0;
    if (!reused && !connect(&result.error))
      return result;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
    auto fail = [&](std::string message) {
      close();
      result.error = std::move(message);
      return result;
    };

    // Send.
    if (const int err = conn_->write(req, remaining_ms(deadline)); err != 0) {
      if (err == UV_ETIMEDOUT)
        return fail(fmt::format("timed out sending to {} after {} ms", address(), timeout_ms_));
      close();
      if (may_retry)
        continue;
      return fail(fmt::format("cannot send to {}: {}", address(), uv_strerror(err)));
    }

    // Receive.
    ReplyState st;
    st.result = &result;
    st.on_data = on_data;
    st.head = method == "HEAD";
    llhttp_t parser;
    llhttp_init(&parser, HTTP_RESPONSE, &reply_settings());
    parser.data = &st;
    bool got_any = false;
    bool retry = false;
    char buf[16 * 1024];
    while (!st.complete) {
      const int wait_ms = on_data != nullptr ? (idle_timeout_ms > 0 ? idle_timeout_ms : -1)
                                             : remaining_ms(deadline);
      const int n = conn_->read(buf, sizeof buf, wait_ms);
      if (n == UV_ETIMEDOUT) {
        return fail(fmt::format("timed out waiting for a reply from {} after {} ms", address(),
                                on_data != nullptr ? idle_timeout_ms : timeout_ms_));
      }
      if (n <= 0) {
        if (!got_any && may_retry) {
          close();
          retry = true;
          break;
        }
        if (n == 0 && got_any && llhttp_finish(&parser) == HPE_OK && st.complete)
          break;
        if (n == 0 && got_any && llhttp_message_needs_eof(&parser) != 0) {
          st.complete = true; // close-delimited body
          break;
        }
        return fail(
            n == 0
                ? fmt::format("{} closed the connection before the reply was complete", address())
                : fmt::format("connection to {} failed: {}", address(), uv_strerror(n)));
      }
      got_any = true;
      const llhttp_errno_t err = llhttp_execute(&parser, buf, static_cast<std::size_t>(n));
      if (st.stopped) {
        close(); // the caller stopped reading: this connection is mid-body, not reusable
        return result;
      }
      if (err != HPE_OK && err != HPE_PAUSED) {
        return fail(fmt::format("malformed reply from {}: {}", address(),
                                llhttp_get_error_reason(&parser) != nullptr
                                    ? llhttp_get_error_reason(&parser)
                                    : llhttp_errno_name(err)));
      }
    }
    if (retry)
      continue;
    if (on_data != nullptr || llhttp_should_keep_alive(&parser) == 0)
      close();
    return result;
  }
}

} // namespace faultline::control
