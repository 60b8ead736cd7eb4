"""redis-py against faultline: what the client sees, and what faultline's verdicts recorded.

Outages are short (1-2 s) and every wait is bounded; timing checks are generous, since CI
machines are slow and shared.
"""

import threading
import time

import pytest
import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry


def client(proxy, **kw):
    opts = dict(socket_timeout=5, socket_connect_timeout=2)
    opts.update(kw)
    return redis.Redis(host=proxy.host, port=proxy.port, **opts)


def retrying(proxy, base, cap, retries, **kw):
    # redis-py 4.3 needs cap and base; with retry_on_error, BusyLoadingError (a ConnectionError)
    # is retried too. Backoff after failure n: min(cap, base * 2**n).
    return client(proxy, retry=Retry(ExponentialBackoff(cap=cap, base=base), retries),
                  retry_on_error=[ConnectionError], **kw)


def later(seconds, fn):
    t = threading.Timer(seconds, fn)
    t.start()
    return t


def close_to(measured, expected, rel=0.5, late_ms=200):
    # Load only delays a client's timers: never much early, but late by up to late_ms on a
    # loaded 2-core machine.
    return expected * (1 - rel) <= measured <= expected * (1 + rel) + late_ms


def test_outage_shorter_than_the_retry_budget_is_invisible(faultline_proxy):
    r = retrying(faultline_proxy, base=0.05, cap=0.8, retries=6)  # 0.1+0.2+0.4+0.8+0.8+0.8 s
    r.set("k", "v")
    toxic = faultline_proxy.add_toxic("reset_peer", stream="upstream", timeout=0)
    lift = later(1.0, lambda: faultline_proxy.remove_toxic(toxic["name"]))
    t0 = time.monotonic()
    assert r.get("k") == b"v"  # the caller never sees the outage
    elapsed = time.monotonic() - t0
    lift.join()
    assert 0.9 <= elapsed <= 4.0

    v = faultline_proxy.wait_clients(
        lambda v: v["windows"] and v["windows"][-1]["time_to_recover_ms"] is not None)
    w = v["windows"][-1]
    assert w["faults"] == [toxic["name"]]
    # The client came back within its next backoff step (at most 0.8 s) of the fault's end.
    assert w["time_to_recover_ms"] < 1500
    assert w["failed_connections"] >= 3
    assert w["backoff"] in ("growing", "irregular")
    assert v["resends"]["by_command"].get("GET", 0) >= 3


def test_outage_longer_than_the_budget_raises_and_backoff_grows(faultline_proxy):
    r = retrying(faultline_proxy, base=0.05, cap=1.0, retries=3)  # waits 0.1, 0.2, 0.4 s
    r.set("k", "v")
    with faultline_proxy.reset_peer():
        t0 = time.monotonic()
        with pytest.raises(ConnectionError):
            r.get("k")
        elapsed = time.monotonic() - t0
    assert 0.6 <= elapsed <= 3.0

    v = faultline_proxy.wait_clients(lambda v: len(v["reconnect_intervals_ms"]) >= 3)
    intervals = v["reconnect_intervals_ms"][-3:]
    assert v["backoff"] == "growing", intervals
    for measured, expected in zip(intervals, (100, 200, 400)):
        assert close_to(measured, expected), intervals
    assert v["connects"]["failed"] >= 4  # the first connection, then one per retry


class Breaker:
    """A small circuit breaker: opens after `threshold` consecutive failures, lets one trial
    call through after `cooldown` seconds (half-open), closes again when it succeeds."""

    def __init__(self, threshold=3, cooldown=0.4):
        self.threshold, self.cooldown = threshold, cooldown
        self.state, self.failures, self.opened_at = "closed", 0, 0.0
        self.transitions = []  # (monotonic time, new state)

    def _set(self, state):
        if state != self.state:
            self.state = state
            self.transitions.append((time.monotonic(), state))

    def call(self, fn):
        if self.state == "open":
            if time.monotonic() - self.opened_at < self.cooldown:
                raise RuntimeError("circuit open")
            self._set("half-open")
        try:
            result = fn()
        except (ConnectionError, TimeoutError):
            self.failures += 1
            if self.state == "half-open" or self.failures >= self.threshold:
                self.opened_at = time.monotonic()
                self._set("open")
            raise
        self.failures = 0
        self._set("closed")
        return result


