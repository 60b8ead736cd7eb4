#!/usr/bin/python3
"""Opens N TCP connections to 127.0.0.1:PORT, sends one PING through each in turn and waits for
its +PONG (as a pool's connections have each carried a command), prints "ready N" and holds
them until its stdin closes (or it is killed). tools/bench uses it to measure a proxy's memory
per connection. A separate process so that its file descriptors do not count against the
bench. --no-command: connect only (connections that never carried a command). --one-by-one:
each connection carries its PING before the next one opens (default: all connect, then each
PINGs in turn)."""
import resource
import socket
import sys


def ping(s):
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
    got = b""
    while len(got) < 7:
        part = s.recv(64)
        if not part:
            raise OSError("closed before +PONG")
        got += part
    if got != b"+PONG\r\n":
        raise OSError(f"unexpected reply {got!r}")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    command = "--no-command" not in sys.argv
    n, port = int(args[0]), int(args[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    try:
        if "--one-by-one" in sys.argv:
            # As a pool that opens a connection when it needs one: each connection carries its
            # command before the next opens, so their memory interleaves in the proxy.
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                socks.append(s)
                if command:
                    ping(s)
        else:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                socks.append(s)
            if command:
                for s in socks:
                    ping(s)
    except OSError as e:
        print(f"error after {len(socks)} connections: {e}", flush=True)
        return 1
    print(f"ready {len(socks)}", flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
