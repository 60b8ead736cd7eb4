"""Build hooks the declarative pyproject.toml cannot express (setuptools, no downloads):

- the shipped profiles (../../profiles/*.toml) go into the package, so `start_profile("outage")`
  works from an installed copy;
- faultline/_source.py records the source tree the package was built from, so an installed copy
  still finds the binaries the README's commands build there (build/release, build/ci, ...), or,
  for a copy installed from PREFIX/share/faultline/python (cmake --install), PREFIX/bin.

Intermediate files go to a temporary folder, not into the source tree.
"""

import atexit
import glob
import os
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


class BuildPy(build_py):
    def run(self):
        super().run()
        pkg = os.path.join(self.build_lib, "faultline")
        # The source tree's profiles/, or share/faultline/profiles beside an installed
        # share/faultline/python (cmake --install).
        profiles = sorted(glob.glob(os.path.join(ROOT, "profiles", "*.toml")) or
                          glob.glob(os.path.join(HERE, "..", "profiles", "*.toml")))
        if profiles:
            os.makedirs(os.path.join(pkg, "profiles"), exist_ok=True)
            for p in profiles:
                shutil.copy(p, os.path.join(pkg, "profiles", os.path.basename(p)))
        is_tree = os.path.exists(os.path.join(ROOT, "tools", "run"))
        with open(os.path.join(pkg, "_source.py"), "w", encoding="utf-8") as f:
            f.write("# Written by setup.py: the faultline source tree this copy was built from.\n")
            f.write(f"SOURCE_ROOT = {ROOT if is_tree else None!r}\n")
            # Installed by cmake --install as PREFIX/share/faultline/python: PREFIX/bin/faultline.
            share = os.path.dirname(os.path.dirname(HERE))
            installed = None
            if not is_tree and os.path.basename(share) == "share":
                installed = os.path.join(os.path.dirname(share), "bin", "faultline")
            f.write(f"INSTALLED_BINARY = {installed!r}\n")


_scratch = tempfile.mkdtemp(prefix="faultline-py-build-")
atexit.register(shutil.rmtree, _scratch, True)
setup(
    cmdclass={"build_py": BuildPy},
    options={"build": {"build_base": os.path.join(_scratch, "build")},
             "egg_info": {"egg_base": _scratch}},
)
