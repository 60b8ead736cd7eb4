"""redis-py's Sentinel against a real Sentinel deployment (one master, two replicas, three
sentinels) through faultline's sentinel mode (issue 21): master_for/slave_for through the
sentinels' listeners, a real SENTINEL FAILOVER while writing, a sentinel down; and no client
connection ever reaching a real node or sentinel. The shipped profile sentinel-failover, started
through faultline's API as a user starts it, while the client writes (run_sentinel_profile,
shared with ioredis's test; a PROFILE-FIGURES line for docs/deployments.md).

FAULTLINE_DIRECT=1 runs the same tests against the deployment itself (no faultline).

"Acknowledged" for a write here is SET answered OK and then WAIT 2 answered 2 (both replicas
have it): Sentinel's failover promotes a replica without waiting for it to catch up, and the
old master accepts writes until a sentinel demotes it (up to ~10 s later), so a write only the
master had is lost by Redis itself, with or without faultline. What the test asks is that no
write the deployment confirmed as replicated is lost, and that the client moves to the new
master.
"""

import time

import pytest
import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from deployments import (DIRECT, Admin, BackgroundWriter, DeploymentProfile, SentinelFront,
                         Sentinels, fronted, query, sentinel_guard, wait_until)


@pytest.fixture
def deployment():
    yield from fronted(Sentinels(), SentinelFront)


def sentinel_client(front, **kw):
    opts = dict(socket_timeout=2, socket_connect_timeout=1)
    opts.update(kw)
    return Sentinel(front.sentinels(), sentinel_kwargs=dict(opts), **opts)


def retrying_master(s, name):
    # The documented way to ride over a failover: retries on connection errors (a killed
    # connection, or READONLY, which the Sentinel connection turns into a ConnectionError),
    # each reconnect asking the sentinels for the master again.
    return s.master_for(name, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 10),
                        retry_on_error=[ConnectionError, TimeoutError])


guard = sentinel_guard


class Writer(BackgroundWriter):
    """SET w:<i> <i>, then WAIT 2 1000, in a loop; a write is confirmed when WAIT says both
    replicas have it."""

    def __init__(self, r):
        self.r = r
        self.confirmed = {}
        self.unconfirmed = {}
        self.confirmed_at = []  # monotonic time of each confirmation, in order
        self._mark = time.monotonic()
        super().__init__()

    def run(self):
        i = 0
        while not self.stop.is_set():
            key = f"w:{i}"
            try:
                if self.r.set(key, str(i)):
                    if self.r.execute_command("WAIT", 2, 1000) >= 2:
                        self.confirmed[key] = str(i)
                        self.confirmed_at.append(time.monotonic())
                    else:
                        self.unconfirmed[key] = str(i)
            except Exception as e:  # noqa: BLE001 - recorded, the test asserts on it
                self.errors.append((time.monotonic(), repr(e)))
            i += 1

    def wait_confirmed(self, n, timeout=30):
        self.wait_grown(self.confirmed, n, timeout)

    wait_acked = wait_confirmed

    def mark(self):
        """(errors, longest time without a confirmation in ms) since the last mark; the writes
        the master acknowledged but WAIT did not confirm, in mark_extras."""
        now = time.monotonic()
        t0, self._mark = self._mark, now
        n = len(self.unconfirmed)
        self.mark_extras = {"unconfirmed": n - getattr(self, "_unconfirmed", 0)}
        self._unconfirmed = n
        inside = [t0] + [t for t in self.confirmed_at if t0 <= t <= now]
        pause = max((b - a for a, b in zip(inside, inside[1:] + [now])), default=now - t0)
        return [e for t, e in self.errors if t0 <= t <= now], round(1000 * pause)


def test_master_and_replicas_through_the_sentinels_listeners(deployment):
    dep, front = deployment
    with guard(dep, front) as g:
        s = sentinel_client(front)
        assert s.discover_master(dep.name) == front.listener(dep.master())
        replicas = set(s.discover_slaves(dep.name))
        assert replicas == {front.listener(p) for p in dep.replicas()}, replicas
        master = s.master_for(dep.name)
        for i in range(50):
            assert master.set(f"k{i}", f"v{i}")
        assert master.execute_command("WAIT", 2, 5000) == 2
        replica = s.slave_for(dep.name)
        for i in range(50):
            assert master.get(f"k{i}") == f"v{i}".encode()
            assert replica.get(f"k{i}") == f"v{i}".encode()
        assert replica.info("replication")["role"] == "slave"
        g.check()
        master.close()
        replica.close()


