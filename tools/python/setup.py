"""Build hooks the declarative pyproject.toml cannot express (setuptools, no downloads):

- the shipped profiles (../../profiles/*.toml) go into the package, so `start_profile("outage")`
  works from an installed copy;
- faultline/_source.py records the source tree the package was built from, so an installed copy
  still finds the binaries the README's commands build there (build/release, build/ci, ...).

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
        profiles = sorted(glob.glob(os.path.join(ROOT, "profiles", "*.toml")))
        if profiles:
            os.makedirs(os.path.join(pkg, "profiles"), exist_ok=True)
            for p in profiles:
                shutil.copy(p, os.path.join(pkg, "profiles", os.path.basename(p)))
        is_tree = os.path.exists(os.path.join(ROOT, "tools", "run"))
        with open(os.path.join(pkg, "_source.py"), "w", encoding="utf-8") as f:
            f.write("# Written by setup.py: the faultline source tree this copy was built from.\n")
            f.write(f"SOURCE_ROOT = {ROOT if is_tree else None!r}\n")


_scratch = tempfile.mkdtemp(prefix="faultline-py-build-")
atexit.register(shutil.rmtree, _scratch, True)
setup(
    cmdclass={"build_py": BuildPy},
    options={"build": {"build_base": os.path.join(_scratch, "build")},
             "egg_info": {"egg_base": _scratch}},
)
