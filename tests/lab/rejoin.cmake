# Rejoin (issue 9): a restarted node joins its peer that serves alone (tests/lab/test_rejoin.py).
understudy_lab_tests(test_rejoin rejoin RejoinTest
  test_primary_rejoins_after_crash
  test_backup_rejoins_after_crash
  test_rejoin_under_verifying_load
  test_joiner_with_another_key_is_refused
  test_old_connections_protected_again_backup_rejoins
  test_old_connections_protected_again_primary_rejoins
  test_mid_reply_connection_protected_at_its_next_boundary
  test_joiner_dies_while_adopting_primary
  test_joiner_dies_while_adopting_backup)