class Events(BackgroundWriter):
    """Sentinel's events (PSUBSCRIBE *) as a client reads them through one sentinel's listener:
    (channel, payload) in order."""

    def __init__(self, host, port):
        self.r = redis.Redis(host=host, port=port, socket_timeout=5)
        self.p = self.r.pubsub()
        self.p.psubscribe("*")
        self.got = []
        super().__init__()

    def run(self):
        while not self.stop.is_set():
            try:
                m = self.p.get_message(timeout=0.2)
            except Exception as e:  # noqa: BLE001 - recorded, the test asserts on it
                self.errors.append((time.monotonic(), repr(e)))
                return
            if m and m["type"] == "pmessage":
                self.got.append((m["channel"].decode(), m["data"].decode()))

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.p.close()
        self.r.close()


def test_sentinel_failover_while_writing_client_follows_and_no_confirmed_write_is_lost(deployment):
    dep, front = deployment
    old = dep.master()
    s = sentinel_client(front)
    master = retrying_master(s, dep.name)
    with guard(dep, front) as g, Writer(master) as w, Events(*front.sentinels()[0]) as ev:
        w.wait_confirmed(50)
        new = dep.failover(settle=True)  # until the old master is demoted, its clients cut off
        w.wait_confirmed(50)
        g.check()
    assert new != old
    # Sentinel's events name listeners only: +switch-master the old and new master's.
    assert not ev.errors, ev.errors
    switch = [p.split() for c, p in ev.got if c == "+switch-master"]
    assert switch, f"no +switch-master among {len(ev.got)} events: {ev.got[:10]}"
    name, oh, op, nh, np_ = switch[-1]
    assert (name, (oh, int(op)), (nh, int(np_))) == \
        (dep.name, front.listener(old), front.listener(new)), switch
    if not front.direct:
        real = {str(p) for p in dep.sentinel_ports + dep.data_ports}
        named = [(c, p) for c, p in ev.got
                 if real & set(p.replace(":", " ").replace(",", " ").split())]
        assert not named, f"events name real nodes: {named[:5]}"
    assert not w.errors, w.errors[:5]
    # The client moved: it now writes to the new master, through its listener.
    assert s.discover_master(dep.name) == front.listener(new)
    assert master.connection_pool.get_master_address() == front.listener(new)
    with Admin(new) as a:
        lost = {k: (v, a.call("GET", k)) for k, v in w.confirmed.items() if a.call("GET", k) != v}
        gone = sum(1 for k, v in w.unconfirmed.items() if a.call("GET", k) != v)
    # What Redis itself did to writes it did not confirm (reported, not asserted).
    print(f"confirmed {len(w.confirmed)}, unconfirmed {len(w.unconfirmed)} "
          f"(of which lost: {gone}), errors {len(w.errors)}")
    assert not lost, f"{len(lost)} of {len(w.confirmed)} confirmed writes lost: {list(lost.items())[:5]}"
    # The last confirmed writes were made on the new master: its replicas (the old master
    # among them) hold them too.
    last = max(w.confirmed, key=lambda k: int(k[2:]))
    assert query(old, "GET", last) == w.confirmed[last]
    master.close()


def run_sentinel_profile(dep, front, writer, client_name, figures):
    """The shipped sentinel-failover, started through faultline's API (or, direct, the same
    SENTINEL FAILOVER made by the fixture) while `writer` (SET then WAIT 2 in a loop, through
    the client under test) writes; checks that the master really changed and that the
    profile's [expect] passed. `writer` has mark() -> (errors, longest pause ms) since the last
    mark and wait_acked(n). Appends the profile's figures (docs/deployments.md) to `figures`;
    returns the new master's port."""
    old = dep.master()
    writer.mark()
    with DeploymentProfile(front, "sentinel-failover", lambda: dep.failover(settle=False),
                           lambda: dep.data_ports) as p:
        p.wait_action()
        # Settled: every sentinel names the new master, the old one replicates from it.
        new = wait_until(lambda: dep.master() != old and dep.ready() and dep.master(), 60,
                         "the failover settled")
        writer.wait_acked(50)  # and on after it
    errors, pause = writer.mark()
    figures.append(p.figures(client_name, errors=len(errors), error_sample=errors[:3],
                             longest_pause_ms=pause, **getattr(writer, "mark_extras", {})))
    # The failover really happened: ROLE on both, and the real sentinels name the new master.
    assert new != old
    assert query(new, "ROLE")[0] == "master"
    role = query(old, "ROLE")
    assert role[0] == "slave" and int(role[2]) == new, role
    assert all(dep.master_by(s) == new for s in dep.sentinel_ports)
    assert not p.failed_verdicts(), p.verdicts()
    return new, errors


