-- post.lua: the wrk script of bench/http.sh.  One POST per request, its key
-- chosen at random per request among BENCH_KEYS; counts what was sent and
-- what was acknowledged, and prints one machine-readable line at the end.
--
-- Driven by the environment (bench/http.sh sets it):
--   BENCH_PATH          path template; "{n}" becomes the request's key (0..BENCH_KEYS-1),
--                       e.g. /streams/s-{n}  (a fixed path has no "{n}")
--   BENCH_BODY          file holding the body template; "{n}" is replaced the same way
--   BENCH_CONTENT_TYPE  Content-Type of the body (application/json, application/x-ndjson)
--   BENCH_KEYS          number of keys (streams), default 1000
--   BENCH_EVENTS        events per request (1, or the NDJSON body's line count)
--   BENCH_NDJSON        1: the answer is NDJSON, one ack or error per line; a
--                       line starting {"error" is a refused event
--
-- Counted per thread, summed in done():
--   sent         events in requests handed to wrk (written, or being written)
--   ok           2xx answers;  acked: events acknowledged in them
--   non2xx       answers outside 200..299 (the run fails if there is any)
--   line_errors  NDJSON lines answered with an error inside a 2xx answer (also a failure)
--   bad_lines    NDJSON answers whose line count is not BENCH_EVENTS (also a failure)
--
-- done() prints one line:  WRKJSON {...}  with wrk's summary, the latency
-- distribution (µs: mean, stdev, max, p50 p75 p90 p99 p99.9 p99.99) and the
-- counters.  Every request is built once per key in init(), so request()
-- costs one random number and one table lookup.

local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local events = tonumber(os.getenv("BENCH_EVENTS") or "1")
local ndjson = os.getenv("BENCH_NDJSON") == "1"
local path_t = os.getenv("BENCH_PATH") or "/"
local ctype = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local body_file = os.getenv("BENCH_BODY")

local threads = {}
local counter = 1

function setup(thread)
   thread:set("thread_id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local requests = {}
sent, ok, acked, non2xx, line_errors, bad_lines, first_bad = 0, 0, 0, 0, 0, 0, ""

function init(args)
   local body_t = ""
   if body_file and body_file ~= "" then
      local f = assert(io.open(body_file, "rb"), "cannot open BENCH_BODY " .. body_file)
      body_t = f:read("*a")
      f:close()
   end
   local headers = { ["Content-Type"] = ctype }
   for n = 0, keys - 1 do
      local s = tostring(n)
      local path = path_t:gsub("{n}", s)
      local body = body_t:gsub("{n}", s)
      requests[n] = wrk.format("POST", path, headers, body)
   end
   math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
end

function request()
   sent = sent + events
   return requests[math.random(0, keys - 1)]
end

local function count(s, pattern)
   local _, n = s:gsub(pattern, "")
   return n
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
      if ndjson then
         -- Plain find in a loop, not gsub: gsub copies the ~12 KB answer and
         -- made wrk, not the server, the bottleneck (3.4k vs 7.8k requests/s).
         local lines, i = 0, 0
         while true do
            i = body:find("\n", i + 1, true)
            if not i then break end
            lines = lines + 1
         end
         local errs = body:find("{\"error\"", 1, true) and count(body, "\n{\"error\"") or 0
         if body:sub(1, 8) == "{\"error\"" then errs = errs + 1 end
         if lines ~= events then
            bad_lines = bad_lines + 1
            if first_bad == "" then first_bad = status .. " (" .. lines .. " lines) " .. body:sub(1, 300) end
         end
         line_errors = line_errors + errs
         if errs > 0 and first_bad == "" then
            first_bad = status .. " " .. body:sub(body:find("{\"error\"", 1, true) or 1, -1):sub(1, 300)
         end
         acked = acked + lines - errs
      else
         acked = acked + events
      end
   else
      non2xx = non2xx + 1
      if first_bad == "" then first_bad = status .. " " .. body:sub(1, 300) end
   end
end

local function jstr(s)
   s = s:gsub('[%c"\\]', function(c)
      if c == '"' then return '\\"' end
      if c == "\\" then return "\\\\" end
      return string.format("\\u%04x", c:byte())
   end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local t = { sent = 0, ok = 0, acked = 0, non2xx = 0, line_errors = 0, bad_lines = 0 }
   local bad = ""
   for _, th in ipairs(threads) do
      for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
      local fb = th:get("first_bad")
      if bad == "" and fb and fb ~= "" then bad = fb end
   end
   local e = summary.errors
   local parts = {
      string.format('"duration_us":%d', summary.duration),
      string.format('"requests":%d', summary.requests),
      string.format('"bytes":%d', summary.bytes),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                    e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d,"p9999":%d}',
                    latency.min, latency.mean, latency.stdev, latency.max,
                    latency:percentile(50), latency:percentile(75), latency:percentile(90),
                    latency:percentile(99), latency:percentile(99.9), latency:percentile(99.99)),
      string.format('"events_per_request":%d', events),
      string.format('"keys":%d', keys),
   }
   for _, k in ipairs({ "sent", "ok", "acked", "non2xx", "line_errors", "bad_lines" }) do
      table.insert(parts, string.format('"%s":%d', k, t[k]))
   end
   table.insert(parts, '"first_bad":' .. jstr(bad))
   io.write("WRKJSON {" .. table.concat(parts, ",") .. "}\n")
end
