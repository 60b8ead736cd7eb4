"""The installed faultline package itself: that it is the installed copy, binary discovery,
nesting fault blocks, the unmatched-toxic warning, profiles as names, paths, TOML and dicts,
listen=, the asyncio API not blocking the loop, and the traffic capture."""

import asyncio
import importlib.metadata
import json
import os
import stat
import sys
import sysconfig
import warnings

import pytest
import redis

import faultline
import faultline._common as common
import faultline.process as process
from faultline import BinaryNotFound, Faultline, FaultlineError, UnmatchedToxicWarning, find_binary
from faultline.aio import AsyncFaultline


# -- the installed copy --

def test_the_tests_run_against_the_installed_copy(pytestconfig):
    assert sys.prefix != sys.base_prefix, "not in a virtual environment"
    site = os.path.realpath(sysconfig.get_paths()["purelib"])
    assert os.path.realpath(faultline.__file__).startswith(site + os.sep), faultline.__file__
    assert not any(p.rstrip("/").endswith(os.path.join("tools", "python")) for p in sys.path)
    eps = importlib.metadata.entry_points(group="pytest11")
    assert [e.value for e in eps if e.name == "faultline"] == ["faultline.pytest_plugin"]
    assert pytestconfig.pluginmanager.hasplugin("faultline")
    assert importlib.metadata.version("faultline") == faultline.__version__


def test_shipped_profiles_come_with_the_package(monkeypatch):
    monkeypatch.setattr(common, "source_root", lambda: None)
    monkeypatch.delenv("FAULTLINE_PROFILES", raising=False)
    text = common.profile_text("outage")
    assert 'name = "outage"' in text
    with pytest.raises(FileNotFoundError, match="no profile named 'nope'"):
        common.profile_text("nope")


# -- binary discovery --

def _exe(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def no_binary(monkeypatch, tmp_path):
    """No $FAULTLINE_BIN, no source tree, an empty PATH: discovery sees only what a test adds."""
    monkeypatch.delenv("FAULTLINE_BIN", raising=False)
    monkeypatch.delenv("FAULTLINE_SOURCE_DIR", raising=False)
    monkeypatch.setattr(process, "source_root", lambda: None)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return tmp_path


def test_discovery_knows_where_the_readme_builds(no_binary):
    tree = no_binary / "tree"
    # tools/test's build and docs/building.md's build exist; tools/run's wins once it exists.
    ci = _exe(str(tree / "build" / "ci" / "faultline"))
    _exe(str(tree / "build" / "faultline"))
    assert find_binary(str(tree)) == ci
    release = _exe(str(tree / "build" / "release" / "faultline"))
    assert find_binary(str(tree)) == release


def test_discovery_uses_faultline_source_dir_and_path(no_binary, monkeypatch):
    tree = no_binary / "tree"
    dev = _exe(str(tree / "build" / "dev" / "faultline"))
    monkeypatch.setenv("FAULTLINE_SOURCE_DIR", str(tree))
    assert find_binary() == dev
    monkeypatch.delenv("FAULTLINE_SOURCE_DIR")
    bindir = no_binary / "bin"
    on_path = _exe(str(bindir / "faultline"))
    monkeypatch.setenv("PATH", f"{no_binary / 'empty-path'}{os.pathsep}{bindir}")
    assert find_binary() == on_path


def test_discovery_failure_lists_every_place_tried(no_binary):
    tree = no_binary / "tree"
    tree.mkdir()
    with pytest.raises(BinaryNotFound) as e:
        find_binary(str(tree))
    msg = str(e.value)
    assert "$FAULTLINE_BIN (unset)" in msg
    for d in ("build/release", "build/ci", "build", "build/dev", "build/asan"):
        assert os.path.join(str(tree), d, "faultline") in msg, d
    assert os.path.join(str(no_binary / "empty-path"), "faultline") + " (PATH)" in msg
    assert e.value.tried[0] == "$FAULTLINE_BIN (unset)"


def test_a_bad_faultline_bin_is_named(no_binary, monkeypatch):
    monkeypatch.setenv("FAULTLINE_BIN", str(no_binary / "nothing-here"))
    with pytest.raises(BinaryNotFound, match="FAULTLINE_BIN=.*nothing-here"):
        find_binary()


# -- fault blocks --

def test_nested_blocks_of_one_kind_get_unique_names(faultline_proxy):
    p = faultline_proxy
    with p.latency(10) as a, p.latency(20) as b, p.latency(30) as c:
        assert [a["name"], b["name"], c["name"]] == \
            ["latency_downstream", "latency_downstream_2", "latency_downstream_3"]
        assert {t["name"] for t in p.toxics()} == {a["name"], b["name"], c["name"]}
        with pytest.warns(UnmatchedToxicWarning, match="resp_error_loading_GET_2"):
            with p.redis_error("loading", commands=["GET"]) as r1, \
                    p.redis_error("loading", commands=["GET"]) as r2:
                assert (r1["name"], r2["name"]) == \
                    ("resp_error_loading_GET", "resp_error_loading_GET_2")
                with pytest.raises(redis.exceptions.BusyLoadingError):
                    redis.Redis(port=p.port).get("k")  # the first one answers: r2 sees none
    assert p.toxics() == []
    # A name the caller gives is the caller's: a clash is the API's 409.
    with p.latency(5, name="mine"):
        with pytest.raises(FaultlineError) as e:
            with p.latency(5, name="mine"):
                pass
        assert e.value.status == 409


def test_nested_down_and_accept_restore_the_outer_state(faultline_proxy):
    p = faultline_proxy
    with p.down():
        with p.down():
            pass
        assert p.refresh().enabled is False
        with p.accept("reset"):
            with p.accept("hang"):
                pass
            assert p.refresh().accept_mode == "reset"
    assert p.refresh().enabled is True and p.accept_mode == "normal"


def test_a_resp_toxic_that_matched_nothing_warns(faultline_proxy):
    p = faultline_proxy
    r = redis.Redis(port=p.port)
    with pytest.warns(UnmatchedToxicWarning, match=r"'GETT'|GETT") as w:
        with p.redis_error("loading", commands=["GETT"]):
            r.set("k", "v")
    assert w[0].filename == __file__  # points at the `with`, not at the package
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnmatchedToxicWarning)
        with p.redis_error("loading", commands=["GET"]):
            with pytest.raises(redis.exceptions.BusyLoadingError):
                r.get("k")
        with p.latency(1):  # not a RESP toxic: nothing to match
            pass


