# Guards: split brain resolved, the backup's request-cache bound (tests/lab/test_guards.py).
understudy_lab_tests(test_guards guards GuardsTest
  test_split_brain_resolved
  test_split_brain_keeps_the_primarys_connections
  test_split_brain_backups_connections
  test_request_cache_bound_pauses_backup_reads)
