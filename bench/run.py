"""Run the benchmark suite: `python -m bench [--quick]` (or `python bench/run.py`).

Starts the real pieces on loopback (bench/stack.py), measures each figure against its
reference in the same run (bench/scenarios.py), prints a table and writes
bench/results/latest.json. docs/benchmarks.md says what each figure means and what it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Runnable as `python bench/run.py` from the repo root: the packages live beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenarios import OUR_EVENT_PATH, PROFILES, SCENARIOS, Profile, durability_cost
from bench.speed import python_speed
from bench.stack import REPO, running_stack, temporal_version
from bench.wrk import load_tool

RESULTS = REPO / "bench" / "results" / "latest.json"
GIB = 1024**3


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) * 1024 / GIB, 1),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": temporal_version(),
        "load_average_at_start": os.getloadavg(),
        "http_load_tool": load_tool(),
        "python_speed_before": {},
    }


def run(profile: Profile, database: str, only: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "profile": profile.name,
        "database": database,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": {},
    }
    started = time.perf_counter()
    with running_stack(database) as stack:
        for name, scenario in SCENARIOS.items():
            if only and name not in only:
                continue
            print(f"… {name}", file=sys.stderr, flush=True)
            report["machine"]["python_speed_before"][name] = python_speed()
            try:
                report["results"][name] = scenario(stack, profile)
            except Exception as err:  # one broken figure must not hide the others
                traceback.print_exc()
                report["results"][name] = {"error": repr(err)}
    results = report["results"]
    if all(name in results and "error" not in results[name] for name in ("freshness", "peer")):
        results["peer"]["versus_ours"] = durability_cost(results["freshness"], results["peer"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    return report


def table(report: dict[str, Any]) -> str:
    """One line per figure: measured, reference, and the ratio or target it is judged by."""
    rows: list[tuple[str, str, str, str]] = []
    results = report["results"]

    def failed(name: str, result: dict[str, Any]) -> None:
        # The whole traceback is in the JSON and on stderr; the table keeps one line.
        rows.append((name, "failed", result["error"].splitlines()[0][:100], ""))

    def ms(summary: dict[str, Any] | None, name: str) -> str:
        return "—" if summary is None else f"{summary[name]:.1f} ms"

    if "error" in (ingest := results.get("ingest", {})):
        failed("ingest", ingest)
    elif ingest:
        raw, gateway, fixed = (
            ingest["raw_signal_with_start"],
            ingest["gateway"],
            ingest["gateway_at_fixed_load"],
        )
        rows.append(
            (
                "ingest: signed webhooks/s via gateway",
                f"{gateway['rate']:.0f}/s",
                f"raw signal-with-start {raw['rate']:.0f}/s",
                f"{ingest['ratio']:.2f}× (target ≥ 0.8×)",
            )
        )
        rows.append(
            (
                f"ingest: gateway latency at {fixed['offered_rate']:.0f}/s offered",
                f"p50 {ms(fixed['latency_ms'], 'p50')}, p99 {ms(fixed['latency_ms'], 'p99')}",
                f"{fixed['failures']} failed of {fixed['requests']}",
                "",
            )
        )
    if "error" in (reads := results.get("reads", {})):
        failed("reads", reads)
    elif reads:
        constant = reads["constant_endpoint"]
        for label, key, ratio in (
            ("reads: entitlements/s", "entitlements", "ratio"),
            (
                "reads: entitlements/s, If-None-Match",
                "entitlements_if_none_match",
                "ratio_if_none_match",
            ),
        ):
            figure = reads[key]
            rows.append(
                (
                    label,
                    f"{figure['rate']:.0f}/s, p99 {ms(figure['latency_ms'], 'p99')}",
                    f"/healthz {constant['rate']:.0f}/s, p99 {ms(constant['latency_ms'], 'p99')}",
                    f"{reads[ratio]:.2f}× (target ≥ 0.5×, p99 < 20 ms)",
                )
            )
    if "error" in (fresh := results.get("freshness", {})):
        failed("freshness", fresh)
    elif fresh:
        steady, first = fresh["steady"], fresh["first_event_per_account"]
        rows.append(
            (
                f"freshness at {steady['rate']:.0f} events/s over {steady['accounts']} accounts",
                f"p50 {ms(steady['latency_ms'], 'p50')}, p99 {ms(steady['latency_ms'], 'p99')}",
                f"first event: p50 {ms(first['latency_ms'], 'p50')}, "
                f"p99 {ms(first['latency_ms'], 'p99')}; quiet after {first['settled_after_s']} s",
                f"target p99 < 1000 ms; {steady['missing']} missing, {steady['failures']} failed",
            )
        )
        if "cpu_ms_per_event" in first:
            first_cpu = first["cpu_ms_per_event"]
            rows.append(
                (
                    "freshness: CPU per first event of an account",
                    f"ours {sum(first_cpu[name] for name in OUR_EVENT_PATH):.1f} ms",
                    f"worker {first_cpu['worker']:.1f} ms, "
                    f"email sender {first_cpu['email_sender']:.1f} ms, "
                    f"dev server {first_cpu['temporal_server']:.1f} ms",
                    "",
                )
            )
        if "cpu_ms_per_event" in steady:
            cpu = steady["cpu_ms_per_event"]
            rows.append(
                (
                    "freshness: CPU per steady event (until quiet)",
                    f"worker {cpu['worker']:.1f} ms",
                    f"Temporal dev server {cpu['temporal_server']:.1f} ms",
                    f"tail after the last change: {steady['tail_until_quiet_s']} s",
                )
            )
            rows.append(
                (
                    "freshness: CPU per event, the rest",
                    f"email sender {cpu['email_sender']:.1f} ms, API {cpu['api']:.1f} ms",
                    f"simulator {cpu['stripe_simulator']:.1f} ms, "
                    f"load generator {cpu['load_generator']:.1f} ms",
                    f"harness (SMTP sink) {cpu['harness']:.1f} ms",
                )
            )
    if "error" in (peer := results.get("peer", {})):
        failed("peer", peer)
    elif peer:
        steady = peer["steady"]
        rows.append(
            (
                f"peer (synchronous handler) at {steady['rate']:.0f} events/s "
                f"over {steady['accounts']} accounts",
                f"p50 {ms(steady['latency_ms'], 'p50')}, p99 {ms(steady['latency_ms'], 'p99')}",
                # The peer answers only once it wrote: its webhook answer is its delay.
                f"webhook answered: p50 {ms(steady.get('accept_latency_ms'), 'p50')}, "
                f"p99 {ms(steady.get('accept_latency_ms'), 'p99')}",
                f"{steady['missing']} missing, {steady['failures']} failed",
            )
        )
        cpu = steady["cpu_ms_per_event"]
        rows.append(
            (
                "peer: CPU per steady event",
                f"peer {cpu['peer']:.1f} ms",
                f"simulator {cpu['stripe_simulator']:.1f} ms, "
                f"load generator {cpu['load_generator']:.1f} ms",
                "",
            )
        )
        if cost := peer.get("versus_ours"):
            rows.append(
                (
                    "durability: CPU per event, ours vs peer",
                    f"ours {cost['ours_cpu_ms_per_event']:.1f} ms",
                    f"peer {cost['peer_cpu_ms_per_event']:.1f} ms (both with the simulator)",
                    "—" if cost["ratio"] is None else f"{cost['ratio']:.1f}×",
                )
            )
    if "error" in (capacity := results.get("capacity", {})):
        failed("capacity", capacity)
    elif capacity:
        for point in capacity["points"]:
            latency = point["latency_ms"]
            rows.append(
                (
                    f"capacity: freshness at {point['offered_rate']:.0f}/s",
                    f"p50 {ms(latency, 'p50')}, p99 {ms(latency, 'p99')}",
                    f"CPU per event {point['cpu_ms_per_event']:.1f} ms, {point['cores']:.2f} cores",
                    f"speed {point['python_speed']:.0f}",
                )
            )
        knee = capacity["knee_rate"]
        offered = ", ".join(f"{point['offered_rate']:.0f}" for point in capacity["points"])
        rows.append(
            (
                "capacity: knee (p99 < 1 s)",
                "—" if knee is None else f"{knee:.0f}/s",
                f"of {offered}/s offered",
                "every rate up to it: p99 < 1 s, nothing missing or failed",
            )
        )
    if "error" in (catch_up := results.get("catch_up", {})):
        failed("catch-up", catch_up)
    elif catch_up:
        if catch_up["measured"]:
            rows.append(
                (
                    f"catch-up of {catch_up['missed_events']} missed events",
                    f"{catch_up['wall_seconds']:.1f} s wall",
                    f"replay workflow {catch_up['replay_seconds']:.1f} s",
                    f"{catch_up['held_after']} held after; cores: "
                    + ", ".join(
                        f"{name} {cores:.2f}"
                        for name, cores in catch_up["cores_by_process"].items()
                        if cores >= 0.05
                    ),
                )
            )
        else:
            rows.append(("catch-up", "not measured", catch_up["reason"], ""))
    if "error" in (scale := results.get("scale", {})):
        failed("scale", scale)
    elif scale:
        signal, history = scale["signal"], scale["history"]
        rows.append(
            (
                f"scale: {scale['live_workflows']} live workflows, worker peak RSS",
                f"{scale['worker_peak_rss_bytes'] / 2**20:.0f} MiB",
                f"ramp {scale['ramp_seconds']:.0f} s",
                "target < 1024 MiB",
            )
        )
        rows.append(
            (
                f"scale: signal → taken in, at {signal['rate']:.0f}/s",
                f"p50 {ms(signal['processed_latency_ms'], 'p50')}, "
                f"p99 {ms(signal['processed_latency_ms'], 'p99')}",
                f"accepted: p99 {ms(signal['accept_latency_ms'], 'p99')}",
                f"{signal['missing']} missing",
            )
        )
        rows.append(
            (
                f"scale: history of one account sent {history['events_sent']} events",
                f"max {history['max_history_events_per_run']} events/run",
                f"{history['runs']} runs",
                "bounded (continue-as-new)",
            )
        )
    if speeds := report["machine"].get("python_speed_before"):
        rows.append(
            (
                "machine: Python speed before each figure",
                ", ".join(f"{name} {speed:.0f}" for name, speed in speeds.items()),
                "sum(range(1000)) calls per CPU-ms",
                "compare runs at like speeds",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)] if rows else [0] * 4
    header = ("figure", "measured", "reference", "ratio / target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    lines = [
        " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="short smoke run (≤ 2 minutes)")
    sizes.add_argument("--profile", choices=sorted(PROFILES), help="full, quick or smoke")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--only", action="append", choices=sorted(SCENARIOS), default=[], help="repeatable"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile or ("quick" if args.quick else "full")]
    report = run(profile, args.database, args.only)
    print(table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{profile.name} run, {report['database']}, {report['seconds']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