async def test_async_blocks_nest_and_warn(async_faultline_proxy):
    p = async_faultline_proxy
    async with p.reset_peer() as a:
        async with p.reset_peer() as b:
            assert (a["name"], b["name"]) == ("reset_peer_upstream", "reset_peer_upstream_2")
        async with p.down():
            async with p.down():
                pass
            assert (await p.refresh()).enabled is False
    assert (await p.refresh()).enabled is True and await p.toxics() == []
    with pytest.warns(UnmatchedToxicWarning):
        async with p.redis_reset(commands=["NOPE"]):
            pass


# -- profiles --

SHORT = {"name": "short", "steps": [{"at": "0s", "for": "300ms", "action": "disable"}]}


def test_start_profile_takes_a_dict_toml_a_path_and_a_name(faultline_api, tmp_path):
    rep = faultline_api.start_profile(SHORT)
    assert rep["name"] == "short" and rep["state"] == "running"
    assert faultline_api.wait_profile("short")["state"] == "finished"
    toml = 'name = "t"\n[[steps]]\nat = "0s"\nfor = "100ms"\naction = "disable"\n'
    assert faultline_api.start_profile(toml)["name"] == "t"
    path = tmp_path / "p.toml"
    path.write_text(toml.replace('"t"', '"from-file"'))
    assert faultline_api.start_profile(str(path))["name"] == "from-file"
    (tmp_path / "j.json").write_text(json.dumps(dict(SHORT, name="from-json")))
    assert faultline_api.start_profile(str(tmp_path / "j.json"))["name"] == "from-json"
    rep = faultline_api.start_profile("smoke", speed=100)
    assert rep["name"] == "smoke"
    faultline_api.stop_profile("smoke")
    # A dict goes as JSON: the server's error names the field.
    with pytest.raises(FaultlineError) as e:
        faultline_api.start_profile({"name": "bad", "steps": [{"at": 5, "action": "disable"}]})
    assert e.value.status == 400 and "at" in e.value.message


