-- wrk script for `make bench`: POST a fixed CSV body, optionally paced to a fixed rate.
--   BENCH_BODY_FILE  file whose bytes are the request body (required)
--   BENCH_RATE       target requests/s for this wrk thread (optional; unset = closed loop)
-- Prints one machine-readable line at the end: BENCH_RESULT {json}.

local body_file = assert(os.getenv("BENCH_BODY_FILE"), "set BENCH_BODY_FILE")
local fh = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = fh:read("*a")
fh:close()
wrk.headers["Content-Type"] = "text/csv"
wrk.headers["Accept"] = "text/csv"

local rate = tonumber(os.getenv("BENCH_RATE") or "")

if rate and rate > 0 then
  -- Pacing: the k-th request of this thread is due at start + k/rate (an absolute schedule, so the
  -- 1 ms granularity of wrk's delay() does not drift the average rate).
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
    int clock_gettime(int clk_id, bench_timespec_t *tp);
  ]]
  local ts = ffi.new("bench_timespec_t")
  local CLOCK_MONOTONIC = 1
  local interval_ms = 1000.0 / rate
  local start_ms = nil
  local k = 0

  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000.0 + tonumber(ts.tv_nsec) / 1e6
  end

  function delay()
    local now = now_ms()
    if start_ms == nil then
      start_ms = now
    end
    local due = start_ms + k * interval_ms
    k = k + 1
    local wait = due - now
    if wait <= 0 then
      return 0
    end
    return math.floor(wait + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, ' ..
    '"p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "errors": {"connect": %d, ' ..
    '"read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
