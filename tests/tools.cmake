# tools.run: tools/run stops the faultline and redis-server it started on SIGINT, SIGTERM and
# SIGHUP (to its pid or its process group), and stops redis-server when faultline exits
# (tests/tools/test_run.py). It runs this build's faultline through FAULTLINE_BIN, so it never
# installs or builds anything, on free ports.

set(FL_CLIENTS_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with Debian's redis-py and pytest")

find_program(FL_REDIS_SERVER redis-server)
find_program(FL_REDIS_CLI redis-cli)
if(FL_REDIS_SERVER AND FL_REDIS_CLI)
  add_test(NAME tools.run
    COMMAND ${FL_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider -rA --durations=0
      ${CMAKE_CURRENT_SOURCE_DIR}/tools/test_run.py
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/tools)
  set_tests_properties(tools.run PROPERTIES
    ENVIRONMENT "FAULTLINE_BIN=$<TARGET_FILE:faultline>;PYTHONDONTWRITEBYTECODE=1"
    TIMEOUT 300
    LABELS tools)
else()
  message(STATUS "tools.run: redis-server or redis-cli not found, test not registered")
endif()
