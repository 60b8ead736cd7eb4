"""ioredis (npm) against a whole Redis Cluster and a Sentinel deployment through faultline's
cluster and sentinel modes (issue 21): writes in a loop through a real failover and a real slot
migration (cluster) or a real SENTINEL FAILOVER (sentinel); every acknowledged write is in the
deployment afterwards, and no connection of the client ever reached a real node. The same under
the shipped profiles cluster-failover, cluster-reshard and sentinel-failover, started through
faultline's API (test_cluster.run_cluster_profiles, test_sentinel.run_sentinel_profile). Under
two Sentinel faults of faultline's, as test_sentinel.py does for redis-py: a stale sentinel
(the sentinel_stale toxic) first in ioredis's list through a failover, and every sentinel
unreachable (docs/deployments.md, "Sentinel faults").
FAULTLINE_DIRECT=1: the same against the deployments alone (see deployments.py), but for the
Sentinel faults (skipped).
"""

import json
import os
import queue
import re
import subprocess
import threading
import time

import pytest

from deployments import (DIRECT, Admin, Cluster, ClusterFront, SentinelFront, Sentinels,
                         cluster_guard, fronted, key_in_slot, key_slot, keys_in_slots, query,
                         sentinel_guard, wait_until)
from test_ioredis import HERE, node_modules  # noqa: F401 - the fixture that installs ioredis
from test_cluster import (keys_per_master, lost_writes, run_cluster_profiles,  # noqa: F401
                          slow_to_fail_cluster)
from test_sentinel import run_sentinel_profile


