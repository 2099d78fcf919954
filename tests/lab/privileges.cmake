# Least privilege: the daemons run as nobody with CAP_NET_ADMIN only, no_new_privs and a seccomp
# filter, and still serve through failovers and a rejoin (tests/lab/test_privileges.py).
understudy_lab_tests(test_privileges privileges PrivilegesTest
  test_daemons_serve_unprivileged_through_failover_and_rejoin
  test_handover_and_restart_unprivileged)
understudy_lab_tests(test_privileges privileges RootOptOutTest
  test_root_keeps_every_privilege)
understudy_lab_tests(test_privileges privileges UnknownUserTest
  test_unknown_user_is_a_config_error)
