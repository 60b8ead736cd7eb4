"""The faultline pytest plugin, loaded automatically once the package is installed (entry point
`pytest11`); from a source tree without installing, `pytest_plugins = ["faultline.pytest_plugin"]`.

Options (command line, else the ini file's key, else the environment, else the default):

  --faultline-bin PATH          faultline_bin           $FAULTLINE_BIN, else find_binary()
  --faultline-upstream H:P      faultline_upstream      $FAULTLINE_UPSTREAM, else a private
                                                        redis-server on a free port
  --faultline-redis-server P    faultline_redis_server  the redis-server binary for that
  --faultline-listen H:P        faultline_listen        the proxy's address (127.0.0.1:0)
  --faultline-seed N            faultline_seed          seed for every random choice
  --faultline-log PATH          faultline_log           a traffic log file (JSON Lines)
  --faultline-args "..."        faultline_args          more arguments for faultline
  --faultline-speed N           faultline_speed         default speed of marker profiles
  --faultline-url URL           faultline_url           use a faultline already running there
                                                        (nothing is started)

Fixtures: `faultline` (session: the process), `faultline_api`, `faultline_proxy` (reset before
the test: toxics removed, enabled, connections dropped, verdicts cleared), `faultline_capture`
(the test's traffic records), `faultline_profile` (the marker's run), and for pytest-asyncio
`async_faultline_api`, `async_faultline_proxy`, `async_faultline_capture`.

Marker: `@pytest.mark.faultline_profile(profile, speed=None, expect=None, proxy="redis",
timeout=120)` runs the profile (a name, a path, TOML text or a dict) around the test's body and
fails the test when one of its [expect] verdicts failed.
"""

from __future__ import annotations

import functools
import inspect
import os
import shlex
from typing import Any, Optional

import pytest

from ._common import (FaultlineError, describe_verdicts, expect_failures, profile_done,
                      with_expect)
from .api import Client, ProfileRun
from .capture import TrafficCapture
from .process import Faultline

_OPTIONS = {
    # name: help
    "bin": "faultline binary (default: $FAULTLINE_BIN, else the source tree's builds, else PATH)",
    "upstream": "Redis to put faultline in front of, HOST:PORT (default: $FAULTLINE_UPSTREAM, "
                "else a private redis-server on a free port)",
    "redis_server": "redis-server binary for the private Redis (default: redis-server on PATH)",
    "listen": "address of the proxy 'redis', e.g. 127.0.0.1:6381 (default: 127.0.0.1:0)",
    "seed": "seed for faultline's random choices (toxicity, jitter, probability)",
    "log": "write a traffic log (JSON Lines) to this file",
    "args": "more arguments for faultline, shell-quoted",
    "speed": "default speed of the profiles run by @pytest.mark.faultline_profile",
    "url": "use the faultline whose API is at this URL instead of starting one",
}
_ENV = {"bin": "FAULTLINE_BIN", "upstream": "FAULTLINE_UPSTREAM", "url": "FAULTLINE_URL"}

_RUN_KEY = pytest.StashKey[ProfileRun]()


def pytest_addoption(parser):
    group = parser.getgroup("faultline", "faultline (fault-injection proxy for Redis)")
    for name, help in _OPTIONS.items():
        group.addoption(f"--faultline-{name.replace('_', '-')}", dest=f"faultline_{name}",
                        default=None, help=help)
        parser.addini(f"faultline_{name}", help=help, default=None)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "faultline_profile(profile, speed=None, expect=None, proxy='redis', timeout=120): run "
        "a faultline chaos profile (name, path, TOML text or dict) around the test; the test "
        "fails when one of the profile's [expect] verdicts failed")


def option(config, name: str) -> Optional[str]:
    """A plugin option: command line, else ini, else environment, else None."""
    # Tolerant of a conftest that imported the fixtures without the plugin's hooks.
    v = config.getoption(f"faultline_{name}", default=None)
    if v in (None, ""):
        try:
            v = config.getini(f"faultline_{name}")
        except ValueError:
            v = None
    if v in (None, "") and name in _ENV:
        v = os.environ.get(_ENV[name])
    return v if v not in ("", None) else None


class _Remote:
    """A faultline the plugin did not start (--faultline-url)."""

    def __init__(self, url: str):
        self.client = Client(url)
        self.redis = None
        self.proc = None
        self.upstream = None
        self.traffic_log = ""

    def proxy(self, name: str = "redis"):
        return self.client.proxy(name)

    def stop(self):
        return None


@pytest.fixture(scope="session")
def faultline(pytestconfig):
    """One faultline for the test session, started with the plugin's options."""
    url = option(pytestconfig, "url")
    if url:
        fl = _Remote(url)
        fl.client.wait_ready()
        fl.upstream = fl.proxy().upstream
        yield fl
        return
    seed = option(pytestconfig, "seed")
    fl = Faultline.start(
        option(pytestconfig, "upstream"),
        binary=option(pytestconfig, "bin"),
        listen=option(pytestconfig, "listen") or "127.0.0.1:0",
        seed=int(seed) if seed is not None else None,
        log=option(pytestconfig, "log"),
        redis_server=option(pytestconfig, "redis_server"),
        args=shlex.split(option(pytestconfig, "args") or ""))
    try:
        yield fl
    finally:
        fl.stop()


@pytest.fixture
def faultline_api(faultline):
    return faultline.client


