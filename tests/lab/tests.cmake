# Network-namespace lab tests (need root, iproute2, nftables, ethtool, nginx, curl).
# Included from the top-level CMakeLists.txt. Each test method is its own CTest test,
# run as `/usr/bin/python3 -m unittest -v tests.lab.<module>.<Class>.<method>` from the
# source dir. Labels: lab. RUN_SERIAL so labs don't fight over CPU.
# Without root the Python tests skip themselves; CTest reports them as skipped.

get_filename_component(UNDERSTUDY_LAB_SRC "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
set(UNDERSTUDY_LAB_PYTHON /usr/bin/python3 CACHE FILEPATH "Python for the lab tests (Debian's, stdlib only)")

# understudy_lab_tests(<module> <short-name> <Class> <method>...)
#   registers lab.<short-name>.<method> for each method.
function(understudy_lab_tests module short cls)
  foreach(method IN LISTS ARGN)
    string(REGEX REPLACE "^test_" "" name "${method}")
    set(test_name "lab.${short}.${name}")
    add_test(NAME ${test_name}
      COMMAND ${UNDERSTUDY_LAB_PYTHON} -m unittest -v tests.lab.${module}.${cls}.${method}
      WORKING_DIRECTORY ${UNDERSTUDY_LAB_SRC})
    set(env "PYTHONDONTWRITEBYTECODE=1")
    if(TARGET understudy)
      list(APPEND env "UNDERSTUDY_BINARY=$<TARGET_FILE:understudy>")
    endif()
    set_tests_properties(${test_name} PROPERTIES
      TIMEOUT 300
      LABELS lab
      RUN_SERIAL TRUE
      ENVIRONMENT "${env}"
      SKIP_REGULAR_EXPRESSION "skipped 'needs root")
  endforeach()
endfunction()

# --- baseline: the lab itself, no daemon needed
understudy_lab_tests(test_lab_baseline baseline BaselineTest
  test_files_byte_exact_from_both_nodes
  test_content_is_deterministic
  test_identical_validators_on_both_nodes
  test_echo_post_1m
  test_echo_slow
  test_drop_once_drops_exactly_one_packet
  test_drop_once_with_tcp_flag_match
  test_drop_random_and_clear
  test_isolation_and_addresses
  test_offloads_left_on_at_both_ends
  test_config_format
  test_daemon_helpers_fail_clearly_without_binary
  test_wait_for_reports_clearly)
understudy_lab_tests(test_lab_baseline baseline LifecycleTest
  test_down_removes_everything
  test_exception_inside_with_cleans_up
  test_two_labs_side_by_side
  test_sigterm_cleans_up
  test_sigint_cleans_up
  test_orphans_of_a_killed_owner_are_cleaned
  test_cleanup_stale_by_prefix)

# --- the daemon in the lab (each file registers its own tests)
understudy_lab_tests(test_failover_large failover LargeReplyFailoverTest
  test_upload_reaches_the_tap_as_super_segments_only_with_offloads_on
  test_reply_leaves_the_primary_in_gso_frames
  test_link_flap_does_not_stop_gso_frames
  test_primary_crash_mid_64m
  test_backup_crash_mid_64m
  test_primary_crash_mid_64m_upload
  test_backup_crash_mid_64m_upload)
understudy_lab_tests(test_failover_large offloads_off LargeReplyFailoverOffloadsOffTest
  test_upload_reaches_the_tap_as_super_segments_only_with_offloads_on
  test_reply_leaves_the_primary_in_gso_frames
  test_link_flap_does_not_stop_gso_frames
  test_primary_crash_mid_64m
  test_backup_crash_mid_64m
  test_primary_crash_mid_64m_upload
  test_backup_crash_mid_64m_upload)
include(${CMAKE_CURRENT_LIST_DIR}/table1.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/table2.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/bad_input.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/hostile_clients.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/http_failover.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/guards.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/handover.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/privileges.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/hostile_packets.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/syn_cookies.cmake OPTIONAL)
understudy_lab_tests(test_node_lifecycle lifecycle NodeLifecycleTest
  test_sigterm_stops_cleanly
  test_restarted_primary_rejoins
  test_connections_end_on_both_nodes
  test_status_text_and_keygen
  test_stuck_control_client_does_not_stall_the_node
  test_stale_arp_entry_at_the_client
  test_idle_keepalive_connection_is_closed
  test_heavy_load_is_not_a_failure
  test_status_without_a_running_node_fails_clearly)
include(${CMAKE_CURRENT_LIST_DIR}/rejoin.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/join_guards.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/peer_plane.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/chaos.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/bench_smoke.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/metrics.cmake OPTIONAL)
understudy_lab_tests(test_regressions regression ChaosRegressionTest
  test_request_answered_before_the_backup_had_all_of_it
  test_new_request_after_takeover_on_idle_connection)
include(${CMAKE_CURRENT_LIST_DIR}/systemd_notify.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/client_identity.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/logs.cmake OPTIONAL)
include(${CMAKE_CURRENT_LIST_DIR}/hooks.cmake OPTIONAL)
