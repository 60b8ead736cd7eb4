#!/usr/bin/python3
"""Opens N idle TCP connections to 127.0.0.1:PORT, prints "ready N" and holds them until its
stdin closes (or it is killed). tools/bench uses it to measure a proxy's memory per idle
connection. A separate process so that its file descriptors do not count against the bench."""
import resource
import socket
import sys


def main():
    n, port = int(sys.argv[1]), int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
    except OSError as e:
        print(f"error after {len(socks)} connections: {e}", flush=True)
        return 1
    print(f"ready {len(socks)}", flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
