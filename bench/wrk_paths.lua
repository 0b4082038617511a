-- wrk script: GET random paths from a file, one connection per wrk thread,
-- so the per-thread response counts prove that every connection was served.
-- usage: wrk -t N -c N ... -s wrk_paths.lua URL -- PATHS_FILE EXPECTED_STATUS [conditional]
-- PATHS_FILE lines: "<path> <etag> [<token>]"; with "conditional", If-None-Match: <etag> is
-- sent; with a token, Authorization: Bearer <token> (each device its own).

local threads = {}
local next_seed = 1

function setup(thread)
  thread:set("seed", next_seed)
  next_seed = next_seed + 1
  table.insert(threads, thread)
end

function init(args)
  paths, etags, tokens = {}, {}, {}
  for line in io.lines(args[1]) do
    local path, etag, token = line:match("^(%S+)%s*(%S*)%s*(%S*)$")
    table.insert(paths, path)
    table.insert(etags, etag)
    table.insert(tokens, token)
  end
  expected = tonumber(args[2])
  conditional = args[3] == "conditional"
  responses, unexpected, busy = 0, 0, 0
  math.randomseed(seed * 7919 + os.time())
end

function request()
  local i = math.random(#paths)
  local headers = {}
  if conditional then
    headers["If-None-Match"] = etags[i]
  end
  if tokens[i] ~= "" then
    headers["Authorization"] = "Bearer " .. tokens[i]
  end
  return wrk.format("GET", paths[i], headers)
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= expected then
    unexpected = unexpected + 1
    if status == 503 then busy = busy + 1 end
  end
end

function done(summary, latency, requests)
  local served, least, most, bad, refused = 0, math.huge, 0, 0, 0
  for _, thread in ipairs(threads) do
    local count = thread:get("responses")
    if count > 0 then served = served + 1 end
    least = math.min(least, count)
    most = math.max(most, count)
    bad = bad + thread:get("unexpected")
    refused = refused + thread:get("busy")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"connections": %d, "served_connections": %d, "min_per_connection": %d, ' ..
    '"max_per_connection": %d, "requests": %d, "duration_us": %d, "unexpected_status": %d, ' ..
    '"busy": %d, "socket_errors": %d, "p50_us": %.0f, "p99_us": %.0f, "bytes": %d}\n',
    #threads, served, least, most, summary.requests, summary.duration, bad, refused,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99),
    summary.bytes))
end
