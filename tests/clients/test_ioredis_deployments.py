"""ioredis (npm) against a whole Redis Cluster and a Sentinel deployment through faultline's
cluster and sentinel modes (issue 21): writes in a loop through a real failover and a real slot
migration (cluster) or a real SENTINEL FAILOVER (sentinel); every acknowledged write is in the
deployment afterwards, and no connection of the client ever reached a real node. The same under
the shipped profiles cluster-failover, cluster-reshard and sentinel-failover, started through
faultline's API (test_cluster.run_cluster_profiles, test_sentinel.run_sentinel_profile).
FAULTLINE_DIRECT=1: the same against the deployments alone (see deployments.py).
"""

import json
import os
import subprocess
import threading
import time

import pytest

from deployments import (Admin, Cluster, ClusterFront, SentinelFront, Sentinels, cluster_guard,
                         fronted, key_in_slot, key_slot, keys_in_slots, query, sentinel_guard,
                         wait_until)
from test_ioredis import HERE, node_modules  # noqa: F401 - the fixture that installs ioredis
from test_cluster import lost_writes, run_cluster_profiles
from test_sentinel import run_sentinel_profile


class NodeWriter:
    """tests/clients/ioredis/writer.js as a child process: its progress lines, its result."""

    def __init__(self, modules, cfg):
        env = dict(os.environ, NODE_PATH=modules)
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "writer.js"), json.dumps(cfg)],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.acked = 0
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


@pytest.fixture
def slow_to_fail_cluster():
    # node-timeout 60 s: a node behind a disabled proxy (or killed, direct) is not failed over
    # during the test.
    yield from fronted(Cluster(extra=["--cluster-node-timeout", "60000"]), ClusterFront)


def per_master_keys(c):
    return {m: key_in_slot(c.slots_of(m)[0][0], prefix=f"io{m}-") for m in c.masters()}


def test_ioredis_cluster_node_down_fails_its_slots_only(slow_to_fail_cluster, node_modules):
    c, front = slow_to_fail_cluster
    io = NodeCluster(node_modules, front.startup_nodes())
    try:
        keys = per_master_keys(c)
        for k in keys.values():
            io.until_ok("SET", k, "v")
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
        keys = per_master_keys(c)
        for k in keys.values():
            io.until_ok("SET", k, "v")
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
        assert "error" in r and "CLUSTERDOWN" in r["error"], r
    finally:
        io.close()
