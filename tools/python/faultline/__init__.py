"""faultline for Python test suites: start faultline (and a private redis-server), drive its API,
and read what the client did about the faults.

    from faultline import Faultline
    with Faultline.start(redis=True) as fl:
        proxy = fl.proxy()
        with proxy.reset_peer():
            ...
        print(proxy.clients()["reconnect_intervals_ms"])

With pytest, enable the plugin (`pytest_plugins = ["faultline.pytest_plugin"]` in conftest.py)
and take the `faultline_proxy` fixture. Standard library only.
"""

from .api import REDIS_ERROR_PRESETS, Client, FaultlineError, Proxy
from .process import Faultline, RedisServer, find_binary, free_port, wait_for_port

__all__ = [
    "Client", "Proxy", "FaultlineError", "REDIS_ERROR_PRESETS",
    "Faultline", "RedisServer", "find_binary", "free_port", "wait_for_port",
]
