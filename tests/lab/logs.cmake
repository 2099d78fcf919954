# Logs (issue 12, item 6): one client followed by its connection id through a primary crash, in
# the JSON and the text format (tests/lab/test_logs.py; docs/LOGS.md).
understudy_lab_tests(test_logs logs JsonLogsTest
  test_every_line_is_json_and_the_backup_names_the_primarys_connection)
understudy_lab_tests(test_logs logs TextLogsTest
  test_the_same_conn_id_on_both_nodes)
