-- wrk script for benchmarks/serving.py: POST the JSON body read from the file named by the
-- first argument after `--`, and print one JSON line of results when the run is done
-- (latencies in microseconds, from wrk's own histogram).
--
--   wrk -t1 -c32 -d10s -s benchmarks/post.lua http://127.0.0.1:PORT/PATH -- body.json

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  local file = assert(io.open(args[1], "rb"), "usage: wrk ... -s post.lua URL -- BODY_FILE")
  wrk.body = file:read("*a")
  file:close()
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %.0f, "p90_us": %.0f, "p99_us": %.0f, '
      .. '"max_us": %.0f, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout))
end
