"""Shared fixtures of the package's tests. The faultline package is the installed one (the
plugin is loaded by its pytest11 entry point); pytester runs inner pytest sessions for the
plugin's own tests."""

import asyncio
import time

import pytest
import pytest_asyncio
import redis.asyncio as aredis

pytest_plugins = ["pytester"]


@pytest_asyncio.fixture
async def upstream(faultline):
    """The Redis behind faultline, reached directly (not through the proxy), emptied."""
    host, port = faultline.upstream.rsplit(":", 1)
    r = aredis.Redis(host=host, port=int(port))
    await r.flushall()
    yield r
    await r.close()


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)