def test_circuit_breaker_follows_the_outage_profile(faultline_proxy, faultline_api):
    r = client(faultline_proxy, socket_connect_timeout=0.5)
    r.set("k", "v")
    breaker = Breaker()
    # The shipped `outage` profile (10 s down) run 5 times faster: down from 0 s to 2 s.
    speed = 5.0
    t_start = time.monotonic()
    with faultline_api.profile("outage", speed=speed, wait=True) as report:
        name = report["name"]
        while time.monotonic() - t_start < 3.5:
            try:
                breaker.call(lambda: r.get("k"))
            except (RuntimeError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
    t_end_fault = t_start + 10.0 / speed
    states = [s for _, s in breaker.transitions]
    assert states[0] == "open", breaker.transitions
    opened = breaker.transitions[0][0]
    assert opened - t_start < 1.0  # three failures, 50 ms apart
    # Every trial during the outage failed: half-open went back to open until the end.
    closed = [t for t, s in breaker.transitions if s == "closed"]
    assert closed, breaker.transitions
    assert closed[0] >= t_end_fault - 0.2
    assert closed[0] - t_end_fault < breaker.cooldown + 1.0
    assert "half-open" in states
    assert breaker.state == "closed"
    assert faultline_api.profile_report(name)

    v = faultline_proxy.clients()
    w = [w for w in v["windows"] if "disabled" in w["faults"]][-1]
    assert w["end_ms"] - w["start_ms"] == pytest.approx(2000, abs=400)
    # faultline measured the breaker's recovery: its first trial after the end.
    assert w["time_to_recover_ms"] is not None
    assert w["time_to_recover_ms"] < (breaker.cooldown + 1.0) * 1000


def test_loading_is_retried(faultline_proxy):
    r = retrying(faultline_proxy, base=0.01, cap=0.1, retries=10)
    r.set("k", "v")
    with faultline_proxy.redis_error("loading", commands=["GET"], first=3):
        assert r.get("k") == b"v"  # BusyLoadingError three times, then the value
    # Retries after an error reply: Redis ran nothing, so they are no resends.
    v = faultline_proxy.wait_clients(lambda v: v["resends"]["after_errors"] >= 3)
    assert v["resends"]["total"] == 0
    assert all(x["reason"] == "injected LOADING" and x["cut_off"] is False
               for x in v["resends"]["recent"])


def test_blackhole_raises_timeout_within_socket_timeout(faultline_proxy):
    r = redis.Redis(host=faultline_proxy.host, port=faultline_proxy.port, socket_timeout=0.5)
    r.set("k", "v")
    with faultline_proxy.blackhole():
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            r.get("k")
        elapsed = time.monotonic() - t0
    assert 0.45 <= elapsed <= 1.5
    v = faultline_proxy.clients()
    assert v["windows"][-1]["faults"] == ["timeout_upstream"]


def test_reset_after_incr_shows_the_double_increment(faultline_proxy):
    r = retrying(faultline_proxy, base=0.01, cap=0.1, retries=3)
    r.set("counter", 0)
    # redis-py's incr() sends INCRBY.
    with faultline_proxy.redis_reset(phase="after", commands=["INCR", "INCRBY"], first=1):
        # Redis ran the INCR, the reply was lost, redis-py sent it again: one call, two
        # increments. An idempotency bug, shown.
        assert r.incr("counter") == 2
    assert r.get("counter") == b"2"
    v = faultline_proxy.wait_clients(lambda v: v["resends"]["total"] >= 1)
    assert v["resends"]["by_command"] == {"INCRBY": 1}
    resend = v["resends"]["recent"][-1]
    assert resend["reason"] == "toxic"
    assert resend["same_connection"] is False


def test_handshake_is_replayed_on_each_connection(faultline_proxy):
    r = client(faultline_proxy, client_name="checkout", db=2,
               retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
               retry_on_error=[ConnectionError])
    r.set("k", "v")
    faultline_proxy.drop_connections()
    assert r.get("k") == b"v"
    v = faultline_proxy.wait_clients(lambda v: v["handshake"]["connections"] >= 2)
    assert v["handshake"]["commands"] == {"CLIENT SETNAME": 2, "SELECT 2": 2}
    assert v["handshake"]["recent"][-1]["commands"] == ["CLIENT SETNAME", "SELECT 2"]
