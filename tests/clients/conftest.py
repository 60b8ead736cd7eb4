# Client resilience tests: real clients (redis-py, ioredis) against faultline and a private
# redis-server, through the Python helper in tools/python/faultline.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "python"))

from faultline.pytest_plugin import faultline, faultline_api, faultline_proxy  # noqa: E402,F401
