"""Hub daemon end to end: hub CPU for 256 channels at 30 kHz including Python (target < 50 % of
one core), latency from sample time to host decode (events and feature bins, p50/p99) and link
throughput — the real chain as separate processes (simulated implant → ``hub run`` → TCP capped
at 1.3 Mbit/s → ``hubctl record``).

Hub CPU is the hub process's user + system time (all threads) over wall time while streaming,
read from /proc after a 2 s warm-up. The implant and receiver run on the same machine and
compete for the same cores, so figures on a busy machine are upper bounds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hil.chain import ChainSpec, run_chain


def _one(channels: int, seconds: float, rate_bps: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_daemon_") as d:
        s = run_chain(ChainSpec(f"synth:{channels}:30000:4", duration_s=seconds,
                                rate_bps=rate_bps, label=f"bench{channels}"), Path(d))
    tel = s.get("hub_telemetry") or {}
    c = s["classes"]
    return {
        "channels": channels, "sampling_hz": 30000, "seconds": seconds,
        "uplink_cap_bps": rate_bps,
        "hub_cpu_core_fraction": s["hub_cpu_core_fraction"],
        "hub_cpu_telemetry_last": tel.get("cpu_load"),
        "kernel_seconds": tel.get("kernel_seconds"),
        "stage_seconds": tel.get("stage_seconds"),
        "latency_ms": s["latency_ms"],
        "throughput_bps": s["link"]["throughput_bps"],
        "unaccounted": {k: v["unaccounted"] for k, v in c.items()},
        "delivered": {k: v["delivered"] for k, v in c.items()},
        "shed": {k: v["shed"] for k, v in c.items()},
        "overruns": tel.get("overruns"),
    }


def run(quick: bool) -> dict[str, Any]:
    seconds = 8.0 if quick else 20.0
    return {"runs": [_one(256, seconds, 1.3e6), _one(64, seconds, 1.3e6)],
            "target_cpu_core_fraction": 0.5}


def table(res: dict[str, Any]) -> str:
    lines = [f"{'channels':>8s} {'hub CPU':>8s} {'event p50':>10s} {'event p99':>10s} "
             f"{'bins p50':>9s} {'bins p99':>9s} {'link Mbit/s':>11s} {'unaccounted':>11s}"]
    for r in res["runs"]:
        ev, fb = r["latency_ms"]["events"], r["latency_ms"]["feature_bins"]
        lines.append(
            f"{r['channels']:8d} {100 * r['hub_cpu_core_fraction']:7.1f}% "
            f"{ev['p50'] or 0:8.1f}ms {ev['p99'] or 0:8.1f}ms {fb['p50'] or 0:7.1f}ms "
            f"{fb['p99'] or 0:7.1f}ms {r['throughput_bps'] / 1e6:11.3f} "
            f"{sum(r['unaccounted'].values()):11d}")
    lines.append(f"target: hub CPU < {100 * res['target_cpu_core_fraction']:.0f} % of one core "
                 "at 256 ch × 30 kHz")
    return "\n".join(lines)
