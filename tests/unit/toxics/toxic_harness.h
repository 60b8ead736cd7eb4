#pragma once
// Test harness for toxics on the real data path: a libuv loop on a background thread running a
// proxy::Registry with one Proxy, a real redis-server (one per test binary) or a small echo
// server upstream, and blocking client sockets on the test thread.
//
//   test thread ── blocking socket ──► Proxy (loop thread) ──► redis-server / EchoServer
//        └── call(closure) ── uv_async ──► (Registry/Proxy are touched on the loop thread only)
//
// Every wait is bounded and waits on an event (data, EOF, a future), never on a fixed sleep.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <random>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <uv.h>

#include "base/log.h"
#include "proxy/proxy.h"
#include "proxy/runtime.h"
#include "toxics/toxic.h"

namespace fltox {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A port nothing listens on at the moment of the call (bound, then released). Another process
// can take it before it is used: RedisServer retries on another one if it finds it taken.
inline uint16_t unused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A blocking client socket with bounded reads.
class Client {
public:
  Client() = default;
  explicit Client(uint16_t port) { connect(port); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ~Client() { close(); }

  bool connect(uint16_t port) {
    close();
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }
  bool send(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // One recv of at most max bytes: >0 bytes, 0 EOF, -errno on error, -ETIMEDOUT on timeout.
  ssize_t recv_some(char* buf, size_t max, std::chrono::milliseconds timeout = 10s) {
    pollfd p{fd_, POLLIN, 0};
    int rc;
    do rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    while (rc < 0 && errno == EINTR);
    if (rc == 0) return -ETIMEDOUT;
    ssize_t n = ::recv(fd_, buf, max, 0);
    return n < 0 ? -errno : n;
  }
  // Reads exactly n bytes (or fewer on EOF/error/timeout; status tells which).
  std::string read_exact(size_t n, std::chrono::milliseconds timeout = 10s,
                         ssize_t* status = nullptr) {
    std::string out;
    auto deadline = Clock::now() + timeout;
    char buf[65536];
    ssize_t st = 1;
    while (out.size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        st = -ETIMEDOUT;
        break;
      }
      st = recv_some(buf, std::min(sizeof buf, n - out.size()), left);
      if (st <= 0) break;
      out.append(buf, static_cast<size_t>(st));
    }
    if (status) *status = st;
    return out;
  }
  // Reads until EOF or error; status is 0 on EOF, -errno otherwise.
  std::string read_to_end(std::chrono::milliseconds timeout = 10s, ssize_t* status = nullptr) {
    std::string out;
    auto deadline = Clock::now() + timeout;
    char buf[65536];
    ssize_t st;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        st = -ETIMEDOUT;
        break;
      }
      st = recv_some(buf, sizeof buf, left);
      if (st <= 0) break;
      out.append(buf, static_cast<size_t>(st));
    }
    if (status) *status = st;
    return out;
  }
  // True if nothing arrives (and the socket stays open) for `quiet`.
  bool quiet_for(std::chrono::milliseconds quiet) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(quiet.count())) == 0;
  }

private:
  int fd_ = -1;
};

inline std::string resp_cmd(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}
inline std::string resp_bulk(const std::string& v) {
  return "$" + std::to_string(v.size()) + "\r\n" + v + "\r\n";
}

inline std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>('a' + g() % 26);
  return s;
}

// One redis-server per test binary, started on first use, stopped at exit.
class RedisServer {
public:
  static RedisServer& instance() {
    static RedisServer r;
    return r;
  }
  uint16_t port() const { return port_; }
  bool ok() const { return pid_ > 0 && ready_; }
  // SET key value directly on Redis (not through a proxy).
  bool set(const std::string& key, const std::string& value) {
    Client c(port_);
    c.send(resp_cmd({"SET", key, value}));
    return c.read_exact(5, 5s) == "+OK\r\n";
  }
  ~RedisServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st;
      for (int i = 0; i < 500 && ::waitpid(pid_, &st, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(10ms);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, WNOHANG);
    }
  }

private:
  // A few attempts, each on a port from unused_port(): redis-server exits at once if another
  // process took the port in between. Ready when the server on the port is this one (its INFO
  // names this pid), not whatever else answers there.
  RedisServer() {
    for (int attempt = 0; attempt < 5 && !ready_; ++attempt) try_start();
  }
  void try_start() {
    port_ = unused_port();
    std::string port = std::to_string(port_);
    std::vector<std::string> args = {"redis-server", "--port",      port,  "--bind",
                                     "127.0.0.1",    "--save",      "",    "--appendonly",
                                     "no",           "--daemonize", "no",  "--dir",
                                     "/tmp",         "--logfile",   ""};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      int devnull = ::open("/dev/null", O_RDWR);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    const std::string mine = "process_id:" + std::to_string(pid_) + "\r\n";
    auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline) {
      int st;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) { // exited: the port was taken
        pid_ = -1;
        return;
      }
      Client c;
      if (c.connect(port_) && c.send("INFO server\r\n")) {
        std::string info;
        char buf[4096];
        ssize_t n;
        while (info.find(mine) == std::string::npos &&
               (n = c.recv_some(buf, sizeof buf, 1s)) > 0)
          info.append(buf, static_cast<size_t>(n));
        if (info.find(mine) != std::string::npos) {
          ready_ = true;
          return;
        }
      }
      std::this_thread::sleep_for(10ms);
    }
    int st;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  bool ready_ = false;
};

