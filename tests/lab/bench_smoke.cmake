# bench.smoke: the benchmark's short version (bench/run --smoke, well under 2 minutes) so the
# benchmark cannot rot. It brings up its own lab, runs every mode (direct, nginx-proxy, haproxy,
# null, simplex, duplex), a failover under load, one under bulk load and a small scale test, and fails if any mode
# errors, any reply is not a 200 of the right size and bytes, or the report or plots are missing.
# Included from tests/lab/tests.cmake. Needs root, nginx, haproxy, wrk and python3-matplotlib.
get_filename_component(UNDERSTUDY_BENCH_SRC "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
set(bench_env "PYTHONDONTWRITEBYTECODE=1")
if(TARGET understudy)
  list(APPEND bench_env "UNDERSTUDY_BINARY=$<TARGET_FILE:understudy>")
endif()
add_test(NAME bench.smoke
  COMMAND ${UNDERSTUDY_BENCH_SRC}/bench/run --smoke --out ${CMAKE_CURRENT_BINARY_DIR}/bench-smoke
  WORKING_DIRECTORY ${UNDERSTUDY_BENCH_SRC})
set_tests_properties(bench.smoke PROPERTIES
  LABELS bench
  RUN_SERIAL TRUE
  TIMEOUT 600
  ENVIRONMENT "${bench_env}"
  SKIP_REGULAR_EXPRESSION "skipped: needs root")
