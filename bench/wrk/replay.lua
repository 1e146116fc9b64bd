-- Replays pre-generated HTTP requests, each at most once per run (webhook deliveries must be unique and signed, and
-- wrk's LuaJIT has no HMAC), and prints wrk's own latency percentiles for bench/common.py's wrk_run to read.
--
--   wrk -t1 -c32 -d5s -s bench/wrk/replay.lua http://127.0.0.1:PORT -- <requests file prefix> <path> <reuse 0|1>
--
-- Thread N reads "<prefix>.N": records of "<length>\n<headers>\r\n\r\n<body>" (every header but Host, in HTTP/1.1
-- form). Each request() takes the next record and puts the request line and Host in front. When a thread runs
-- out of records it starts again from its first and counts a wrap: with reuse 0 (deliveries that must be new)
-- the caller treats a wrap as a failed run.

local threads = {}
local counter = 1

function setup(thread)
   thread:set("id", counter)
   table.insert(threads, thread)
   counter = counter + 1
end

function init(args)
   local handle = assert(io.open(args[1] .. "." .. id, "rb"))
   data = handle:read("*a")
   handle:close()
   head = "POST " .. args[2] .. " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. tostring(wrk.port) .. "\r\n"
   reuse = args[3] == "1"
   position = 1
   sent = 0
   wrapped = 0
   -- wrk calls request() once on the first thread before the run, to check the script (script_verify_request):
   -- that request is never sent.
   verifying = id == 1
end

function request()
   if position > #data then
      position = 1
      wrapped = wrapped + 1
   end
   local newline = string.find(data, "\n", position, true)
   local length = tonumber(string.sub(data, position, newline - 1))
   local record = string.sub(data, newline + 1, newline + length)
   position = newline + length + 1
   if verifying then
      verifying = false
   else
      sent = sent + 1
   end
   return head .. record
end

function done(summary, latency, requests)
   local sent_total, wrapped_total = 0, 0
   for _, thread in ipairs(threads) do
      sent_total = sent_total + thread:get("sent")
      wrapped_total = wrapped_total + thread:get("wrapped")
   end
   local function put(name, value)
      io.write(string.format("WRK\t%s\t%s\n", name, tostring(value)))
   end
   put("duration_us", summary.duration)
   put("requests", summary.requests)
   put("sent", sent_total)
   put("wrapped", wrapped_total)
   for _, name in ipairs({ "connect", "read", "write", "status", "timeout" }) do
      put("error_" .. name, summary.errors[name])
   end
   put("latency_mean_us", latency.mean)
   put("latency_max_us", latency.max)
   for _, percent in ipairs({ 50, 90, 99, 99.9 }) do
      put("latency_p" .. percent .. "_us", latency:percentile(percent))
   end
end
