dofile(os.getenv("BENCH_DIR") .. "/report.lua")
