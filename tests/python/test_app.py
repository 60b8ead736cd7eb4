"""The realistic application (orders_app.py: redis.asyncio behind a manager with a circuit breaker,
reconnect backoff, health checks and client_name="app") tested through the installed plugin:

- its breaker opens on refusals, timeouts and resets, and closes once Redis is back;
- across the shipped outage, failover and reset-storm profiles (sped up) no acknowledged write
  is lost and none is applied twice, and the profiles' verdicts pass (the marker fails the test
  otherwise);
- the same verdicts fail for the deliberately broken variant (no backoff, ambiguous commands
  sent again).

Everything runs while the application's tasks keep running: the faults and profiles are driven
through faultline.aio, which never blocks the loop.
"""

import asyncio

import pytest
import pytest_asyncio

from conftest import wait_for
from orders_app import Backoff, OrderService, RedisManager, Workload

# What a well-behaved client must show under each shipped profile (added to the profile's own
# [expect], if it declares one): recovery within 2 s of the last fault, no reconnect storm, and
# no command sent again after the failure that cut it off.
EXPECT = {"recover_within": "2s", "max_connects_per_second": 20, "resends": "none"}
# Under failover, writes answered LOADING or READONLY did not run and are rightly tried again;
# whether faultline counts those as resends is its verdict rules' business, so the profile's own
# [expect] decides that, and the test checks that nothing cut off was sent again.
EXPECT_FAILOVER = {"recover_within": "2s", "max_connects_per_second": 20}


@pytest_asyncio.fixture
async def app(async_faultline_proxy):
    manager = RedisManager(async_faultline_proxy.redis_url, client_name="app",
                           backoff=Backoff(base=0.05, cap=0.8), threshold=3)
    await manager.start()
    yield OrderService(manager)
    await manager.close()


@pytest_asyncio.fixture
async def broken_app(async_faultline_proxy):
    manager = RedisManager.broken(async_faultline_proxy.redis_url, client_name="app")
    await manager.start()
    yield OrderService(manager)
    await manager.close()


