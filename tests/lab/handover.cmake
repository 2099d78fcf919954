# Planned handover: SIGTERM on a node in duplex hands over to its peer under load
# (tests/lab/test_handover.py). Included from tests/lab/tests.cmake.
understudy_lab_tests(test_handover handover HandoverTest
  test_primary_sigterm_under_load_hands_over
  test_backup_sigterm_under_load_hands_over
  test_sigterm_in_simplex_just_stops)
