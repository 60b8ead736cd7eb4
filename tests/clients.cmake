# Client resilience tests: real clients against this build's faultline and a private
# redis-server (tests/clients/). redis-py and pytest are Debian's (python3-redis, python3-pytest),
# hence /usr/bin/python3 and not whatever python3 comes first on PATH; ioredis is installed from
# the npm registry into a scratch folder of the build by the test run itself.
#
# Each suite names its test file, so pytest can never collect nothing (its exit code 5 would
# fail the test anyway, like every non-zero exit).

set(FL_CLIENTS_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with Debian's redis-py and pytest")
set(FL_CLIENTS_DIR ${CMAKE_CURRENT_SOURCE_DIR}/clients)

#
# cluster, sentinel and ioredis_deployments (issue 21) build whole deployments
# (tests/clients/deployments.py) and put faultline's --cluster / --sentinel mode in front of
# them; FAULTLINE_DIRECT=1 in the environment runs them against the deployments alone, without
# faultline (a check of the tests themselves).
foreach(suite redis_py ioredis cluster sentinel ioredis_deployments)
  add_test(NAME clients.${suite}
    COMMAND ${FL_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider -rA --durations=0
      ${FL_CLIENTS_DIR}/test_${suite}.py
    WORKING_DIRECTORY ${FL_CLIENTS_DIR})
  set_tests_properties(clients.${suite} PROPERTIES
    ENVIRONMENT "FAULTLINE_BIN=$<TARGET_FILE:faultline>;FAULTLINE_NPM_DIR=${CMAKE_BINARY_DIR}/clients-npm;PYTHONDONTWRITEBYTECODE=1"
    TIMEOUT 300
    LABELS clients)
endforeach()
