"""tools/run stops everything it started, however it is stopped.

Each test starts tools/run in its own session (so a signal to the process group reaches
tools/run, faultline and redis-server, as Ctrl-C in a terminal does, and nothing else) with
FAULTLINE_BIN set (no install, no build) and free ports (never 6379/6381/8474), waits until
faultline forwards a PING, stops tools/run one way or another, and checks that tools/run exited
in time, that the faultline and redis-server it started are gone, and that it said so.

Linux only: the children are found through /proc.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = ROOT / "tools" / "run"
START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 15  # tools/run gives each child 5 s before SIGKILL

pytestmark = pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(),
                                reason="finds the children of tools/run through /proc")

# A signal ignored when a shell starts cannot be trapped by it: make sure tools/run does not
# inherit an ignored SIGINT/SIGTERM/SIGHUP from whatever runs the tests.
for _sig in (signal.SIGHUP, signal.SIGTERM):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_stat(pid):
    """(comm, state, ppid) of a process, or None once it is gone."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return comm, state, int(ppid)


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def children(ppid):
    """The children of ppid by name; faultline is whatever runs FAULTLINE_BIN."""
    fl_exe = os.path.realpath(os.environ["FAULTLINE_BIN"])
    out = {}
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            st = proc_stat(int(d.name))
            if st and st[2] == ppid:
                try:
                    exe = os.path.realpath(d / "exe")
                except OSError:
                    exe = ""
                out["faultline" if exe == fl_exe else st[0]] = int(d.name)
    return out


class Run:
    """tools/run on private ports, its output collected line by line."""

    def __init__(self, *args, wrapper=(), extra_env=None):
        self.redis_port, self.port, self.api_port = free_ports(3)
        env = dict(os.environ,
                   FAULTLINE_RUN_REDIS_PORT=str(self.redis_port),
                   FAULTLINE_RUN_PORT=str(self.port),
                   FAULTLINE_RUN_API_PORT=str(self.api_port), **(extra_env or {}))
        if "FAULTLINE_BIN" not in env:
            pytest.fail("FAULTLINE_BIN must name the built faultline (ctest sets it)")
        self.lines = []
        self.changed = threading.Condition()
        self.proc = subprocess.Popen([*wrapper, str(RUN), *args], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.children = {}

    def _read(self):
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)  # EOF
            self.changed.notify_all()

    def output(self):
        with self.changed:
            return "\n".join(l for l in self.lines if l is not None)

    def wait_line(self, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                if any(l is not None and rx.search(l) for l in self.lines):
                    return
                left = deadline - time.monotonic()
                if None in self.lines or left <= 0:
                    pytest.fail(f"no line matching {pattern!r}; tools/run said:\n"
                                + self.output())
                self.changed.wait(left)

    def wait_ready(self):
        """Until faultline answers a PING through to redis, then note the children."""
        self.wait_line(r"control API on http://", START_TIMEOUT_S)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert s.recv(64) == b"+PONG\r\n"
        self.children = children(self.proc.pid)
        assert set(self.children) == {"faultline", "redis-server"}, (self.children,
                                                                     self.output())

    def wait_exit(self):
        try:
            rc = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"tools/run still running {STOP_TIMEOUT_S} s later:\n" + self.output())
        self.reader.join(5)
        return rc

    def kill_leftovers(self):
        for pid in [self.proc.pid, *self.children.values()]:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait(5)


@pytest.fixture
def run():
    r = Run()
    yield r
    r.kill_leftovers()


def assert_all_stopped(run, rc, expected_rc):
    out = run.output()
    # tools/run waits for its children: none may outlive it, not even for a moment.
    left = {name: pid for name, pid in run.children.items() if alive(pid)}
    assert not left, f"still running after tools/run exited: {left}\n{out}"
    assert rc == expected_rc, out
    fl, redis = run.children["faultline"], run.children["redis-server"]
    assert f"tools/run: stopped redis-server (pid {redis})" in out.splitlines(), out
    return out, fl


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
@pytest.mark.parametrize("target", ["pid", "group"])
def test_a_signal_stops_faultline_and_redis(run, sig, target):
    run.wait_ready()
    if target == "pid":  # a CI script's `kill`, a process manager
        os.kill(run.proc.pid, sig)
    else:  # Ctrl-C or a closed terminal: every process of the group gets it
        os.killpg(run.proc.pid, sig)
    rc = run.wait_exit()
    out, fl = assert_all_stopped(run, rc, 0)  # faultline's own status after a clean stop
    assert f"tools/run: stopped faultline (pid {fl})" in out.splitlines(), out
    assert f"tools/run: {sig.name}: stopping" in out, out


def test_faultline_killed_stops_redis_and_passes_its_status_on(run):
    run.wait_ready()
    os.kill(run.children["faultline"], signal.SIGKILL)
    rc = run.wait_exit()
    out, fl = assert_all_stopped(run, rc, 128 + signal.SIGKILL)
    assert f"tools/run: faultline (pid {fl}) exited with status 137" in out, out


def test_faultline_exiting_stops_redis(run):
    run.wait_ready()
    os.kill(run.children["faultline"], signal.SIGTERM)  # faultline stops cleanly: status 0
    rc = run.wait_exit()
    out, fl = assert_all_stopped(run, rc, 0)
    assert f"tools/run: faultline (pid {fl}) exited with status 0" in out, out


def env_can_reset_sigint():
    return subprocess.run(["env", "--default-signal=INT", "true"],
                          stderr=subprocess.DEVNULL).returncode == 0


@pytest.mark.skipif(not env_can_reset_sigint(), reason="needs env --default-signal (GNU 9.1+)")
def test_sigint_to_a_background_run_stops_it():
    # `tools/run &` in a script: started with SIGINT ignored, which bash cannot trap as such.
    r = Run(wrapper=["/bin/sh", "-c", "trap '' INT; exec \"$0\" \"$@\""])
    try:
        r.wait_ready()
        os.kill(r.proc.pid, signal.SIGINT)
        rc = r.wait_exit()
        out, fl = assert_all_stopped(r, rc, 0)
        assert f"tools/run: stopped faultline (pid {fl})" in out.splitlines(), out
    finally:
        r.kill_leftovers()


def free_base(count, bus_offset=10000):
    """A base port with `count` free ports from it, and their cluster bus ports (+10000)."""
    for base in range(21000, 30000, 37):
        ports = [base + i for i in range(count)] + [base + bus_offset + i for i in range(count)]
        try:
            socks = []
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no free range of ports for a cluster")


def test_cluster_mode_stops_every_node():
    # Six redis-servers made a cluster, then faultline --cluster. Whether this faultline takes
    # --cluster (then Ctrl-C to the group stops it all) or refuses it (it exits 2, and tools/run
    # stops the nodes itself), no node outlives tools/run.
    r = Run("--cluster", extra_env={"FAULTLINE_RUN_BASE_PORT": str(free_base(6))})
    try:
        r.wait_line(r"clients connect to:|faultline \(pid \d+\) exited with status", 60)
        r.children = children(r.proc.pid)
        if "exited with status" not in r.output():
            os.killpg(r.proc.pid, signal.SIGINT)
        rc = r.wait_exit()
        out = r.output()
        stopped = re.findall(r"^tools/run: stopped node-(\d+) \(pid (\d+)\)$", out, re.M)
        assert len(stopped) == 6, out
        left = [pid for _, pid in stopped if alive(int(pid))]
        assert not left, f"still running after tools/run exited: {left}\n{out}"
        assert rc in (0, 2), out
    finally:
        r.kill_leftovers()
