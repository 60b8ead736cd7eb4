"""The proxy checks of tools/test-windows: faultline.exe under Wine, Linux clients.

Run by tools/test-windows with Debian's /usr/bin/python3 (python3-redis). Arguments: the path
of faultline.exe, the port of a running redis-server on 127.0.0.1, the command that runs a
Windows program (wine). Prints one line per check and a closing 'N passed, N failed' line;
exits 1 if any check failed.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import redis

EXE, REDIS_PORT, WINE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
WORK = os.path.dirname(os.path.abspath(EXE))
results = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    """Polls pred (an event we cannot be told about across Wine) until true, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def check(name):
    def wrap(fn):
        t0 = time.monotonic()
        try:
            fn()
            results.append((name, True))
            print(f"PASS {name} ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 - a check's failure, whatever it is, is reported
            results.append((name, False))
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        return fn
    return wrap


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Faultline:
    def __init__(self, *args):
        self.listen, self.api = free_port(), free_port()
        os.makedirs(os.path.join(WORK, "logs"), exist_ok=True)
        self.log = open(os.path.join(WORK, f"faultline-{self.listen}.log"), "wb")
        self.proc = subprocess.Popen(
            [WINE, EXE, "--listen", f"127.0.0.1:{self.listen}",
             "--upstream", f"127.0.0.1:{REDIS_PORT}", "--api", f"127.0.0.1:{self.api}", *args],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=WORK)
        wait_for(lambda: listening(self.listen) and listening(self.api) or self.proc.poll() is not None,
                 60, "faultline.exe to listen")
        assert self.proc.poll() is None, f"faultline.exe exited with {self.proc.returncode}"

    def ctl(self, *args, ok=True):
        r = subprocess.run([WINE, EXE, "ctl", "--api", f"127.0.0.1:{self.api}", *args],
                           capture_output=True, cwd=WORK, timeout=60)
        out = r.stdout.decode(errors="replace")
        if ok:
            assert r.returncode == 0, f"ctl {' '.join(args)}: exit {r.returncode}: {r.stderr!r}"
        return out

    def client(self, **kw):
        return redis.Redis(port=self.listen, socket_timeout=kw.pop("socket_timeout", 10), **kw)

    def output(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")


fl = Faultline("--log-dir", "logs")
direct = redis.Redis(port=REDIS_PORT)
direct.flushall()


@check("redis-cli round trip")
def _():
    cli = ["redis-cli", "-p", str(fl.listen)]
    assert subprocess.run(cli + ["SET", "cli:k", "v1"], capture_output=True, timeout=30).stdout == b"OK\n"
    assert subprocess.run(cli + ["GET", "cli:k"], capture_output=True, timeout=30).stdout == b"v1\n"


@check("redis-py round trips")
def _():
    r = fl.client()
    for i in range(200):
        r.set(f"py:{i}", i)
    assert [int(x) for x in r.mget([f"py:{i}" for i in range(200)])] == list(range(200))
    assert r.incr("py:counter") == 1 and direct.get("py:counter") == b"1"


@check("10 MB value")
def _():
    big = random.randbytes(10 * 1024 * 1024)
    r = fl.client()
    r.set("big", big)
    assert direct.get("big") == big
    assert r.get("big") == big


@check("10,000-command pipeline equal to direct")
def _():
    def run(c, prefix):
        p = c.pipeline(transaction=False)
        for i in range(10_000):
            [lambda: p.set(f"{prefix}:{i}", i), lambda: p.incr(f"{prefix}:n"),
             lambda: p.get(f"{prefix}:{i - 1}"), lambda: p.strlen(f"{prefix}:{i // 2}")][i % 4]()
        return p.execute()
    assert run(fl.client(), "pl") == run(direct, "pd")


echo_port = None


def start_echo():
    global echo_port
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    echo_port = srv.getsockname()[1]

    def serve(c):
        with c:
            while data := c.recv(65536):
                c.sendall(data)

    def accept():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


@check("byte-exact random data both ways through an echo server")
def _():
    start_echo()
    port = free_port()
    fl.ctl("create", "echo", "--upstream", f"127.0.0.1:{echo_port}", "--listen", f"127.0.0.1:{port}")
    data = random.randbytes(8 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        def send():
            for i in range(0, len(data), 100_003):
                s.sendall(data[i:i + 100_003])
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = bytearray()
        while chunk := s.recv(1 << 20):
            got += chunk
        t.join()
    assert bytes(got) == data, f"{len(got)} bytes back of {len(data)}, or different"


@check("upstream refused")
def _():
    dead, port = free_port(), free_port()
    fl.ctl("create", "dead", "--upstream", f"127.0.0.1:{dead}", "--listen", f"127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PING\r\n")
        try:
            assert s.recv(100) == b"", "data from a refused upstream"
        except ConnectionResetError:
            pass
    r = redis.Redis(port=port, socket_timeout=10)
    try:
        r.ping()
        raise AssertionError("PING through a refused upstream succeeded")
    except redis.ConnectionError:
        pass
    fl.ctl("delete", "dead")


def with_toxic(toxic_type, attrs, body, stream="downstream"):
    args = ["toxic", "add", "redis", "--type", toxic_type, "--toxic-name", "t", "--stream", stream]
    for k, v in attrs.items():
        args += ["--attribute", f"{k}={v}"]
    fl.ctl(*args)
    try:
        assert "t" in fl.ctl("toxic", "list", "redis")
        body()
    finally:
        fl.ctl("toxic", "remove", "redis", "t")


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def fails(fn, exc=(redis.ConnectionError, redis.TimeoutError)):
    try:
        fn()
    except exc as e:
        return e
    raise AssertionError(f"{fn} did not fail")


TOXICS = {
    "latency": ({"latency": 300}, lambda: timed(fl.client().ping) >= 0.28 or fail("no latency")),
    "bandwidth": ({"rate": 100}, lambda: timed(lambda: fl.client().get("bw")) >= 0.8 or fail("not throttled")),
    "slow_close": ({"delay": 400}, lambda: slow_close()),
    "timeout": ({"timeout": 0}, lambda: fails(fl.client(socket_timeout=0.5, retry_on_timeout=False).ping)),
    "slicer": ({"average_size": 500, "size_variation": 100, "delay": 10}, lambda: fl.client().get("bw") == direct.get("bw") or fail("sliced value differs")),
    "limit_data": ({"bytes": 10}, lambda: fails(lambda: fl.client().get("bw"))),
    "reset_peer": ({"timeout": 0}, lambda: fails(fl.client().ping)),
    "resp_error": ({"preset": "loading", "commands": "GET"}, lambda: fails(lambda: fl.client().get("k"), redis.exceptions.BusyLoadingError)),
    "resp_reply": ({"reply": "nil", "commands": "GET"}, lambda: fl.client().get("bw") is None or fail("not nil")),
    "resp_delay": ({"delay": 300, "commands": "GET"}, lambda: timed(lambda: fl.client().get("k")) >= 0.28 or fail("not delayed")),
    "resp_hang": ({"commands": "GET"}, lambda: fails(lambda: fl.client(socket_timeout=0.5).get("k"), redis.TimeoutError)),
    "resp_reset": ({"commands": "GET"}, lambda: fails(lambda: fl.client().get("k"))),
    "resp_close": ({"commands": "GET"}, lambda: fails(lambda: fl.client().get("k"))),
    "truncate": ({"bytes": 3, "commands": "GET"}, lambda: fails(lambda: fl.client().get("bw"))),
}


def fail(msg):
    raise AssertionError(msg)


def slow_close():
    with socket.create_connection(("127.0.0.1", fl.listen), timeout=10) as s:
        s.sendall(b"QUIT\r\n")
        t0 = time.monotonic()
        got = b""
        while chunk := s.recv(100):
            got += chunk
        assert got == b"+OK\r\n", got
        assert time.monotonic() - t0 >= 0.38, "FIN not delayed"


direct.set("bw", random.randbytes(100_000))
for name, (attrs, body) in TOXICS.items():
    check(f"toxic {name}")(lambda a=attrs, b=body, n=name: with_toxic(n, a, b))


@check("the API through faultline.exe ctl")
def _():
    out = fl.ctl("list")
    assert "redis" in out and "echo" in out, out
    fl.ctl("disable", "redis")
    fails(lambda: fl.client(socket_timeout=2).ping())
    fl.ctl("enable", "redis")
    assert fl.client().ping()
    assert "GET" in fl.ctl("stats", "redis").upper()
    fl.ctl("reset")
    r = subprocess.run([WINE, EXE, "ctl", "--api", f"127.0.0.1:{fl.api}", "inspect", "nosuch"],
                       capture_output=True, cwd=WORK, timeout=60)
    assert r.returncode == 1 and b"proxy not found" in r.stderr, r


@check("traffic log under --log-dir, confined, read by faultline.exe inspect")
def _():
    path = os.path.join(WORK, "logs", "sub", "traffic.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    fl.ctl("log", "on", "sub/traffic.jsonl")
    r = fl.client()
    for i in range(50):
        r.set(f"log:{i}", i)
    wait_for(lambda: os.path.exists(path) and open(path, "rb").read().count(b"\n") >= 50, 30,
             "50 records in the traffic log")
    fl.ctl("log", "off")
    for bad in ["../escape.jsonl", "sub\\..\\..\\escape.jsonl", "c:escape.jsonl"]:
        out = subprocess.run([WINE, EXE, "ctl", "--api", f"127.0.0.1:{fl.api}", "log", "on", bad],
                             capture_output=True, cwd=WORK, timeout=60)
        assert out.returncode == 1, (bad, out)
    assert not os.path.exists(os.path.join(WORK, "escape.jsonl"))
    out = subprocess.run([WINE, EXE, "inspect", os.path.relpath(path, WORK)], capture_output=True,
                         cwd=WORK, timeout=60)
    assert out.returncode == 0 and b"SET" in out.stdout, out


@check("a profile with [expect], --exit-after-profile")
def _():
    prof = os.path.join(WORK, "expect-profile.toml")
    with open(prof, "w") as f:
        f.write('name = "win"\nduration = "2s"\n\n[[steps]]\nat = "0s"\nfor = "1s"\n'
                'toxic = { type = "latency", attributes = { latency = 50 } }\n\n'
                '[expect]\nmax_connects_per_second = 200\nresends = "none"\n')
    p = Faultline("--profile", "expect-profile.toml", "--exit-after-profile")
    r = redis.Redis(port=p.listen, client_name="app")
    stop = time.monotonic() + 30
    while p.proc.poll() is None and time.monotonic() < stop:
        try:
            r.incr("profile:n")
        except redis.ConnectionError:
            break
        time.sleep(0.02)
    code = p.proc.wait(timeout=60)
    assert code == 0, f"exit {code}:\n{p.output()[-3000:]}"
    assert "expect" in p.output().lower(), p.output()[-3000:]


@check("idle connections free their RESP state and go on (pages decommitted, committed again)")
def _():
    q = Faultline("--log-level", "debug")
    try:
        old = [redis.Redis(port=q.listen, db=3, socket_timeout=10) for _ in range(20)]
        for i, r in enumerate(old):
            r.set(f"idle:{i}", i)
        # The sweep frees their state and hands its slots' pages back (VirtualFree DECOMMIT).
        wait_for(lambda: "idle sessions freed their RESP state" in q.output(), 30,
                 "the idle sweep")
        # New connections take those slots again (committed again), old ones go on in db 3.
        fresh = [redis.Redis(port=q.listen, db=3, socket_timeout=10) for _ in range(20)]
        for i in range(20):
            assert int(old[i].get(f"idle:{i}")) == i
            assert int(fresh[i].get(f"idle:{i}")) == i
        assert q.proc.poll() is None, q.output()[-3000:]
    finally:
        q.proc.kill()


@check("clean exit on Ctrl-C (SIGINT to the Wine process)")
def _():
    fl.proc.send_signal(signal.SIGINT)
    code = fl.proc.wait(timeout=30)
    assert code == 0, f"exit {code}:\n{fl.output()[-3000:]}"
    assert "Ctrl-C: stopping" in fl.output(), fl.output()[-3000:]


if fl.proc.poll() is None:
    fl.proc.kill()
passed = sum(ok for _, ok in results)
print(f"{passed} passed, {len(results) - passed} failed")
sys.exit(0 if passed == len(results) else 1)
