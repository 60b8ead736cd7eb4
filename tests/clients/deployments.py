"""Whole Redis deployments for the client tests of issue 21, and faultline in front of them.

    Cluster       six private redis-servers (three masters, three replicas) made a cluster with
                  `redis-cli --cluster create`; failover(), migrate_slots(), stop_node()
    Sentinels     one master, two replicas, three sentinels (`redis-server sentinel.conf
                  --sentinel`); failover()
    ClusterFront, SentinelFront
                  where the clients connect: faultline in cluster or sentinel mode, its
                  listeners read from GET /topology; or, with FAULTLINE_DIRECT=1, the real
                  nodes themselves (no faultline), to check the deployments and the tests.
    DirectClients samples CLIENT LIST on every real node and names every connection that came
                  neither from faultline, nor from the deployment's own processes, nor from the
                  fixture's admin connections (see its docstring for the criterion).

Every wait polls the nodes' own answers and is bounded. The fixture's own commands to the real
nodes go through Admin, a small RESP client whose sockets are registered (so the check above
can tell them from a client under test).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "python"))

from faultline.api import Client  # noqa: E402
from faultline.process import check_binary, free_port  # noqa: E402

DIRECT = os.environ.get("FAULTLINE_DIRECT") == "1"
HOST = "127.0.0.1"


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


# -- RESP, for the fixture's own commands --

class RespError(Exception):
    pass


def _read_line(f) -> bytes:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    return line[:-2]


def _read_value(f):
    line = _read_line(f)
    t, rest = line[:1], line[1:]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        return RespError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_read_value(f) for _ in range(n)]
    raise ConnectionError(f"unexpected reply {line[:40]!r}")


def _encode(args: Sequence) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


# Local ports of the fixture's live admin sockets: connections the check may see on a node.
ADMIN_PORTS: set = set()
ADMIN_NAME = "fltest-admin"


class Admin:
    """The fixture's connection to one real node (never a client under test)."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.local_port = self.sock.getsockname()[1]
        ADMIN_PORTS.add(self.local_port)
        self.f = self.sock.makefile("rb")
        self.call("CLIENT", "SETNAME", ADMIN_NAME)

    def call(self, *args, check: bool = False):
        self.sock.sendall(_encode(args))
        v = _read_value(self.f)
        if check and isinstance(v, RespError):
            raise v
        return v

    def close(self):
        ADMIN_PORTS.discard(self.local_port)
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def query(port: int, *args, check: bool = False, timeout: float = 5.0):
    """One command on a new admin connection; None if the node cannot be reached."""
    try:
        with Admin(port, timeout) as a:
            return a.call(*args, check=check)
    except (OSError, ConnectionError):
        if check:
            raise
        return None


def info_field(text, field: str) -> str:
    if not isinstance(text, str):
        return ""
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k == field:
            return v.strip()
    return ""


# -- processes --

