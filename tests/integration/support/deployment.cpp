// Whole Redis deployments for the tests of issue 21: a Redis Cluster built with redis-cli and a
// Sentinel deployment, both from private redis-servers on free ports. They are checked from
// the nodes' own answers (CLUSTER NODES, INFO replication, SENTINEL ...), polled until they
// agree, with a bound on every wait.

#include "support/harness.h"

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fltest {

namespace fs = std::filesystem;

// ---- RESP ----

namespace {
// Parses the value at raw[pos]; advances pos; type 0 when incomplete.
Resp parse_at(std::string_view raw, size_t& pos, int depth = 0) {
  Resp r;
  if (pos >= raw.size() || depth > 32)
    return r;
  const size_t eol = raw.find("\r\n", pos);
  if (eol == std::string_view::npos)
    return r;
  const char t = raw[pos];
  const std::string line(raw.substr(pos + 1, eol - pos - 1));
  size_t next = eol + 2;
  switch (t) {
  case '+':
  case '-':
  case ',':
  case '(':
    r.str = line;
    break;
  case ':':
  case '_':
  case '#':
    r.num = t == ':' ? std::atoll(line.c_str()) : 0;
    r.str = line;
    break;
  case '$':
  case '!':
  case '=': {
    r.num = std::atoll(line.c_str());
    if (r.num >= 0) {
      const auto n = static_cast<size_t>(r.num);
      if (raw.size() < next + n + 2)
        return Resp{};
      r.str = std::string(raw.substr(next, n));
      next += n + 2;
    }
    break;
  }
  case '*':
  case '~':
  case '>':
  case '%': {
    r.num = std::atoll(line.c_str());
    const long long count = t == '%' ? r.num * 2 : r.num;
    for (long long i = 0; i < count; ++i) {
      Resp item = parse_at(raw, next, depth + 1);
      if (item.type == 0)
        return Resp{};
      r.items.push_back(std::move(item));
    }
    break;
  }
  default:
    return Resp{};
  }
  r.type = t;
  pos = next;
  return r;
}

// Sleeps between polls of a deployment: each poll opens a connection per node, so not every 5 ms.
bool poll_until(const std::function<bool()>& pred, Ms timeout, Ms every = 50ms) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred())
      return true;
    std::this_thread::sleep_for(every);
  }
  return pred();
}

long server_pid(uint16_t port) {
  Resp r = query(port, {"INFO", "server"}, 2s);
  const std::string pid = info_field(r.str, "process_id");
  return pid.empty() ? -1 : std::atol(pid.c_str());
}

std::string port_str(uint16_t port) {
  return std::to_string(port);
}
} // namespace

Resp parse_resp(std::string_view raw) {
  size_t pos = 0;
  return parse_at(raw, pos);
}

Resp query(uint16_t port, const std::vector<std::string>& args, Ms timeout) {
  Conn c;
  if (!c.connect(port) || !c.send_all(cmd(args)))
    return Resp{};
  auto raw = c.read_reply(timeout);
  return raw ? parse_resp(*raw) : Resp{};
}

std::string info_field(const std::string& info, const std::string& field) {
  std::istringstream in(info);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 &&
        line[field.size()] == ':')
      return line.substr(field.size() + 1);
  }
  return "";
}

// ---- Slots ----

