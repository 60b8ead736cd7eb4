"""A synchronous client for faultline's HTTP API (Toxiproxy-compatible, plus faultline's
additions). Standard library only (urllib). For asyncio, the same shape is in faultline.aio.

    api = Client("http://127.0.0.1:8474")
    redis = api.proxy("redis")
    with redis.latency(200):
        ...
    print(redis.clients()["backoff"])
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Iterable, Optional

from ._common import (REDIS_ERROR_PRESETS, FaultlineError, UnmatchedToxicWarning, clients_query,
                      describe_verdicts, encode_body, encode_query, error_message,
                      expect_failures, next_free_name, profile_done, profile_name,
                      profile_request, q, resp_error_attrs, with_expect, toxic_body, warn_if_unmatched)

__all__ = ["Client", "Proxy", "ProfileRun", "FaultlineError", "UnmatchedToxicWarning",
           "REDIS_ERROR_PRESETS"]


def default_url(url: Optional[str]) -> str:
    url = (url or os.environ.get("FAULTLINE_API") or "http://127.0.0.1:8474").rstrip("/")
    return url if "://" in url else "http://" + url


class Client:
    """The API at `url` (default: $FAULTLINE_API or http://127.0.0.1:8474)."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 10.0):
        self.url = default_url(url)
        self.token = token if token is not None else os.environ.get("FAULTLINE_API_TOKEN")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<faultline.Client {self.url}>"

    # -- plumbing --

    def request(self, method: str, path: str, body: Any = None, *,
                query: Optional[dict] = None, raw: bool = False,
                content_type: str = "application/json") -> Any:
        url = self.url + path + encode_query(query)
        data = encode_body(body)
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("User-Agent", "faultline-python")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                payload = res.read()
        except urllib.error.HTTPError as e:
            raise FaultlineError(e.code, error_message(e.read().decode(errors="replace")),
                                 method, path) from None
        if raw:
            return payload.decode()
        if not payload.strip():
            return None
        return json.loads(payload)

    def ready(self) -> bool:
        """True once the API answers."""
        try:
            self.version()
            return True
        except (OSError, FaultlineError, ValueError):
            return False

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"faultline API at {self.url} did not answer in {timeout} s")
            time.sleep(0.02)

    # -- Toxiproxy's API --

    def version(self) -> str:
        v = self.request("GET", "/version")
        return v["version"] if isinstance(v, dict) else str(v)

    def proxies(self) -> dict:
        """{name: Proxy} of every proxy."""
        return {n: Proxy(self, p) for n, p in self.request("GET", "/proxies").items()}

    def proxy(self, name: str = "redis") -> "Proxy":
        return Proxy(self, self.request("GET", f"/proxies/{q(name)}"))

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0",
                     enabled: bool = True) -> "Proxy":
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return Proxy(self, self.request("POST", "/proxies", body))

    def populate(self, proxies: list) -> list:
        res = self.request("POST", "/populate", proxies)
        return [Proxy(self, p) for p in res["proxies"]]

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed, a running profile stopped (POST /reset)."""
        self.request("POST", "/reset")

    # -- faultline's additions --

    def metrics(self) -> str:
        """Prometheus text from /metrics."""
        return self.request("GET", "/metrics", raw=True)

    def log_status(self) -> dict:
        """GET /log: the traffic log's settings and counters."""
        return self.request("GET", "/log")

    def profiles(self) -> Any:
        return self.request("GET", "/profiles")

    def start_profile(self, profile: Any, *, speed: Optional[float] = None,
                      replace: bool = True) -> dict:
        """Starts a profile: the name of a shipped profile ("failover"), a path to a TOML (or
        JSON) file, TOML text, or a dict (sent as JSON, the same structure as the TOML).
        Returns its report."""
        body, kind = profile_request(profile)
        query = {"replace": "true" if replace else "false",
                 "speed": str(speed) if speed else None}
        return self.request("POST", "/profiles", body, query=query, content_type=kind)

    def profile_report(self, name: str) -> dict:
        return self.request("GET", f"/profiles/{q(name)}")

    def stop_profile(self, name: str) -> None:
        try:
            self.request("DELETE", f"/profiles/{q(name)}")
        except FaultlineError as e:
            if e.status != 404:  # it ended on its own
                raise

    def profile(self, profile: Any, *, speed: Optional[float] = None, wait: bool = False,
                timeout: float = 120.0, expect: Optional[dict] = None) -> "ProfileRun":
        """Runs a profile for a `with` block; stops it (undoing what it injected) on exit.
        With wait=True, the exit first waits for the timeline to end and the [expect] verdicts
        to be decided. `as run`: a ProfileRun (run.report, run.failures(), run.wait())."""
        if expect:
            profile = with_expect(profile, expect)
        return ProfileRun(self, profile, speed=speed, wait=wait, timeout=timeout)

    def wait_profile(self, name: str, timeout: float = 120.0) -> dict:
        """Waits until the profile's timeline ended and its verdicts are decided; its report."""
        deadline = time.monotonic() + timeout
        while True:
            rep = self.profile_report(name)
            if profile_done(rep):
                return rep
            if time.monotonic() > deadline:
                raise TimeoutError(f"profile {name} still running after {timeout} s")
            time.sleep(0.05)


