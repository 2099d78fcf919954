# The client's identity reaches the web server (issue 12): X-Forwarded-For and PROXY v2 on both
# nodes across a primary crash, and exactly-once request ids (tests/lab/test_client_identity.py).
understudy_lab_tests(test_client_identity client_identity ClientIdentityTest
  test_x_forwarded_for_on_both_nodes_and_the_rerun
  test_proxy_v2_on_both_nodes_and_the_rerun
  test_post_rerun_without_ids_runs_twice
  test_post_rerun_with_ids_runs_once)
