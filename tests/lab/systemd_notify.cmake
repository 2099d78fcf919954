# systemd Type=notify (issue 12): the test plays the service manager on a NOTIFY_SOCKET it listens
# on (tests/lab/test_systemd_notify.py).
understudy_lab_tests(test_systemd_notify systemd_notify SystemdNotifyTest
  test_pair_ready_status_watchdog_and_failover
  test_node_alone_ready_in_simplex_then_stopping
  test_pair_starts_within_the_units_capability_bounding_set)