// Echoes every byte back, one thread per connection, blocking sockets.
class EchoServer {
public:
  EchoServer() {
    lfd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(lfd_, 64);
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;
  ~EchoServer() {
    stop_ = true;
    ::shutdown(lfd_, SHUT_RDWR);
    accept_thread_.join();
    ::close(lfd_);
    {
      std::lock_guard<std::mutex> g(m_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : conns_) t.join();
    for (int fd : fds_) ::close(fd);
  }
  uint16_t port() const { return port_; }

private:
  void accept_loop() {
    while (!stop_) {
      int fd = ::accept(lfd_, nullptr, nullptr);
      if (fd < 0) {
        if (errno == EINTR) continue;
        return;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard<std::mutex> g(m_);
      fds_.push_back(fd);
      conns_.emplace_back([fd] {
        char buf[65536];
        for (;;) {
          ssize_t n = ::recv(fd, buf, sizeof buf, 0);
          if (n <= 0) break;
          for (ssize_t off = 0; off < n;) {
            ssize_t w = ::send(fd, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
            if (w <= 0) return;
            off += w;
          }
        }
        ::shutdown(fd, SHUT_WR); // FIN for FIN
      });
    }
  }
  int lfd_;
  uint16_t port_;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex m_;
  std::vector<int> fds_;
  std::vector<std::thread> conns_;
};

// A loop thread with a Registry and one proxy "t" in front of `upstream_port`.
class ProxyLoop {
public:
  explicit ProxyLoop(uint16_t upstream_port, uint64_t seed = 1,
                     faultline::proxy::DataPathOptions opts = {}) {
    faultline::log::set_level(faultline::log::Level::Warn);
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &async_,
                  [](uv_async_t* a) { static_cast<ProxyLoop*>(a->data)->drain(); });
    async_.data = this;
    rt_ = std::make_unique<faultline::proxy::Runtime>(&loop_, opts);
    reg_ = std::make_unique<faultline::proxy::Registry>(*rt_, seed);
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
    std::string err;
    proxy_ = call([&] {
      return reg_->create({"t", "127.0.0.1:0", "127.0.0.1:" + std::to_string(upstream_port), true},
                          err);
    });
    if (!proxy_) {
      ADD_FAILURE() << "proxy: " << err;
      return;
    }
    std::string addr = call([&] { return proxy_->listen_address(); });
    port_ = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
  }
  ProxyLoop(const ProxyLoop&) = delete;
  ProxyLoop& operator=(const ProxyLoop&) = delete;
  ~ProxyLoop() {
    std::promise<void> done;
    auto fut = done.get_future();
    post([&] { reg_->shutdown([&] { done.set_value(); }); });
    if (fut.wait_for(10s) != std::future_status::ready) {
      ADD_FAILURE() << "registry shutdown did not finish";
      std::abort(); // the loop still refers to objects on this stack
    }
    post([this] {
      reg_.reset();
      rt_.reset();
      uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    });
    thread_.join();
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "handles left open on the loop";
  }

  uint16_t port() const { return port_; }
  faultline::proxy::Proxy& proxy() { return *proxy_; }
  faultline::proxy::Registry& registry() { return *reg_; }

  // Runs f on the loop thread and returns its result (exceptions propagate).
  template <class F> auto call(F&& f) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(f));
    auto fut = task->get_future();
    post([task] { (*task)(); });
    if (fut.wait_for(10s) != std::future_status::ready) {
      ADD_FAILURE() << "loop did not run the call within 10 s";
      std::abort();
    }
    return fut.get();
  }

  // Toxic management (on the loop thread). attrs as JSON.
  void add(const std::string& name, const std::string& type, faultline::toxics::Stream stream,
           const nlohmann::json& attrs, double toxicity = 1.0) {
    auto impl = faultline::toxics::make_impl(type, attrs);
    call([&] { proxy_->add_toxic({name, type, stream, toxicity, impl}); });
  }
  void update(const std::string& name, const std::string& type,
              faultline::toxics::Stream stream, const nlohmann::json& attrs,
              double toxicity = 1.0) {
    auto impl = faultline::toxics::make_impl(type, attrs);
    call([&] { proxy_->update_toxic({name, type, stream, toxicity, impl}); });
  }
  void remove(const std::string& name) {
    call([&] { return proxy_->remove_toxic(name); });
  }
  size_t sessions() {
    return call([&] { return static_cast<size_t>(proxy_->session_count()); });
  }

private:
  void post(std::function<void()> f) {
    {
      std::lock_guard<std::mutex> g(m_);
      q_.push_back(std::move(f));
    }
    uv_async_send(&async_);
  }
  void drain() {
    std::deque<std::function<void()>> q;
    {
      std::lock_guard<std::mutex> g(m_);
      q.swap(q_);
    }
    for (auto& f : q) f();
  }

  uv_loop_t loop_;
  uv_async_t async_;
  std::mutex m_;
  std::deque<std::function<void()>> q_;
  std::thread thread_;
  std::unique_ptr<faultline::proxy::Runtime> rt_;
  std::unique_ptr<faultline::proxy::Registry> reg_;
  faultline::proxy::Proxy* proxy_ = nullptr;
  uint16_t port_ = 0;
};

constexpr auto Up = faultline::toxics::Stream::Upstream;
constexpr auto Down = faultline::toxics::Stream::Downstream;

// Redis is a hard requirement (tools/test installs it): no silent skips.
#define FLTOX_NEED_REDIS()                                                                         \
  ASSERT_TRUE(::fltox::RedisServer::instance().ok()) << "redis-server did not start"

inline uint16_t redis_port() { return RedisServer::instance().port(); }

} // namespace fltox
