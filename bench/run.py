"""`make bench`: load the mock on 127.0.0.1 with wrk, next to a bare Starlette endpoint
on the same stack, and print req/s, p50 and p99, the ratio to the bare endpoint, and the
mock's memory after the run. Figures are from this one run; nothing here is a test."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DURATION = os.environ.get("BENCH_DURATION", "10s")
# (a) and the bare endpoint take turns, in short rounds: this machine's speed drifts by
# 10-20% over a minute, and a ratio of two runs far apart would measure the drift.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ROUND_DURATION = os.environ.get("BENCH_ROUND_DURATION", "5s")
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
# wrk gets one of the two cores, the server the other.
WRK_THREADS = 1

TARGETS = {
    "ratio_a": 0.5,       # (a) at least half the bare endpoint's req/s
    "b_rps": 300.0,       # (b) uncached 512x512 b64_json
    "b_p99_ms": 100.0,
    "rss_mb": 150.0,
}


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    print("wrk not found; installing it from Debian's packages", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or sys.exit("could not install wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(args, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.05)  # polling for the port to open
    process.kill()
    sys.exit(f"server {args} did not start")


def wrk(binary: str, url: str, script: str, body_file: Path | None = None, duration: str = DURATION) -> dict:
    env = {**os.environ, "BENCH_DIR": str(BENCH), "BODY_FILE": str(body_file or "")}
    command = [binary, f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{duration}", "--latency",
               "-s", str(BENCH / script), url]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / result["seconds"]
    return result


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_replaying(python: str, mock_url: str, seed_request: dict, cassette: Path) -> tuple[subprocess.Popen, int]:
    """A cassette of the seed request, recorded through the proxy from the mock, and a second
    mock replaying it: every (a) request is then a hit."""
    from mockserver.testing.harness import RecordingServer

    with RecordingServer(mock_url, cassette) as proxy:
        httpx.post(f"{proxy.base_url}/v1/images/edits", json=seed_request,
                   headers={"Authorization": "Bearer bench"}).raise_for_status()
    port = free_port()
    command = [python, "-m", "mockserver", "serve", "--port", str(port), "--log-level", "warning",
               "--replay", str(cassette)]
    return start(command, port), port


def main() -> int:
    binary = ensure_wrk()
    seed_request = json.loads((ROOT / "fixtures/seed/powertokens-request.json").read_text())
    uncached = {**seed_request, "response_format": "b64_json", "n": 1, "size": "512*512", "seed": 0}
    workdir = Path(tempfile.mkdtemp(prefix="qwen-bench-"))
    seed_file = workdir / "seed.json"
    seed_file.write_text(json.dumps(seed_request))
    template_file = workdir / "uncached.json"
    template_file.write_text(json.dumps(uncached).replace('"seed": 0', '"seed": %d'))

    mock_port, bare_port = free_port(), free_port()
    python = sys.executable
    mock = start([python, "-m", "mockserver", "serve", "--port", str(mock_port), "--log-level", "warning"],
                 mock_port)
    bare = start([python, "-m", "uvicorn", "--app-dir", str(BENCH), "bare_app:app", "--port", str(bare_port),
                  "--log-level", "warning"], bare_port)
    try:
        mock_url, bare_url = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{bare_port}"
        issued = httpx.post(f"{mock_url}/v1/images/edits", json={**seed_request, "size": "512*512"},
                            headers={"Authorization": "Bearer bench"}).json()["data"][0]["url"]
        rounds = []
        for _ in range(ROUNDS):
            bare_run = wrk(binary, f"{bare_url}/v1/images/edits", "post_body.lua", seed_file, ROUND_DURATION)
            mock_run = wrk(binary, f"{mock_url}/v1/images/edits", "post_body.lua", seed_file, ROUND_DURATION)
            rounds.append((bare_run, mock_run, mock_run["rps"] / bare_run["rps"]))
        # The round whose ratio is the median stands for both rows.
        bare_run, mock_run, ratio = sorted(rounds, key=lambda r: r[2])[len(rounds) // 2]
        results = {
            "bare endpoint (parse JSON, fixed body)": bare_run,
            "(a) seed example, url mode": mock_run,
            "(b) b64_json 512x512, distinct seeds": wrk(binary, f"{mock_url}/v1/images/edits", "distinct_seeds.lua",
                                                        template_file),
            "(c) fetch an issued image URL": wrk(binary, issued, "get_url.lua"),
        }
        memory = rss_mb(mock.pid)
        replaying = start_replaying(python, mock_url, seed_request, workdir / "cassette")
        replay_url = f"http://127.0.0.1:{replaying[1]}/v1/images/edits"
        results["(d) (a) replayed from a cassette (hits)"] = wrk(binary, replay_url, "post_body.lua", seed_file)
        replaying[0].terminate()
        replaying[0].wait(timeout=10)
    finally:
        for process in (mock, bare):
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nwrk: {WRK_THREADS} thread, {CONNECTIONS} connections; mock: 1 uvicorn worker")
    print(f"bare and (a): {ROUNDS} alternating rounds of {ROUND_DURATION}, ratios "
          f"{', '.join(f'{r[2]:.2f}' for r in rounds)}; the median round is shown. (b), (c): {DURATION}\n")
    print(f"{'scenario':44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in results.items():
        print(f"{name:44} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:7d}")
    replayed = results["(d) (a) replayed from a cassette (hits)"]
    print(f"\n(d) / (a) = {replayed['rps'] / mock_run['rps']:.2f} (a replay hit against the mock's own answer; "
          f"(d) ran {DURATION} after the rounds)")
    b = results["(b) b64_json 512x512, distinct seeds"]
    checks = [
        (f"(a) / bare = {ratio:.2f}", ratio >= TARGETS["ratio_a"], f">= {TARGETS['ratio_a']}"),
        (f"(b) {b['rps']:.0f} req/s", b["rps"] >= TARGETS["b_rps"], f">= {TARGETS['b_rps']:.0f}"),
        (f"(b) p99 {b['p99_ms']:.1f} ms", b["p99_ms"] < TARGETS["b_p99_ms"], f"< {TARGETS['b_p99_ms']:.0f} ms"),
        (f"mock RSS after the run {memory:.0f} MB", memory < TARGETS["rss_mb"], f"< {TARGETS['rss_mb']:.0f} MB"),
    ]
    print()
    for figure, met, target in checks:
        print(f"{'met ' if met else 'MISSED'}  {figure}  (target {target})")
    errors = sum(r["errors"] for r in results.values())
    if errors:
        print(f"\n{errors} requests failed or answered non-2xx during the run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
