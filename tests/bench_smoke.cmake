# bench.smoke: runs `tools/bench --quick` against this build's faultline and checks only that it
# completes and prints its table. Speed is never a pass/fail test; this keeps the bench working.
#
# Included by tests/CMakeLists.txt at configure time (registers the test), and run by ctest in
# script mode (cmake -P this file), where it runs the bench and checks its output.

if(CMAKE_SCRIPT_MODE_FILE)
  execute_process(
    COMMAND ${BENCH} --quick --faultline ${FAULTLINE}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE err
    TIMEOUT 540)
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "tools/bench --quick exited with '${rc}':\n${err}")
  endif()
  if(NOT out MATCHES "\\| workload \\| test \\| through \\|" OR NOT out MATCHES "\\| W3 [^\n]*\\| faultline \\| [0-9]")
    message(FATAL_ERROR "tools/bench --quick did not print its table:\n${err}")
  endif()
  return()
endif()

find_program(FL_REDIS_BENCHMARK redis-benchmark)
find_program(FL_REDIS_SERVER redis-server)
if(FL_REDIS_BENCHMARK AND FL_REDIS_SERVER)
  add_test(NAME bench.smoke
    COMMAND ${CMAKE_COMMAND}
      -DBENCH=${PROJECT_SOURCE_DIR}/tools/bench
      -DFAULTLINE=$<TARGET_FILE:faultline>
      -P ${CMAKE_CURRENT_LIST_FILE})
  # Generous: the run takes about a minute, longer on a loaded CI machine. RUN_SERIAL because
  # it pins processes to cores and would only slow the tests running beside it.
  set_tests_properties(bench.smoke PROPERTIES TIMEOUT 600 RUN_SERIAL TRUE LABELS bench)
else()
  message(STATUS "bench.smoke: redis-server or redis-benchmark not found, test not registered")
endif()
