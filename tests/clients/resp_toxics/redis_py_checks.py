#!/usr/bin/python3
"""What a real client (Debian's redis-py) makes of faultline's RESP-aware toxics.

Run by tests/integration/resp_toxics_test.cpp with the ports of a running faultline:

    /usr/bin/python3 redis_py_checks.py CHECK PROXY_PORT API_PORT

CHECK is one of: exceptions, nil, hang. Prints one line per check and exits 1 on the first
mismatch. Only the standard library and redis-py are used; toxics are set through the
Toxiproxy-compatible API on the proxy named "redis".
"""

import json
import sys
import time
import urllib.request

import redis
from redis.cluster import ClusterParser

PROXY = "redis"


def api(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def add_toxic(api_port, name, type_, attributes):
    return api(api_port, "POST", f"/proxies/{PROXY}/toxics",
               {"name": name, "type": type_, "stream": "upstream", "toxicity": 1,
                "attributes": attributes})


def del_toxic(api_port, name):
    api(api_port, "DELETE", f"/proxies/{PROXY}/toxics/{name}")


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def exception_for(exc_class, port, command, parser_class=None):
    kwargs = {"parser_class": parser_class} if parser_class else {}
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, socket_timeout=5, **kwargs)
    r = redis.Redis(connection_pool=pool)
    try:
        r.execute_command(*command)
    except redis.RedisError as e:
        if type(e) is not exc_class:
            fail(f"{command}: {type(e).__module__}.{type(e).__name__} ({e}), "
                 f"wanted {exc_class.__name__}")
        return str(e)
    finally:
        pool.disconnect()
    fail(f"{command}: no exception, wanted {exc_class.__name__}")


