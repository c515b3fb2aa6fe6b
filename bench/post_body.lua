-- POST the body in the file named by BODY_FILE, unchanged, on every request.
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
