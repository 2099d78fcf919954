# Notify hooks (issue 12, item 7): hooks.on_front / hooks.on_alone (tests/lab/test_hooks.py).
understudy_lab_tests(test_hooks hooks HooksTest
  test_primary_crash_backup_runs_front_then_alone_and_nothing_at_rejoin
  test_backup_crash_primary_runs_front_and_alone
  test_dead_runner_loses_the_event_is_counted_and_the_node_serves_on
  test_runner_exits_with_its_node
  test_runner_logs_in_the_nodes_format)
understudy_lab_tests(test_hooks hooks HookTimeoutTest
  test_hanging_hook_is_killed_and_the_node_serves_on)
understudy_lab_tests(test_hooks hooks NoHooksTest
  test_no_runner_without_hooks)
