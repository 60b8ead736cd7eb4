"""The package installs from the repository into a fresh virtual environment with Debian's
tools only, offline (no index, no build isolation, an unreachable proxy so that any download
would fail), and the installed copy is the one Python imports. Run with Debian's python3; the
venv it leaves at $FAULTLINE_PY_VENV is the one python.package, python.plugin and python.app run
in (ctest fixture fl_python_venv)."""

import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
VENV = os.environ.get("FAULTLINE_PY_VENV") or os.path.join(tempfile.mkdtemp(), "venv")

OFFLINE = dict(os.environ, PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull,
               PIP_DISABLE_PIP_VERSION_CHECK="1", HTTP_PROXY="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", PYTHONDONTWRITEBYTECODE="1")


def run(*cmd, cwd=None):
    res = subprocess.run(cmd, cwd=cwd or tempfile.gettempdir(), env=OFFLINE,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, f"{' '.join(cmd)}: {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def tree_leftovers():
    python = os.path.join(ROOT, "tools", "python")
    return sorted(n for n in os.listdir(python) if n == "build" or n.endswith(".egg-info"))


def test_installs_offline_into_a_fresh_venv():
    before = tree_leftovers()
    shutil.rmtree(VENV, ignore_errors=True)
    run(sys.executable, "-m", "venv", "--system-site-packages", VENV)
    py = os.path.join(VENV, "bin", "python")
    out = run(py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
              os.path.join(ROOT, "tools", "python"))
    assert "Successfully installed faultline-0.1.0" in out, out
    assert tree_leftovers() == before, "the build wrote into the source tree"

    # Imported from the venv's site-packages, from anywhere (here: a scratch directory).
    where = run(py, "-c", "import faultline, sys; print(faultline.__file__); print(sys.prefix)")
    module, prefix = where.split()
    assert os.path.realpath(prefix) == os.path.realpath(VENV)
    assert os.path.realpath(module).startswith(os.path.realpath(VENV) + os.sep), module
    # With the plugin's entry point, the shipped profiles, and where the source tree is.
    out = run(py, "-c", "import importlib.metadata as m, faultline._source as s, faultline, os;"
              "print([e.value for e in m.entry_points(group='pytest11') if e.name == 'faultline']);"
              "print(s.SOURCE_ROOT);"
              "print(sorted(os.listdir(os.path.join(os.path.dirname(faultline.__file__), 'profiles'))))")
    eps, source, profiles = out.splitlines()
    assert eps == "['faultline.pytest_plugin']"
    assert os.path.realpath(source) == os.path.realpath(ROOT)
    shipped = sorted(n for n in os.listdir(os.path.join(ROOT, "profiles")) if n.endswith(".toml"))
    assert profiles == repr(shipped)
    # pytest from Debian (system site packages) sees the plugin's options.
    assert "--faultline-listen" in run(py, "-m", "pytest", "--help")
