"""Closed-loop HTTP load with `wrk` (Debian's package), or the Python generator without it.

`wrk` is C and uses far less CPU than any Python client, which matters when the load generator
shares two cores with the server it measures. Requests are written to a file, one per line
(method, path, body, headers, tab-separated), and cycled by a small Lua script.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.loadgen import run_in_own_process

LUA = r"""
local requests = {}
local next_index = 0
local thread_count = 0

function setup(thread)
  thread:set("offset", thread_count * 7919)
  thread_count = thread_count + 1
end

function init(args)
  for line in io.lines(args[1]) do
    local fields = {}
    for field in string.gmatch(line, "[^\t]+") do table.insert(fields, field) end
    local headers = {}
    for i = 4, #fields do
      local name, value = string.match(fields[i], "^([^:]+): (.*)$")
      headers[name] = value
    end
    local body = fields[3]
    if body == "-" then body = nil end
    table.insert(requests, wrk.format(fields[1], fields[2], headers, body))
  end
  next_index = offset % #requests
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"failures":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

Request = tuple[str, str, bytes | None, dict[str, str]]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def load_tool() -> str:
    return "wrk" if wrk_available() else "python-aiohttp"


def closed_loop(
    url: str, requests: list[Request], seconds: float, connections: int, scratch: Path
) -> dict[str, Any]:
    """Requests per second and latency percentiles (ms) at `connections` in flight."""
    if not wrk_available():
        return _python_closed_loop(url, requests, seconds, connections, scratch)
    request_file = scratch / "wrk-requests.tsv"
    with request_file.open("w") as out:
        for method, path, body, headers in requests:
            fields = [method, path, body.decode() if body else "-"]
            fields += [f"{name}: {value}" for name, value in headers.items()]
            out.write("\t".join(fields) + "\n")
    script = scratch / "requests.lua"
    script.write_text(LUA)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    command += ["-s", str(script), url, "--", str(request_file)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    [line] = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    raw = json.loads(line)
    elapsed = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "failures": raw["failures"],
        "seconds": elapsed,
        "rate": raw["requests"] / elapsed,
        "latency_ms": {
            name: round(raw[f"{name}_us"] / 1000, 2) for name in ("p50", "p90", "p99", "max")
        },
    }


def _python_closed_loop(
    url: str, requests: list[Request], seconds: float, connections: int, scratch: Path
) -> dict[str, Any]:
    encoded = [
        [method, path, headers, body.decode() if body else None]
        for method, path, body, headers in requests
    ]
    config = {"url": url, "requests": encoded, "seconds": seconds, "concurrency": connections}
    return run_in_own_process("http-closed", config, scratch)
