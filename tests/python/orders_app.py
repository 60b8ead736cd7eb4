"""A small asyncio application of the kind faultline is for, written the way such services are:
an order service on redis.asyncio (Debian's python3-redis), behind a connection manager with a
circuit breaker, reconnects with exponential backoff and a health check, and a client name.

    manager = RedisManager("redis://127.0.0.1:6381", client_name="app")
    await manager.start()
    service = OrderService(manager)
    await service.place("o-1")          # True: acknowledged; raises when it is not

The manager knows which failures are ambiguous. A command that failed while connecting (refused,
reset during the handshake, the pool's stale connection) was never sent: it may be sent again.
A command that failed after it was written (reset, timeout, connection closed before the reply)
may or may not have run: the well-behaved manager never sends it again (the caller gets
Ambiguous and decides, e.g. places a new order), while the deliberately broken variant
(`RedisManager.broken(...)`: no backoff, no breaker, resends ambiguous commands at once) does
what too many clients do.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import redis.asyncio as aredis
from redis.exceptions import (BusyLoadingError, ConnectionError, ReadOnlyError, ResponseError,
                              TimeoutError)


class Unavailable(Exception):
    """The call was not attempted: the breaker is open, or the manager waits out a backoff."""


class Ambiguous(Exception):
    """The command was written but its reply never came: it may or may not have run."""


class Rejected(Exception):
    """Redis answered with an error (LOADING, READONLY...): the command did not run."""


@dataclass
class Backoff:
    """Delay before attempt n+1 after n consecutive failures: base * factor**(n-1), capped."""
    base: float = 0.05
    factor: float = 2.0
    cap: float = 1.0

    def delay(self, failures: int) -> float:
        return min(self.cap, self.base * self.factor ** max(0, failures - 1))


@dataclass
class Breaker:
    """Closed: calls go through. After `threshold` consecutive failures it opens: calls fail at
    once (Unavailable) and only the health check probes Redis, each probe after the backoff's
    next delay (half-open while it runs). A good probe (or call) closes it."""
    threshold: int = 3
    state: str = "closed"
    transitions: List[Tuple[float, str, str]] = field(default_factory=list)

    def set(self, state: str, reason: str = "") -> None:
        if state != self.state:
            self.state = state
            self.transitions.append((time.monotonic(), state, reason))

    def opened_for(self) -> List[str]:
        """The reasons it opened for, in order."""
        return [r for _, s, r in self.transitions if s == "open"]


def classify(exc: BaseException) -> str:
    """refused, timeout, reset, closed or error: what kind of failure a call met (from the
    exception and its causes; redis-py wraps the socket's error in its own)."""
    chain, e = [], exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
            return "timeout"
        if isinstance(e, ConnectionRefusedError):
            return "refused"
        if isinstance(e, ConnectionResetError):
            return "reset"
    text = " ".join(str(e).lower() for e in chain)
    for word, kind in (("timeout", "timeout"), ("timed out", "timeout"), ("refused", "refused"),
                       ("reset by peer", "reset"), ("connection reset", "reset"),
                       ("closed", "closed")):
        if word in text:
            return kind
    return "error"


class RedisManager:
    def __init__(self, url: str, *, client_name: str = "app", backoff: Optional[Backoff] = None,
                 threshold: int = 3, socket_timeout: float = 0.5, health_interval: float = 0.5,
                 resend_ambiguous: bool = False, resend_limit: int = 3):
        self.redis = aredis.Redis.from_url(
            url, client_name=client_name, socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout, retry_on_timeout=False)
        self.pool = self.redis.connection_pool
        self.backoff = backoff
        self.breaker = Breaker(threshold=threshold)
        self.health_interval = health_interval
        self.resend_ambiguous = resend_ambiguous
        self.resend_limit = resend_limit
        self.failures = 0           # consecutive failures
        self.retry_at = 0.0         # no attempt before this (loop time)
        self.generation = 0         # bumped by each counted failure
        self.probes = itertools.count(1)
        self.failure_kinds: List[str] = []
        self.resent = 0             # ambiguous commands sent again (the broken variant only)
        self._trial = False
        self._health: Optional[asyncio.Task] = None
        self._wake = asyncio.Event()
        self._closing = False

    @classmethod
    def broken(cls, url: str, **kw) -> "RedisManager":
        """No backoff, no breaker, and ambiguous commands sent again at once."""
        return cls(url, backoff=None, threshold=10 ** 9, resend_ambiguous=True, **kw)

    async def start(self) -> None:
        self._health = asyncio.create_task(self._health_loop(), name="redis-health")

    async def close(self) -> None:
        # The flag, not only the cancel: Python 3.11's wait_for can swallow a cancellation that
        # arrives as the event it waits for is set, and the health loop would go on.
        self._closing = True
        self._wake.set()
        if self._health:
            self._health.cancel()
            await asyncio.wait({self._health}, timeout=5)
        await self.pool.disconnect()

    # -- calls --

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _admit(self, probe: bool) -> int:
        if self.breaker.state == "open" and not probe:
            raise Unavailable("circuit open")
        if self.failures and self.backoff is not None:
            if self._now() < self.retry_at or self._trial:
                raise Unavailable("backing off")
            self._trial = True  # one trial at a time while failing
        return self.generation

    def _failed(self, generation: int, exc: BaseException) -> None:
        if generation != self.generation:
            return  # another call already counted this incident
        self.generation += 1
        self.failures += 1
        kind = classify(exc)
        self.failure_kinds.append(kind)
        self.retry_at = self._now() + (self.backoff.delay(self.failures) if self.backoff else 0)
        if self.failures >= self.breaker.threshold:
            self.breaker.set("open", kind)
        self._wake.set()

    def _succeeded(self) -> None:
        self.failures = 0
        self.breaker.set("closed", "ok")

    async def execute(self, *args, probe: bool = False):
        """Runs one command. Raises Unavailable (not attempted), Rejected (an error reply),
        Ambiguous (written, no reply; the good manager never resends it), or the connect
        failure (never sent)."""
        attempt = 0
        while True:
            generation = self._admit(probe)
            try:
                return await self._once(args, generation)
            except Ambiguous:
                attempt += 1
                if not self.resend_ambiguous or attempt > self.resend_limit:
                    raise
                self.resent += 1
            finally:
                self._trial = False

    async def _once(self, args, generation: int):
        try:
            conn = await self.pool.get_connection(args[0])
        except (ConnectionError, TimeoutError, OSError) as e:
            self._failed(generation, e)  # connect or handshake failed: nothing was sent
            raise
        try:
            try:
                await conn.send_command(*args)
                reply = await conn.read_response()
            except (BusyLoadingError, ResponseError) as e:
                if isinstance(e, (BusyLoadingError, ReadOnlyError)):
                    self._failed(generation, e)  # Redis is not available for this: back off
                if isinstance(e, ReadOnlyError):
                    await conn.disconnect()  # a replica now: the next try reconnects (to the
                    #                          new primary, behind a load balancer or Sentinel)
                raise Rejected(f"{type(e).__name__}: {e}") from e
            except (ConnectionError, TimeoutError, OSError) as e:
                await conn.disconnect()
                self._failed(generation, e)
                raise Ambiguous(f"{args[0]} {classify(e)}: {e}") from e
        finally:
            await self.pool.release(conn)
        self._succeeded()
        return reply

    # -- health --

    async def _health_loop(self) -> None:
        """Probes Redis with PING <token> (checking the echo): when the breaker is open, once
        each backoff delay (that is the reconnect backoff while Redis is away), else every
        health_interval."""
        while not self._closing:
            if self.breaker.state == "open":
                wait = max(0.0, self.retry_at - self._now())
            else:
                wait = self.health_interval
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
                continue  # state changed (or closing): recompute the wait
            except asyncio.TimeoutError:
                pass
            if not self._closing:
                await self.probe()

    async def probe(self) -> bool:
        token = f"hc-{next(self.probes)}"
        try:
            reply = await self.execute("PING", token, probe=True)
        except (Unavailable, Ambiguous, Rejected, ConnectionError, TimeoutError, OSError):
            return False
        return reply in (token.encode(), token)


class OrderService:
    """Places orders: RPUSH orders <id>, which is not idempotent (a resend duplicates it).
    `acked` holds the ids Redis acknowledged; `unknown` the ambiguous ones."""

    KEY = "orders"

    def __init__(self, manager: RedisManager):
        self.manager = manager
        self.acked: List[str] = []
        self.unknown: List[str] = []
        self.failed = 0

    async def place(self, order_id: str) -> bool:
        await self.manager.execute("RPUSH", self.KEY, order_id)
        self.acked.append(order_id)
        return True


class Workload:
    """`workers` tasks placing orders every `pace` seconds until stopped. A call that was not
    attempted, or was rejected, is tried again with the same id (it did not run); an ambiguous
    one is left (the well-behaved app) and the worker moves on to a new order."""

    def __init__(self, service: OrderService, workers: int = 4, pace: float = 0.02):
        self.service, self.workers, self.pace = service, workers, pace
        self.ids = itertools.count(1)
        self._tasks: List[asyncio.Task] = []
        self._stop = False
        self.errors: List[str] = []

    async def __aenter__(self) -> "Workload":
        self._tasks = [asyncio.create_task(self._run(w)) for w in range(self.workers)]
        return self

    async def __aexit__(self, *exc) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)

    async def _run(self, worker: int) -> None:
        order = None
        while not self._stop:
            order = order or f"w{worker}-{next(self.ids)}"
            try:
                await self.service.place(order)
                order = None
            except Ambiguous:
                self.service.unknown.append(order)
                order = None
            except (Unavailable, Rejected, ConnectionError, TimeoutError, OSError) as e:
                self.service.failed += 1
                self.errors.append(type(e).__name__)
            await asyncio.sleep(self.pace)

    async def wait_acked(self, n: int, timeout: float = 10.0) -> None:
        """Until n more orders than now are acknowledged."""
        target = len(self.service.acked) + n
        deadline = time.monotonic() + timeout
        while len(self.service.acked) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.service.acked)} of {target} orders "
                                     f"acknowledged after {timeout} s; errors {self.errors[-5:]}")
            await asyncio.sleep(0.01)
