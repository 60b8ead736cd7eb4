"""The pytest plugin as a user meets it: inner pytest sessions (pytester, in a subprocess of this
venv's Python, so the plugin comes from its entry point) with options from the command line and
the ini file, the profile marker passing and failing tests, and the capture fixture."""

import json

import pytest

from faultline.process import free_port

# A profile whose verdict a test can fail at will: at most 1 connect per second.
STRICT = {"name": "strict",
          "steps": [{"at": "0s", "for": "1s", "toxic": {"type": "latency",
                                                       "attributes": {"latency": 1}}}],
          "expect": {"max_connects_per_second": 1}}

INNER = '''
import json, time, redis, pytest

STRICT = json.loads({strict!r})

def connect_many(proxy, n):
    for _ in range(n):
        try:
            redis.Redis(port=proxy.port, socket_connect_timeout=0.2).ping()
        except redis.exceptions.ConnectionError:
            pass

@pytest.mark.faultline_profile(STRICT, speed=1)
def test_quiet_client_passes(faultline_proxy, faultline_profile):
    connect_many(faultline_proxy, 1)

@pytest.mark.faultline_profile(STRICT, speed=1)
def test_storming_client_fails(faultline_proxy, faultline_profile):
    connect_many(faultline_proxy, 5)  # 5 connects within a second; the marker waits the end

@pytest.mark.faultline_profile({{"name": "bad", "steps": [{{"at": 5, "action": "disable"}}]}})
def test_bad_profile_is_an_error_naming_the_field(faultline_proxy):
    pass

@pytest.mark.faultline_profile("smoke", expect={{"max_connects_per_second": 1}})
async def test_async_marker_waits_in_the_loop(faultline_profile, async_faultline_proxy):
    import redis.asyncio as aredis
    for _ in range(5):
        r = aredis.Redis(port=async_faultline_proxy.port)
        await r.ping()
        await r.close()
'''


def test_marker_passes_and_fails_tests_on_verdicts(pytester):
    pytester.makeini("[pytest]\nasyncio_mode = auto\nfaultline_speed = 20\n")
    pytester.makepyfile(test_inner=INNER.format(strict=json.dumps(STRICT)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    assert "PASSED test_inner.py::test_quiet_client_passes" in out
    assert "FAILED test_inner.py::test_storming_client_fails" in out
    assert "faultline profile 'strict': 1 [expect] verdict(s) failed" in out
    assert "max_connects_per_second  expected <= 1/s" in out
    # smoke at speed 20 (the ini's default speed) with its client connecting 5 times: fails
    assert "FAILED test_inner.py::test_async_marker_waits_in_the_loop" in out
    assert "faultline profile 'smoke'" in out
    assert "FAILED test_inner.py::test_bad_profile_is_an_error_naming_the_field" in out
    assert "FaultlineError: POST /profiles: 400" in out


def test_options_from_the_command_line_and_the_ini(pytester, tmp_path):
    port = free_port()
    log = tmp_path / "traffic.jsonl"
    pytester.makeini(f"[pytest]\nfaultline_seed = 7\nfaultline_log = {log}\n")
    pytester.makepyfile(test_inner='''
import redis

def test_options(faultline, faultline_proxy):
    args = faultline.proc.args
    assert args[args.index("--seed") + 1] == "7"
    assert faultline_proxy.listen == "127.0.0.1:%d"
    redis.Redis(port=faultline_proxy.port).set("logged", "1")
''' % port)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           f"--faultline-listen=127.0.0.1:{port}")
    result.assert_outcomes(passed=1)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r.get("cmd") == "SET" and r.get("key") == "logged" for r in records)


def test_upstream_option_uses_that_redis(pytester, faultline):
    # The session's private redis-server serves as "an existing Redis" for the inner session.
    pytester.makepyfile(test_inner='''
def test_upstream(faultline, faultline_proxy):
    assert faultline.redis is None
    assert faultline_proxy.upstream == "%s"
''' % faultline.upstream)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           f"--faultline-upstream={faultline.upstream}")
    result.assert_outcomes(passed=1)


def test_a_missing_binary_is_an_error_naming_the_places(pytester, tmp_path):
    pytester.makepyfile(test_inner="def test_x(faultline):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           f"--faultline-bin={tmp_path}/no-such-faultline")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*faultline binary not found*", "*no-such-faultline*"])
