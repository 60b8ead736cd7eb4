# The Python package (tools/python) and its tests (tests/python/). python.install creates a fresh
# venv in the build folder (Debian's python3-venv, --system-site-packages for python3-redis,
# python3-pytest and python3-pytest-asyncio) and installs the package into it offline; the
# other suites run in that venv, against the installed copy (ctest fixture fl_python_venv, so
# `ctest -R python.app` installs first): python.package (the API, discovery, nesting, profiles,
# capture), python.plugin (the pytest plugin in inner sessions), python.app (a realistic asyncio
# application under the shipped profiles).

set(FL_CLIENTS_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with Debian's redis-py and pytest")
set(FL_PY_VENV ${CMAKE_BINARY_DIR}/python-venv)
set(FL_PY_TESTS ${CMAKE_CURRENT_SOURCE_DIR}/python)

add_test(NAME python.install
  COMMAND ${FL_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider -rA ${FL_PY_TESTS}/test_install.py
  WORKING_DIRECTORY ${FL_PY_TESTS})
set_tests_properties(python.install PROPERTIES
  ENVIRONMENT "FAULTLINE_PY_VENV=${FL_PY_VENV};PYTHONDONTWRITEBYTECODE=1"
  FIXTURES_SETUP fl_python_venv
  TIMEOUT 300
  LABELS python)

foreach(suite package plugin app)
  add_test(NAME python.${suite}
    # Through cmake -E env: the venv's python exists only once python.install ran.
    COMMAND ${CMAKE_COMMAND} -E env ${FL_PY_VENV}/bin/python -m pytest -q -p no:cacheprovider -rA
      --durations=0
      ${FL_PY_TESTS}/test_${suite}.py
    WORKING_DIRECTORY ${FL_PY_TESTS})
  set_tests_properties(python.${suite} PROPERTIES
    ENVIRONMENT "FAULTLINE_BIN=$<TARGET_FILE:faultline>;PYTHONDONTWRITEBYTECODE=1"
    FIXTURES_REQUIRED fl_python_venv
    TIMEOUT 300
    LABELS python)
endforeach()
