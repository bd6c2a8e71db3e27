-- Closed-loop load for `bun run bench` (driven by closed-loop.ts): wrk POSTs request templates with a fresh
-- uid in every body, stops issuing requests at a deadline and lets those in flight finish, so the run
-- ends drained and the audit log can be checked one line per acknowledged request.
--
--   wrk -t1 -c32 -d<seconds + drain>s -s wrk.lua https://127.0.0.1:PORT/log-request -- CONFIG.lua
--
-- CONFIG.lua returns { seconds = N, run = R, connections = per thread, drained = PATH_PREFIX,
-- templates = { { head = PATH, tail = PATH }, ... }, schedule = { 1, 2, 1, ... } }: each template's head
-- file holds the request line, headers and the body up to the uid, its tail file the body after it; the
-- schedule (1-based indices) is cycled. When all of a thread's connections are idle after the deadline,
-- the thread creates the file PATH_PREFIX<thread number>, and closed-loop.ts stops wrk (SIGINT).
-- done() prints one line, `KAR-BENCH {json}`, for closed-loop.ts.
--
-- wrk calls delay() before every request when the script defines it: returning 0 sends at once,
-- returning PARKED_MS parks the connection until wrk stops. wrk also calls request() once before the
-- load starts, to check it; that call is not a request sent, so `sent` counts only after the first delay().

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } kar_timespec;
int clock_gettime(int clk_id, kar_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("kar_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Longer than any run: after the deadline a connection waits this long, i.e. until wrk stops.
local PARKED_MS = 86400000

-- Main state: one entry per thread, to read each thread's `sent` counter in done().
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

-- Thread state. `sent` is global so the main state can read it with thread:get.
sent = 0
local counter = 0
local started = false
local parked = 0
local heads, tails, schedule, pos, uid_head, deadline, connections, drained_file
local stopped = false

function init(args)
  local cfg = dofile(args[1])
  heads, tails = {}, {}
  for i, t in ipairs(cfg.templates) do
    heads[i] = slurp(t.head)
    tails[i] = slurp(t.tail)
  end
  schedule = cfg.schedule
  -- Threads start at different places in the mix.
  pos = (thread_id * 7919) % #schedule + 1
  uid_head = string.format("%08x-%04x-4000-8000-", cfg.run, thread_id)
  connections = cfg.connections
  drained_file = cfg.drained .. thread_id
  deadline = now_ms() + cfg.seconds * 1000
end

-- Each connection parks once (it is never asked again), so `parked` counts idle connections.
local function park()
  stopped = true
  parked = parked + 1
  if parked == connections then
    assert(io.open(drained_file, "w")):close()
  end
  return PARKED_MS
end

function delay()
  if stopped or now_ms() >= deadline then
    return park()
  end
  started = true
  return 0
end

function request()
  local i = schedule[pos]
  pos = pos + 1
  if pos > #schedule then
    pos = 1
  end
  counter = counter + 1
  if started then
    sent = sent + 1
  end
  return heads[i] .. uid_head .. string.format("%012x", counter) .. tails[i]
end

function done(summary, latency, requests)
  local total_sent = 0
  for _, t in ipairs(threads) do
    total_sent = total_sent + t:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    'KAR-BENCH {"sent":%d,"completed":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,' ..
    '"non2xx":%d,"timeouts":%d,"p50Us":%d,"p99Us":%d,"p999Us":%d,"maxUs":%d,"meanUs":%.1f}\n',
    total_sent, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
