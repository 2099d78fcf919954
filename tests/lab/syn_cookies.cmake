# Connections made from SYN cookies across a crash of either node (tests/lab/test_syn_cookies.py).
understudy_lab_tests(test_syn_cookies syn_cookies SynCookieFailoverTest
  test_primary_crash_mid_64m
  test_backup_crash_mid_64m
  test_primary_crash_mid_64m_upload
  test_backup_crash_mid_64m_upload)
