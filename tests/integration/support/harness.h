#pragma once
// Integration test support: real processes (faultline, redis-server) on ports they bind, raw
// sockets, and a small echo/sink server for byte-level checks. Every wait is bounded and waits
// on an event.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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
  // RLIMIT_NOFILE, soft and hard (so the process cannot raise it), of the processes start()
  // starts; 0: inherited.
  void set_fd_limit(uint64_t n) { fd_limit_ = n; }
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
  uint64_t fd_limit_ = 0;
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
  // Starts it again after stop(), on its port, in its dir, with the same arguments (a cluster
  // node comes back with its nodes.conf).
  bool restart();
  void stop();
  uint16_t port() const { return port_; }
  Process& process() { return proc_; }

private:
  Process proc_;
  uint16_t port_ = 0;
  std::string dir_;
  std::vector<std::string> argv_;
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

// ---- RESP values, for the tests that read what Redis says (deployments, topology) ----

// One parsed RESP value: type is the RESP type byte ('+', '-', ':', '$', '*', ... ; 0 for
// nothing read). str holds simple/bulk strings and error messages, num integers, items the
// elements of arrays, sets, pushes and maps (keys and values in turn).
struct Resp {
  char type = 0;
  std::string str;
  long long num = 0;
  std::vector<Resp> items;
  bool ok() const { return type != 0 && type != '-'; }
  bool is_error() const { return type == '-'; }
  bool is_null() const { return (type == '$' || type == '*') && num < 0; }
};
// The first value in raw (a reply as Conn::read_reply returns it); type 0 if incomplete.
Resp parse_resp(std::string_view raw);
// One command on a new connection to 127.0.0.1:port, parsed; type 0 if nothing came back.
Resp query(uint16_t port, const std::vector<std::string>& args, Ms timeout = 5s);
// The "field:value" of an INFO (or CLUSTER INFO) text, "" if absent.
std::string info_field(const std::string& info, const std::string& field);

// ---- Whole deployments (issue 21) ----

// The hash slot of key as Redis Cluster computes it (CRC16 of the hash tag or the whole key).
int key_slot(std::string_view key);
// A key "<prefix><n>" that hashes to slot (the smallest such n).
std::string key_in_slot(int slot, const std::string& prefix = "k");

// One node of a cluster as the nodes agree on it (CLUSTER NODES, normalized).
struct ClusterNode {
  std::string id;
  uint16_t port = 0;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  bool master = false;
  std::string master_id;                  // replicas: their master's id
  std::vector<std::pair<int, int>> slots; // masters: ranges owned, inclusive
  bool owns(int slot) const;
};

// A Redis Cluster of private redis-servers on 127.0.0.1 (by default 3 masters with one replica
// each), built with `redis-cli --cluster create`. Nodes are named by their port, which stays
// theirs for the life of the object; roles and slots change (failover(), migrate_slots()) and
// are read back from the nodes each time. Every wait polls the nodes' own state and is bounded.
// The destructor kills every node.
class RedisCluster {
public:
  explicit RedisCluster(int masters = 3, int replicas_per_master = 1);
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // Starts the nodes, creates the cluster and waits for ready(). extra: more redis-server
  // arguments for every node (e.g. {"--cluster-require-full-coverage", "no"}). On false, error()
  // says what failed.
  bool start(const std::vector<std::string>& extra = {}, Ms timeout = 90s);
  // Every node: cluster_state:ok, the same view of every node's id, role, master and slots,
  // no node flagged fail/pfail/handshake; every replica's link to its master up.
  bool ready();
  bool wait_ready(Ms timeout = 30s);
  const std::string& error() const { return error_; }

  std::vector<uint16_t> ports() const; // every node, in start order
  std::vector<std::string> addresses() const;
  // The agreed topology (empty if the nodes do not agree at the moment), sorted by port.
  std::vector<ClusterNode> topology();
  std::vector<uint16_t> masters();  // ports of the masters, sorted
  std::vector<uint16_t> replicas(); // ports of the replicas, sorted
  std::string node_id(uint16_t port);
  uint16_t master_of(uint16_t replica); // 0 if unknown
  uint16_t owner(int slot);             // the master serving slot, 0 if none
  // The node's redis-server, to stop or signal it (stop_node/start_node below keep its state).
  Redis& node(uint16_t port);
  // Kills a node (SIGKILL) / starts it again on its port with its nodes.conf (it rejoins).
  void stop_node(uint16_t port);
  bool restart_node(uint16_t port);

