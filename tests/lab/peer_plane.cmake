# A host on the LAN against the peer plane: reflected and replayed datagrams (tests/lab/test_peer_plane.py).
understudy_lab_tests(test_peer_plane peer_plane PeerPlaneTest
  test_reflected_heartbeat_is_rejected
  test_replayed_relays_are_rejected)
