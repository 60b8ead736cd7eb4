"""A client for faultline's HTTP API (Toxiproxy-compatible, plus faultline's additions).

Standard library only (urllib), so a test suite can use it without installing anything.

    api = Client("http://127.0.0.1:8474")
    redis = api.proxy("redis")
    with redis.latency(200):
        ...
    print(redis.clients()["backoff"])
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable, Iterator, Optional

__all__ = ["Client", "Proxy", "FaultlineError", "REDIS_ERROR_PRESETS"]

# resp_error presets (Redis's own wording); anything else is sent as the error text.
REDIS_ERROR_PRESETS = (
    "loading", "readonly", "oom", "busy", "noscript", "masterdown", "tryagain", "clusterdown",
    "noauth", "wrongpass", "max_clients", "unblocked", "moved", "ask",
)


class FaultlineError(Exception):
    """An error reply from the API: `status` and faultline's message."""

    def __init__(self, status: int, message: str, method: str = "", path: str = ""):
        super().__init__(f"{method} {path}: {status} {message}".strip())
        self.status = status
        self.message = message


class Client:
    """The API at `url` (default: $FAULTLINE_API or http://127.0.0.1:8474)."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 10.0):
        self.url = (url or os.environ.get("FAULTLINE_API") or "http://127.0.0.1:8474").rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.token = token if token is not None else os.environ.get("FAULTLINE_API_TOKEN")
        self.timeout = timeout

    # -- plumbing --

    def request(self, method: str, path: str, body: Any = None, *,
                query: Optional[dict] = None, raw: bool = False,
                content_type: str = "application/json") -> Any:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
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
            text = e.read().decode(errors="replace")
            try:
                message = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                message = text
            raise FaultlineError(e.code, message, method, path) from None
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
        return Proxy(self, self.request("GET", f"/proxies/{_q(name)}"))

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0",
                     enabled: bool = True) -> "Proxy":
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return Proxy(self, self.request("POST", "/proxies", body))

    def populate(self, proxies: list) -> list:
        res = self.request("POST", "/populate", proxies)
        return [Proxy(self, p) for p in res["proxies"]]

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed (Toxiproxy's POST /reset)."""
        self.request("POST", "/reset")

    # -- faultline's additions --

    def metrics(self) -> str:
        """Prometheus text from /metrics."""
        return self.request("GET", "/metrics", raw=True)

    def profiles(self) -> Any:
        return self.request("GET", "/profiles")

    def start_profile(self, profile: str, *, speed: Optional[float] = None,
                      replace: bool = True) -> dict:
        """Starts a profile: a name of a shipped profile ("failover"), a path to a TOML file,
        or the TOML text itself. Returns its report."""
        text = _profile_text(profile)
        query = {"replace": "true" if replace else "false"}
        if speed:
            query["speed"] = str(speed)
        return self.request("POST", "/profiles", text, query=query, content_type="application/toml")

    def profile_report(self, name: str) -> dict:
        return self.request("GET", f"/profiles/{_q(name)}")

    def stop_profile(self, name: str) -> None:
        try:
            self.request("DELETE", f"/profiles/{_q(name)}")
        except FaultlineError as e:
            if e.status != 404:  # it ended on its own
                raise

    @contextlib.contextmanager
    def profile(self, profile: str, *, speed: Optional[float] = None,
                wait: bool = False) -> Iterator[dict]:
        """Runs a profile for the block; stops it (undoing what it injected) on exit.
        With wait=True, the exit first waits for the timeline to end by itself."""
        report = self.start_profile(profile, speed=speed)
        name = report.get("name") or report.get("profile", {}).get("name")
        try:
            yield report
            if wait:
                self.wait_profile(name)
        finally:
            self.stop_profile(name)

    def wait_profile(self, name: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            rep = self.profile_report(name)
            if rep.get("state") not in ("running", "idle"):
                return rep
            if time.monotonic() > deadline:
                raise TimeoutError(f"profile {name} still running after {timeout} s")
            time.sleep(0.05)


class Proxy:
    """One named proxy. Attributes mirror GET /proxies/{name}: name, listen, upstream, enabled."""

    def __init__(self, client: Client, data: dict):
        self.client = client
        self._data = data

    name = property(lambda self: self._data["name"])
    listen = property(lambda self: self._data["listen"])
    upstream = property(lambda self: self._data["upstream"])
    enabled = property(lambda self: self._data["enabled"])

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
        return f"/proxies/{_q(self.name)}{suffix}"

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

    def add_toxic(self, type: str, name: Optional[str] = None, stream: str = "downstream",
                  toxicity: float = 1.0, **attributes) -> dict:
        body = {"type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        if name:
            body["name"] = name
        return self.client.request("POST", self._path("/toxics"), body)

    def update_toxic(self, name: str, toxicity: Optional[float] = None, **attributes) -> dict:
        body: dict = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return self.client.request("POST", self._path(f"/toxics/{_q(name)}"), body)

    def remove_toxic(self, name: str) -> None:
        self.client.request("DELETE", self._path(f"/toxics/{_q(name)}"))

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
        out = {}
        needle = f'proxy="{self.name}"'
        for line in self.client.metrics().splitlines():
            if line.startswith("#") or needle not in line:
                continue
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
        return out

    def clients(self) -> dict:
        """What the clients did about the faults: GET /proxies/{name}/clients."""
        return self.client.request("GET", self._path("/clients"))

    def clear_clients(self) -> None:
        """Forgets the verdicts recorded so far (start of a test)."""
        self.client.request("DELETE", self._path("/clients"))

    def wait_clients(self, predicate, timeout: float = 10.0, interval: float = 0.05) -> dict:
        """Polls the verdicts until predicate(verdicts) is true; returns them. TimeoutError
        (with the last verdicts) otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.clients()
            if predicate(v):
                return v
            if time.monotonic() > deadline:
                raise TimeoutError(f"verdicts of {self.name} never matched: {json.dumps(v)}")
            time.sleep(interval)

    # -- faults that undo themselves --

    @contextlib.contextmanager
    def toxic(self, type: str, name: Optional[str] = None, stream: str = "downstream",
              toxicity: float = 1.0, **attributes) -> Iterator[dict]:
        """Adds a toxic for the duration of the block."""
        t = self.add_toxic(type, name=name, stream=stream, toxicity=toxicity, **attributes)
        try:
            yield t
        finally:
            _ignore_404(lambda: self.remove_toxic(t["name"]))

    @contextlib.contextmanager
    def down(self) -> Iterator["Proxy"]:
        """Connects are refused and open connections closed (enabled=false)."""
        self.update(enabled=False)
        try:
            yield self
        finally:
            self.update(enabled=True)

    @contextlib.contextmanager
    def accept(self, mode: str) -> Iterator["Proxy"]:
        """Connects are accepted then reset ("reset") or left hanging ("hang")."""
        self.update(accept=mode)
        try:
            yield self
        finally:
            self.update(accept="normal")

    def latency(self, latency_ms: int, jitter_ms: int = 0, stream: str = "downstream"):
        return self.toxic("latency", stream=stream, latency=latency_ms, jitter=jitter_ms)

    def reset_peer(self, timeout_ms: int = 0, stream: str = "upstream"):
        """Every connection is reset (RST) on its first data, or timeout_ms after it."""
        return self.toxic("reset_peer", stream=stream, timeout=timeout_ms)

    def blackhole(self, timeout_ms: int = 0, stream: str = "upstream"):
        """Nothing passes; with timeout_ms > 0 the connection is closed after that long."""
        return self.toxic("timeout", stream=stream, timeout=timeout_ms)

    def bandwidth(self, rate_kbps: int, stream: str = "downstream"):
        return self.toxic("bandwidth", stream=stream, rate=rate_kbps)

    def redis_error(self, error: str, commands: Optional[Iterable[str]] = None,
                    keys: Optional[str] = None, **filter_attrs):
        """Matching commands get a Redis error instead of reaching Redis: a preset ("loading",
        "readonly", "oom"...) or any error text ("ERR something")."""
        attrs = dict(filter_attrs)
        if error.lower() in REDIS_ERROR_PRESETS:
            attrs["preset"] = error.lower()
        else:
            attrs["error"] = error
        if commands is not None:
            attrs["commands"] = list(commands)
        if keys is not None:
            attrs["keys"] = keys
        return self.toxic("resp_error", stream="upstream", **attrs)

    def redis_reset(self, phase: str = "before", commands: Optional[Iterable[str]] = None,
                    **filter_attrs):
        """The connection is reset when a matching command arrives (phase="before": not
        executed) or once Redis answered it (phase="after": executed, reply lost)."""
        attrs = dict(filter_attrs, phase=phase)
        if commands is not None:
            attrs["commands"] = list(commands)
        return self.toxic("resp_reset", stream="upstream", **attrs)

    def profile(self, profile: str, **kw):
        """Runs a chaos profile (see Client.profile)."""
        return self.client.profile(profile, **kw)


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def _ignore_404(fn) -> None:
    try:
        fn()
    except FaultlineError as e:
        if e.status != 404:
            raise


def _profile_text(profile: str) -> str:
    if "\n" in profile:
        return profile
    if os.path.exists(profile):
        with open(profile, encoding="utf-8") as f:
            return f.read()
    for d in _profile_dirs():
        p = os.path.join(d, profile if profile.endswith(".toml") else profile + ".toml")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                return f.read()
    raise FileNotFoundError(f"no profile named {profile!r} (looked in {', '.join(_profile_dirs())})")


def _profile_dirs() -> list:
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = []
    if os.environ.get("FAULTLINE_PROFILES"):
        dirs.append(os.environ["FAULTLINE_PROFILES"])
    # The source tree (tools/python/faultline → profiles/), then an install (share/faultline/).
    dirs.append(os.path.normpath(os.path.join(here, "..", "..", "..", "profiles")))
    dirs.append(os.path.normpath(os.path.join(here, "..", "..", "profiles")))
    return dirs