def test_profile_with_expect_reports_its_verdicts(faultline_api):
    with faultline_api.profile(SHORT, wait=True, expect={"max_connects_per_second": 100}) as run:
        pass
    assert run.report["state"] == "finished"
    assert run.report["expect"]["declared"] == {"max_connects_per_second": 100}
    assert not run.failed, run.describe()


async def test_the_async_profile_runner_does_not_block_the_loop(async_faultline_api):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        async with async_faultline_api.profile(SHORT, wait=True) as run:
            pass
    finally:
        task.cancel()
    assert run.report["state"] == "finished"
    assert ticks >= 10, f"the loop ran {ticks} times during a 300 ms profile"


# -- processes --

def test_start_listens_where_asked():
    port = process.free_port()
    with Faultline.start(redis=True, listen=f"127.0.0.1:{port}", seed=7) as fl:
        assert fl.proxy().listen == f"127.0.0.1:{port}"
        assert redis.Redis(port=port).ping()


async def test_async_start_and_stop():
    fl = await AsyncFaultline.start(redis=True)
    try:
        proxy = await fl.proxy()
        import redis.asyncio as aredis
        r = aredis.Redis(port=proxy.port)
        assert await r.ping()
        await r.close()
    finally:
        code = await fl.stop()
    assert code == 0
    assert fl.redis.proc.returncode is not None


# -- the capture --

def test_capture_has_the_tests_commands(faultline_proxy, faultline_capture):
    r = redis.Redis(port=faultline_proxy.port)
    for _ in range(3):
        r.execute_command("INCR", "ctr")  # r.incr() sends INCRBY
    got = faultline_capture.commands("INCR")
    assert [rec.args for rec in got] == [["ctr"]] * 3
    assert [rec.received for rec in got] == [{"type": "integer", "value": v} for v in (1, 2, 3)]
    assert all(rec.delivered is True and rec.delivered_us >= 0 for rec in got), got
    assert faultline_capture.events("open")
    with faultline_proxy.redis_error("loading", commands=["GET"]):
        with pytest.raises(redis.exceptions.BusyLoadingError):
            r.get("ctr")
    (rec,) = faultline_capture.commands("GET")
    assert rec.fault and rec.reply["text"].startswith("LOADING")


async def test_async_capture(async_faultline_proxy, async_faultline_capture):
    import redis.asyncio as aredis
    r = aredis.Redis(port=async_faultline_proxy.port, client_name="capture")
    await r.set("a", "1")
    await r.close()
    names = [rec.cmd for rec in await async_faultline_capture.acommands()]
    assert names[-2:] == ["CLIENT SETNAME", "SET"]


def test_record_delivery_is_read_when_present():
    from faultline import Record
    plain = Record({"cmd": "GET", "reply": {"type": "bulk", "len": 1, "text": "v"}})
    assert plain.delivery is None and plain.received == plain.reply
    gone = Record({"cmd": "GET", "reply": {"type": "bulk", "len": 1, "text": "v"},
                   "delivery": {"delivered": False, "client": "gone", "by": "latency_downstream"}})
    assert gone.delivered is False and gone.received is None
    held = Record({"cmd": "GET", "reply": {"type": "bulk", "len": 1, "text": "v"},
                   "delivery": {"delivered": True, "delivered_us": 500123, "by": "latency_downstream"}})
    assert held.delivered is True and held.delivered_us == 500123 and held.received == held.reply


def test_clients_accepts_a_client_and_a_window(faultline_proxy):
    r = redis.Redis(port=faultline_proxy.port, client_name="app")
    r.ping()
    v = faultline_proxy.clients(client="app", since_ms=0, until_ms=10 ** 9)
    assert v["proxy"] == "redis"
    assert "app" in v["clients"] and v["commands"] >= 1
    assert faultline_proxy.clients(client="nobody")["commands"] == 0
    with pytest.raises(FaultlineError) as e:
        faultline_proxy.clients(since_ms="soon")
    assert e.value.status == 400 and "since_ms" in e.value.message