def check_exceptions(port, api_port):
    e = redis.exceptions
    # redis-py 4.3's DefaultParser mapping (connection.py EXCEPTION_CLASSES): LOADING, READONLY,
    # NOSCRIPT, NOAUTH, EXECABORT and "ERR max number of clients reached" have their own
    # classes; this version maps neither OOM nor WRONGPASS (later ones do), so those are plain
    # ResponseErrors here, as they would be from a real Redis.
    oom_class = getattr(e, "OutOfMemoryError", e.ResponseError)
    wrongpass_class = e.AuthenticationError if "WRONGPASS" in str(
        redis.connection.BaseParser.EXCEPTION_CLASSES) else e.ResponseError
    cases = [
        ("loading", ["GET", "k"], e.BusyLoadingError, None),
        ("readonly", ["SET", "k", "v"], e.ReadOnlyError, None),
        ("oom", ["SET", "k", "v"], oom_class, None),
        ("noscript", ["EVALSHA", "a" * 40, "0"], e.NoScriptError, None),
        ("noauth", ["GET", "k"], e.AuthenticationError, None),
        ("wrongpass", ["GET", "k"], wrongpass_class, None),
        ("max_clients", ["GET", "k"], e.ConnectionError, None),
        ("busy", ["GET", "k"], e.ResponseError, None),
        ("masterdown", ["GET", "k"], e.ResponseError, None),
        ("unblocked", ["BLPOP", "q", "0"], e.ResponseError, None),
        # The cluster client's parser has classes for the cluster errors.
        ("moved", ["GET", "foo"], e.MovedError, ClusterParser),
        ("ask", ["GET", "foo"], e.AskError, ClusterParser),
        ("tryagain", ["GET", "foo"], e.TryAgainError, ClusterParser),
        ("clusterdown", ["GET", "foo"], e.ClusterDownError, ClusterParser),
        ("masterdown", ["GET", "foo"], e.MasterDownError, ClusterParser),
        ("moved", ["GET", "foo"], e.ResponseError, None),
    ]
    for preset, command, exc_class, parser in cases:
        add_toxic(api_port, "err", "resp_error", {"preset": preset})
        try:
            text = exception_for(exc_class, port, command, parser)
        finally:
            del_toxic(api_port, "err")
        print(f"ok {preset:12} {command[0]:8} -> {exc_class.__name__}: {text}")
    moved = e.MovedError
    add_toxic(api_port, "err", "resp_error", {"preset": "moved", "address": "127.0.0.1:7001"})
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, parser_class=ClusterParser)
    try:
        redis.Redis(connection_pool=pool).get("{user1000}.following")
        fail("MOVED: no exception")
    except moved as ex:
        if ex.slot_id != 3443 or ex.host != "127.0.0.1" or ex.port != 7001:
            fail(f"MOVED parsed as slot {ex.slot_id} {ex.host}:{ex.port}")
        print(f"ok moved parsed: slot {ex.slot_id} -> {ex.host}:{ex.port}")
    finally:
        pool.disconnect()
        del_toxic(api_port, "err")

    # MULTI with a refused command: the client's EXEC raises ExecAbortError, nothing ran.
    add_toxic(api_port, "err", "resp_error", {"preset": "oom", "commands": ["SET"]})
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    conn = redis.Connection(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        r.delete("py:tx:counter")
        conn.send_command("MULTI")
        conn.read_response()
        conn.send_command("INCR", "py:tx:counter")
        if conn.read_response() != b"QUEUED":
            fail("INCR not queued")
        conn.send_command("SET", "py:tx:k", "v")
        try:
            conn.read_response()
            fail("SET inside MULTI was not refused")
        except oom_class as ex:
            print(f"ok SET inside MULTI -> {type(ex).__name__}: {ex}")
        conn.send_command("EXEC")
        try:
            conn.read_response()
            fail("EXEC: no exception")
        except e.ExecAbortError as ex:
            print(f"ok EXEC -> ExecAbortError: {ex}")
        if r.get("py:tx:counter") is not None:
            fail("INCR ran although EXEC aborted")
        conn.send_command("PING")
        if conn.read_response() not in (b"PONG", "PONG"):
            fail("connection unusable after the aborted transaction")
    finally:
        del_toxic(api_port, "err")
        conn.disconnect()
        r.connection_pool.disconnect()


def check_nil(port, api_port):
    direct = redis.Redis(host="127.0.0.1", port=port)
    direct.set("cache:1", "cached")
    direct.set("user:1", "kept")
    add_toxic(api_port, "miss", "resp_reply", {"reply": "nil", "commands": ["GET"],
                                               "keys": "cache:*"})
    try:
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        got = r.get("cache:1")
        if got is not None:
            fail(f"GET cache:1 gave {got!r}, wanted None")
        if r.get("user:1") != b"kept":
            fail("GET user:1 was touched")
        print("ok resp_reply nil -> None for cache:*, other keys untouched")
    finally:
        del_toxic(api_port, "miss")


def check_hang(port, api_port):
    add_toxic(api_port, "hang", "resp_hang", {"commands": ["GET"], "keys": "slow:*"})
    try:
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.4)
        r.set("slow:1", "x")
        r.set("fast:1", "y")
        t0 = time.monotonic()
        try:
            r.get("slow:1")
            fail("GET slow:1 answered")
        except redis.exceptions.TimeoutError:
            took = time.monotonic() - t0
            if not 0.35 <= took < 2.0:
                fail(f"timeout after {took:.3f}s, socket_timeout is 0.4s")
            print(f"ok GET slow:1 -> TimeoutError after {took:.3f}s")
        # redis-py dropped the hung connection; the next command gets a fresh one.
        for _ in range(3):
            t0 = time.monotonic()
            if r.get("fast:1") != b"y":
                fail("GET fast:1 wrong")
            if time.monotonic() - t0 > 0.2:
                fail("GET fast:1 was slow")
        print("ok GET fast:1 answered on other connections")
    finally:
        del_toxic(api_port, "hang")


def main():
    check, port, api_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    {"exceptions": check_exceptions, "nil": check_nil, "hang": check_hang}[check](port, api_port)
    print("PASS")


if __name__ == "__main__":
    main()
