"""Start and stop faultline (and, when asked, a private redis-server) for a test session.

    with Faultline.start(redis=True) as fl:      # free ports, waits until both answer
        r = redis.Redis(port=fl.proxy().port)
        with fl.proxy().down():
            ...

Ports are chosen free (bound to port 0, then released); a start that loses the race for a port
is retried on other ports. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional, Sequence

from .api import Client, Proxy

__all__ = ["Faultline", "RedisServer", "free_port", "find_binary", "wait_for_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} opened")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")
        time.sleep(0.02)


def find_binary() -> str:
    """$FAULTLINE_BIN, `faultline` on PATH, or a build in the source tree."""
    env = os.environ.get("FAULTLINE_BIN")
    if env:
        return env
    on_path = shutil.which("faultline")
    if on_path:
        return on_path
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    for build in ("build", "build/ci", "build-release"):
        p = os.path.join(root, build, "faultline")
        if os.access(p, os.X_OK):
            return p
    raise FileNotFoundError("faultline binary not found: set FAULTLINE_BIN or put it on PATH")


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """A private redis-server on a free port, with no persistence, in a temporary directory."""

    def __init__(self, port: int, proc: subprocess.Popen, workdir: str):
        self.host = "127.0.0.1"
        self.port = port
        self.proc = proc
        self._workdir = workdir

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def start(cls, binary: Optional[str] = None, args: Sequence[str] = (),
              timeout: float = 10.0) -> "RedisServer":
        binary = binary or os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
        if not binary:
            raise FileNotFoundError("redis-server not found (Debian: apt-get install redis-server)")
        last = None
        for _ in range(5):
            port = free_port()
            workdir = tempfile.mkdtemp(prefix="faultline-redis-")
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", workdir, "--daemonize", "no", *args],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_for_port("127.0.0.1", port, timeout, proc)
                return cls(port, proc, workdir)
            except (RuntimeError, TimeoutError) as e:
                _stop(proc)
                shutil.rmtree(workdir, ignore_errors=True)
                last = e  # most likely the port was taken in between: try another
        raise RuntimeError(f"redis-server did not start: {last}")

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Faultline:
    """A running faultline: `client` is its API, `proxy()` the proxy named "redis" (listening
    on a free port), `redis` the private redis-server when one was started."""

    def __init__(self, proc: subprocess.Popen, client: Client, redis: Optional[RedisServer],
                 log_path: str):
        self.proc = proc
        self.client = client
        self.redis = redis
        self.log_path = log_path

    @classmethod
    def start(cls, upstream: Optional[str] = None, *, redis: bool = False,
              binary: Optional[str] = None, args: Sequence[str] = (),
              timeout: float = 10.0) -> "Faultline":
        """Starts faultline in front of `upstream` (host:port), or in front of a private
        redis-server when redis=True (or when upstream is None and $FAULTLINE_UPSTREAM is
        unset). Returns once the API answers and the proxy listens."""
        binary = binary or find_binary()
        server = None
        upstream = upstream or os.environ.get("FAULTLINE_UPSTREAM")
        if redis or not upstream:
            server = RedisServer.start(timeout=timeout)
            upstream = server.address
        last = None
        try:
            for _ in range(5):
                api_port = free_port()
                log = tempfile.NamedTemporaryFile(prefix="faultline-", suffix=".log", delete=False)
                proc = subprocess.Popen(
                    [binary, "--listen", "127.0.0.1:0", "--upstream", upstream,
                     "--api", f"127.0.0.1:{api_port}", *args],
                    stdout=log, stderr=subprocess.STDOUT)
                log.close()
                client = Client(f"http://127.0.0.1:{api_port}")
                try:
                    deadline = time.monotonic() + timeout
                    while not client.ready():
                        if proc.poll() is not None:
                            raise RuntimeError(f"faultline exited with {proc.returncode}: "
                                               f"{_tail(log.name)}")
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"faultline API did not answer in {timeout} s: "
                                               f"{_tail(log.name)}")
                        time.sleep(0.02)
                    fl = cls(proc, client, server, log.name)
                    p = fl.proxy()
                    wait_for_port(p.host, p.port, timeout, proc)
                    return fl
                except (RuntimeError, TimeoutError) as e:
                    _stop(proc)
                    last = e
            raise RuntimeError(f"faultline did not start: {last}")
        except BaseException:
            if server:
                server.stop()
            raise

    def proxy(self, name: str = "redis") -> Proxy:
        return self.client.proxy(name)

    def log(self) -> str:
        """What faultline wrote on stderr so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> int:
        """SIGTERM, then waits; returns faultline's exit code."""
        _stop(self.proc)
        if self.redis:
            self.redis.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        return self.proc.returncode

    def __enter__(self) -> "Faultline":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""
