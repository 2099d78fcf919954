# Prometheus metrics (issue 12, item 3): /metrics on both nodes, checked by promtool
# (tests/lab/test_metrics.py; docs/METRICS.md).
understudy_lab_tests(test_metrics metrics MetricsTest
  test_scrape_duplex_counts_and_failover
  test_bad_scrapes_answered_and_node_serves_on)