def test_shipped_sentinel_failover_profile_while_writing_loses_no_confirmed_write(deployment):
    """sentinel-failover as a user runs it (POST /profiles of the shipped file) while redis-py's
    Sentinel client (retrying master_for) writes: the client follows to the new master through
    faultline, no confirmed write is lost, the verdicts pass."""
    dep, front = deployment
    s = sentinel_client(front)
    master = retrying_master(s, dep.name)
    figures = []
    with guard(dep, front) as g, Writer(master) as w:
        w.wait_confirmed(50)
        try:
            new, errors = run_sentinel_profile(dep, front, w, "redis-py", figures)
        finally:
            print("\n".join(figures))
        g.check()
    assert not errors, errors[:5]
    assert master.connection_pool.get_master_address() == front.listener(new)
    with Admin(new) as a:
        lost = {k: (v, a.call("GET", k)) for k, v in w.confirmed.items() if a.call("GET", k) != v}
        gone = sum(1 for k, v in w.unconfirmed.items() if a.call("GET", k) != v)
    # What Redis itself did to the writes the old master took alone (reported, not asserted).
    print(f"UNCONFIRMED redis-py {len(w.unconfirmed)} unconfirmed, of which lost: {gone}")
    assert not lost, f"{len(lost)} of {len(w.confirmed)} confirmed writes lost: {list(lost.items())[:5]}"
    master.close()


def test_a_sentinel_down_the_client_asks_the_next(deployment):
    dep, front = deployment
    first = dep.sentinel_ports[0]
    s = sentinel_client(front)
    if front.direct:
        dep.sentinels[0].kill()
    else:
        front.api.proxy(front.proxy_name(first)).disable()
    try:
        # redis-py asks the sentinels in turn and skips one it cannot reach.
        assert s.discover_master(dep.name) == front.listener(dep.data_ports[0])
        master = s.master_for(dep.name)
        assert master.set("k", "v") and master.get("k") == b"v"
        master.close()
    finally:
        if not front.direct:
            front.api.proxy(front.proxy_name(first)).enable()


needs_faultline = pytest.mark.skipif(DIRECT, reason="a fault of faultline's: nothing to compare "
                                     "with in FAULTLINE_DIRECT mode")


@needs_faultline
def test_a_stale_sentinel_keeps_redis_py_on_the_old_master(deployment):
    """The sentinel_stale toxic on the first sentinel's proxy, then a real failover. redis-py
    asks the sentinels in order and keeps the first that answers: the stale one names the old
    master, so the client writes there. Until a sentinel demotes it the old master accepts
    those writes, and they are lost (split brain as the client sees it); after, every write
    fails with "The previous master is now a slave", on every retry, until the sentinel
    catches up (the toxic removed)."""
    dep, front = deployment
    old = dep.master()
    stale = front.api.proxy(front.proxy_name(dep.sentinel_ports[0]))
    stale.add_toxic("sentinel_stale", name="stale")
    new = dep.failover(settle=False)  # the sentinels agree; the old master not demoted yet
    assert new != old
    s = sentinel_client(front)
    with guard(dep, front) as g:
        assert s.discover_master(dep.name) == front.listener(old)
        master = s.master_for(dep.name)
        acked, failures = [], []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            key = f"sb:{len(acked) + len(failures)}"
            try:
                if master.set(key, "x"):
                    acked.append(key)
            except ConnectionError as e:
                failures.append(str(e))
                if len(failures) >= 3:
                    break
            time.sleep(0.02)
        g.check()
    print(f"split brain: {len(acked)} writes acknowledged by the old master after the failover; "
          f"then {failures[:1]}")
    assert len(failures) >= 3, f"the old master still took writes after 30 s ({len(acked)})"
    assert all("previous master is now a slave" in f for f in failures), failures
    # Still told the old master while the sentinel is stale.
    assert s.discover_master(dep.name) == front.listener(old)
    # What the old master acknowledged is on neither master: lost.
    with Admin(new) as a:
        assert all(a.call("GET", k) is None for k in acked), "a split-brain write survived"
    stale.remove_toxic("stale")
    assert s.discover_master(dep.name) == front.listener(new)
    assert master.set("after", "1") and master.get("after") == b"1"
    master.close()


@needs_faultline
def test_every_sentinel_unreachable_open_connections_work_new_ones_cannot_find_the_master(
        deployment):
    """Every sentinel's proxy disabled: a client already connected to the master keeps working
    (redis-py asks the sentinels only to connect); a new one gets MasterNotFoundError; with the
    sentinels back, it connects."""
    dep, front = deployment
    s = sentinel_client(front)
    master = s.master_for(dep.name)
    assert master.set("k", "1")
    sentinels = [front.api.proxy(front.proxy_name(p)) for p in dep.sentinel_ports]
    for p in sentinels:
        p.disable()
    try:
        assert master.incr("k") == 2  # the pooled connection to the master
        fresh = sentinel_client(front)
        with pytest.raises(MasterNotFoundError):
            fresh.discover_master(dep.name)
    finally:
        for p in sentinels:
            p.enable()
    assert fresh.master_for(dep.name).get("k") == b"2"
    master.close()
