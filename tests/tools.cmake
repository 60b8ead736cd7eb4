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

# tools.soak: one minute of tools/soak (a mixed redis-py workload under randomly changing toxics,
# then every acknowledged write checked in Redis, faultline's RSS and fds bounded, every session
# gone at the end). It prints its seed: `tools/soak --seed N 60` reruns with the same choices.
# Run alone: it keeps both cores busy and would make the timing tests beside it flaky. An ASan
# build holds freed memory in quarantine, hence a higher RSS bound there.
if(FL_REDIS_SERVER)
  set(FL_SOAK_ARGS "")
  if(FAULTLINE_SANITIZE)
    set(FL_SOAK_ARGS --max-rss-mb 1024)
  endif()
  add_test(NAME tools.soak
    COMMAND ${FL_CLIENTS_PYTHON} ${PROJECT_SOURCE_DIR}/tools/soak 60 ${FL_SOAK_ARGS})
  set_tests_properties(tools.soak PROPERTIES
    ENVIRONMENT "FAULTLINE_BIN=$<TARGET_FILE:faultline>;REDIS_SERVER=${FL_REDIS_SERVER};PYTHONDONTWRITEBYTECODE=1"
    TIMEOUT 240
    RUN_SERIAL TRUE
    LABELS tools)
else()
  message(STATUS "tools.soak: redis-server not found, test not registered")
endif()
