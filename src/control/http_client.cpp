#include "control/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

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

// Waits for `events` on fd; returns >0 ready, 0 timeout, <0 error. timeout_ms < 0: forever.
int wait_fd(int fd, short events, int timeout_ms) {
  pollfd pfd{fd, events, 0};
  while (true) {
    const int rc = ::poll(&pfd, 1, timeout_ms);
    if (rc < 0 && errno == EINTR)
      continue;
    return rc;
  }
}

} // namespace

HttpClient::HttpClient(std::string host, std::uint16_t port, std::string token)
    : host_(std::move(host)), port_(port), token_(std::move(token)) {}

HttpClient::~HttpClient() {
  close();
}

void HttpClient::close() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

std::string HttpClient::address() const {
  if (host_.find(':') != std::string::npos)
    return fmt::format("[{}]:{}", host_, port_);
  return fmt::format("{}:{}", host_, port_);
}

bool HttpClient::connect(std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string port = std::to_string(port_);
  if (const int rc = ::getaddrinfo(host_.c_str(), port.c_str(), &hints, &list); rc != 0) {
    *error = fmt::format("cannot resolve {}: {}", host_, ::gai_strerror(rc));
    return false;
  }
  std::string last = "no address";
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    int err = 0;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        const int rc = wait_fd(fd, POLLOUT, timeout_ms_);
        if (rc == 0) {
          err = ETIMEDOUT;
        } else if (rc < 0) {
          err = errno;
        } else {
          socklen_t len = sizeof err;
          ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
      }
    }
    if (err == 0) {
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fd_ = fd;
      ++connects_;
      ::freeaddrinfo(list);
      return true;
    }
    ::close(fd);
    last = err == ETIMEDOUT      ? fmt::format("timed out after {} ms", timeout_ms_)
           : err == ECONNREFUSED ? std::string("connection refused")
                                 : std::string(std::strerror(err));
  }
  ::freeaddrinfo(list);
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
    const bool reused = fd_ >= 0;
    // A kept-alive connection the server has meanwhile closed fails before any reply byte;
    // then, and only then, the request is sent once more on a fresh connection.
    const bool may_retry = reused && attempt == 0;
    if (fd_ < 0 && !connect(&result.error))
      return result;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
    auto fail = [&](std::string message) {
      close();
      result.error = std::move(message);
      return result;
    };

    // Send.
    std::size_t sent = 0;
    bool send_failed = false;
    while (sent < req.size()) {
      const ssize_t n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (wait_fd(fd_, POLLOUT, remaining_ms(deadline)) <= 0) {
          return fail(fmt::format("timed out sending to {} after {} ms", address(), timeout_ms_));
        }
        continue;
      }
      send_failed = true;
      break;
    }
    if (send_failed) {
      const int err = errno;
      close();
      if (may_retry)
        continue;
      return fail(fmt::format("cannot send to {}: {}", address(), std::strerror(err)));
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
      const int ready = wait_fd(fd_, POLLIN, wait_ms);
      if (ready == 0) {
        return fail(fmt::format("timed out waiting for a reply from {} after {} ms", address(),
                                on_data != nullptr ? idle_timeout_ms : timeout_ms_));
      }
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : 0;
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
                : fmt::format("connection to {} failed: {}", address(), std::strerror(err)));
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
