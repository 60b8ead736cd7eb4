"""pytest fixtures for faultline. Enable with `pytest_plugins = ["faultline.pytest_plugin"]`.

- `faultline` (session): one faultline process for the whole test session, in front of
  $FAULTLINE_UPSTREAM, or of a private redis-server on a free port when that is unset.
  $FAULTLINE_BIN names the binary (else `faultline` on PATH).
- `faultline_proxy` (test): the proxy named "redis", reset before the test (every toxic
  removed, enabled, verdicts cleared) so each test starts healthy and measures only itself.
- `faultline_api` (test): the API client.
"""

from __future__ import annotations

import pytest

from .process import Faultline


@pytest.fixture(scope="session")
def faultline():
    fl = Faultline.start()
    try:
        yield fl
    finally:
        fl.stop()


@pytest.fixture
def faultline_api(faultline):
    return faultline.client


@pytest.fixture
def faultline_proxy(faultline):
    api = faultline.client
    for name in api.proxies():
        if name != "redis":
            api.proxy(name).delete()
    api.reset()
    proxy = faultline.proxy()
    proxy.drop_connections()
    proxy.clear_clients()
    yield proxy
    api.reset()
