# Table 2 of the paper: a node dies at a fault point in each phase of an HTTP exchange
# (tests/lab/test_table2.py, docs/FAULTS.md).
understudy_lab_tests(test_table2 table2 Table2CrashTest
  test_backup_incomplete_request
  test_backup_complete_not_relayed
  test_backup_after_relay
  test_backup_reply_received
  test_backup_idle
  test_primary_before_ack
  test_primary_before_ack_complete
  test_primary_acked_no_reply_copy
  test_primary_acked_no_reply_copy_file
  test_primary_reply_copied_not_sent
  test_primary_reply_written_mid
  test_primary_idle)
