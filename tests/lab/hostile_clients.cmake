# Hostile clients: floods after a refusal, huge uploads, slowhttptest (-H, -B, -X), the
# per-source cap, a port reused after a reset (tests/lab/test_hostile_clients.py; issue 10, items 1 and 4).
understudy_lab_tests(test_hostile_clients hostile HostileClientTest
  test_flood_after_a_400_is_discarded
  test_huge_upload_gets_413_and_does_not_pause_others
  test_slowhttptest_slowloris_and_slow_body
  test_connections_beyond_the_per_source_cap_are_refused
  test_port_reused_after_a_send_deadline_reset_is_served
  test_slowhttptest_slow_readers_are_reset)
