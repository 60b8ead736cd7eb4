"""ioredis against faultline. ioredis comes from the npm registry, installed into a scratch
folder ($FAULTLINE_NPM_DIR, default ~/.cache/faultline-clients-npm) on first use; if npm cannot
install it the tests fail with the reason, they do not skip."""

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ioredis")


@pytest.fixture(scope="module")
def node_modules():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed for the ioredis tests (Debian: apt-get install nodejs npm)")
    folder = os.environ.get("FAULTLINE_NPM_DIR") or os.path.expanduser("~/.cache/faultline-clients-npm")
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(HERE, "package.json"), os.path.join(folder, "package.json"))
    if not os.path.isdir(os.path.join(folder, "node_modules", "ioredis")):
        res = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                             cwd=folder, capture_output=True, text=True, timeout=300)
        if res.returncode != 0 or not os.path.isdir(os.path.join(folder, "node_modules", "ioredis")):
            pytest.fail(f"npm could not install ioredis into {folder} (exit {res.returncode}):\n"
                        f"{res.stdout}\n{res.stderr}")
    return os.path.join(folder, "node_modules")


def node(node_modules, script, *args, timeout=30):
    env = dict(os.environ, NODE_PATH=node_modules)
    res = subprocess.run(["node", os.path.join(HERE, script), *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=timeout)
    lines = [l for l in res.stdout.splitlines() if l.startswith("{")]
    assert lines, f"{script} printed no result (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"
    return json.loads(lines[-1])


def test_readonly_reconnects_and_resends_the_write(faultline_proxy, node_modules):
    with faultline_proxy.redis_error("readonly", commands=["SET"], first=1):
        seen = node(node_modules, "readonly.js", faultline_proxy.port)
    assert seen["ok"], seen
    assert seen["reply"] == "OK" and seen["value"] == "written"
    assert any(e.startswith("READONLY") for e in seen["errors"])
    assert seen["connects"] >= 2  # reconnectOnError → 2 reconnected

    # A retry after an error reply (Redis ran nothing): counted apart from resends.
    v = faultline_proxy.wait_clients(lambda v: v["resends"]["after_errors"] >= 1)
    assert v["resends"]["total"] == 0
    resend = v["resends"]["recent"][-1]
    assert resend["command"] == "SET" and resend["cut_off"] is False
    assert resend["reason"] == "injected READONLY"
    assert resend["same_connection"] is False  # resent on the new connection


def test_flapping_every_command_succeeds_and_reconnects_follow_retry_strategy(
        faultline_proxy, node_modules):
    # Two down phases of 1.3 s: connects are accepted and reset at once, so faultline sees each
    # attempt; 1.2 s up between them.
    def flap():
        time.sleep(0.5)
        for _ in range(2):
            with faultline_proxy.accept("reset"):
                faultline_proxy.drop_connections(reset=True)
                time.sleep(1.3)
            time.sleep(1.2)

    t = threading.Thread(target=flap)
    t.start()
    seen = node(node_modules, "flapping.js", faultline_proxy.port, 5.5)
    t.join()
    assert seen["failures"] == [], seen
    assert seen["ok"] == seen["sent"] and seen["value"] == seen["ok"]

    v = faultline_proxy.clients()
    windows = [w for w in v["windows"] if "accept=reset" in w["faults"]]
    assert len(windows) == 2, v["windows"]
    for w in windows:
        assert w["time_to_recover_ms"] is not None and w["time_to_recover_ms"] < 1000
        iv = w["reconnect_intervals_ms"]
        # ioredis's retryStrategy: 100, 200, 300, 400 ms after each lost connection.
        assert len(iv) >= 3, iv
        # Load only delays node's timers: never much early, late by up to 200 ms when loaded.
        for measured, expected in zip(iv, (100, 200, 300, 400)):
            assert 0.5 * expected <= measured <= 1.5 * expected + 200, iv
        assert w["backoff"] == "growing", iv
