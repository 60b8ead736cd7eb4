#include "support/harness.h"

#include <algorithm>
#include <atomic>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sstream>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace fltest {

namespace fs = std::filesystem;

uint16_t unused_port() {
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

bool wait_until(const std::function<bool()>& pred, Ms timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

bool wait_port(uint16_t port, Ms timeout) {
  return wait_until([&] { return Conn().connect(port); }, timeout);
}

bool wait_port_closed(uint16_t port, Ms timeout) {
  return wait_until([&] { return !Conn().connect(port); }, timeout);
}

std::string temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "misc";
  const fs::path root = fs::temp_directory_path() / ("faultline-test-" + std::to_string(::getpid()));
  // A directory of that name left by an earlier run whose process had this pid: its files
  // (port files, logs) must not pass for this run's.
  static const bool fresh = [&] {
    std::error_code ec;
    fs::remove_all(root, ec);
    return true;
  }();
  (void)fresh;
  fs::path p = root / name;
  fs::create_directories(p);
  return p.string();
}

std::string temp_path(const std::string& stem, const std::string& ext) {
  static std::atomic<unsigned> n{0};
  return temp_dir() + "/" + stem + "-" + std::to_string(++n) + ext;
}

// ---- Process ----

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), env_(std::move(o.env_)), fd_limit_(o.fd_limit_),
      log_path_(std::move(o.log_path_)), status_(o.status_) {}

Process::~Process() { kill_hard(); }

bool Process::start(const std::vector<std::string>& argv, const std::string& log_path) {
  log_path_ = log_path.empty() ? temp_dir() + "/" + fs::path(argv[0]).filename().string() + ".log"
                               : log_path;
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) return false;
  if (pid_ == 0) {
    // Killed with the test binary, even when it dies without running destructors (a crash,
    // SIGPIPE, ctest's timeout): a cluster test leaves nine servers otherwise. The signal
    // follows the forking thread; tests start processes from their main thread.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    // Every descriptor of the test (a storm test holds thousands), not only those below 1024.
    rlimit own{};
    int top = ::getrlimit(RLIMIT_NOFILE, &own) == 0 && own.rlim_cur < (1u << 20)
                  ? static_cast<int>(own.rlim_cur)
                  : 1 << 16;
    for (int i = 3; i < top; ++i) ::close(i);
    if (fd_limit_) {
      rlimit rl{fd_limit_, fd_limit_};
      ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (auto& kv : env_) ::putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  status_.reset();
  return true;
}

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  int st;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

int Process::signal(int sig) { return pid_ > 0 && !status_ ? ::kill(pid_, sig) : -1; }

std::optional<int> Process::wait(Ms timeout) {
  if (pid_ <= 0) return status_;
  wait_until([&] { return !running(); }, timeout);
  return status_;
}

void Process::kill_hard() {
  if (pid_ > 0 && running()) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
    status_ = 128 + SIGKILL;
  }
}

std::string Process::log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// ---- Redis ----

Redis::Redis() = default;

namespace {
// The pid in the INFO reply of the server on port, or -1.
long redis_pid(uint16_t port) {
  Conn c;
  if (!c.connect(port)) return -1;
  std::string info = call(c, {"INFO", "server"});
  auto at = info.find("process_id:");
  return at == std::string::npos ? -1 : std::atol(info.c_str() + at + 11);
}
} // namespace

bool Redis::start(uint16_t port, const std::vector<std::string>& extra) {
  // A port picked here can be taken by another process before redis-server binds it: then
  // redis-server exits with "Address already in use" and the start is tried on another port.
  const int attempts = port ? 1 : 5;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    port_ = port ? port : unused_port();
    dir_ = temp_path("redis-" + std::to_string(port_), "");
    fs::create_directories(dir_);
    std::vector<std::string> argv = {"redis-server", "--port", std::to_string(port_),
                                     "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--dir", dir_, "--daemonize", "no", "--protected-mode", "no"};
    for (const auto& a : extra)
      argv.push_back(a == kUnusedPort ? std::to_string(unused_port()) : a);
    argv_ = argv;
    if (!proc_.start(argv, dir_ + "/redis.log")) return false;
    // Ours, not whatever else answers on the port.
    const long pid = proc_.pid();
    wait_until([&] { return !proc_.running() || redis_pid(port_) == pid; }, 20s);
    if (proc_.running()) return redis_pid(port_) == pid;
    if (proc_.log().find("Address already in use") == std::string::npos) return false;
  }
  return false;
}

bool Redis::restart() {
  if (argv_.empty() || proc_.running()) return false;
  if (!proc_.start(argv_, dir_ + "/redis.log")) return false;
  const long pid = proc_.pid();
  wait_until([&] { return !proc_.running() || redis_pid(port_) == pid; }, 20s);
  return proc_.running() && redis_pid(port_) == pid;
}

void Redis::stop() {
  proc_.signal(SIGKILL);
  proc_.wait(5s);
}

// ---- Faultline ----

