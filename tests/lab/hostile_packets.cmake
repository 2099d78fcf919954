# Spoofing clients against the packet layer: blind injection on a live connection (RFC 5961),
# SYN floods, abandoned flows (tests/lab/test_hostile_packets.py).
understudy_lab_tests(test_hostile_packets hostile_packets BlindInjectionTest
  test_rst_syn_and_ack_on_a_live_connection_change_nothing)
understudy_lab_tests(test_hostile_packets hostile_packets SynFloodTest
  test_spoofed_syn_flood_at_full_speed_is_answered_with_cookies
  test_spoofed_syn_flood_without_cookies_is_bounded)
