-- wrk script for Collect's benchmark: POST /collect with the seed payload and a response_id of
-- its own per request (COLLECT_PREFIX-<thread>-<n>), so every request is a new response.
-- With COLLECT_RATE (requests a second, over all COLLECT_THREADS threads) each thread keeps a
-- fixed schedule: a connection that gets its answer waits for the next free slot; a slot whose
-- time has passed is sent at once and counted as late, with the largest lag, so a report can say
-- whether the schedule held (wrk times a request from when it is sent, not from when it was due).
-- done() prints one line, `COLLECT {json}`, that collect-bench reads.
-- The payload is spliced in by collect-bench: BEFORE_ID and AFTER_ID.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } collect_timespec;
int clock_gettime(int clk_id, collect_timespec *tp);
]]
local clock = ffi.new("collect_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

local before_id = BEFORE_ID
local after_id = AFTER_ID

function init(args)
  prefix = os.getenv("COLLECT_PREFIX") or "wrk"
  local rate = tonumber(os.getenv("COLLECT_RATE") or "0")
  local count = tonumber(os.getenv("COLLECT_THREADS") or "1")
  period = nil
  if rate > 0 then
    period = 1000 * count / rate
  end
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. (os.getenv("COLLECT_KEY") or ""),
  }
  seq = 0
  due = nil
  late = 0
  max_lag = 0
  refused = 0
end

function request()
  seq = seq + 1
  local id = prefix .. "-" .. thread_id .. "-" .. seq
  return wrk.format("POST", "/collect", headers, before_id .. id .. after_id)
end

function delay()
  if period == nil then
    return 0
  end
  local now = now_ms()
  if due == nil then
    due = now
  end
  due = due + period
  local wait = due - now
  if wait < 0 then
    if -wait > 1 then
      late = late + 1
    end
    if -wait > max_lag then
      max_lag = -wait
    end
    return 0
  end
  return math.floor(wait)
end

function response(status, headers, body)
  if status ~= 202 then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local late_total, refused_total, lag = 0, 0, 0
  for _, thread in ipairs(threads) do
    late_total = late_total + thread:get("late")
    refused_total = refused_total + thread:get("refused")
    lag = math.max(lag, thread:get("max_lag"))
  end
  local errors = summary.errors
  io.write(string.format(
    'COLLECT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"refused":%d,"late":%d,"max_lag_ms":%.1f,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.timeout, refused_total, late_total, lag,
    latency:percentile(50), latency:percentile(99), latency.max))
end