class NodeWriter:
    """tests/clients/ioredis/writer.js as a child process: its progress lines, its result."""

    def __init__(self, modules, cfg, env=None):
        env = dict(os.environ, NODE_PATH=modules, **(env or {}))
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "writer.js"), json.dumps(cfg)],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.acked = 0
        self.node = None  # with "trace": the listener of the last acknowledgement reported
        self.result = None
        self.marks = []
        self.mark_extras = {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                v = json.loads(line)
                if "ok" in v:
                    self.result = v
                elif "mark" in v:
                    self.marks.append(v["mark"])
                else:
                    self.acked = v["acked"]
                    self.node = v.get("node", self.node)

    def wait_acked(self, n, timeout=30):
        start = self.acked
        wait_until(lambda: self.acked >= start + n or self.proc.poll() is not None, timeout,
                   f"ioredis acknowledging {n} more writes")
        assert self.proc.poll() is None, self.proc.stderr.read()

    def mark(self):
        """(errors that reached the application, longest time without an acknowledgement in
        ms) since the last mark; the client's "error" events in mark_extras."""
        n = len(self.marks)
        self.proc.stdin.write("mark\n")
        self.proc.stdin.flush()
        wait_until(lambda: len(self.marks) > n or self.proc.poll() is not None, 10, "a mark")
        assert len(self.marks) > n, self.proc.stderr.read()
        m = self.marks[-1]
        self.mark_extras = {"error_events": len(m["events"]), "event_sample": m["events"][:3]}
        if m.get("unconfirmed"):
            self.mark_extras["unconfirmed"] = m["unconfirmed"]
        return m["errors"], m["longest_pause_ms"]

    def stop(self):
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        self.proc.wait(30)
        self.thread.join(10)
        assert self.result, f"writer.js printed no result:\n{self.proc.stderr.read()}"
        return self.result


@pytest.fixture
def cluster():
    yield from fronted(Cluster(), ClusterFront)


@pytest.fixture
def deployment():
    yield from fronted(Sentinels(), SentinelFront)


def test_ioredis_cluster_through_failover_and_migration_loses_no_write(cluster, node_modules):
    c, front = cluster
    src, dst = c.masters()[0], c.masters()[1]
    first = c.slots_of(src)[0][0]
    last = first + 15
    tags = ["{" + key_in_slot(s, prefix="mig") + "}" for s in range(first, last + 1)]
    with cluster_guard(c, front) as g:
        w = NodeWriter(node_modules, {"cluster": front.startup_nodes(), "tags": tags})
        try:
            w.wait_acked(200)
            replica = c.replica_of(c.masters()[2])
            c.failover(replica)
            w.wait_acked(200)
            c.migrate_slots(first, last, src, dst, pace=0.02, batch=20)
            w.wait_acked(200)
            g.check()
        finally:
            res = w.stop()
    assert not [e for e in res["errors"] if not e.startswith("event:")], res["errors"][:5]
    assert set(map(tuple, (n.rsplit(":", 1) for n in res["nodes"]))) <= \
        {(h, str(p)) for h, p in front.listeners()}, res["nodes"]
    owner = c.slot_owners()
    owners = {owner[key_slot(k)] for k in res["acked"]}
    assert owners == set(c.masters()), owners  # writes covered every master
    lost = lost_writes(c, res["acked"])
    assert not lost, f"{len(lost)} of {len(res['acked'])} acknowledged writes lost: {list(lost.items())[:5]}"


def test_ioredis_sentinels_follow_a_failover_and_lose_no_confirmed_write(deployment, node_modules):
    dep, front = deployment
    old = dep.master()
    with sentinel_guard(dep, front) as g:
        # Confirmed: WAIT 2 says both replicas have the write (see test_sentinel.py).
        w = NodeWriter(node_modules, {"sentinels": front.sentinels(), "name": dep.name, "wait": 2})
        try:
            w.wait_acked(50)
            new = dep.failover(settle=True)
            w.wait_acked(50)
            g.check()
        finally:
            res = w.stop()
    assert new != old
    # Where the client writes now: the new master's listener.
    assert res["nodes"] == ["%s:%d" % front.listener(new)], res["nodes"]
    with Admin(new) as a:
        lost = {k: v for k, v in res["acked"].items() if a.call("GET", k) != v}
    print(f"confirmed {len(res['acked'])}, unconfirmed {res['unconfirmed']}, "
          f"errors {res['errors'][:5]}")
    assert not lost, f"{len(lost)} of {len(res['acked'])} confirmed writes lost"


def test_ioredis_cluster_under_the_shipped_profiles_loses_no_write(cluster, node_modules):
    """cluster-failover then cluster-reshard as a user runs them (POST /profiles), ioredis's
    Cluster writing the keys of slots 0-99 meanwhile (see test_cluster.run_cluster_profiles)."""
    c, front = cluster
    figures = []
    with cluster_guard(c, front) as g:
        w = NodeWriter(node_modules, {"cluster": front.startup_nodes(),
                                      "tags": keys_in_slots(0, 99), "overwrite": True})
        try:
            w.wait_acked(300)
            try:
                run_cluster_profiles(c, front, w, "ioredis", figures)
            finally:
                print("\n".join(figures))
            g.check()
        finally:
            res = w.stop()
    assert set(map(tuple, (n.rsplit(":", 1) for n in res["nodes"]))) <= \
        {(h, str(p)) for h, p in front.listeners()}, res["nodes"]
    lost = lost_writes(c, res["acked"])
    assert not lost, f"{len(lost)} of {len(res['acked'])} acknowledged writes lost: {list(lost.items())[:5]}"


def test_ioredis_sentinels_under_the_shipped_profile_lose_no_confirmed_write(deployment,
                                                                             node_modules):
    """sentinel-failover as a user runs it (POST /profiles), ioredis with `sentinels` writing
    (SET then WAIT 2) meanwhile (see test_sentinel.run_sentinel_profile)."""
    dep, front = deployment
    figures = []
    with sentinel_guard(dep, front) as g:
        w = NodeWriter(node_modules, {"sentinels": front.sentinels(), "name": dep.name, "wait": 2})
        try:
            w.wait_acked(50)
            try:
                new, errors = run_sentinel_profile(dep, front, w, "ioredis", figures)
            finally:
                print("\n".join(figures))
            g.check()
        finally:
            res = w.stop()
    assert not errors, errors[:5]
    assert res["nodes"] == ["%s:%d" % front.listener(new)], res["nodes"]
    with Admin(new) as a:
        lost = {k: v for k, v in res["acked"].items() if a.call("GET", k) != v}
        gone = sum(1 for k, v in res["unconfirmed_keys"].items() if a.call("GET", k) != v)
    # What Redis itself did to the writes the old master took alone (reported, not asserted).
    print(f"UNCONFIRMED ioredis {res['unconfirmed']} unconfirmed, of which lost: {gone}")
    assert not lost, f"{len(lost)} of {len(res['acked'])} confirmed writes lost"


class NodeCluster:
    """tests/clients/ioredis/cluster_commands.js: ioredis's Cluster with its default options,
    one command at a time."""

    def __init__(self, modules, startup):
        env = dict(os.environ, NODE_PATH=modules)
        self.proc = subprocess.Popen(
            ["node", os.path.join(HERE, "cluster_commands.js"), json.dumps(startup)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(self, *args, timeout=60):
        """{"ok": reply} or {"error": "Class: message"}, with "ms" the time it took."""
        self.proc.stdin.write(json.dumps(list(args)) + "\n")
        self.proc.stdin.flush()
        out = {}

        def read():
            out["line"] = self.proc.stdout.readline()
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        assert out.get("line"), f"ioredis gave no answer in {timeout} s: " + \
            (self.proc.stderr.read() if self.proc.poll() is not None else "")
        return json.loads(out["line"])

    def until_ok(self, *args, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            r = self.call(*args)
            if "ok" in r:
                return r
            assert time.monotonic() < deadline, f"still failing after {timeout} s: {r}"
            time.sleep(0.2)

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def written_cluster(io, c):
    """{master port: a key it owns}, each written through ioredis."""
    keys = {m: ks[0] for m, ks in keys_per_master(c, n=1).items()}
    for k in keys.values():
        io.until_ok("SET", k, "v")
    return keys


def test_ioredis_cluster_node_down_fails_its_slots_only(slow_to_fail_cluster, node_modules):
    c, front = slow_to_fail_cluster
    io = NodeCluster(node_modules, front.startup_nodes())
    try:
        keys = written_cluster(io, c)
        down, up = list(keys)[:2]
        with front.node_down(down):
            r = io.call("GET", keys[down])
            print(f"ioredis, node down: {r}")
            assert "error" in r, r
            assert io.call("GET", keys[up])["ok"] == "v"
        r = io.until_ok("SET", keys[down], "after")
        print(f"ioredis, node back: {r}")
    finally:
        io.close()


def test_ioredis_cluster_partition_and_clusterdown(cluster, node_modules):
    """A master and its replica cut off, then healed; then the same master and replica really
    stopped: CLUSTERDOWN on every node. The cut is `bandwidth` rate 0 both ways: bytes are
    held, and delivered when it heals, as TCP's retransmissions would. (A `timeout` toxic drops
    them, as Toxiproxy's does: a stream with a gap no real network makes, after which ioredis's
    connection stays out of step, every command timing out, until it is closed.)"""
    c, front = cluster
    io = NodeCluster(node_modules, front.startup_nodes())
    try:
        keys = written_cluster(io, c)
        cut, spared = list(keys)[:2]
        if not front.direct:
            proxies = [front.api.proxy(front.proxy_name(p)) for p in (cut, c.replica_of(cut))]
            for p in proxies:
                for stream in ("upstream", "downstream"):
                    p.add_toxic("bandwidth", name=f"partition_{stream}", stream=stream, rate=0)
            try:
                r = io.call("GET", keys[cut])
                print(f"ioredis, partition: {r}")
                assert "error" in r, r
                assert io.call("GET", keys[spared])["ok"] == "v"
            finally:
                for p in proxies:
                    for stream in ("upstream", "downstream"):
                        p.remove_toxic(f"partition_{stream}")
            print(f"ioredis, healed: {io.until_ok('GET', keys[cut])}")
        c.stop_node(c.replica_of(cut))
        c.stop_node(cut)
        wait_until(lambda: "CLUSTERDOWN" in str(query(spared, "GET", keys[spared])), 30,
                   "the cluster going down")
        r = io.call("GET", keys[spared])
        print(f"ioredis, CLUSTERDOWN: {r}")
        # ioredis retries on CLUSTERDOWN (retryDelayOnClusterDown) and refreshes its slot map,
        # which may try the stopped nodes: its error names whichever came last.
        assert "error" in r and r["error"].startswith("Error: Too many Cluster redirections. "
                                                      "Last error: "), r
        assert "CLUSTERDOWN" in r["error"] or "Connection is closed" in r["error"], r
    finally:
        io.close()


needs_faultline = pytest.mark.skipif(DIRECT, reason="a fault of faultline's: nothing to compare "
                                     "with in FAULTLINE_DIRECT mode")


@needs_faultline
def test_a_stale_sentinel_first_ioredis_writes_to_the_old_master_then_finds_the_new(
        deployment, node_modules):
    """The sentinel_stale toxic on the first sentinel's proxy, then a real failover, then
    ioredis (`sentinels`, the stale one first) writing in a loop. It asks the first sentinel,
    which names the old master, and writes there: the old master acknowledges those writes
    until a sentinel demotes it, and they are lost (split brain). The demotion closes the
    connection (Sentinel's CLIENT KILL); ioredis reconnects asking the next sentinel in its
    list (its SentinelIterator is not rewound after a connect), which names the new master,
    though the stale toxic is still there; its role check (INFO, SentinelConnector.check)
    never sees the demoted master. Every write acknowledged by the new master is there.
    Which sentinel ioredis asked, from its own debug log (DEBUG=ioredis:SentinelConnector)."""
    dep, front = deployment
    old = dep.master()
    stale = front.api.proxy(front.proxy_name(dep.sentinel_ports[0]))
    stale.add_toxic("sentinel_stale", name="stale")
    t_failover = time.time() * 1000
    new = dep.failover(settle=False)  # the sentinels agree; the old master not demoted yet
    assert new != old
    old_l, new_l = ("%s:%d" % front.listener(p) for p in (old, new))
    with sentinel_guard(dep, front) as g:
        w = NodeWriter(node_modules, {"sentinels": front.sentinels(), "name": dep.name,
                                      "trace": True},
                       env={"DEBUG": "ioredis:SentinelConnector"})
        try:
            # A sentinel demotes the old master within ~10 s; then ioredis moves, or not.
            wait_until(lambda: w.node == new_l or w.proc.poll() is not None, 30,
                       "ioredis writing to the new master")
            w.wait_acked(50)
            g.check()
        finally:
            res = w.stop()
    log = [line for line in w.proc.stderr.read().splitlines() if "SentinelConnector" in line]
    timeline = res["timeline"]
    # Acknowledgements (a "host:port"), and errors: ioredis's events and rejected commands.
    acks = [e for e in timeline if re.fullmatch(r"[0-9.]+:[0-9]+", e[1])]
    errors = [e[:3] for e in timeline if e not in acks]
    nodes = [what for _, what, _, _ in acks]
    # The old master first (the stale sentinel's answer), then the new one, and nothing else.
    assert nodes[0] == old_l and nodes[-1] == new_l and set(nodes) == {old_l, new_l}, timeline
    assert nodes == [old_l, new_l], timeline  # once there, it stays
    assert query(old, "ROLE")[0] == "slave"  # it moved once the old master was demoted
    # Each acknowledged key with the listener that acknowledged it (both in order).
    keys = list(res["acked"])
    assert sum(n for _, _, n, _ in acks) == len(keys)
    on_old = keys[:acks[0][2]]
    on_new = keys[acks[0][2]:]
    with Admin(new) as a:
        lost = [k for k in on_old if a.call("GET", k) != res["acked"][k]]
        missing = [k for k in on_new if a.call("GET", k) != res["acked"][k]]
    first_new = acks[1][0]
    print(f"STALE ioredis: {len(on_old)} writes acknowledged by the old master after the "
          f"failover, {len(lost)} lost; last on the old master "
          f"{acks[0][3] - t_failover:.0f} ms after the failover began, first on the new "
          f"{first_new - t_failover:.0f} ms after; {len(on_new)} on the new master; errors "
          f"between: {errors[:5]}")
    assert on_old and len(lost) == len(on_old), \
        f"{len(on_old) - len(lost)} split-brain writes survived"  # all lost: split brain
    assert not missing, f"{len(missing)} of {len(on_new)} writes on the new master lost"
    assert [t["type"] for t in stale.toxics()] == ["sentinel_stale"]  # stale all along
    # Asked: the stale sentinel (the old master), then the second (the new); no role mismatch.
    first, second = ("%s:%d" % tuple(a) for a in front.sentinels()[:2])
    resolved = [line.split("resolved: ", 1)[1] for line in log if "resolved: " in line]
    assert resolved == [f"{old_l} from sentinel {first}", f"{new_l} from sentinel {second}"], log
    assert not [line for line in log if "role invalid" in line], log


@needs_faultline
def test_every_sentinel_unreachable_ioredis_open_connection_works_new_client_waits(
        deployment, node_modules):
    """Every sentinel's proxy disabled: an ioredis client already connected to the master
    keeps working (ioredis asks the sentinels only to connect); a new client cannot find the
    master: it emits "All sentinels are unreachable. Retrying from scratch after N ms" (N per
    sentinelRetryStrategy: 10, 20, ... up to 1000 ms) over and over, and its command waits in
    the offline queue (no error reaches it); with the sentinels back, the command completes."""
    dep, front = deployment
    env = dict(os.environ, NODE_PATH=node_modules)
    proc = subprocess.Popen(
        ["node", os.path.join(HERE, "sentinels_down.js"),
         json.dumps({"sentinels": front.sentinels(), "name": dep.name, "window_ms": 3000})],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    sentinels = [front.api.proxy(front.proxy_name(p)) for p in dep.sentinel_ports]
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put("")],
                     daemon=True).start()

    def step(cmd=None):
        if cmd:
            proc.stdin.write(cmd + "\n")
            proc.stdin.flush()
        line = lines.get(timeout=30)
        assert line, proc.stderr.read()
        return json.loads(line)

    try:
        with sentinel_guard(dep, front) as g:
            assert step() == {"open": "OK"}
            for p in sentinels:
                p.disable()
            try:
                down = step("down")
            finally:
                for p in sentinels:
                    p.enable()
            up = step("up")
            g.check()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"SENTINELS-DOWN ioredis: {down} then {up}")
    assert down["incr"] == 2  # the open connection to the master
    assert down["fresh_status"] == "connecting" and down["settled"] is None, down
    events = down["events"]
    assert events and all(m.startswith("All sentinels are unreachable. Retrying from scratch "
                                       "after") for _, m, _ in events), events
    assert sum(n for _, _, n in events) >= 5, events  # it keeps trying
    assert up["fresh"] == "OK" and up["get"] == "2", up
    assert up["after_ms"] < 5000, up