int key_slot(std::string_view key) {
  // A non-empty {tag} hashes alone (the cluster spec's HASH_SLOT).
  auto open = key.find('{');
  if (open != std::string_view::npos) {
    auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  // CRC16-CCITT (XModem), as in the spec's crc16.c.
  uint16_t crc = 0;
  for (unsigned char c : key) {
    crc ^= static_cast<uint16_t>(c << 8);
    for (int i = 0; i < 8; ++i)
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
  }
  return crc & 16383;
}

std::string key_in_slot(int slot, const std::string& prefix) {
  for (long n = 0;; ++n) {
    std::string k = prefix + std::to_string(n);
    if (key_slot(k) == slot)
      return k;
  }
}

bool ClusterNode::owns(int slot) const {
  return std::any_of(slots.begin(), slots.end(),
                     [&](auto& r) { return slot >= r.first && slot <= r.second; });
}

// ---- RedisCluster ----

RedisCluster::RedisCluster(int masters, int replicas_per_master)
    : masters_(masters), replicas_per_master_(replicas_per_master) {}

RedisCluster::~RedisCluster() {
  for (auto& n : nodes_)
    n->stop();
}

bool RedisCluster::start(const std::vector<std::string>& extra, Ms timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  const int count = masters_ * (1 + replicas_per_master_);
  // The bus port is given (not port + 10000, which can pass 65535 for an ephemeral port).
  // node-timeout 2000: a failed node is noticed in seconds, not the default 15.
  std::vector<std::string> args = {"--cluster-enabled",      "yes",
                                   "--cluster-config-file",  "nodes.conf",
                                   "--cluster-port",         Redis::kUnusedPort,
                                   "--cluster-node-timeout", "2000"};
  args.insert(args.end(), extra.begin(), extra.end());
  extra_ = args;
  std::string create = "timeout 60 redis-cli --cluster create";
  for (int i = 0; i < count; ++i) {
    auto r = std::make_unique<Redis>();
    if (!r->start(0, args)) {
      error_ = "redis-server " + std::to_string(i) + " did not start: " + r->process().log();
      return false;
    }
    create += " 127.0.0.1:" + port_str(r->port());
    nodes_.push_back(std::move(r));
  }
  create += " --cluster-replicas " + std::to_string(replicas_per_master_) + " --cluster-yes 2>&1";
  int status = -1;
  std::string out = run_cmd(create, &status);
  if (status != 0) {
    error_ = "redis-cli --cluster create failed (" + std::to_string(status) + "): " + out;
    return false;
  }
  auto left = std::chrono::duration_cast<Ms>(end - std::chrono::steady_clock::now());
  if (!wait_ready(std::max(left, Ms(1000)))) {
    error_ = "cluster not ready; views:";
    for (auto p : ports())
      error_ += "\n" + port_str(p) + ":\n" + view(p);
    return false;
  }
  return true;
}

std::vector<uint16_t> RedisCluster::ports() const {
  std::vector<uint16_t> out;
  for (auto& n : nodes_)
    out.push_back(n->port());
  return out;
}

std::vector<std::string> RedisCluster::addresses() const {
  std::vector<std::string> out;
  for (auto p : ports())
    out.push_back("127.0.0.1:" + port_str(p));
  return out;
}

Redis& RedisCluster::node(uint16_t port) {
  for (auto& n : nodes_)
    if (n->port() == port)
      return *n;
  throw std::runtime_error("no cluster node on port " + port_str(port));
}

std::vector<ClusterNode> RedisCluster::parse_view(const std::string& text) {
  // "<id> <ip:port@cport[,host]> <flags> <master|-> <ping> <pong> <epoch> <link> <slot>..."
  // Slots in brackets are the node's own migrating/importing marks, not ownership.
  std::vector<ClusterNode> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, addr, flags, master, ping, pong, epoch, link, slot;
    if (!(f >> id >> addr >> flags >> master >> ping >> pong >> epoch >> link))
      continue;
    for (const char* bad : {"fail", "handshake", "noaddr"})
      if (flags.find(bad) != std::string::npos)
        return {};
    if (link != "connected")
      return {};
    ClusterNode n;
    n.id = id;
    auto colon = addr.rfind(':', addr.find('@'));
    n.port = static_cast<uint16_t>(std::atoi(addr.c_str() + colon + 1));
    n.master = flags.find("master") != std::string::npos;
    n.master_id = master == "-" ? "" : master;
    while (f >> slot) {
      if (slot[0] == '[')
        continue;
      auto dash = slot.find('-');
      int a = std::atoi(slot.c_str());
      int b = dash == std::string::npos ? a : std::atoi(slot.c_str() + dash + 1);
      n.slots.emplace_back(a, b);
    }
    std::sort(n.slots.begin(), n.slots.end());
    out.push_back(std::move(n));
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.port < b.port; });
  return out;
}

