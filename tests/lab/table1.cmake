# The paper's Table 1: one packet lost on each hop, each direction (tests/lab/test_table1.py).
understudy_lab_tests(test_table1 table1 Table1LossTest
  test_client_data_client_to_backup_lost
  test_client_data_backup_to_primary_lost
  test_server_ack_primary_to_client_lost
  test_first_server_ack_lost_small_post
  test_server_data_primary_to_client_lost
  test_client_ack_client_to_backup_lost
  test_client_ack_of_small_reply_lost
  test_client_ack_backup_to_primary_lost
  test_random_loss_everywhere)
