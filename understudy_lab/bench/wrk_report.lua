-- wrk script: at the end, print one JSON line with the exact counters and latency percentiles
-- (microseconds). The bench parses the line that starts with "BENCHJSON ".
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "bytes": %d, "duration_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"lat_us": {"mean": %.2f, "stdev": %.2f, "min": %d, "max": %d, "p50": %d, "p90": %d, "p99": %d}}\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
