"""The benchmark harness still runs end to end (its tiniest profile); no figure is judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_smoke_profile_measures_every_figure(tmp_path: Path) -> None:
    on_postgres = os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")
    out = tmp_path / "smoke.json"
    database = "postgres" if on_postgres else "sqlite"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--profile",
            "smoke",
            "--out",
            str(out),
            "--database",
            database,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    results = report["results"]
    assert [name for name, result in results.items() if "error" in result] == []
    assert results["ingest"]["gateway"]["failures"] == 0
    assert results["reads"]["entitlements_if_none_match"]["failures"] == 0
    assert results["freshness"]["steady"]["missing"] == 0
    assert results["freshness"]["first_event_per_account"]["settled_after_s"] >= 1
    assert set(results["freshness"]["steady"]["cpu_ms_per_event"]) == {
        "worker",
        "email_sender",
        "temporal_server",
        "api",
        "stripe_simulator",
        "load_generator",
        "harness",
    }
    peer = results["peer"]
    assert peer["steady"]["missing"] == 0
    assert peer["steady"]["failures"] == 0
    assert {"peer", "stripe_simulator", "load_generator"} <= set(peer["steady"]["cpu_ms_per_event"])
    # A handful of events may round the peer's CPU to nothing (10 ms ticks): no ratio then.
    assert peer["versus_ours"]["peer_cpu_ms_per_event"] >= 0
    capacity = results["capacity"]
    assert [point["offered_rate"] for point in capacity["points"]] == [4, 8]
    for point in capacity["points"]:
        assert point["latency_ms"]["p50"] <= point["latency_ms"]["p99"]
        assert point["events"] >= 1
        assert point["cpu_ms_per_event"] >= 0
        assert point["cores"] >= 0
        assert {"worker", "temporal_server", "api", "stripe_simulator"} <= set(
            point["cpu_ms_per_event_by_process"]
        )
        assert point["python_speed"] > 0
    assert "knee_rate" in capacity
    assert "capacity: knee" in completed.stdout
    assert results["scale"]["signal"]["missing"] == 0
    assert results["scale"]["history"]["runs"] >= 1
    speeds = report["machine"]["python_speed_before"]
    assert list(speeds) == list(results)
    assert all(speed > 0 for speed in speeds.values())
    assert "figure" in completed.stdout