def _reset(api: Client, keep: str = "redis"):
    for name in api.proxies():
        if name != keep:
            api.proxy(name).delete()
    api.reset()
    proxy = api.proxy(keep)
    proxy.drop_connections()
    proxy.clear_clients()
    return proxy


@pytest.fixture
def faultline_proxy(faultline):
    """The proxy "redis", healthy and with its verdicts cleared."""
    proxy = _reset(faultline.client)
    yield proxy
    faultline.client.reset()


@pytest.fixture
def faultline_capture(faultline, faultline_proxy):
    """The traffic records of the proxy "redis" during the test: capture.records(),
    capture.commands("INCR"), capture.events("close"); `await capture.acommands(...)` in
    asyncio tests."""
    with TrafficCapture(faultline.client, faultline_proxy.name) as capture:
        yield capture


@pytest.fixture
def faultline_profile(request, faultline_proxy) -> ProfileRun:
    """The run of the test's @pytest.mark.faultline_profile, started just before the test's
    body: `faultline_profile.wait()` (or `await faultline_profile.async_wait()`) waits for its
    end inside the test, `.report` and `.failures()` read its verdicts."""
    marker = request.node.get_closest_marker("faultline_profile")
    if marker is None:
        raise pytest.UsageError("the faultline_profile fixture needs @pytest.mark.faultline_profile")
    profile, speed, kw = _marker_args(request.config, marker)
    run = _MarkerRun(faultline_proxy.client, profile, speed=speed, wait=True, **kw)
    request.node.stash[_RUN_KEY] = run
    yield run
    if run.name and run.report.get("state") == "running":
        run.stop()


class _MarkerRun(ProfileRun):
    async def async_wait(self, timeout: Optional[float] = None) -> dict:
        """Waits for the end and the verdicts without blocking the loop."""
        from .aio import AsyncClient
        api = AsyncClient(self.client.url, token=self.client.token)
        self.report = await api.wait_profile(self.name, timeout or self.timeout)
        return self.report


def _marker_args(config, marker):
    if not marker.args and "profile" not in marker.kwargs:
        raise pytest.UsageError("@pytest.mark.faultline_profile needs a profile")
    kwargs = dict(marker.kwargs)
    profile: Any = marker.args[0] if marker.args else kwargs.pop("profile")
    speed = kwargs.pop("speed", None)
    if speed is None and option(config, "speed"):
        speed = float(option(config, "speed"))
    expect = kwargs.pop("expect", None)
    if expect:
        profile = with_expect(profile, expect)
    timeout = kwargs.pop("timeout", 120.0)
    kwargs.pop("proxy", None)  # the profile names its proxies; "redis" is the plugin's
    if kwargs:
        raise pytest.UsageError(f"@pytest.mark.faultline_profile: unknown arguments {sorted(kwargs)}")
    return profile, speed, {"timeout": timeout}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("faultline_profile") and hasattr(item, "fixturenames"):
            if "faultline_profile" not in item.fixturenames:
                item.fixturenames.append("faultline_profile")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Starts the marker's profile just before the test's body, and wraps the body so that,
    once it returned, the profile's end and verdicts are awaited inside the test (in the event
    loop for an asyncio test, so the application keeps running) and a failed verdict fails the
    test like an assertion would (xfail and the like apply as usual)."""
    run = item.stash.get(_RUN_KEY, None)
    if run is None:
        yield
        return
    run.start()  # a bad profile fails the test here, with the API's error
    original = item.obj
    item.obj = _checked(original, run)
    try:
        yield
    finally:
        item.obj = original
        try:
            run.stop()
        except (FaultlineError, OSError):
            pass


def _verdict_failure(run) -> None:
    fails = expect_failures(run.report)
    if fails:
        pytest.fail(f"faultline profile {run.name!r}: {len(fails)} [expect] verdict(s) failed\n"
                    + describe_verdicts(run.report), pytrace=False)


def _checked(fn, run):
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def body(*args, **kwargs):
            await fn(*args, **kwargs)
            if not profile_done(run.report):
                await run.async_wait()
            _verdict_failure(run)
    else:
        @functools.wraps(fn)
        def body(*args, **kwargs):
            fn(*args, **kwargs)
            if not profile_done(run.report):
                run.wait()
            _verdict_failure(run)
    return body


# -- pytest-asyncio fixtures (when pytest-asyncio is installed) --

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover
    pytest_asyncio = None

if pytest_asyncio is not None:
    @pytest_asyncio.fixture
    async def async_faultline_api(faultline):
        """An AsyncClient for the session's faultline."""
        from .aio import async_client_of
        return async_client_of(faultline)

    @pytest_asyncio.fixture
    async def async_faultline_proxy(async_faultline_api):
        """The proxy "redis" as an AsyncProxy, healthy and with its verdicts cleared."""
        api = async_faultline_api
        for name in await api.proxies():
            if name != "redis":
                await (await api.proxy(name)).delete()
        await api.reset()
        proxy = await api.proxy("redis")
        await proxy.drop_connections()
        await proxy.clear_clients()
        yield proxy
        await api.reset()

    @pytest_asyncio.fixture
    async def async_faultline_capture(faultline, async_faultline_proxy):
        """faultline_capture for asyncio tests: `await capture.acommands("INCR")`."""
        async with TrafficCapture(faultline.client, async_faultline_proxy.name) as capture:
            yield capture
