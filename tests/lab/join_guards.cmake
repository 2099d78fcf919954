# Join guards (issue 9, item 6): a joiner whose shared config differs from its peer's is refused
# (tests/lab/test_join_guards.py).
understudy_lab_tests(test_join_guards join_guards JoinGuardTest
  test_primary_joiner_with_another_heartbeat_timeout_is_refused
  test_backup_joiner_with_another_mtu_and_limit_is_refused
  test_pair_starting_with_different_configs_both_refuse)