std::string RedisCluster::view(uint16_t port) {
  Resp r = query(port, {"CLUSTER", "NODES"}, 2s);
  if (r.type != '$' && r.type != '=')
    return "";
  auto nodes = parse_view(r.str);
  if (nodes.size() != nodes_.size())
    return "";
  // Adjacent ranges are merged so that "0-5 6-9" and "0-9" (a node's own view vs gossip) agree.
  std::ostringstream o;
  for (auto& n : nodes) {
    o << n.id << " " << n.port << " " << (n.master ? "master" : "replica") << " " << n.master_id;
    int a = -2, b = -2;
    for (auto& [x, y] : n.slots) {
      if (x == b + 1) {
        b = y;
        continue;
      }
      if (a >= 0)
        o << " " << a << "-" << b;
      a = x;
      b = y;
    }
    if (a >= 0)
      o << " " << a << "-" << b;
    o << "\n";
  }
  return o.str();
}

std::vector<ClusterNode> RedisCluster::topology() {
  std::string first;
  for (auto p : ports()) {
    if (!node(p).process().running())
      continue;
    std::string v = view(p);
    if (v.empty() || (!first.empty() && v != first))
      return {};
    if (first.empty())
      first = v;
  }
  for (auto p : ports())
    if (node(p).process().running()) {
      Resp r = query(p, {"CLUSTER", "NODES"}, 2s);
      return parse_view(r.str);
    }
  return {};
}

bool RedisCluster::ready() {
  for (auto p : ports()) {
    Resp info = query(p, {"CLUSTER", "INFO"}, 2s);
    if (info_field(info.str, "cluster_state") != "ok")
      return false;
  }
  auto topo = topology();
  if (topo.size() != nodes_.size())
    return false;
  int owned = 0;
  for (auto& n : topo) {
    for (auto& [a, b] : n.slots)
      owned += b - a + 1;
    if (n.master)
      continue;
    Resp info = query(n.port, {"INFO", "replication"}, 2s);
    if (info_field(info.str, "master_link_status") != "up")
      return false;
  }
  return owned == 16384;
}

bool RedisCluster::wait_ready(Ms timeout) {
  return poll_until([&] { return ready(); }, timeout);
}

std::vector<uint16_t> RedisCluster::masters() {
  std::vector<uint16_t> out;
  for (auto& n : topology())
    if (n.master)
      out.push_back(n.port);
  return out;
}

std::vector<uint16_t> RedisCluster::replicas() {
  std::vector<uint16_t> out;
  for (auto& n : topology())
    if (!n.master)
      out.push_back(n.port);
  return out;
}

std::string RedisCluster::node_id(uint16_t port) {
  Resp r = query(port, {"CLUSTER", "MYID"}, 2s);
  return r.ok() ? r.str : "";
}

uint16_t RedisCluster::master_of(uint16_t replica) {
  auto topo = topology();
  for (auto& n : topo)
    if (n.port == replica)
      for (auto& m : topo)
        if (m.id == n.master_id)
          return m.port;
  return 0;
}

uint16_t RedisCluster::owner(int slot) {
  for (auto& n : topology())
    if (n.master && n.owns(slot))
      return n.port;
  return 0;
}

void RedisCluster::stop_node(uint16_t port) {
  node(port).stop();
}

bool RedisCluster::restart_node(uint16_t port) {
  return node(port).restart();
}

