-- The refresh grant: each refresh token is single use, so every response's new
-- refresh token goes back into a queue that the next request takes from. wrk
-- calls response() before it asks request() for that connection's next request,
-- so a seed pool of one token per connection never runs dry while refreshes
-- succeed; plus one, because wrk calls request() once at start to check the
-- script. A failed refresh drops its token and shows as a non-2xx.
-- Set by bench/load.py before this file: POOL_FILE, BASIC, NTHREADS.

local threads = {}
local pool = {}

setup = function(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

init = function(args)
  local count, me = NTHREADS, tid or 0
  local i = 0
  for line in io.lines(POOL_FILE) do
    if i % count == me then table.insert(pool, line) end
    i = i + 1
  end
end

local headers = {
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = "Basic " .. BASIC,
}

request = function()
  local token = table.remove(pool, 1) or ""
  return wrk.format("POST", "/token", headers, "grant_type=refresh_token&refresh_token=" .. token)
end

local reported = false

response = function(status, hdrs, body)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then table.insert(pool, token) end
  elseif not reported then
    reported = true  -- the first failure only: later ones may just be an empty pool
    io.write("NOTE refresh failed: " .. status .. " " .. body .. "\n")
  end
end