class Server:
    """A private redis-server (or sentinel) process on a port, in its own directory, that can be
    killed and started again in the same directory (a cluster node keeps its nodes.conf)."""

    def __init__(self, argv_for: Callable[[int, str], List[str]], name: str):
        self._argv_for = argv_for
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"faultline-{name}-")
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self._argv: List[str] = []

    def start(self, timeout: float = 20.0) -> "Server":
        # A picked port can be taken before redis-server binds it: then another port.
        for _ in range(5):
            self.port = free_port()
            self._argv = self._argv_for(self.port, self.dir)
            if self._spawn(timeout):
                return self
            if "Address already in use" not in self.log():
                break
        raise RuntimeError(f"{self.name} did not start:\n{self.log()[-2000:]}")

    def _spawn(self, timeout: float) -> bool:
        with open(os.path.join(self.dir, "server.log"), "ab") as out:
            self.proc = subprocess.Popen(self._argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
        pid = self.proc.pid
        # Ours: the server on the port says its pid is this process's.
        try:
            wait_until(lambda: self.proc.poll() is not None or
                       info_field(query(self.port, "INFO", "server"), "process_id") == str(pid),
                       timeout, f"{self.name} on {self.port}")
        except TimeoutError:
            self.kill()
            return False
        return self.proc.poll() is None

    def restart(self, timeout: float = 20.0) -> None:
        if not self._spawn(timeout):
            raise RuntimeError(f"{self.name} did not start again:\n{self.log()[-2000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "server.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _redis_argv(extra: Sequence[str]) -> Callable[[int, str], List[str]]:
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "redis-server"

    def argv(port: int, workdir: str) -> List[str]:
        return [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", workdir, "--daemonize", "no", "--protected-mode", "no",
                *[str(free_port()) if a == "{free-port}" else a for a in extra]]
    return argv


# -- Redis Cluster --

def key_slot(key) -> int:
    from redis.crc import key_slot as ks
    return ks(key.encode() if isinstance(key, str) else key)


def key_in_slot(slot: int, prefix: str = "k") -> str:
    n = 0
    while key_slot(f"{prefix}{n}") != slot:
        n += 1
    return f"{prefix}{n}"


def keys_in_slots(first: int, last: int, per_slot: int = 3, prefix: str = "p") -> List[str]:
    """per_slot keys in each slot first..last ("{tag}.0", "{tag}.1", ...; one hash tag a slot)."""
    want, tags, n = set(range(first, last + 1)), {}, 0
    while want:
        s = key_slot(f"{prefix}{n}")
        if s in want:
            tags[s] = f"{prefix}{n}"
            want.discard(s)
        n += 1
    return [f"{{{tags[s]}}}.{j}" for s in range(first, last + 1) for j in range(per_slot)]


class Cluster:
    """A Redis Cluster of private redis-servers (3 masters with one replica each by default).
    Nodes are named by their port; roles and slots are read back from the nodes each time."""

    def __init__(self, masters: int = 3, replicas: int = 1, extra: Sequence[str] = ()):
        self.n_masters, self.n_replicas = masters, replicas
        # The bus port given (port + 10000 can pass 65535); node-timeout 2 s so a dead node is
        # noticed in seconds (extra may override it: later arguments win).
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", "{free-port}", "--cluster-node-timeout", "2000", *extra]
        self.servers = [Server(_redis_argv(args), f"cluster-{i}")
                        for i in range(masters * (1 + replicas))]

    def start(self, timeout: float = 90.0) -> "Cluster":
        try:
            for s in self.servers:
                s.start()
            cmd = ["timeout", "60", "redis-cli", "--cluster", "create",
                   *[f"{HOST}:{p}" for p in self.ports],
                   "--cluster-replicas", str(self.n_replicas), "--cluster-yes"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{res.stdout}{res.stderr}")
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for s in self.servers:
            s.remove()

    @property
    def ports(self) -> List[int]:
        return [s.port for s in self.servers]

    @property
    def pids(self) -> List[int]:
        return [s.pid for s in self.servers if s.running()]

    def server(self, port: int) -> Server:
        return next(s for s in self.servers if s.port == port)

    # -- what the nodes say --

    def _view(self, port: int) -> Optional[List[dict]]:
        text = query(port, "CLUSTER", "NODES")
        if not isinstance(text, str):
            return None
        nodes = []
        for line in text.splitlines():
            f = line.split()
            if len(f) < 8:
                continue
            flags = f[2]
            if any(b in flags for b in ("fail", "handshake", "noaddr")) or f[7] != "connected":
                return None
            slots = []
            for s in f[8:]:
                if s.startswith("["):
                    continue  # the node's own migrating/importing mark
                a, _, b = s.partition("-")
                slots.append((int(a), int(b or a)))
            nodes.append({"id": f[0], "port": int(f[1].split("@")[0].rsplit(":", 1)[1]),
                          "master": "master" in flags,
                          "master_id": None if f[3] == "-" else f[3],
                          "slots": _merge(sorted(slots))})
        nodes.sort(key=lambda n: n["port"])
        return nodes if len(nodes) == len(self.servers) else None

    def topology(self) -> List[dict]:
        """The view every running node agrees on; [] while they do not."""
        views = [self._view(s.port) for s in self.servers if s.running()]
        if not views or any(v is None or v != views[0] for v in views):
            return []
        return views[0]

    def ready(self) -> bool:
        for s in self.servers:
            if info_field(query(s.port, "CLUSTER", "INFO"), "cluster_state") != "ok":
                return False
        topo = self.topology()
        if not topo or sum(b - a + 1 for n in topo for a, b in n["slots"]) != 16384:
            return False
        return all(info_field(query(n["port"], "INFO", "replication"), "master_link_status") == "up"
                   for n in topo if not n["master"])

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(self.ready, timeout, "cluster ready (state ok, one view, links up)")

    def masters(self) -> List[int]:
        return [n["port"] for n in self.topology() if n["master"]]

    def replicas(self) -> List[int]:
        return [n["port"] for n in self.topology() if not n["master"]]

    def node_id(self, port: int) -> str:
        return query(port, "CLUSTER", "MYID", check=True)

    def master_of(self, replica: int) -> Optional[int]:
        topo = self.topology()
        mid = next((n["master_id"] for n in topo if n["port"] == replica), None)
        return next((n["port"] for n in topo if n["id"] == mid), None)

    def replica_of(self, master: int) -> Optional[int]:
        return next((r for r in self.replicas() if self.master_of(r) == master), None)

    def owner(self, slot: int) -> Optional[int]:
        for n in self.topology():
            if n["master"] and any(a <= slot <= b for a, b in n["slots"]):
                return n["port"]
        return None

    def slot_owners(self) -> Dict[int, int]:
        """{slot: master port} of the agreed topology, read once."""
        return {s: n["port"] for n in self.topology() if n["master"]
                for a, b in n["slots"] for s in range(a, b + 1)}

    def slots_of(self, master: int) -> List[Tuple[int, int]]:
        return next((n["slots"] for n in self.topology() if n["port"] == master), [])

    # -- changes to the real cluster --

    def failover(self, replica: int, mode: str = "", timeout: float = 30.0) -> None:
        """CLUSTER FAILOVER [mode] on the replica; returns once every node agrees on the new
        roles and the old master (if running) replicates from it with its link up."""
        old = self.master_of(replica)
        assert old, f"{replica} is not a replica"
        query(replica, "CLUSTER", "FAILOVER", *([mode] if mode else []), check=True)
        old_alive = self.server(old).running()
        new_id = self.node_id(replica)

        def flipped():
            topo = self.topology()
            if not topo:
                return False
            me = next(n for n in topo if n["port"] == replica)
            if not me["master"]:
                return False
            if old_alive:
                o = next(n for n in topo if n["port"] == old)
                if o["master"] or o["master_id"] != new_id:
                    return False
                return info_field(query(old, "INFO", "replication"), "master_link_status") == "up"
            return True
        wait_until(flipped, timeout, f"failover to {replica}")

    def migrate_slots(self, first: int, last: int, src: int, dst: int, pace: float = 0.0,
                      batch: int = 100, before_node: Optional[Callable[[int], None]] = None,
                      timeout: float = 60.0) -> None:
        """Moves slots [first, last] from master src to master dst with the documented steps,
        slot by slot: SETSLOT IMPORTING on dst, MIGRATING on src, GETKEYSINSLOT + MIGRATE in
        batches until the slot is empty on src, SETSLOT NODE on dst, src and every other master.
        pace: seconds held between batches and between slots (so clients meet ASK)."""
        src_id, dst_id = self.node_id(src), self.node_id(dst)
        others = [m for m in self.masters() if m not in (src, dst)]
        with Admin(src) as a_src, Admin(dst) as a_dst:
            for slot in range(first, last + 1):
                a_dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id, check=True)
                a_src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id, check=True)
                while True:
                    keys = a_src.call("CLUSTER", "GETKEYSINSLOT", slot, batch, check=True)
                    if not keys:
                        break
                    r = a_src.call("MIGRATE", HOST, dst, "", 0, 5000, "KEYS", *keys)
                    if isinstance(r, RespError) and str(r) != "NOKEY":
                        raise r
                    if pace:
                        time.sleep(pace)
                if before_node:
                    before_node(slot)
                # The target first (it takes the slot with a new epoch), then the source (it
                # stops answering ASK), then the others.
                a_dst.call("CLUSTER", "SETSLOT", slot, "NODE", dst_id, check=True)
                a_src.call("CLUSTER", "SETSLOT", slot, "NODE", dst_id, check=True)
                for m in others:
                    query(m, "CLUSTER", "SETSLOT", slot, "NODE", dst_id, check=True)
                if pace and slot < last:
                    time.sleep(pace)
        wait_until(lambda: all(self.owner(s) == dst for s in (first, last)) and self.ready(),
                   timeout, f"slots {first}-{last} owned by {dst} everywhere")

    def stop_node(self, port: int) -> None:
        self.server(port).kill()

    def restart_node(self, port: int) -> None:
        self.server(port).restart()


def _merge(ranges: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    for a, b in ranges:
        if out and a == out[-1][1] + 1:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


# -- Sentinel --

class Sentinels:
    """One master, `replicas` replicas, `sentinels` sentinels monitoring it as `name`."""

    def __init__(self, replicas: int = 2, sentinels: int = 3, name: str = "mymaster"):
        self.name = name
        self.n_replicas, self.n_sentinels = replicas, sentinels
        self.data: List[Server] = []
        self.sentinels: List[Server] = []

    def start(self, timeout: float = 60.0) -> "Sentinels":
        try:
            master = Server(_redis_argv([]), "master").start()
            self.data.append(master)
            for i in range(self.n_replicas):
                self.data.append(Server(_redis_argv(["--replicaof", HOST, str(master.port)]),
                                        f"replica-{i}").start())
            # Sentinels learn the replicas from the master's INFO: have them connected before
            # the sentinels' first INFO (the next is 10 s later).
            wait_until(lambda: info_field(query(master.port, "INFO", "replication"),
                                          "connected_slaves") == str(self.n_replicas),
                       20, "replicas connected")
            for i in range(self.n_sentinels):
                self.sentinels.append(Server(self._sentinel_argv(master.port),
                                             f"sentinel-{i}").start())
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel_argv(self, master_port: int) -> Callable[[int, str], List[str]]:
        binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "redis-server"
        quorum = self.n_sentinels // 2 + 1

        def argv(port: int, workdir: str) -> List[str]:
            # Sentinel rewrites its config (what it learns), so each has its own file.
            conf = os.path.join(workdir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind {HOST}\ndaemonize no\nprotected-mode no\n"
                        f"dir {workdir}\n"
                        f"sentinel monitor {self.name} {HOST} {master_port} {quorum}\n"
                        f"sentinel down-after-milliseconds {self.name} 1000\n"
                        f"sentinel failover-timeout {self.name} 5000\n"
                        f"sentinel parallel-syncs {self.name} 2\n")
            return [binary, conf, "--sentinel"]
        return argv

    def stop(self) -> None:
        for s in self.sentinels + self.data:
            s.remove()

    @property
    def sentinel_ports(self) -> List[int]:
        return [s.port for s in self.sentinels]

    @property
    def data_ports(self) -> List[int]:
        return [s.port for s in self.data]

    @property
    def pids(self) -> List[int]:
        return [s.pid for s in self.sentinels + self.data if s.running()]

    def master_by(self, sentinel: int) -> Optional[int]:
        r = query(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(r[1]) if isinstance(r, list) and len(r) == 2 else None

    def master(self) -> Optional[int]:
        seen = {self.master_by(p) for p in self.sentinel_ports}
        return seen.pop() if len(seen) == 1 and None not in seen else None

    def replicas(self) -> List[int]:
        m = self.master()
        return sorted(p for p in self.data_ports if p != m)

    def ready(self) -> bool:
        m = self.master()
        if not m:
            return False
        for p in self.sentinel_ports:
            fields = _pairs(query(p, "SENTINEL", "MASTER", self.name))
            if fields.get("flags") != "master" or \
                    fields.get("num-other-sentinels") != str(self.n_sentinels - 1):
                return False
            # master-link-status here is from the sentinel's INFO of the replica (every 10 s);
            # the data nodes' own INFO below says whether the links are up.
            reps = query(p, "SENTINEL", "REPLICAS", self.name) or []
            if sum(1 for r in reps if _pairs(r).get("flags") == "slave") != self.n_replicas:
                return False
        if info_field(query(m, "INFO", "replication"), "role") != "master":
            return False
        for p in self.data_ports:
            if p == m:
                continue
            info = query(p, "INFO", "replication")
            if info_field(info, "master_port") != str(m) or \
                    info_field(info, "master_link_status") != "up":
                return False
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(self.ready, timeout, "sentinels agree, see every replica and peer", 0.1)

    def failover(self, settle: bool = True, timeout: float = 60.0) -> int:
        """SENTINEL FAILOVER; returns the new master's port once every sentinel names it and it
        says role:master, and with settle=True once the old master is demoted too (a sentinel
        does that when it next reads the old master's INFO, up to ~10 s later; until then the
        old master still accepts writes, as in production)."""
        old = self.master()
        assert old, "the sentinels do not agree on a master"
        query(self.sentinel_ports[0], "SENTINEL", "FAILOVER", self.name, check=True)

        def moved():
            m = self.master()
            if not m or m == old:
                return None
            if info_field(query(m, "INFO", "replication"), "role") != "master":
                return None
            return m if not settle or self.ready() else None
        return wait_until(moved, timeout, "sentinel failover", 0.1)


def _pairs(entry) -> Dict[str, str]:
    if not isinstance(entry, list):
        return {}
    return {str(entry[i]): str(entry[i + 1]) for i in range(0, len(entry) - 1, 2)}


# -- faultline in front (or not) --

class _Front:
    """Where clients connect. direct: the real nodes; else faultline in front of them."""

    def __init__(self, direct: bool):
        self.direct = direct
        self.proc: Optional[subprocess.Popen] = None
        self.api: Optional[Client] = None
        self.tmp = tempfile.mkdtemp(prefix="faultline-front-")
        self.mode = ""

    def _start(self, args: Sequence[str], timeout: float = 30.0) -> None:
        binary = check_binary(os.environ.get("FAULTLINE_BIN"))
        port_file = os.path.join(self.tmp, "ports")
        self.log_path = os.path.join(self.tmp, "faultline.log")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, *args, "--listen", f"{HOST}:0", "--api", f"{HOST}:0",
                 "--port-file", port_file], stdout=out, stderr=subprocess.STDOUT)

        def api_address():
            if self.proc.poll() is not None:
                raise RuntimeError(f"faultline exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with open(port_file) as f:
                    ports = dict(l.split(" ", 1) for l in f.read().splitlines() if " " in l)
            except OSError:
                return None
            return ports.get("api", "").strip() or None
        self.api = Client("http://" + wait_until(api_address, timeout, "faultline's port file"))
        self.api.wait_ready(timeout)

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def topology(self) -> dict:
        return self.api.request("GET", "/topology")

    def wait_topology(self, pred: Callable[[dict], bool], timeout: float = 30.0) -> dict:
        def ok():
            try:
                t = self.topology()
            except Exception:  # noqa: BLE001 - not up yet; the timeout reports it
                return None
            return t if pred(t) else None
        return wait_until(ok, timeout, "faultline's /topology")

    def listener(self, port: int) -> Tuple[str, int]:
        """(host, port) a client uses for the real node (or sentinel) on `port`."""
        if self.direct:
            return (HOST, port)
        for n in self.topology()["nodes"]:
            if n["address"] == f"{HOST}:{port}":
                host, _, p = n["listen"].rpartition(":")
                return (host.strip("[]"), int(p))
        raise KeyError(f"faultline fronts no node {HOST}:{port}")

    def proxy_name(self, port: int) -> str:
        for n in self.topology()["nodes"]:
            if n["address"] == f"{HOST}:{port}":
                return n["proxy"]
        raise KeyError(port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class ClusterFront(_Front):
    def __init__(self, cluster: Cluster, direct: bool = DIRECT):
        super().__init__(direct)
        self.cluster = cluster
        if not direct:
            self._start(["--cluster", f"{HOST}:{cluster.ports[0]}"])
            want = {f"{HOST}:{p}" for p in cluster.ports}
            self.wait_topology(lambda t: t.get("mode") == "cluster" and
                               {n["address"] for n in t["nodes"] if n.get("listen")} >= want)

    def startup_nodes(self) -> List[Tuple[str, int]]:
        return [self.listener(self.cluster.ports[0])]

    def node_down(self, port: int):
        """Context: the node unreachable for clients. Through faultline: its proxy disabled
        (the node itself keeps running, so the cluster sees nothing). Direct: the node killed
        and started again after (use a cluster with a long node-timeout, so that it does not
        fail over meanwhile)."""
        return _NodeDown(self, port)

    def listeners(self) -> set:
        return {self.listener(p) for p in self.cluster.ports}


class _NodeDown:
    def __init__(self, front: ClusterFront, port: int):
        self.front, self.port = front, port

    def __enter__(self):
        if self.front.direct:
            self.front.cluster.stop_node(self.port)
        else:
            self.front.api.proxy(self.front.proxy_name(self.port)).disable()

    def __exit__(self, *exc):
        if self.front.direct:
            self.front.cluster.restart_node(self.port)
            self.front.cluster.wait_ready()
        else:
            self.front.api.proxy(self.front.proxy_name(self.port)).enable()


class SentinelFront(_Front):
    def __init__(self, dep: Sentinels, direct: bool = DIRECT):
        super().__init__(direct)
        self.dep = dep
        if not direct:
            args = []
            for p in dep.sentinel_ports:
                args += ["--sentinel", f"{HOST}:{p}"]
            self._start([*args, "--master", dep.name])
            want = {f"{HOST}:{p}" for p in dep.sentinel_ports + dep.data_ports}
            self.wait_topology(lambda t: t.get("mode") == "sentinel" and
                               {n["address"] for n in t["nodes"] if n.get("listen")} >= want)

    def sentinels(self) -> List[Tuple[str, int]]:
        return [self.listener(p) for p in self.dep.sentinel_ports]

    def listeners(self) -> set:
        return {self.listener(p) for p in self.dep.sentinel_ports + self.dep.data_ports}


# -- "no client reached a node directly" --

def _tcp_sockets() -> Dict[str, Tuple[Tuple[str, int], Tuple[str, int]]]:
    """inode -> ((local ip, port), (remote ip, port)) of every TCP socket, IPv4 and IPv6 (an
    IPv4-mapped address as its IPv4 form, as Redis shows it)."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    c = line.split()
                    # Inode 0: no process holds the socket any more (closed, in FIN_WAIT or
                    # TIME_WAIT): a connection on its way out, whose owner cannot be known.
                    if c[9] != "0":
                        out[c[9]] = (_hexaddr(c[1]), _hexaddr(c[2]))
        except OSError:
            pass
    return out


def _hexaddr(s: str) -> Tuple[str, int]:
    # The kernel prints the address as 32-bit words in host (little-endian) order.
    ip, port = s.split(":")
    raw = b"".join(bytes.fromhex(ip[i:i + 8])[::-1] for i in range(0, len(ip), 8))
    addr = ipaddress.ip_address(raw)
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return (str(addr), int(port, 16))


def _socket_inodes(pid: int) -> set:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                t = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if t.startswith("socket:["):
                out.add(t[8:-1])
    except OSError:
        pass
    return out


def _children(pid: int) -> List[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _redis_own(c: dict) -> bool:
    name, flags, cmd = c.get("name", ""), c.get("flags", ""), c.get("cmd", "")
    return (name.startswith("sentinel-") and name.rsplit("-", 1)[-1] in ("cmd", "pubsub")) or \
        "S" in flags or "M" in flags or cmd in ("replconf", "psync", "sync")


def _parse_client_list(text: str) -> List[dict]:
    out = []
    for line in (text or "").splitlines():
        out.append(dict(kv.split("=", 1) for kv in line.split() if "=" in kv))
    return out


class DirectClients:
    """Watches every real node's CLIENT LIST while the test runs and names each connection that
    did not come through faultline.

    Criterion. A connection in CLIENT LIST has addr=IP:PORT, the client end of the TCP
    connection (and laddr, the node's end). On one host, the kernel knows which process owns
    the socket with that local address and that peer: /proc/net/tcp maps the address pair to a
    socket inode, /proc/PID/fd maps inodes to processes. A connection is accounted for when
    its client socket belongs to
      - faultline (an upstream connection of one of its proxies), or
      - a process of the deployment itself (replication links, MIGRATE, sentinels), or
      - one of the fixture's own Admin sockets (their local ports are registered, and they
        carry the name fltest-admin),
    and anything else (the test process's other sockets, a Node script, an unknown owner) is
    a client that reached a node directly. Sampling misses connections that open and close
    between two samples; clients keep their connections open in a pool, and the samples run
    every `interval` s through the whole test and once more at the end, before clients close.
    """

    def __init__(self, ports: Callable[[], Iterable[int]], faultline_pid: Optional[int],
                 deployment_pids: Callable[[], Iterable[int]], interval: float = 0.2):
        self.ports, self.faultline_pid = ports, faultline_pid
        self.deployment_pids = deployment_pids
        self.interval = interval
        self.offenders: Dict[Tuple[int, str], dict] = {}
        self.samples = 0
        self.seen_faultline = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """One look at every node now."""
        lists = {}
        for port in self.ports():
            text = query(port, "CLIENT", "LIST")
            if isinstance(text, str):
                lists[port] = _parse_client_list(text)
        admin_ports = set(ADMIN_PORTS)  # as they were when the lists were taken
        # Sockets are read after CLIENT LIST: a connection the list shows is still open then,
        # unless it closed in between (then it is skipped below, not blamed).
        socks = _tcp_sockets()
        by_pair = {(loc, rem): ino for ino, (loc, rem) in socks.items()}
        # Owners last: a connection opened after CLIENT LIST was taken is not in it, and one in
        # it that is still open (its socket read above) has its owner's descriptor by now.
        # (Read before the list, a connection faultline opened in between looked ownerless.)
        ours = {os.getpid()} | set(_children(os.getpid()))
        owner_of: Dict[str, str] = {}
        if self.faultline_pid:
            for ino in _socket_inodes(self.faultline_pid):
                owner_of[ino] = "faultline"
        for pid in self.deployment_pids():
            for ino in _socket_inodes(pid):
                owner_of[ino] = "deployment"
        for pid in ours:
            for ino in _socket_inodes(pid):
                owner_of.setdefault(ino, f"pid {pid}")
        # A socket that closed after /proc/net/tcp was read has no owner any more: read the
        # table once more, after the owners, and skip (not blame) what is gone by then. (Short
        # connections such as ioredis's slot refresher, through faultline, were blamed as
        # "unknown process" when they closed in between.)
        still_open = set(_tcp_sockets())
        self.samples += 1
        for port, clients in lists.items():
            for c in clients:
                ip, _, cport = c.get("addr", "").rpartition(":")
                if not cport.isdigit():
                    continue
                ino = by_pair.get(((ip, int(cport)), (HOST, port)))
                if ino is None:
                    continue  # closed since the list was taken
                who = owner_of.get(ino, "unknown process")
                if who == "unknown process" and ino not in still_open:
                    continue  # closed while the owners were read
                if who == "unknown process" and _redis_own(c):
                    # Redis's own links (a replica's to its master, a sentinel's to the nodes
                    # it watches) are the deployment's, found by /proc or not: no client under
                    # test sends REPLCONF or names itself sentinel-<id>-cmd/pubsub. (Seen once
                    # under load with no owner found, likely the same close-in-between race.)
                    continue
                if who == "faultline":
                    self.seen_faultline += 1
                    continue
                if who == "deployment":
                    continue
                if c.get("name") == ADMIN_NAME and int(cport) in admin_ports:
                    continue
                self.offenders.setdefault((port, c["addr"]), dict(c, owner=who, node=port))

    def report(self) -> str:
        return "\n".join(f"node {o['node']}: {o['addr']} ({o['owner']}) name={o.get('name', '')} "
                         f"cmd={o.get('cmd', '')} age={o.get('age', '')}"
                         for o in self.offenders.values())

    def check(self, direct: bool = DIRECT) -> None:
        """Through faultline: no offender. Direct (no faultline): the clients must have been
        seen on the nodes, which shows that the check sees direct clients at all."""
        self.sample()
        if direct:
            assert self.offenders, "the check saw no direct client, though there is no faultline"
        else:
            assert not self.offenders, "clients reached real nodes directly:\n" + self.report()
            assert self.seen_faultline, "no connection from faultline seen on any node"


def fronted(dep, front_cls):
    """A pytest fixture's body: `dep` started, faultline in front of it (`front_cls`), yielded as
    (dep, front); both stopped afterwards, also when the test or the start fails."""
    dep.start()
    front = None
    try:
        front = front_cls(dep)
        yield dep, front
    finally:
        if front:
            front.stop()
        dep.stop()


def cluster_guard(c, front) -> DirectClients:
    return DirectClients(lambda: c.ports, front.pid, lambda: c.pids)


def sentinel_guard(dep, front) -> DirectClients:
    return DirectClients(lambda: dep.sentinel_ports + dep.data_ports, front.pid, lambda: dep.pids)


class BackgroundWriter:
    """A thread that runs `run()` (writes in a loop until `stop` is set) while the test acts;
    `errors` collects what the writes raised, with the time."""

    def __init__(self):
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)

    def wait_grown(self, d: dict, n: int, timeout: float = 30):
        """Until `d` (what the writer records) has n more entries; fails if it stalls."""
        deadline = time.monotonic() + timeout
        start = len(d)
        while len(d) < start + n:
            assert time.monotonic() < deadline, f"writer stalled; errors: {self.errors[-3:]}"
            time.sleep(0.01)


# -- the shipped profiles that change the deployment, as a user starts them --

PROFILES_DIR = os.path.join(HERE, "..", "..", "profiles")


def redirections(ports: Iterable[int]) -> Dict[str, int]:
    """{error code: count} of the errors the real nodes on `ports` answered since their last
    CONFIG RESETSTAT (INFO errorstats: MOVED, ASK, READONLY, ...): what the clients were told,
    counted by Redis itself, with or without faultline in between."""
    out: Dict[str, int] = {}
    for p in ports:
        text = query(p, "INFO", "errorstats")
        for line in (text or "").splitlines() if isinstance(text, str) else []:
            k, _, v = line.partition(":")
            if k.startswith("errorstat_") and v.startswith("count="):
                code = k[len("errorstat_"):]
                out[code] = out.get(code, 0) + int(v[6:].split(",")[0])
    return out


class DeploymentProfile:
    """One of the shipped profiles that act on the real deployment (cluster-failover,
    cluster-reshard, sentinel-failover), started as a user starts it: POST /profiles with the
    shipped file, through faultline's API. Direct (FAULTLINE_DIRECT=1, no faultline): `act()`,
    the fixture making the same change itself, and no report.

        with DeploymentProfile(front, "cluster-failover", act, ports) as p:
            p.wait_action()      # the step's outcome (through faultline) once it is done
            ...                  # the test's own waits (the writer going on)
        p.report                 # the finished profile's report (verdicts decided), or None
        p.errorstats             # the nodes' error counts over the run (MOVED, ASK, READONLY)
    """

    def __init__(self, front: "_Front", name: str, act: Callable[[], object],
                 ports: Callable[[], Iterable[int]], speed: float = 1.0, timeout: float = 90.0):
        self.front, self.name, self.act, self.ports = front, name, act, ports
        self.speed, self.timeout = speed, timeout
        self.report: Optional[dict] = None
        self.outcome: Optional[dict] = None
        self.errorstats: Dict[str, int] = {}
        self.started = self.ended = 0.0

    def __enter__(self) -> "DeploymentProfile":
        for p in self.ports():
            query(p, "CONFIG", "RESETSTAT", check=True)
        self.started = time.monotonic()
        if not self.front.direct:
            self.front.api.start_profile(os.path.join(PROFILES_DIR, self.name + ".toml"),
                                         speed=self.speed, replace=False)
        return self

    def wait_action(self) -> Optional[dict]:
        """Until the profile's deployment action is done; its outcome, which must be ok.
        Direct: runs act() (the same change, made by the fixture)."""
        if self.front.direct:
            self.act()
            return None

        def done():
            rep = self.front.api.profile_report(self.name)
            o = rep["steps"][0].get("outcome") if rep.get("steps") else None
            return o if o and o.get("done") else None
        self.outcome = wait_until(done, self.timeout, f"profile {self.name}'s action")
        assert self.outcome.get("ok"), f"profile {self.name}: {self.outcome}"
        return self.outcome

    def __exit__(self, exc_type, *exc):
        if self.front.direct:
            self.ended = time.monotonic()
            self.errorstats = redirections(self.ports())
            return
        try:
            if exc_type is None:
                self.report = self.front.api.wait_profile(self.name, self.timeout)
        finally:
            self.ended = time.monotonic()
            self.errorstats = redirections(self.ports())
            self.front.api.stop_profile(self.name)

    # -- what the report says (through faultline) --

    def failed_verdicts(self) -> List[dict]:
        if not self.report:
            return []
        return [v for v in self.report["expect"]["verdicts"] if v.get("state") != "pass"]

    def verdicts(self) -> str:
        """"pass (N verdicts)", or the failed ones (`proxy key measured`); "-" direct."""
        if not self.report:
            return "-"
        bad = self.failed_verdicts()
        if not bad:
            return f"pass ({len(self.report['expect']['verdicts'])} verdicts)"
        return "FAIL: " + "; ".join(f"{v.get('proxy')} {v['key']} {v.get('measured')} "
                                    f"{v.get('state')}" for v in bad)

    def connects(self) -> Tuple[int, int, int]:
        """(connects, failed, highest peak per second) over every proxy during the profile,
        from the report's client verdicts; (-1, -1, -1) direct."""
        if not self.report:
            return (-1, -1, -1)
        total = failed = peak = 0
        for c in (self.report.get("clients") or {}).values():
            if isinstance(c, dict):
                total += c["connects"]["total"]
                failed += c["connects"]["failed"]
                peak = max(peak, c["connects"]["peak_per_second"])
        return (total, failed, peak)

    def resends(self) -> int:
        if not self.report:
            return -1
        return sum(c["resends"]["total"] for c in (self.report.get("clients") or {}).values()
                   if isinstance(c, dict))

    def figures(self, client: str, **kw) -> str:
        """One line of the closing note's table (docs/deployments.md), printed by the test."""
        import json
        connects, failed, peak = self.connects()
        d = dict(client=client, profile=self.name, direct=self.front.direct,
                 seconds=round(self.ended - self.started, 1),
                 moved=self.errorstats.get("MOVED", 0), ask=self.errorstats.get("ASK", 0),
                 readonly=self.errorstats.get("READONLY", 0),
                 other_errors={k: v for k, v in self.errorstats.items()
                               if k not in ("MOVED", "ASK", "READONLY")},
                 connects=connects, failed_connects=failed, peak_connects_per_second=peak,
                 resends=self.resends(), verdicts=self.verdicts(), **kw)
        return "PROFILE-FIGURES " + json.dumps(d)