  // CLUSTER FAILOVER [mode] on the replica ("" | "FORCE" | "TAKEOVER"), then waits until every
  // node agrees that it is the master of its old master's slots and the old master (if alive)
  // replicates from it with its link up.
  bool failover(uint16_t replica, const std::string& mode = "", Ms timeout = 30s);
  // Moves slots [first, last] from one master to another, slot by slot, with the documented
  // steps: SETSLOT IMPORTING on `to`, SETSLOT MIGRATING on `from`, GETKEYSINSLOT + MIGRATE in
  // batches of `batch` keys until the slot is empty on `from`, then SETSLOT NODE on `to`, on
  // `from` and on every other master; waits until every node agrees on the new owner.
  // pace: how long to hold between batches and between slots (a chosen pause, so that clients
  // meet the ASK window; 0 for as fast as possible). before_node: called for each slot after
  // its keys moved and before SETSLOT NODE (a test can look at the ASK state there).
  bool migrate_slots(int first, int last, uint16_t from, uint16_t to, Ms pace = 0ms,
                     int batch = 100, const std::function<void(int)>& before_node = {},
                     Ms timeout = 60s);
  bool migrate_slot(int slot, uint16_t from, uint16_t to, Ms pace = 0ms, int batch = 100) {
    return migrate_slots(slot, slot, from, to, pace, batch);
  }

private:
  // Each node's normalized view ("" if unreachable or in flux).
  std::string view(uint16_t port);
  std::vector<ClusterNode> parse_view(const std::string& nodes_text);
  int masters_, replicas_per_master_;
  std::vector<std::unique_ptr<Redis>> nodes_;
  std::vector<std::string> extra_;
  std::string error_;
};

// Redis Sentinel: one master, `replicas` replicas and `sentinels` sentinels (redis-server
// --sentinel on a written sentinel.conf, down-after-milliseconds 1000, failover-timeout 5000),
// monitoring the master as master_name(). Ready when every sentinel agrees on the master and sees
// every replica and every other sentinel, and every replica's link is up.
class SentinelDeployment {
public:
  explicit SentinelDeployment(int replicas = 2, int sentinels = 3,
                              std::string master_name = "mymaster");
  ~SentinelDeployment();
  SentinelDeployment(const SentinelDeployment&) = delete;
  SentinelDeployment& operator=(const SentinelDeployment&) = delete;

  bool start(Ms timeout = 60s);
  bool ready();
  bool wait_ready(Ms timeout = 30s);
  const std::string& error() const { return error_; }
  const std::string& master_name() const { return name_; }

  std::vector<uint16_t> sentinel_ports() const;
  std::vector<uint16_t> data_ports() const; // master and replicas, in start order
  // The master as the sentinel on port says (SENTINEL GET-MASTER-ADDR-BY-NAME), 0 if none.
  uint16_t master_by(uint16_t sentinel);
  uint16_t master();                // what every sentinel agrees on; 0 if they do not
  std::vector<uint16_t> replicas(); // data nodes other than master(), sorted
  Redis& node(uint16_t port);       // a data node
  Process& sentinel(uint16_t port); // a sentinel's process

  // SENTINEL FAILOVER on the first sentinel, then waits until every sentinel names a new master
  // that says role:master (Settle::Sentinels), or until ready() again (Settle::All): the old
  // master is demoted only when a sentinel next reads its INFO (every 10 s), and until then it
  // is still a master that accepts writes, as in production. Returns the new master's port
  // (0 on failure or timeout).
  enum class Settle { Sentinels, All };
  uint16_t failover(Settle settle = Settle::All, Ms timeout = 60s);

private:
  bool start_sentinel(uint16_t master_port);
  int replicas_, sentinels_;
  std::string name_;
  std::vector<std::unique_ptr<Redis>> data_;
  struct Sentinel {
    Process proc;
    uint16_t port = 0;
  };
  std::vector<std::unique_ptr<Sentinel>> sentinel_;
  std::string error_;
};

} // namespace fltest