bool RedisCluster::failover(uint16_t replica, const std::string& mode, Ms timeout) {
  const uint16_t old_master = master_of(replica);
  if (!old_master) {
    error_ = "failover: " + port_str(replica) + " is not a replica the nodes agree on";
    return false;
  }
  std::vector<std::string> args = {"CLUSTER", "FAILOVER"};
  if (!mode.empty())
    args.push_back(mode);
  Resp r = query(replica, args);
  if (!r.ok()) {
    error_ = "CLUSTER FAILOVER: " + (r.type ? r.str : std::string("no reply"));
    return false;
  }
  const bool old_alive = node(old_master).process().running();
  bool done = poll_until(
      [&] {
        auto topo = topology();
        if (topo.empty())
          return false;
        const std::string new_id = node_id(replica);
        for (auto& n : topo) {
          if (n.port == replica && !n.master)
            return false;
          if (n.port == old_master && old_alive && (n.master || n.master_id != new_id))
            return false;
        }
        if (old_alive) {
          Resp info = query(old_master, {"INFO", "replication"}, 2s);
          if (info_field(info.str, "master_link_status") != "up")
            return false;
        }
        return true;
      },
      timeout);
  if (!done)
    error_ = "failover: roles did not flip on every node";
  return done;
}

bool RedisCluster::migrate_slots(int first, int last, uint16_t from, uint16_t to, Ms pace,
                                 int batch, const std::function<void(int)>& before_node,
                                 Ms timeout) {
  const std::string from_id = node_id(from), to_id = node_id(to);
  if (from_id.empty() || to_id.empty()) {
    error_ = "migrate: no node id for " + port_str(from) + " or " + port_str(to);
    return false;
  }
  auto must = [&](uint16_t port, const std::vector<std::string>& args) {
    Resp r = query(port, args, 10s);
    if (r.ok())
      return true;
    error_ = "migrate: on " + port_str(port) + ":";
    for (auto& a : args)
      error_ += " " + a;
    error_ += " -> " + (r.type ? r.str : std::string("no reply"));
    return false;
  };
  const auto others = masters();
  for (int slot = first; slot <= last; ++slot) {
    const std::string s = std::to_string(slot);
    if (!must(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", from_id}) ||
        !must(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", to_id}))
      return false;
    // Until the slot is empty on the source: clients may still write keys there that exist.
    while (true) {
      Resp keys = query(from, {"CLUSTER", "GETKEYSINSLOT", s, std::to_string(batch)}, 10s);
      if (keys.type != '*') {
        error_ = "migrate: GETKEYSINSLOT " + s + " -> " + keys.str;
        return false;
      }
      if (keys.items.empty())
        break;
      std::vector<std::string> mig = {"MIGRATE", "127.0.0.1", port_str(to), "",
                                      "0",       "5000",      "KEYS"};
      for (auto& k : keys.items)
        mig.push_back(k.str);
      Resp r = query(from, mig, 10s);
      if (!r.ok() && r.str != "NOKEY") {
        error_ = "migrate: MIGRATE slot " + s + " -> " + (r.type ? r.str : "no reply");
        return false;
      }
      if (pace.count() > 0)
        std::this_thread::sleep_for(pace);
    }
    if (before_node)
      before_node(slot);
    // The documented order: the target first (it bumps its epoch and owns the slot), then the
    // source (so it stops answering ASK), then the rest.
    if (!must(to, {"CLUSTER", "SETSLOT", s, "NODE", to_id}) ||
        !must(from, {"CLUSTER", "SETSLOT", s, "NODE", to_id}))
      return false;
    for (auto m : others)
      if (m != to && m != from && !must(m, {"CLUSTER", "SETSLOT", s, "NODE", to_id}))
        return false;
    if (pace.count() > 0 && slot < last)
      std::this_thread::sleep_for(pace);
  }
  bool done = poll_until(
      [&] {
        auto topo = topology();
        if (topo.empty())
          return false;
        for (auto& n : topo)
          if (n.port == to)
            for (int slot = first; slot <= last; ++slot)
              if (!n.owns(slot))
                return false;
        return ready();
      },
      timeout);
  if (!done)
    error_ = "migrate: the nodes do not agree on the new owner";
  return done;
}

// ---- SentinelDeployment ----

SentinelDeployment::SentinelDeployment(int replicas, int sentinels, std::string master_name)
    : replicas_(replicas), sentinels_(sentinels), name_(std::move(master_name)) {}

SentinelDeployment::~SentinelDeployment() {
  for (auto& s : sentinel_)
    s->proc.kill_hard();
  for (auto& d : data_)
    d->stop();
}

bool SentinelDeployment::start_sentinel(uint16_t master_port) {
  // Like Redis::start: a picked port can be taken before the sentinel binds it; then again.
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto s = std::make_unique<Sentinel>();
    s->port = unused_port();
    const std::string dir = temp_path("sentinel-" + port_str(s->port), "");
    fs::create_directories(dir);
    // Sentinel rewrites its config file (it records what it learns), so each has its own.
    const std::string conf = dir + "/sentinel.conf";
    std::ofstream(conf) << "port " << s->port << "\n"
                        << "bind 127.0.0.1\n"
                        << "daemonize no\n"
                        << "protected-mode no\n"
                        << "dir " << dir << "\n"
                        << "sentinel monitor " << name_ << " 127.0.0.1 " << master_port << " "
                        << (sentinels_ / 2 + 1) << "\n"
                        << "sentinel down-after-milliseconds " << name_ << " 1000\n"
                        << "sentinel failover-timeout " << name_ << " 5000\n"
                        << "sentinel parallel-syncs " << name_ << " 2\n";
    if (!s->proc.start({"redis-server", conf, "--sentinel"}, dir + "/sentinel.log"))
      return false;
    const long pid = s->proc.pid();
    wait_until([&] { return !s->proc.running() || server_pid(s->port) == pid; }, 20s);
    if (s->proc.running() && server_pid(s->port) == pid) {
      sentinel_.push_back(std::move(s));
      return true;
    }
    std::string log = s->proc.log();
    s->proc.kill_hard();
    if (log.find("Address already in use") == std::string::npos) {
      error_ = "sentinel did not start: " + log;
      return false;
    }
  }
  error_ = "sentinel: no free port";
  return false;
}

bool SentinelDeployment::start(Ms timeout) {
  auto master = std::make_unique<Redis>();
  if (!master->start()) {
    error_ = "master did not start: " + master->process().log();
    return false;
  }
  const uint16_t mport = master->port();
  data_.push_back(std::move(master));
  for (int i = 0; i < replicas_; ++i) {
    auto r = std::make_unique<Redis>();
    if (!r->start(0, {"--replicaof", "127.0.0.1", port_str(mport)})) {
      error_ = "replica did not start: " + r->process().log();
      return false;
    }
    data_.push_back(std::move(r));
  }
  // Sentinels learn the replicas from the master's INFO: have them connected first, so the
  // sentinels' first INFO lists them (the next one is 10 s later).
  if (!poll_until(
          [&] {
            Resp info = query(mport, {"INFO", "replication"}, 2s);
            return info_field(info.str, "connected_slaves") == std::to_string(replicas_);
          },
          20s)) {
    error_ = "replicas did not connect to the master";
    return false;
  }
  for (int i = 0; i < sentinels_; ++i)
    if (!start_sentinel(mport))
      return false;
  if (!wait_ready(timeout)) {
    error_ = "sentinels not ready:";
    for (auto p : sentinel_ports()) {
      Resp m = query(p, {"SENTINEL", "MASTER", name_}, 2s);
      error_ += "\n" + port_str(p) + ":";
      for (auto& it : m.items)
        error_ += " " + it.str;
    }
    return false;
  }
  return true;
}

std::vector<uint16_t> SentinelDeployment::sentinel_ports() const {
  std::vector<uint16_t> out;
  for (auto& s : sentinel_)
    out.push_back(s->port);
  return out;
}

std::vector<uint16_t> SentinelDeployment::data_ports() const {
  std::vector<uint16_t> out;
  for (auto& d : data_)
    out.push_back(d->port());
  return out;
}

Redis& SentinelDeployment::node(uint16_t port) {
  for (auto& d : data_)
    if (d->port() == port)
      return *d;
  throw std::runtime_error("no data node on port " + port_str(port));
}

Process& SentinelDeployment::sentinel(uint16_t port) {
  for (auto& s : sentinel_)
    if (s->port == port)
      return s->proc;
  throw std::runtime_error("no sentinel on port " + port_str(port));
}

uint16_t SentinelDeployment::master_by(uint16_t sentinel) {
  Resp r = query(sentinel, {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", name_}, 2s);
  if (r.type != '*' || r.items.size() != 2)
    return 0;
  return static_cast<uint16_t>(std::atoi(r.items[1].str.c_str()));
}

uint16_t SentinelDeployment::master() {
  uint16_t agreed = 0;
  for (auto p : sentinel_ports()) {
    uint16_t m = master_by(p);
    if (!m || (agreed && m != agreed))
      return 0;
    agreed = m;
  }
  return agreed;
}

std::vector<uint16_t> SentinelDeployment::replicas() {
  const uint16_t m = master();
  std::vector<uint16_t> out;
  for (auto p : data_ports())
    if (p != m)
      out.push_back(p);
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
// A SENTINEL MASTER/REPLICAS entry (a flat field/value array, or a RESP3 map) as a map.
std::map<std::string, std::string> fields(const Resp& entry) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i + 1 < entry.items.size(); i += 2)
    out[entry.items[i].str] = entry.items[i + 1].str;
  return out;
}
} // namespace

bool SentinelDeployment::ready() {
  const uint16_t m = master();
  if (!m)
    return false;
  const std::string others = std::to_string(sentinels_ - 1);
  for (auto p : sentinel_ports()) {
    auto master_fields = fields(query(p, {"SENTINEL", "MASTER", name_}, 2s));
    if (master_fields["flags"] != "master" || master_fields["num-other-sentinels"] != others)
      return false;
    // A replica counts when the sentinel reaches it ("slave", no s_down/disconnected). Its
    // master-link-status and master-port here come from the sentinel's INFO of it, every 10 s:
    // a demoted old master shows "err" for up to that long after the failover, though it is
    // linked. The data nodes' own INFO, below, is what says the links are up.
    Resp reps = query(p, {"SENTINEL", "REPLICAS", name_}, 2s);
    int good = 0;
    for (auto& r : reps.items)
      if (fields(r)["flags"] == "slave")
        ++good;
    if (good != replicas_)
      return false;
  }
  // What the data nodes say themselves.
  Resp info = query(m, {"INFO", "replication"}, 2s);
  if (info_field(info.str, "role") != "master")
    return false;
  for (auto p : data_ports()) {
    if (p == m)
      continue;
    Resp ri = query(p, {"INFO", "replication"}, 2s);
    if (info_field(ri.str, "master_port") != std::to_string(m) ||
        info_field(ri.str, "master_link_status") != "up")
      return false;
  }
  return true;
}

bool SentinelDeployment::wait_ready(Ms timeout) {
  return poll_until([&] { return ready(); }, timeout, 100ms);
}

uint16_t SentinelDeployment::failover(Settle settle, Ms timeout) {
  const uint16_t old = master();
  if (!old) {
    error_ = "failover: the sentinels do not agree on a master";
    return 0;
  }
  Resp r = query(sentinel_ports().front(), {"SENTINEL", "FAILOVER", name_});
  if (!r.ok()) {
    error_ = "SENTINEL FAILOVER: " + (r.type ? r.str : std::string("no reply"));
    return 0;
  }
  uint16_t now = 0;
  bool done = poll_until(
      [&] {
        now = master();
        if (!now || now == old)
          return false;
        if (settle == Settle::All)
          return ready();
        return info_field(query(now, {"INFO", "replication"}, 2s).str, "role") == "master";
      },
      timeout, 100ms);
  if (!done) {
    error_ = "failover: no new master agreed on everywhere";
    return 0;
  }
  return now;
}

} // namespace fltest
