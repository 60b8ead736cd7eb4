"""Capture a proxy's traffic records while a test runs, from the API's live stream
(GET /proxies/{name}/traffic: the records of docs/traffic-log.md, with the log file on or off).

    with TrafficCapture(api, "redis") as capture:
        r.incr("ctr")
        for rec in capture.commands("INCR", "INCRBY"):
            print(rec.args, rec.reply, rec.received, rec.fault)

A background thread reads the stream into memory. Reading the records (`records()`,
`commands()`) first makes sure every record faultline wrote before the call has arrived: it
makes one API request (the API answers on the same event loop that writes the records, so a
record written before is on the stream socket before the answer) and then has the reader drain
what the socket holds. `await capture.arecords()` does the same without blocking the loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import socket
import threading
import time
import urllib.parse
from typing import Iterable, List, Optional

from ._common import FaultlineError, q

__all__ = ["TrafficCapture", "Record"]


class Record(dict):
    """One traffic record (a dict, as faultline wrote it), with shortcuts."""

    cmd = property(lambda self: self.get("cmd"))
    event = property(lambda self: self.get("event"))
    args = property(lambda self: self.get("args", []))
    key = property(lambda self: self.get("key"))
    fault = property(lambda self: self.get("fault"))
    session = property(lambda self: self.get("session"))

    @property
    def reply(self) -> Optional[dict]:
        """What Redis answered (or the reply a toxic injected), as summarized in the record."""
        return self.get("reply")

    @property
    def delivery(self) -> Optional[dict]:
        """How the reply reached the client (docs/traffic-log.md): {"delivered": true,
        "delivered_us": N, "by": toxics that held it} or {"delivered": false, "client": "gone" |
        "cut", "by": what cut it}; None when faultline did not follow it (or an older build)."""
        d = self.get("delivery")
        return d if isinstance(d, dict) else None

    @property
    def delivered(self) -> Optional[bool]:
        """Whether the client's socket took the whole reply; None if unknown."""
        d = self.delivery
        return d.get("delivered") if d is not None else None

    @property
    def delivered_us(self) -> Optional[int]:
        """Microseconds from the request to the client taking the reply's last byte."""
        d = self.delivery
        return d.get("delivered_us") if d is not None else None

    @property
    def received(self) -> Optional[dict]:
        """What the client received: the reply in the record (Redis's, or the one a toxic
        injected), or None when the delivery says the client did not get it."""
        if self.delivered is False:
            return None
        return self.reply

    def __repr__(self) -> str:
        if self.cmd:
            return f"<Record {self.cmd} {' '.join(self.args)} -> {self.reply} fault={self.fault}>"
        return f"<Record {self.event} {dict(self)}>"