class ProfileRun:
    """A profile run by a `with` block (Client.profile / Proxy.profile). `report` is the latest
    report (refreshed by wait() and on exit); `failures()` the [expect] verdicts that failed."""

    def __init__(self, client: Client, profile: Any, *, speed: Optional[float] = None,
                 wait: bool = False, timeout: float = 120.0):
        self.client, self.profile, self.speed = client, profile, speed
        self.wait_on_exit, self.timeout = wait, timeout
        self.report: dict = {}
        self.name: Optional[str] = None

    def start(self) -> "ProfileRun":
        self.report = self.client.start_profile(self.profile, speed=self.speed)
        self.name = profile_name(self.report)
        return self

    def wait(self, timeout: Optional[float] = None) -> dict:
        """Waits for the end of the timeline and the verdicts; returns the final report."""
        self.report = self.client.wait_profile(self.name, timeout or self.timeout)
        return self.report

    def stop(self) -> dict:
        self.client.stop_profile(self.name)
        try:
            self.report = self.client.profile_report(self.name)
        except FaultlineError:
            pass
        return self.report

    def failures(self) -> list:
        return expect_failures(self.report)

    @property
    def failed(self) -> bool:
        return bool(self.failures())

    def describe(self) -> str:
        return describe_verdicts(self.report)

    def __enter__(self) -> "ProfileRun":
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if self.wait_on_exit and exc_type is None:
                self.wait()
        finally:
            self.stop()

    # Reports used to be yielded as dicts: keep `run["name"]` working.
    def __getitem__(self, key):
        return self.report[key]

    def get(self, key, default=None):
        return self.report.get(key, default)


