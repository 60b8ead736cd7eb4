"""Start and stop faultline (and, when asked, a private redis-server) for a test session.

    with Faultline.start(redis=True) as fl:      # ports bound by the processes, waits until ready
        r = redis.Redis(port=fl.proxy().port)
        with fl.proxy().down():
            ...

faultline binds port 0 (or the `listen=` address) and reports the ports it got through
--port-file, so nothing races for a port; redis-server, which cannot, is retried on another port
when its port was taken. Standard library only. For asyncio: faultline.aio.AsyncFaultline.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

from ._common import source_root
from .api import Client, Proxy

__all__ = ["Faultline", "RedisServer", "free_port", "find_binary", "binary_candidates",
           "BinaryNotFound", "wait_for_port"]

# Where the commands of the README and docs/building.md build faultline, in this order:
# tools/run (build/release), tools/test (build/ci, then its ASan build build/asan, slowest),
# docs/building.md's build by hand (build), and the development build of the contributors'
# notes (build/dev).
SOURCE_BUILD_DIRS = ("build/release", "build/ci", "build", "build/dev", "build/asan")


class BinaryNotFound(FileNotFoundError):
    """No faultline binary: `tried` lists every place looked at, in order."""

    def __init__(self, tried: List[str]):
        self.tried = tried
        super().__init__(
            "faultline binary not found. Looked at:\n  " + "\n  ".join(tried) +
            "\nBuild it (tools/run, or cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release && "
            "cmake --build build/release), or set FAULTLINE_BIN to its path.")


def binary_candidates(root: Optional[str] = None) -> List[Tuple[str, str]]:
    """(path, why) of every place find_binary() looks, in order, except $FAULTLINE_BIN."""
    out = []
    roots = []
    for r in (root, os.environ.get("FAULTLINE_SOURCE_DIR"), source_root()):
        if r and os.path.abspath(r) not in roots:
            roots.append(os.path.abspath(r))
    for r in roots:
        for d in SOURCE_BUILD_DIRS:
            out.append((os.path.join(r, d, "faultline"), f"source tree {r}"))
    # cmake --install puts the package in PREFIX/share/faultline/python and the binary in
    # PREFIX/bin; a venv's bin/ may hold one as well.
    here = os.path.dirname(os.path.abspath(__file__))
    prefix = os.path.normpath(os.path.join(here, "..", "..", "..", ".."))
    out.append((os.path.join(prefix, "bin", "faultline"), "installed beside this package"))
    try:
        from ._source import INSTALLED_BINARY  # type: ignore
    except ImportError:
        INSTALLED_BINARY = None
    if INSTALLED_BINARY:
        out.append((INSTALLED_BINARY, "installed with the package's source (cmake --install)"))
    out.append((os.path.join(sys.prefix, "bin", "faultline"), "the Python environment's bin"))
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d:
            out.append((os.path.join(d, "faultline"), "PATH"))
    seen, uniq = set(), []
    for p, why in out:
        if p not in seen:
            seen.add(p)
            uniq.append((p, why))
    return uniq


def find_binary(root: Optional[str] = None) -> str:
    """The faultline binary: $FAULTLINE_BIN; else the builds of the source tree (`root`,
    $FAULTLINE_SOURCE_DIR, the tree this package is in or was installed from) in the folders
    the README's commands build to: build/release (tools/run), build/ci (tools/test), build
    (docs/building.md), build/dev, build/asan; else an installed one (PREFIX/bin beside
    share/faultline/python, the venv's bin), else PATH. BinaryNotFound lists every place."""
    env = os.environ.get("FAULTLINE_BIN")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return os.path.abspath(env)
        raise BinaryNotFound([f"$FAULTLINE_BIN={env} (not an executable file)"])
    tried = ["$FAULTLINE_BIN (unset)"]
    for path, why in binary_candidates(root):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        tried.append(f"{path} ({why})")
    raise BinaryNotFound(tried)


def check_binary(binary: Optional[str]) -> str:
    """`binary` if given (it must be an executable file), else find_binary()."""
    if not binary:
        return find_binary()
    if os.path.isfile(binary) and os.access(binary, os.X_OK):
        return binary
    found = shutil.which(binary) if os.sep not in binary else None
    if found:
        return found
    raise BinaryNotFound([f"{binary} (given as the binary; not an executable file)"])


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


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def redis_command(binary: Optional[str], port: int, workdir: str, args: Sequence[str]) -> list:
    binary = binary or os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        raise FileNotFoundError("redis-server not found (Debian: apt-get install redis-server); "
                                "or give an upstream")
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--daemonize", "no", *args]


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
        last = None
        for _ in range(5):
            port = free_port()
            workdir = tempfile.mkdtemp(prefix="faultline-redis-")
            proc = subprocess.Popen(redis_command(binary, port, workdir, args),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def faultline_command(binary: str, upstream: str, listen: str, port_file: str,
                      seed: Optional[int], log: Optional[str], args: Sequence[str]) -> list:
    cmd = [binary, "--listen", listen, "--upstream", upstream, "--api", "127.0.0.1:0",
           "--port-file", port_file]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if log:
        cmd += ["--log", log]
    return cmd + list(args)


def read_port_file(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError:
        return None
    out = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if value:
            out[key] = value.strip()
    return out if "listen" in out else None


class Faultline:
    """A running faultline: `client` is its API, `proxy()` the proxy named "redis", `redis` the
    private redis-server when one was started, `upstream` the Redis it forwards to."""

    def __init__(self, proc: subprocess.Popen, client: Client, redis: Optional[RedisServer],
                 log_path: str, upstream: str = "", listen: str = "", traffic_log: str = ""):
        self.proc = proc
        self.client = client
        self.redis = redis
        self.log_path = log_path
        self.upstream = upstream
        self.listen = listen
        self.traffic_log = traffic_log

    @classmethod
    def start(cls, upstream: Optional[str] = None, *, redis: bool = False,
              binary: Optional[str] = None, listen: str = "127.0.0.1:0",
              seed: Optional[int] = None, log: Optional[str] = None,
              redis_server: Optional[str] = None, args: Sequence[str] = (),
              timeout: float = 10.0) -> "Faultline":
        """Starts faultline in front of `upstream` (host:port), or in front of a private
        redis-server (the binary `redis_server`, else redis-server on PATH) when redis=True or
        when upstream is None and $FAULTLINE_UPSTREAM is unset. The proxy "redis" listens on
        `listen` ("127.0.0.1:6381"; port 0: any free port), the API on a free port. `seed`
        seeds every random choice; `log` is a traffic log file (JSON Lines). Returns once the
        API answers and the proxy listens."""
        binary = check_binary(binary)
        server = None
        upstream = upstream or os.environ.get("FAULTLINE_UPSTREAM")
        if redis or not upstream:
            server = RedisServer.start(binary=redis_server, timeout=timeout)
            upstream = server.address
        tmp = tempfile.mkdtemp(prefix="faultline-")
        port_file = os.path.join(tmp, "ports")
        log_path = os.path.join(tmp, "stderr.log")
        try:
            with open(log_path, "wb") as out:
                proc = subprocess.Popen(
                    faultline_command(binary, upstream, listen, port_file, seed, log, args),
                    stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while (ports := read_port_file(port_file)) is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"faultline exited with {proc.returncode}: {_tail(log_path)}")
                if time.monotonic() > deadline:
                    _stop(proc)
                    raise TimeoutError(f"faultline did not listen within {timeout} s: "
                                       f"{_tail(log_path)}")
                time.sleep(0.01)
            client = Client("http://" + ports["api"])
            client.wait_ready(max(1.0, deadline - time.monotonic()))
            return cls(proc, client, server, log_path, upstream, ports["listen"], log or "")
        except BaseException:
            if server:
                server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def proxy(self, name: str = "redis") -> Proxy:
        return self.client.proxy(name)

    @property
    def api_url(self) -> str:
        return self.client.url

    def log(self) -> str:
        """What faultline wrote on stderr so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> int:
        """SIGTERM, then waits; returns faultline's exit code."""
        _stop(self.proc)
        if self.redis:
            self.redis.stop()
        shutil.rmtree(os.path.dirname(self.log_path), ignore_errors=True)
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
