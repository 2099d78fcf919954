# Randomized crash-under-load harness (chaos/run, understudy_lab/chaos/, docs/RELIABILITY.md). Included from tests.cmake.
# chaos.short: 4 trials, each on Understudy and on keepalived + nginx, primary and backup crashes,
# loss 0/1%, random moments and fault points. Fails if Understudy loses or corrupts any reply;
# keepalived's losses are only reported. Needs root (skips itself otherwise).
get_filename_component(UNDERSTUDY_CHAOS_SRC "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
set(chaos_env "PYTHONDONTWRITEBYTECODE=1")
if(TARGET understudy)
  list(APPEND chaos_env "UNDERSTUDY_BINARY=$<TARGET_FILE:understudy>")
endif()
add_test(NAME chaos.short
  COMMAND ${UNDERSTUDY_CHAOS_SRC}/chaos/run --trials 4 --loss 0,1 --roles primary,backup
          --target understudy,keepalived --ci
  WORKING_DIRECTORY ${UNDERSTUDY_CHAOS_SRC})
set_tests_properties(chaos.short PROPERTIES
  LABELS chaos
  RUN_SERIAL TRUE
  TIMEOUT 900
  ENVIRONMENT "${chaos_env}"
  SKIP_RETURN_CODE 77)

# Deterministic regression tests for failures the chaos runs found (tests/lab/test_chaos_regressions.py).
foreach(method test_idle_keepalive_connection_across_primary_crash
               test_idle_keepalive_connection_across_backup_crash)
  string(REGEX REPLACE "^test_" "" name "${method}")
  add_test(NAME chaos.regress.${name}
    COMMAND /usr/bin/python3 -m unittest -v tests.lab.test_chaos_regressions.ChaosRegressionTest.${method}
    WORKING_DIRECTORY ${UNDERSTUDY_CHAOS_SRC})
  set_tests_properties(chaos.regress.${name} PROPERTIES
    LABELS chaos
    RUN_SERIAL TRUE
    TIMEOUT 120
    ENVIRONMENT "${chaos_env}"
    SKIP_REGULAR_EXPRESSION "skipped 'needs root")
endforeach()

# chaos.cycles: one lab, one verified load, 4 crash -> rejoin cycles (primary, backup, primary,
# backup; each waits for both nodes in duplex and for the survivor's connections to be protected
# again). Fails on any lost or wrong reply or any failed cycle. About a minute; needs root.
add_test(NAME chaos.cycles
  COMMAND ${UNDERSTUDY_CHAOS_SRC}/chaos/run --cycles 4 --ci
  WORKING_DIRECTORY ${UNDERSTUDY_CHAOS_SRC})
set_tests_properties(chaos.cycles PROPERTIES
  LABELS chaos
  RUN_SERIAL TRUE
  TIMEOUT 300
  ENVIRONMENT "${chaos_env}"
  SKIP_RETURN_CODE 77)