class Proxy:
    """One named proxy. Attributes mirror GET /proxies/{name}: name, listen, upstream, enabled."""

    def __init__(self, client: Client, data: dict):
        self.client = client
        self._data = data

    name = property(lambda self: self._data["name"])
    listen = property(lambda self: self._data["listen"])
    upstream = property(lambda self: self._data["upstream"])
    enabled = property(lambda self: self._data["enabled"])
    accept_mode = property(lambda self: self._data.get("accept", "normal"))

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def redis_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<faultline.Proxy {self.name} {self.listen} -> {self.upstream}>"

    def _path(self, suffix: str = "") -> str:
        return f"/proxies/{q(self.name)}{suffix}"

    def refresh(self) -> "Proxy":
        self._data = self.client.request("GET", self._path())
        return self

    def update(self, **fields) -> "Proxy":
        """Changes listen, upstream, enabled or accept ("normal", "reset", "hang")."""
        self._data = self.client.request("POST", self._path(), fields)
        return self

    def disable(self) -> None:
        self.update(enabled=False)

    def enable(self) -> None:
        self.update(enabled=True)

    def delete(self) -> None:
        self.client.request("DELETE", self._path())

    # -- toxics --

    def toxics(self) -> list:
        return self.client.request("GET", self._path("/toxics"))

    def get_toxic(self, name: str) -> dict:
        return self.client.request("GET", self._path(f"/toxics/{q(name)}"))

    def add_toxic(self, type: str, name: Optional[str] = None, stream: str = "downstream",
                  toxicity: float = 1.0, **attributes) -> dict:
        """Adds a toxic. Without a name the API names it (`latency_downstream`, or for RESP
        toxics what it does); when that name is taken (a nested block of the same kind), the
        next free `<name>_2`, `<name>_3`... is used instead of failing with 409."""
        body = toxic_body(type, name, stream, toxicity, attributes)
        for attempt in range(64):
            try:
                return self.client.request("POST", self._path("/toxics"), body)
            except FaultlineError as e:
                nxt = None if name else next_free_name(e, type, stream, attempt)
                if nxt is None:
                    raise
                body["name"] = nxt
        raise FaultlineError(409, "no free toxic name after 64 tries", "POST", self._path("/toxics"))

    def update_toxic(self, name: str, toxicity: Optional[float] = None, **attributes) -> dict:
        body: dict = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return self.client.request("POST", self._path(f"/toxics/{q(name)}"), body)

    def remove_toxic(self, name: str) -> None:
        self.client.request("DELETE", self._path(f"/toxics/{q(name)}"))

    # -- connections, stats, verdicts --

    def connections(self) -> list:
        return self.client.request("GET", self._path("/connections"))

    def drop_connections(self, reset: bool = False) -> None:
        self.client.request("DELETE", self._path("/connections"),
                            query={"reset": "true" if reset else "false"})

    def stats(self) -> dict:
        """Counters of this proxy: GET /proxies/{name}/stats where the build has it, else the
        proxy's samples from /metrics as {metric{labels}: value}."""
        try:
            return self.client.request("GET", self._path("/stats"))
        except FaultlineError as e:
            if e.status != 404:
                raise
        return _metrics_of(self.client.metrics(), self.name)

    def clients(self, client: Optional[str] = None, since_ms: Optional[float] = None,
                until_ms: Optional[float] = None) -> dict:
        """What the clients did about the faults: GET /proxies/{name}/clients, optionally for
        one client (its CLIENT SETNAME name, else its IP address) and a time window (ms on the
        verdicts' `now_ms` clock)."""
        return self.client.request("GET", self._path("/clients"),
                                   query=clients_query(client, since_ms, until_ms))

    def clear_clients(self) -> None:
        """Forgets the verdicts recorded so far (start of a test)."""
        self.client.request("DELETE", self._path("/clients"))

    def wait_clients(self, predicate, timeout: float = 10.0, interval: float = 0.05,
                     **query) -> dict:
        """Polls the verdicts (with clients()'s query: client=, since_ms=, until_ms=) until
        predicate(verdicts) is true; returns them. TimeoutError (with the last verdicts)
        otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.clients(**query)
            if predicate(v):
                return v
            if time.monotonic() > deadline:
                raise TimeoutError(f"verdicts of {self.name} never matched: {json.dumps(v)}")
            time.sleep(interval)

    # -- faults that undo themselves --

    def toxic(self, type: str, name: Optional[str] = None, stream: str = "downstream",
              toxicity: float = 1.0, **attributes) -> "_ToxicBlock":
        """Adds a toxic for the duration of a `with` block (`as t`: the toxic as the API
        shows it). Blocks nest: an unnamed toxic gets a free name. On exit, a RESP toxic that
        matched no command warns (UnmatchedToxicWarning)."""
        return _ToxicBlock(self, type, name, stream, toxicity, attributes)

    def down(self) -> "_StateBlock":
        """Connects are refused and open connections closed (enabled=false) for the block;
        on exit the proxy is as it was before (so blocks nest)."""
        return _StateBlock(self, "enabled", False)

    def accept(self, mode: str) -> "_StateBlock":
        """Connects are accepted then reset ("reset") or left hanging ("hang") for the block;
        on exit the previous accept mode comes back."""
        return _StateBlock(self, "accept", mode)

    def latency(self, latency_ms: int, jitter_ms: int = 0, stream: str = "downstream", **kw):
        return self.toxic("latency", stream=stream, latency=latency_ms, jitter=jitter_ms, **kw)

    def reset_peer(self, timeout_ms: int = 0, stream: str = "upstream", **kw):
        """Every connection is reset (RST) on its first data, or timeout_ms after it."""
        return self.toxic("reset_peer", stream=stream, timeout=timeout_ms, **kw)

    def blackhole(self, timeout_ms: int = 0, stream: str = "upstream", **kw):
        """Nothing passes; with timeout_ms > 0 the connection is closed after that long."""
        return self.toxic("timeout", stream=stream, timeout=timeout_ms, **kw)

    def bandwidth(self, rate_kbps: int, stream: str = "downstream", **kw):
        return self.toxic("bandwidth", stream=stream, rate=rate_kbps, **kw)

    def redis_error(self, error: str, commands: Optional[Iterable[str]] = None,
                    keys: Optional[str] = None, name: Optional[str] = None, **filter_attrs):
        """Matching commands get a Redis error instead of reaching Redis: a preset ("loading",
        "readonly", "oom"...) or any error text ("ERR something")."""
        return self.toxic("resp_error", name=name, stream="upstream",
                          **resp_error_attrs(error, commands, keys, filter_attrs))

    def redis_reset(self, phase: str = "before", commands: Optional[Iterable[str]] = None,
                    name: Optional[str] = None, **filter_attrs):
        """The connection is reset when a matching command arrives (phase="before": not
        executed) or once Redis answered it (phase="after": executed, reply lost)."""
        attrs = dict(filter_attrs, phase=phase)
        if commands is not None:
            attrs["commands"] = list(commands)
        return self.toxic("resp_reset", name=name, stream="upstream", **attrs)

    def profile(self, profile: Any, **kw) -> ProfileRun:
        """Runs a chaos profile for a `with` block (see Client.profile)."""
        return self.client.profile(profile, **kw)


class _ToxicBlock:
    def __init__(self, proxy: Proxy, type, name, stream, toxicity, attributes):
        self.proxy = proxy
        self.args = (type, name, stream, toxicity, attributes)
        self.toxic: Optional[dict] = None

    def __enter__(self) -> dict:
        type, name, stream, toxicity, attributes = self.args
        self.toxic = self.proxy.add_toxic(type, name=name, stream=stream, toxicity=toxicity,
                                          **attributes)
        return self.toxic

    def __exit__(self, *exc) -> None:
        name = self.toxic["name"]
        try:
            last = self.proxy.get_toxic(name)
        except FaultlineError as e:
            if e.status != 404:
                raise
            return  # removed already (a reset, a profile)
        warn_if_unmatched(self.proxy.name, last, stacklevel=2)
        try:
            self.proxy.remove_toxic(name)
        except FaultlineError as e:
            if e.status != 404:
                raise


class _StateBlock:
    def __init__(self, proxy: Proxy, field: str, value):
        self.proxy, self.field, self.value = proxy, field, value
        self.before = None

    def __enter__(self) -> Proxy:
        self.proxy.refresh()
        self.before = self.proxy._data.get(self.field, True if self.field == "enabled" else "normal")
        self.proxy.update(**{self.field: self.value})
        return self.proxy

    def __exit__(self, *exc) -> None:
        self.proxy.update(**{self.field: self.before})


def _metrics_of(text: str, proxy: str) -> dict:
    out = {}
    needle = f'proxy="{proxy}"'
    for line in text.splitlines():
        if line.startswith("#") or needle not in line:
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out