async def assert_no_write_lost(service: OrderService, upstream) -> None:
    stored = [x.decode() for x in await upstream.lrange(OrderService.KEY, 0, -1)]
    missing = set(service.acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged orders missing: {sorted(missing)[:10]}"
    # Not idempotent (RPUSH): an order stored twice was sent twice.
    assert len(stored) == len(set(stored)), "an order was stored twice"


# -- the breaker --

async def test_breaker_opens_on_refusals_and_closes_after_recovery(app, async_faultline_proxy):
    breaker = app.manager.breaker
    async with Workload(app) as work:
        await work.wait_acked(5)
        async with async_faultline_proxy.down():
            await wait_for(lambda: breaker.state == "open", 5, "breaker open")
            acked = len(app.acked)
            await wait_for(lambda: "refused" in app.manager.failure_kinds, 5, "a refused connect")
            assert len(app.acked) == acked
        await wait_for(lambda: breaker.state == "closed", 5, "breaker closed again")
        await work.wait_acked(5)
    assert "refused" in breaker.opened_for() or "closed" in breaker.opened_for()
    v = await async_faultline_proxy.wait_clients(
        lambda v: v["windows"] and v["windows"][-1]["time_to_recover_ms"] is not None,
        client="app")
    # Back within its longest backoff step (0.8 s) after the end, and then some for the load.
    assert v["windows"][-1]["time_to_recover_ms"] < 2000


async def test_breaker_opens_on_timeouts_and_closes_after_recovery(app, async_faultline_proxy):
    breaker = app.manager.breaker
    async with Workload(app) as work:
        await work.wait_acked(5)
        async with async_faultline_proxy.blackhole():
            await wait_for(lambda: breaker.state == "open", 5, "breaker open")
        await wait_for(lambda: breaker.state == "closed", 5, "breaker closed again")
        await work.wait_acked(5)
    assert "timeout" in breaker.opened_for()
    assert app.unknown  # the writes cut off by the timeouts were never sent again


async def test_breaker_opens_on_resets_and_backs_off(app, async_faultline_proxy):
    breaker = app.manager.breaker
    async with Workload(app) as work:
        await work.wait_acked(5)
        async with async_faultline_proxy.reset_peer():
            await wait_for(lambda: breaker.state == "open", 5, "breaker open")
            # faultline measures the manager's reconnects: 50, 100, 200, 400 ms... apart.
            v = await async_faultline_proxy.wait_clients(
                lambda v: len(v["reconnect_intervals_ms"]) >= 4, client="app", timeout=10)
            assert v["backoff"] == "growing", v["reconnect_intervals_ms"]
        await wait_for(lambda: breaker.state == "closed", 5, "breaker closed again")
        await work.wait_acked(5)
    assert "reset" in breaker.opened_for()


# -- the shipped profiles, with their verdicts (the marker fails the test when one fails) --

@pytest.mark.faultline_profile("outage", speed=5, expect=EXPECT)
async def test_outage(app, upstream, faultline_profile):
    async with Workload(app) as work:
        await faultline_profile.async_wait()   # 2 s down, then the verdicts are decided
        await work.wait_acked(5)
    await assert_no_write_lost(app, upstream)
    assert "open" in [s for _, s, _ in app.manager.breaker.transitions]
    assert app.manager.breaker.state == "closed"


@pytest.mark.faultline_profile("failover", speed=3, expect=EXPECT_FAILOVER)
async def test_failover(app, upstream, faultline_profile, async_faultline_proxy):
    async with Workload(app) as work:
        await faultline_profile.async_wait()   # LOADING 1 s, READONLY 1 s, drop, healthy 1 s
        await work.wait_acked(5)
    await assert_no_write_lost(app, upstream)
    assert app.manager.breaker.state == "closed"
    v = await async_faultline_proxy.clients(client="app")
    # `cut_off` says whether the failure cut the reply off (false for a retry after an error
    # reply); a faultline without it named error replies "injected ..." in `reason`.
    cut_off = [r for r in v["resends"]["recent"]
               if r.get("cut_off", not r["reason"].startswith("injected"))]
    assert not cut_off, v["resends"]


@pytest.mark.faultline_profile("reset-storm", speed=10, expect=EXPECT)
async def test_reset_storm(app, upstream, faultline_profile):
    app.manager.pool.max_connections = 2 ** 31
    async with Workload(app, workers=6) as work:
        await faultline_profile.async_wait()   # 3 s of resets on 30% of connections
        await work.wait_acked(5)
    await assert_no_write_lost(app, upstream)


# -- the broken variant fails the same verdicts --

async def test_lost_replies_the_good_one_leaves_and_the_broken_one_resends(
        async_faultline_proxy, upstream):
    """Every 5th RPUSH runs and then its connection is reset before the reply (resp_reset
    phase=after): the write happened, the client cannot know. The good manager leaves it
    (unknown) and the verdicts pass; the broken one sends it again: the order is stored twice,
    and faultline counts the resend. One worker each, so each failure is followed by that
    worker's own next move."""
    proxy = async_faultline_proxy
    profile = {"name": "lost-replies", "steps": [{"at": "0s", "for": "1500ms", "toxic": {
        "type": "resp_reset", "stream": "upstream",
        "attributes": {"phase": "after", "commands": ["RPUSH"], "every": 5}}}],
        "expect": {"resends": "none", "recover_within": "2s"}}
    results = {}
    for variant in ("good", "broken"):
        await upstream.delete(OrderService.KEY)
        await proxy.clear_clients()
        if variant == "good":
            manager = RedisManager(proxy.redis_url, client_name="app", backoff=Backoff(0.05, cap=0.8))
        else:
            manager = RedisManager.broken(proxy.redis_url, client_name="app")
        await manager.start()
        service = OrderService(manager)
        try:
            async with Workload(service, workers=1) as work:
                await work.wait_acked(3)
                async with proxy.profile(profile, wait=True) as run:
                    pass
                await work.wait_acked(3)
        finally:
            await manager.close()
        stored = [x.decode() for x in await upstream.lrange(OrderService.KEY, 0, -1)]
        results[variant] = (run, service, stored)

    run, service, stored = results["good"]
    assert not run.failed, run.describe()
    assert service.unknown and set(service.acked) <= set(stored)
    assert len(stored) == len(set(stored)), "the good manager stored an order twice"

    run, service, stored = results["broken"]
    assert service.manager.resent
    assert {v["key"] for v in run.failures()} == {"resends"}, run.describe()
    assert set(service.acked) <= set(stored)
    assert len(stored) > len(set(stored)), "resent, yet no order stored twice"


async def test_broken_variant_storms_where_the_good_one_backs_off(async_faultline_proxy):
    """accept("reset"): every connect is accepted, then reset. The good manager's reconnects
    back off; the broken one reconnects at once, which faultline sees as a storm."""
    proxy = async_faultline_proxy
    profile = {"name": "accept-reset", "steps": [{"at": "0s", "for": "1500ms",
                                                   "action": "accept_reset"}],
               "expect": {"max_connects_per_second": 20, "recover_within": "2s"}}
    runs = {}
    for variant in ("good", "broken"):
        if variant == "good":
            manager = RedisManager(proxy.redis_url, client_name="app", backoff=Backoff(0.05, cap=0.8))
        else:
            manager = RedisManager.broken(proxy.redis_url, client_name="app")
        await manager.start()
        service = OrderService(manager)
        try:
            async with Workload(service) as work:
                await work.wait_acked(3)
                await manager.pool.disconnect()  # new connects from here on
                async with proxy.profile(profile, wait=True) as run:
                    pass
                await work.wait_acked(3)
        finally:
            await manager.close()
        runs[variant] = run
    assert not runs["good"].failed, runs["good"].describe()
    assert {v["key"] for v in runs["broken"].failures()} >= {"max_connects_per_second"}, \
        runs["broken"].describe()
