"""faultline for Python test suites: start faultline (and a private redis-server), drive its API
synchronously or from asyncio, capture its traffic records, and read what the client did about
the faults. Standard library only; the pytest plugin loads itself once the package is installed.

    from faultline import Faultline
    with Faultline.start(redis=True, listen="127.0.0.1:6381") as fl:
        proxy = fl.proxy()
        with proxy.reset_peer():
            ...
        print(proxy.clients(client="app")["reconnect_intervals_ms"])

    from faultline.aio import AsyncFaultline
    async with await AsyncFaultline.start(redis=True) as fl:
        proxy = await fl.proxy()
        async with proxy.down():
            ...

Documentation: docs/testing-clients.md in the faultline repository.
"""

from ._common import REDIS_ERROR_PRESETS, FaultlineError, UnmatchedToxicWarning
from .api import Client, ProfileRun, Proxy
from .capture import Record, TrafficCapture
from .process import (BinaryNotFound, Faultline, RedisServer, binary_candidates, find_binary,
                      free_port, wait_for_port)

__version__ = "0.1.0"

__all__ = [
    "Client", "Proxy", "ProfileRun", "FaultlineError", "UnmatchedToxicWarning",
    "REDIS_ERROR_PRESETS", "Faultline", "RedisServer", "BinaryNotFound", "find_binary",
    "binary_candidates", "free_port", "wait_for_port", "TrafficCapture", "Record",
]
