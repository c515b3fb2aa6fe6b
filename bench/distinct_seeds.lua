-- POST the body template in BODY_FILE with a different seed on every request, so no
-- rendered image is ever served from the cache. %d in the template is the seed.
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local template = file:read("*a")
file:close()
local threads = 0

setup = function(thread)
  thread:set("offset", threads * 100000000)
  threads = threads + 1
end

init = function(args)
  counter = offset
end

request = function()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
                                  ["Authorization"] = "Bearer bench"},
                    string.format(template, counter))
end
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