bool Faultline::start(uint16_t upstream_port, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--listen", "127.0.0.1:0",
                                   "--upstream", "127.0.0.1:" + std::to_string(upstream_port),
                                   "--api", "127.0.0.1:0", "--log-level", "debug"};
  args.insert(args.end(), extra.begin(), extra.end());
  return start_args(args);
}

uint16_t listen_port(const std::string& address) {
  auto colon = address.rfind(':');
  return colon == std::string::npos ? 0
                                    : static_cast<uint16_t>(std::atoi(address.c_str() + colon + 1));
}

bool Faultline::start_args(const std::vector<std::string>& args, Wait wait) {
  const std::string port_file = temp_path("faultline", ".ports");
  std::vector<std::string> argv = {FAULTLINE_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--port-file", port_file});
  port_ = api_port_ = 0;
  // The test's directory is named by the test process's pid: one left by an earlier run with
  // the same pid may hold a port file (whose ports would be read as this run's) and a log.
  const std::string log_file = port_file.substr(0, port_file.size() - 6) + ".log";
  std::error_code ec;
  fs::remove(port_file, ec);
  fs::remove(log_file, ec);
  if (!proc_.start(argv, log_file)) return false;
  if (wait == Wait::Nothing) return true;
  // faultline writes the file (whole: it renames it into place) once its listeners are up.
  // Generous: an ASan build starting on a loaded machine.
  if (!wait_until([&] { return fs::exists(port_file) || !proc_.running(); }, 30s) ||
      !fs::exists(port_file))
    return false;
  std::ifstream f(port_file);
  std::string key, address;
  while (f >> key >> address) {
    if (key == "listen") port_ = listen_port(address);
    if (key == "api") api_port_ = listen_port(address);
  }
  return port_ != 0;
}

int Faultline::stop() {
  proc_.signal(SIGTERM);
  auto st = proc_.wait(5s);
  return st ? *st : -1;
}

long Faultline::rss_kb() {
  std::ifstream f("/proc/" + std::to_string(proc_.pid()) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

int Faultline::open_fds() {
  int n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(proc_.pid()) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

std::set<uint16_t> Faultline::listening_ports() {
  // Socket inodes of the process, then the LISTEN (state 0A) rows of /proc/net/tcp{,6} that
  // hold one of them: "sl local_address(hex ip:hex port) rem_address st ... uid timeout inode".
  std::set<std::string> inodes;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(proc_.pid()) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string target = fs::read_symlink(it->path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0)
      inodes.insert(target.substr(8, target.size() - 9));
  }
  std::set<uint16_t> ports;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream f(table);
    std::string line;
    std::getline(f, line); // header
    while (std::getline(f, line)) {
      std::istringstream row(line);
      std::string sl, local, remote, st, queues, timer, retr, uid, timeout, inode;
      row >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode;
      if (st == "0A" && inodes.count(inode))
        ports.insert(
            static_cast<uint16_t>(std::stoul(local.substr(local.rfind(':') + 1), nullptr, 16)));
    }
  }
  return ports;
}

// ---- Conn ----

Conn::Conn(uint16_t port, const std::string& host) { connect(port, host); }
Conn::Conn(Conn&& o) noexcept : fd_(std::exchange(o.fd_, -1)), buf_(std::move(o.buf_)) {}
Conn& Conn::operator=(Conn&& o) noexcept {
  close();
  fd_ = std::exchange(o.fd_, -1);
  buf_ = std::move(o.buf_);
  return *this;
}
Conn::~Conn() { close(); }

bool Conn::connect(uint16_t port, const std::string& host, int* err) {
  close();
  bool v6 = host.find(':') != std::string::npos;
  fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  int rc;
  if (v6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    inet_pton(AF_INET6, host.c_str(), &a.sin6_addr);
    rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) {
    if (err) *err = errno;
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return true;
}

uint16_t Conn::local_port() const {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

bool Conn::send_all(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      last_errno_ = errno;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::optional<std::string> Conn::read_some(size_t max, Ms timeout) {
  if (!buf_.empty()) {
    std::string out = buf_.substr(0, max);
    buf_.erase(0, out.size());
    return out;
  }
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (r <= 0) {
    last_errno_ = r == 0 ? ETIMEDOUT : errno;
    return std::nullopt;
  }
  std::string out(max, '\0');
  ssize_t n = ::recv(fd_, out.data(), max, 0);
  if (n < 0) {
    last_errno_ = errno;
    return std::nullopt;
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string Conn::read_exact(size_t n, Ms timeout) {
  std::string out;
  auto end = std::chrono::steady_clock::now() + timeout;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<Ms>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto got = read_some(std::min<size_t>(n - out.size(), 1 << 20), left);
    if (!got || got->empty()) break;
    out += *got;
  }
  return out;
}

std::string Conn::read_to_end(Ms timeout, int* end_errno) {
  std::string out;
  auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<Ms>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (end_errno) *end_errno = ETIMEDOUT;
      break;
    }
    auto got = read_some(1 << 20, left);
    if (!got) {
      if (end_errno) *end_errno = last_errno_;
      break;
    }
    if (got->empty()) {
      if (end_errno) *end_errno = 0;
      break;
    }
    out += *got;
  }
  return out;
}

namespace {
// Length of one complete RESP value at the start of s, or 0 if incomplete.
size_t resp_len(std::string_view s, size_t pos = 0) {
  if (pos >= s.size()) return 0;
  size_t eol = s.find("\r\n", pos);
  if (eol == std::string_view::npos) return 0;
  char t = s[pos];
  size_t after = eol + 2;
  long n = std::atol(std::string(s.substr(pos + 1, eol - pos - 1)).c_str());
  switch (t) {
  case '$':
  case '!':
  case '=':
    if (n < 0) return after - pos;
    if (s.size() < after + static_cast<size_t>(n) + 2) return 0;
    return after + static_cast<size_t>(n) + 2 - pos;
  case '*':
  case '~':
  case '>':
  case '%': {
    if (n < 0) return after - pos;
    long count = t == '%' ? n * 2 : n;
    size_t cur = after;
    for (long i = 0; i < count; ++i) {
      size_t l = resp_len(s, cur);
      if (!l) return 0;
      cur += l;
    }
    return cur - pos;
  }
  default:
    return after - pos;
  }
}
} // namespace

std::optional<std::string> Conn::read_reply(Ms timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    size_t l = resp_len(buf_);
    if (l) {
      std::string out = buf_.substr(0, l);
      buf_.erase(0, l);
      return out;
    }
    auto left = std::chrono::duration_cast<Ms>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      last_errno_ = n == 0 ? 0 : errno;
      return std::nullopt;
    }
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

void Conn::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

void Conn::set_linger_reset() {
  linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

void Conn::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buf_.clear();
}

std::string cmd(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

std::string call(Conn& c, const std::vector<std::string>& args) {
  if (!c.send_all(cmd(args))) return "<send failed>";
  auto r = c.read_reply(10s);
  return r ? *r : "<no reply>";
}

// ---- EchoServer ----

EchoServer::EchoServer(bool sink) : sink_(sink) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  ::listen(listen_fd_, 128);
  ::pipe(stop_pipe_);
  thread_ = std::thread([this] { run(); });
}

EchoServer::~EchoServer() {
  ::write(stop_pipe_[1], "x", 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

void EchoServer::run() {
  // One thread, poll over every connection; echo with a per-connection backlog so a client
  // that does not read makes the server stop reading (like a real peer), never lose bytes.
  struct C {
    int fd;
    std::string out;
    bool eof = false;
  };
  std::vector<C> conns;
  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({stop_pipe_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (auto& c : conns) {
      short ev = 0;
      if (!c.eof && c.out.size() < (4u << 20)) ev |= POLLIN;
      if (!c.out.empty()) ev |= POLLOUT;
      fds.push_back({c.fd, ev, 0});
    }
    if (::poll(fds.data(), fds.size(), 1000) < 0) continue;
    if (fds[0].revents) break;
    if (fds[1].revents & POLLIN) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd >= 0) {
        ::fcntl(fd, F_SETFL, O_NONBLOCK);
        conns.push_back({fd, "", false});
      }
    }
    std::vector<C> keep;
    for (size_t i = 0; i < conns.size() && i + 2 < fds.size() + 0; ++i) {
      C& c = conns[i];
      short re = fds[i + 2].revents;
      bool dead = false;
      if (re & (POLLIN | POLLHUP | POLLERR)) {
        char buf[65536];
        ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
          if (!sink_) c.out.append(buf, static_cast<size_t>(n));
        } else if (n == 0) {
          c.eof = true;
        } else if (errno != EAGAIN) {
          dead = true;
        }
      }
      if (!dead && !c.out.empty() && (re & POLLOUT)) {
        ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) c.out.erase(0, static_cast<size_t>(n));
        else if (n < 0 && errno != EAGAIN) dead = true;
      }
      if (dead || (c.eof && c.out.empty())) {
        ::close(c.fd);
        continue;
      }
      keep.push_back(std::move(c));
    }
    for (size_t i = fds.size() - 2; i < conns.size(); ++i) keep.push_back(std::move(conns[i]));
    conns = std::move(keep);
  }
  for (auto& c : conns) ::close(c.fd);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string run_cmd(const std::string& command, int* status) {
  std::string out;
  FILE* f = ::popen(command.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = ::pclose(f);
  if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

std::string sha_like_hash(std::string_view data) {
  // FNV-1a 64 over the bytes twice with different seeds: enough to compare transfers.
  uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
  for (unsigned char c : data) {
    a = (a ^ c) * 0x100000001b3ull;
    b = (b ^ c) * 0x100000001b3ull;
  }
  char out[40];
  std::snprintf(out, sizeof out, "%016lx%016lx", static_cast<unsigned long>(a),
                static_cast<unsigned long>(b));
  return out;
}

} // namespace fltest
