#pragma once
// Integration test support: real processes (faultline, redis-server) on ports they bind, raw
// sockets, and a small echo/sink server for byte-level checks. Every wait is bounded and waits
// on an event.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

namespace fltest {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

// A port nothing listens on at the moment of the call (bound, then released), for a test that
// needs a port that refuses connections, or one it will start Redis on later. Never for a
// listener the harness starts: another process can take the port between the release and the
// start. Faultline binds port 0 and reports the port; Redis::start() retries on a taken port.
uint16_t unused_port();
// The port at the end of "HOST:PORT" or "[V6]:PORT" (a `listen` the API shows), 0 if none.
uint16_t listen_port(const std::string& address);
bool wait_port(uint16_t port, Ms timeout = 10s);
bool wait_port_closed(uint16_t port, Ms timeout = 10s);
// Polls pred every few ms until true or timeout.
bool wait_until(const std::function<bool()>& pred, Ms timeout = 10s);

class Process {
public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& o) noexcept;
  ~Process();
  // Starts argv[0] with stdout/stderr to a log file under the test's temp dir.
  bool start(const std::vector<std::string>& argv, const std::string& log_path = "");
  // "NAME=value" entries added to the environment of the processes start() starts.
  void set_env(std::vector<std::string> env) { env_ = std::move(env); }
  bool running();
  int signal(int sig);
  // Waits for exit; returns exit code (128+sig for signals), or nullopt on timeout.
  std::optional<int> wait(Ms timeout = 10s);
  void kill_hard();
  pid_t pid() const { return pid_; }
  std::string log() const;

private:
  pid_t pid_ = -1;
  std::vector<std::string> env_;
  std::string log_path_;
  std::optional<int> status_;
};

std::string temp_dir();
// A path in temp_dir() no other call of this process returns: "<dir>/<stem>-<n><ext>".
std::string temp_path(const std::string& stem, const std::string& ext);

class Redis {
public:
  // An argument of start()'s extra replaced by a port from unused_port() on each attempt (for
  // the cluster bus port, which Redis also listens on).
  static constexpr const char* kUnusedPort = "{unused-port}";
  Redis();
  // Port 0: a port from unused_port(), and a new one if redis-server finds it taken (a few
  // attempts). Ready when the server on the port answers INFO with this process's pid.
  bool start(uint16_t port = 0, const std::vector<std::string>& extra = {});
  void stop();
  uint16_t port() const { return port_; }
  Process& process() { return proc_; }

private:
  Process proc_;
  uint16_t port_ = 0;
  std::string dir_;
};

class Faultline {
public:
  // Starts faultline --listen 127.0.0.1:0 --upstream 127.0.0.1:<upstream_port> --api
  // 127.0.0.1:0 --log-level debug EXTRA...: later flags in extra override these.
  bool start(uint16_t upstream_port, const std::vector<std::string>& extra = {});
  enum class Wait { Listening, Nothing };
  // Starts faultline ARGS... --port-file FILE. Wait::Listening: true once faultline has written
  // FILE (its listeners are up; port() and api_port() are the bound ports, port 0 resolved),
  // false if it exits first or takes too long. Wait::Nothing: returns at once, for a test that
  // waits on its own event (an exit, an error).
  bool start_args(const std::vector<std::string>& args, Wait wait = Wait::Listening);
  uint16_t port() const { return port_; }
  uint16_t api_port() const { return api_port_; } // 0 with --api off
  Process& process() { return proc_; }
  int stop(); // SIGTERM, returns exit code (or -1 on timeout)
  long rss_kb();
  int open_fds();
  // The TCP ports the process listens on (from /proc: its socket fds in LISTEN state).
  std::set<uint16_t> listening_ports();

private:
  Process proc_;
  uint16_t port_ = 0;
  uint16_t api_port_ = 0;
};

// A blocking TCP client with timeouts.
class Conn {
public:
  Conn() = default;
  explicit Conn(uint16_t port, const std::string& host = "127.0.0.1");
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  Conn(Conn&& o) noexcept;
  Conn& operator=(Conn&& o) noexcept;
  ~Conn();
  bool connect(uint16_t port, const std::string& host = "127.0.0.1", int* err = nullptr);
  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // The local port of the connection: what faultline shows as the client ("127.0.0.1:<port>").
  uint16_t local_port() const;
  bool send_all(std::string_view data);
  // Reads up to max bytes; "" on EOF; nullopt on timeout or error (errno kept in last_errno()).
  std::optional<std::string> read_some(size_t max = 65536, Ms timeout = 5s);
  // Reads exactly n bytes (or fewer on EOF/timeout).
  std::string read_exact(size_t n, Ms timeout = 10s);
  // Reads until EOF or error; returns data; eof_kind tells what ended it.
  std::string read_to_end(Ms timeout = 10s, int* end_errno = nullptr);
  // Reads one complete RESP value (simple reader for tests).
  std::optional<std::string> read_reply(Ms timeout = 5s);
  void shutdown_write();
  void close();
  void set_linger_reset();
  int last_errno() const { return last_errno_; }

private:
  int fd_ = -1;
  int last_errno_ = 0;
  std::string buf_;
};

// RESP encoding of a command.
std::string cmd(const std::vector<std::string>& args);
// One round trip; returns the raw reply.
std::string call(Conn& c, const std::vector<std::string>& args);

// Echo server on a thread: echoes every byte; optional sink mode discards. Counts bytes.
class EchoServer {
public:
  explicit EchoServer(bool sink = false);
  ~EchoServer();
  uint16_t port() const { return port_; }

private:
  void run();
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  bool sink_;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

// Runs a command, returns its stdout (and exit status through status).
std::string run_cmd(const std::string& command, int* status = nullptr);
// s as one word of a POSIX shell command line (single-quoted).
std::string shell_quote(const std::string& s);

std::string sha_like_hash(std::string_view data);

} // namespace fltest
