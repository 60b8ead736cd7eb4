"""The asyncio API: the same shape as the synchronous one, and nothing in it blocks the event
loop. HTTP/1.1 to the control API goes over asyncio streams (one connection per request,
`Connection: close`); waits are `asyncio.sleep` polls with deadlines; processes are started with
asyncio.create_subprocess_exec.

    async with await AsyncFaultline.start(redis=True) as fl:
        proxy = await fl.proxy()
        async with proxy.down():
            ...                               # the application keeps running meanwhile
        await proxy.wait_clients(lambda v: v["recovery"]["last_time_to_recover_ms"] is not None)
        async with proxy.profile("outage", speed=5, wait=True) as run:
            ...
        assert not run.failed, run.describe()
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
import urllib.parse
from typing import Any, AsyncIterator, Iterable, Optional, Sequence

from ._common import (FaultlineError, clients_query, describe_verdicts, encode_body,
                      encode_query, error_message, expect_failures, next_free_name,
                      profile_done, profile_name, profile_request, q, resp_error_attrs, with_expect,
                      toxic_body, warn_if_unmatched)
from .api import _metrics_of, default_url
from .process import (Faultline, check_binary, faultline_command, free_port, read_port_file,
                      redis_command, _tail)

__all__ = ["AsyncClient", "AsyncProxy", "AsyncProfileRun", "AsyncFaultline", "AsyncRedisServer"]


class _Response:
    def __init__(self, status: int, headers: dict, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.status, self.headers, self.reader, self.writer = status, headers, reader, writer

    async def body(self) -> bytes:
        try:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                out = bytearray()
                async for chunk in self.chunks():
                    out += chunk
                return bytes(out)
            n = self.headers.get("content-length")
            if n is not None:
                return await self.reader.readexactly(int(n))
            return await self.reader.read()
        finally:
            self.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            line = await self.reader.readline()
            if not line:
                return
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await self.reader.readline()
                return
            data = await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            yield data

    def close(self) -> None:
        self.writer.close()


async def _http(url: str, method: str, path: str, data: Optional[bytes], headers: dict,
                timeout: float) -> _Response:
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
                "User-Agent: faultline-python-asyncio"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(data) if data else 0}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (data or b""))
        await asyncio.wait_for(writer.drain(), timeout)
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ConnectionError(f"bad HTTP status line from {url}: {status_line!r}")
        hdrs = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return _Response(int(parts[1]), hdrs, reader, writer)
    except BaseException:
        writer.close()
        raise


class AsyncClient:
    """The API at `url` (default: $FAULTLINE_API or http://127.0.0.1:8474), for asyncio."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 10.0):
        self.url = default_url(url)
        self.token = token if token is not None else os.environ.get("FAULTLINE_API_TOKEN")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<faultline.AsyncClient {self.url}>"

    def _headers(self, data: Optional[bytes], content_type: str) -> dict:
        h = {}
        if data is not None:
            h["Content-Type"] = content_type
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    async def request(self, method: str, path: str, body: Any = None, *,
                      query: Optional[dict] = None, raw: bool = False,
                      content_type: str = "application/json") -> Any:
        data = encode_body(body)
        full = path + encode_query(query)
        res = await _http(self.url, method, full, data, self._headers(data, content_type),
                          self.timeout)
        payload = await asyncio.wait_for(res.body(), self.timeout)
        if res.status >= 400:
            raise FaultlineError(res.status, error_message(payload.decode(errors="replace")),
                                 method, path)
        if raw:
            return payload.decode()
        if not payload.strip():
            return None
        return json.loads(payload)

    async def stream(self, path: str, query: Optional[dict] = None) -> _Response:
        """Opens a streaming GET (the traffic endpoint); the caller reads res.chunks()."""
        res = await _http(self.url, "GET", path + encode_query(query), None,
                          self._headers(None, ""), self.timeout)
        if res.status >= 400:
            payload = await res.body()
            raise FaultlineError(res.status, error_message(payload.decode(errors="replace")),
                                 "GET", path)
        return res

    async def ready(self) -> bool:
        try:
            await self.version()
            return True
        except (OSError, FaultlineError, ValueError, asyncio.TimeoutError):
            return False

    async def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not await self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"faultline API at {self.url} did not answer in {timeout} s")
            await asyncio.sleep(0.02)

    async def version(self) -> str:
        v = await self.request("GET", "/version")
        return v["version"] if isinstance(v, dict) else str(v)

    async def proxies(self) -> dict:
        return {n: AsyncProxy(self, p) for n, p in (await self.request("GET", "/proxies")).items()}

    async def proxy(self, name: str = "redis") -> "AsyncProxy":
        return AsyncProxy(self, await self.request("GET", f"/proxies/{q(name)}"))

    async def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0",
                           enabled: bool = True) -> "AsyncProxy":
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return AsyncProxy(self, await self.request("POST", "/proxies", body))

    async def populate(self, proxies: list) -> list:
        res = await self.request("POST", "/populate", proxies)
        return [AsyncProxy(self, p) for p in res["proxies"]]

    async def reset(self) -> None:
        await self.request("POST", "/reset")

    async def metrics(self) -> str:
        return await self.request("GET", "/metrics", raw=True)

    async def log_status(self) -> dict:
        return await self.request("GET", "/log")

    async def profiles(self) -> Any:
        return await self.request("GET", "/profiles")

    async def start_profile(self, profile: Any, *, speed: Optional[float] = None,
                            replace: bool = True) -> dict:
        """A shipped profile's name, a path, TOML text or a dict (sent as JSON)."""
        body, kind = profile_request(profile)
        query = {"replace": "true" if replace else "false",
                 "speed": str(speed) if speed else None}
        return await self.request("POST", "/profiles", body, query=query, content_type=kind)

    async def profile_report(self, name: str) -> dict:
        return await self.request("GET", f"/profiles/{q(name)}")

    async def stop_profile(self, name: str) -> None:
        try:
            await self.request("DELETE", f"/profiles/{q(name)}")
        except FaultlineError as e:
            if e.status != 404:
                raise

    async def wait_profile(self, name: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            rep = await self.profile_report(name)
            if profile_done(rep):
                return rep
            if time.monotonic() > deadline:
                raise TimeoutError(f"profile {name} still running after {timeout} s")
            await asyncio.sleep(0.05)

    def profile(self, profile: Any, *, speed: Optional[float] = None, wait: bool = False,
                timeout: float = 120.0, expect: Optional[dict] = None) -> "AsyncProfileRun":
        """`async with api.profile("outage", speed=5, wait=True) as run:` runs the profile
        for the block while the loop keeps running; see AsyncProfileRun."""
        if expect:
            profile = with_expect(profile, expect)
        return AsyncProfileRun(self, profile, speed=speed, wait=wait, timeout=timeout)


class AsyncProfileRun:
    """A profile run by an `async with` block. The exit (with wait=True) awaits the end of the
    timeline and the [expect] verdicts, then stops the profile; `report` is the latest report,
    `failures()` the verdicts that failed."""

    def __init__(self, client: AsyncClient, profile: Any, *, speed=None, wait=False,
                 timeout=120.0):
        self.client, self.profile, self.speed = client, profile, speed
        self.wait_on_exit, self.timeout = wait, timeout
        self.report: dict = {}
        self.name: Optional[str] = None

    async def start(self) -> "AsyncProfileRun":
        self.report = await self.client.start_profile(self.profile, speed=self.speed)
        self.name = profile_name(self.report)
        return self

    async def wait(self, timeout: Optional[float] = None) -> dict:
        self.report = await self.client.wait_profile(self.name, timeout or self.timeout)
        return self.report

    async def stop(self) -> dict:
        await self.client.stop_profile(self.name)
        try:
            self.report = await self.client.profile_report(self.name)
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

    async def __aenter__(self) -> "AsyncProfileRun":
        return await self.start()

    async def __aexit__(self, exc_type, *exc) -> None:
        try:
            if self.wait_on_exit and exc_type is None:
                await self.wait()
        finally:
            await self.stop()

    def __getitem__(self, key):
        return self.report[key]


class AsyncProxy:
    """One named proxy, for asyncio: the methods of faultline.Proxy, awaited."""

    def __init__(self, client: AsyncClient, data: dict):
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
        return f"<faultline.AsyncProxy {self.name} {self.listen} -> {self.upstream}>"

    def _path(self, suffix: str = "") -> str:
        return f"/proxies/{q(self.name)}{suffix}"

    async def refresh(self) -> "AsyncProxy":
        self._data = await self.client.request("GET", self._path())
        return self

    async def update(self, **fields) -> "AsyncProxy":
        self._data = await self.client.request("POST", self._path(), fields)
        return self

    async def disable(self) -> None:
        await self.update(enabled=False)

    async def enable(self) -> None:
        await self.update(enabled=True)

    async def delete(self) -> None:
        await self.client.request("DELETE", self._path())

    async def toxics(self) -> list:
        return await self.client.request("GET", self._path("/toxics"))

    async def get_toxic(self, name: str) -> dict:
        return await self.client.request("GET", self._path(f"/toxics/{q(name)}"))

    async def add_toxic(self, type: str, name: Optional[str] = None, stream: str = "downstream",
                        toxicity: float = 1.0, **attributes) -> dict:
        body = toxic_body(type, name, stream, toxicity, attributes)
        for attempt in range(64):
            try:
                return await self.client.request("POST", self._path("/toxics"), body)
            except FaultlineError as e:
                nxt = None if name else next_free_name(e, type, stream, attempt)
                if nxt is None:
                    raise
                body["name"] = nxt
        raise FaultlineError(409, "no free toxic name after 64 tries", "POST", self._path("/toxics"))

    async def update_toxic(self, name: str, toxicity: Optional[float] = None,
                           **attributes) -> dict:
        body: dict = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return await self.client.request("POST", self._path(f"/toxics/{q(name)}"), body)

    async def remove_toxic(self, name: str) -> None:
        await self.client.request("DELETE", self._path(f"/toxics/{q(name)}"))

    async def connections(self) -> list:
        return await self.client.request("GET", self._path("/connections"))

    async def drop_connections(self, reset: bool = False) -> None:
        await self.client.request("DELETE", self._path("/connections"),
                                  query={"reset": "true" if reset else "false"})

    async def stats(self) -> dict:
        """GET /proxies/{name}/stats, else (--no-metrics) the proxy's samples of /metrics."""
        try:
            return await self.client.request("GET", self._path("/stats"))
        except FaultlineError as e:
            if e.status != 404:
                raise
        return _metrics_of(await self.client.metrics(), self.name)

    async def clients(self, client: Optional[str] = None, since_ms: Optional[float] = None,
                      until_ms: Optional[float] = None) -> dict:
        return await self.client.request("GET", self._path("/clients"),
                                         query=clients_query(client, since_ms, until_ms))

    async def clear_clients(self) -> None:
        await self.client.request("DELETE", self._path("/clients"))

    async def wait_clients(self, predicate, timeout: float = 10.0, interval: float = 0.05,
                           **query) -> dict:
        """Polls the verdicts until predicate(verdicts) is true (the loop runs meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            v = await self.clients(**query)
            if predicate(v):
                return v
            if time.monotonic() > deadline:
                raise TimeoutError(f"verdicts of {self.name} never matched: {json.dumps(v)}")
            await asyncio.sleep(interval)

    # -- faults that undo themselves: `async with proxy.latency(200):` --

    def toxic(self, type: str, name: Optional[str] = None, stream: str = "downstream",
              toxicity: float = 1.0, **attributes) -> "_AsyncToxicBlock":
        return _AsyncToxicBlock(self, type, name, stream, toxicity, attributes)

    def down(self) -> "_AsyncStateBlock":
        return _AsyncStateBlock(self, "enabled", False)

    def accept(self, mode: str) -> "_AsyncStateBlock":
        return _AsyncStateBlock(self, "accept", mode)

    def latency(self, latency_ms: int, jitter_ms: int = 0, stream: str = "downstream", **kw):
        return self.toxic("latency", stream=stream, latency=latency_ms, jitter=jitter_ms, **kw)

    def reset_peer(self, timeout_ms: int = 0, stream: str = "upstream", **kw):
        return self.toxic("reset_peer", stream=stream, timeout=timeout_ms, **kw)

    def blackhole(self, timeout_ms: int = 0, stream: str = "upstream", **kw):
        return self.toxic("timeout", stream=stream, timeout=timeout_ms, **kw)

    def bandwidth(self, rate_kbps: int, stream: str = "downstream", **kw):
        return self.toxic("bandwidth", stream=stream, rate=rate_kbps, **kw)

    def redis_error(self, error: str, commands: Optional[Iterable[str]] = None,
                    keys: Optional[str] = None, name: Optional[str] = None, **filter_attrs):
        return self.toxic("resp_error", name=name, stream="upstream",
                          **resp_error_attrs(error, commands, keys, filter_attrs))

    def redis_reset(self, phase: str = "before", commands: Optional[Iterable[str]] = None,
                    name: Optional[str] = None, **filter_attrs):
        attrs = dict(filter_attrs, phase=phase)
        if commands is not None:
            attrs["commands"] = list(commands)
        return self.toxic("resp_reset", name=name, stream="upstream", **attrs)

    def profile(self, profile: Any, **kw) -> AsyncProfileRun:
        return self.client.profile(profile, **kw)


class _AsyncToxicBlock:
    def __init__(self, proxy: AsyncProxy, type, name, stream, toxicity, attributes):
        self.proxy = proxy
        self.args = (type, name, stream, toxicity, attributes)
        self.toxic: Optional[dict] = None

    async def __aenter__(self) -> dict:
        type, name, stream, toxicity, attributes = self.args
        self.toxic = await self.proxy.add_toxic(type, name=name, stream=stream,
                                                toxicity=toxicity, **attributes)
        return self.toxic

    async def __aexit__(self, *exc) -> None:
        name = self.toxic["name"]
        try:
            last = await self.proxy.get_toxic(name)
        except FaultlineError as e:
            if e.status != 404:
                raise
            return
        warn_if_unmatched(self.proxy.name, last, stacklevel=2)
        try:
            await self.proxy.remove_toxic(name)
        except FaultlineError as e:
            if e.status != 404:
                raise


class _AsyncStateBlock:
    def __init__(self, proxy: AsyncProxy, field: str, value):
        self.proxy, self.field, self.value = proxy, field, value
        self.before = None

    async def __aenter__(self) -> AsyncProxy:
        await self.proxy.refresh()
        self.before = self.proxy._data.get(self.field, True if self.field == "enabled" else "normal")
        await self.proxy.update(**{self.field: self.value})
        return self.proxy

    async def __aexit__(self, *exc) -> None:
        await self.proxy.update(**{self.field: self.before})


async def _astop(proc: "asyncio.subprocess.Process", timeout: float = 5.0) -> None:
    if proc.returncode is not None:
        return
    try:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout)
    except ProcessLookupError:
        pass
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


class AsyncRedisServer:
    """A private redis-server on a free port, started and stopped without blocking the loop."""

    def __init__(self, port: int, proc, workdir: str):
        self.host, self.port, self.proc, self._workdir = "127.0.0.1", port, proc, workdir

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    async def start(cls, binary: Optional[str] = None, args: Sequence[str] = (),
                    timeout: float = 10.0) -> "AsyncRedisServer":
        last = None
        for _ in range(5):
            port = free_port()
            workdir = tempfile.mkdtemp(prefix="faultline-redis-")
            proc = await asyncio.create_subprocess_exec(
                *redis_command(binary, port, workdir, args),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while proc.returncode is None and time.monotonic() < deadline:
                try:
                    _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
                    w.close()
                    return cls(port, proc, workdir)
                except (OSError, asyncio.TimeoutError):
                    await asyncio.sleep(0.02)
            last = f"exit {proc.returncode}" if proc.returncode is not None else "timeout"
            await _astop(proc)
            shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"redis-server did not start: {last}")

    async def stop(self) -> None:
        await _astop(self.proc)
        shutil.rmtree(self._workdir, ignore_errors=True)


class AsyncFaultline:
    """A running faultline started from asyncio (see Faultline.start for the arguments):
    `await AsyncFaultline.start(...)`, `await fl.proxy()`, `await fl.stop()`, or
    `async with await AsyncFaultline.start(...) as fl:`."""

    def __init__(self, proc, client: AsyncClient, redis: Optional[AsyncRedisServer],
                 tmpdir: str, upstream: str, listen: str, traffic_log: str):
        self.proc, self.client, self.redis = proc, client, redis
        self._tmp, self.upstream, self.listen, self.traffic_log = tmpdir, upstream, listen, traffic_log
        self.log_path = os.path.join(tmpdir, "stderr.log")

    @classmethod
    async def start(cls, upstream: Optional[str] = None, *, redis: bool = False,
                    binary: Optional[str] = None, listen: str = "127.0.0.1:0",
                    seed: Optional[int] = None, log: Optional[str] = None,
                    redis_server: Optional[str] = None, args: Sequence[str] = (),
                    timeout: float = 10.0) -> "AsyncFaultline":
        binary = check_binary(binary)
        server = None
        upstream = upstream or os.environ.get("FAULTLINE_UPSTREAM")
        if redis or not upstream:
            server = await AsyncRedisServer.start(binary=redis_server, timeout=timeout)
            upstream = server.address
        tmp = tempfile.mkdtemp(prefix="faultline-")
        port_file = os.path.join(tmp, "ports")
        log_path = os.path.join(tmp, "stderr.log")
        try:
            with open(log_path, "wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    *faultline_command(binary, upstream, listen, port_file, seed, log, args),
                    stdout=out, stderr=asyncio.subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while (ports := read_port_file(port_file)) is None:
                if proc.returncode is not None:
                    raise RuntimeError(f"faultline exited with {proc.returncode}: {_tail(log_path)}")
                if time.monotonic() > deadline:
                    await _astop(proc)
                    raise TimeoutError(f"faultline did not listen within {timeout} s: "
                                       f"{_tail(log_path)}")
                await asyncio.sleep(0.01)
            client = AsyncClient("http://" + ports["api"])
            await client.wait_ready(max(1.0, deadline - time.monotonic()))
            return cls(proc, client, server, tmp, upstream, ports["listen"], log or "")
        except BaseException:
            if server:
                await server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    async def proxy(self, name: str = "redis") -> AsyncProxy:
        return await self.client.proxy(name)

    @property
    def api_url(self) -> str:
        return self.client.url

    def log(self) -> str:
        return _tail(self.log_path, 10 ** 6)

    async def stop(self) -> Optional[int]:
        await _astop(self.proc)
        if self.redis:
            await self.redis.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)
        return self.proc.returncode

    async def __aenter__(self) -> "AsyncFaultline":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


def async_client_of(fl: Faultline) -> AsyncClient:
    """An AsyncClient for a faultline started synchronously (the pytest plugin's session one)."""
    return AsyncClient(fl.client.url, token=fl.client.token, timeout=fl.client.timeout)
