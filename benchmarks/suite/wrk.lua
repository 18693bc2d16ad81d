-- poolgate's bench suite, saturation section (issue 18): wrk posts one JSON body per request.
--
-- Configured by the environment, read when wrk loads the script (before its threads start):
--   POOLGATE_WRK_BODY  the request body (required), sent with Content-Type: application/json
--   POOLGATE_WRK_RATE  requests/s per wrk thread; unset or 0: as fast as the connections allow
-- wrk cannot hold a fixed rate by itself (that is wrk2's -R, which Debian does not ship): with a
-- rate, delay() hands out send times on a fixed schedule per thread (every 1/rate s), so a
-- request waits for its slot; a thread that falls behind sends at once until it has caught up.
-- Latency is still timed from the actual send (no correction for coordinated omission): a rate
-- the target cannot hold shows as achieved requests/s below the rate, not as latency.
-- done() prints one line `POOLGATE_WRK {json}` the suite parses (latencies in microseconds).

local body = os.getenv("POOLGATE_WRK_BODY")
if body == nil or body == "" then
  error("POOLGATE_WRK_BODY is not set")
end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local rate = tonumber(os.getenv("POOLGATE_WRK_RATE") or "0") or 0

if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } poolgate_timespec;
    int clock_gettime(int clock_id, poolgate_timespec *tp);
  ]]
  local CLOCK_MONOTONIC = 1
  local ts = ffi.new("poolgate_timespec")
  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval = 1000 / rate
  local due = nil

  function delay()
    local now = now_ms()
    if due == nil then
      due = now
    end
    local wait = due - now
    due = due + interval
    if wait <= 0 then
      return 0
    end
    return math.floor(wait)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'POOLGATE_WRK {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f},' ..
    '"rate":%.3f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, rate))
end