class TrafficCapture:
    """Reads GET /proxies/{proxy}/traffic into memory from start() to stop(). `client` is a
    faultline.Client (or anything with `url` and `token`)."""

    def __init__(self, client, proxy: str = "redis", timeout: float = 5.0):
        self.url = client.url
        self.token = getattr(client, "token", None)
        self.proxy = proxy
        self.timeout = timeout
        self._records: List[Record] = []
        self._lock = threading.Lock()
        self._buf = b""
        self._body = b""
        self._chunked = False
        self._headers_done = False
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._wake_r, self._wake_w = os.pipe()
        self._drain_req = 0
        self._drained = 0
        self._stop = False
        self._error: Optional[BaseException] = None

    # -- life cycle --

    def _request(self) -> tuple:
        u = urllib.parse.urlsplit(self.url)
        host, port = u.hostname or "127.0.0.1", u.port or 80
        head = [f"GET /proxies/{q(self.proxy)}/traffic HTTP/1.1", f"Host: {host}:{port}",
                "User-Agent: faultline-python-capture", "Accept: application/x-ndjson"]
        if self.token:
            head.append(f"Authorization: Bearer {self.token}")
        return (host, port), ("\r\n".join(head) + "\r\n\r\n").encode()

    def _closed(self) -> ConnectionError:
        return ConnectionError(f"faultline closed the traffic stream of {self.proxy}")

    def start(self) -> "TrafficCapture":
        addr, request = self._request()
        self._sock = socket.create_connection(addr, timeout=self.timeout)
        self._sock.sendall(request)
        # The subscription exists once the response's head arrived: wait for it here, so that
        # nothing the test does afterwards is missed.
        while not self._headers_done:
            data = self._sock.recv(65536)
            if not data:
                raise self._closed()
            self._feed(data)
        return self._start_thread()

    async def astart(self) -> "TrafficCapture":
        """start() without blocking the event loop."""
        loop = asyncio.get_running_loop()
        addr, request = self._request()
        sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
        sock.setblocking(False)
        self._sock = sock
        await asyncio.wait_for(loop.sock_connect(sock, addr), self.timeout)
        await asyncio.wait_for(loop.sock_sendall(sock, request), self.timeout)
        while not self._headers_done:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), self.timeout)
            if not data:
                raise self._closed()
            self._feed(data)
        return self._start_thread()

    def _start_thread(self) -> "TrafficCapture":
        self._sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"faultline-capture-{self.proxy}",
                                        daemon=True)
        self._thread.start()
        return self

    async def __aenter__(self) -> "TrafficCapture":
        return await self.astart()

    async def __aexit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        if self._thread:
            self._thread.join(self.timeout)
        if self._sock:
            self._sock.close()
            self._sock = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "TrafficCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- reading --

    def clear(self) -> None:
        """Forgets what was captured so far (after syncing, so nothing older arrives later)."""
        self.sync()
        with self._lock:
            self._records.clear()

    async def aclear(self) -> None:
        await self.async_sync()
        with self._lock:
            self._records.clear()

    def records(self, sync: bool = True) -> List[Record]:
        """Every record captured so far (commands and events), oldest first."""
        if sync:
            self.sync()
        with self._lock:
            return list(self._records)

    def commands(self, *names: str, key: Optional[str] = None, sync: bool = True) -> List[Record]:
        """The command records, of the given commands only when names are given (upper case,
        with the subcommand as in `cmd`: "CLIENT SETNAME"), of one first key when given."""
        return _select(self.records(sync), names, key)

    def events(self, *kinds: str, sync: bool = True) -> List[Record]:
        """The event records (open, close, toxic_added...), of the given kinds when given."""
        return [r for r in self.records(sync) if r.event and (not kinds or r.event in kinds)]

    async def arecords(self) -> List[Record]:
        await self.async_sync()
        return self.records(sync=False)

    async def acommands(self, *names: str, key: Optional[str] = None) -> List[Record]:
        return _select(await self.arecords(), names, key)

    async def aevents(self, *kinds: str) -> List[Record]:
        return [r for r in await self.arecords() if r.event and (not kinds or r.event in kinds)]

    # -- making sure what faultline wrote has arrived --

    def sync(self) -> None:
        from .api import Client
        Client(self.url, token=self.token, timeout=self.timeout).version()
        target = self._request_drain()
        deadline = time.monotonic() + self.timeout
        while self._drained < target and self._thread and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        self._raise_error()

    async def async_sync(self) -> None:
        from .aio import AsyncClient
        await AsyncClient(self.url, token=self.token, timeout=self.timeout).version()
        target = self._request_drain()
        deadline = time.monotonic() + self.timeout
        while self._drained < target and self._thread and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.001)
        self._raise_error()

    def _request_drain(self) -> int:
        with self._lock:
            self._drain_req += 1
            target = self._drain_req
        os.write(self._wake_w, b"d")
        return target

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    # -- the reader thread --

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stop:
                for key, _ in sel.select():
                    if key.fd == self._wake_r:
                        os.read(self._wake_r, 4096)
                        if self._stop:
                            return
                        req = self._drain_req  # every request up to here made its API call
                        if not self._drain():
                            self._drained = 1 << 62
                            return
                        self._drained = req
                    else:
                        if not self._drain():
                            return
        except BaseException as e:  # reported to the next reader
            self._error = e
            self._drained = 1 << 62
        finally:
            sel.close()

    def _drain(self) -> bool:
        """Reads what the socket holds now; False at the end of the stream."""
        while True:
            try:
                data = self._sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return True
            if not data:
                return False
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._buf += data
        if not self._headers_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buf[:end].decode("latin-1").split("\r\n")
            self._buf = self._buf[end + 4:]
            status = int(head[0].split(" ")[1])
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in head[1:])}
            if status != 200:
                raise FaultlineError(status, self._buf.decode(errors="replace"),
                                     "GET", f"/proxies/{self.proxy}/traffic")
            self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            self._headers_done = True
        if self._chunked:
            while True:
                nl = self._buf.find(b"\r\n")
                if nl < 0:
                    break
                size = int(self._buf[:nl].split(b";")[0] or b"0", 16)
                if len(self._buf) < nl + 2 + size + 2:
                    break
                self._body += self._buf[nl + 2:nl + 2 + size]
                self._buf = self._buf[nl + 2 + size + 2:]
        else:
            self._body += self._buf
            self._buf = b""
        *lines, self._body = self._body.split(b"\n")
        parsed = []
        for line in lines:
            if line.strip():
                try:
                    parsed.append(Record(json.loads(line)))
                except ValueError:
                    parsed.append(Record({"event": "unparsed", "line": line.decode(errors="replace")}))
        if parsed:
            with self._lock:
                self._records.extend(parsed)


def _select(records: Iterable[Record], names, key) -> List[Record]:
    want = {n.upper() for n in names}
    return [r for r in records
            if r.cmd and (not want or r.cmd.upper() in want) and (key is None or r.key == key)]
