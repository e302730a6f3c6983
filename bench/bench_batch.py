"""hubctl batch on a LocalCluster: 12 generated recordings (SpikeInterface ground truth, seeds
1000–1011, 16 channels × 10 s at 30 kHz, int16; SpikeInterface folders, .bin + .json, WAV
stacks and NWB files in turn) through replay, calibrate (SpikeInterface's "simple" sorter),
sort (seeded) and codec:

  * the whole batch with 1 and with 2 workers, each on a fresh output folder and a fresh
    cluster (wall time of the batch; cluster start-up apart), and their ratio;
  * the same batch again: everything skipped, no cluster started;
  * a codec parameter changed: only the 12 codec tasks run;
  * the 12 with one recording truncated, fresh: the other 11 finish, the bad one is reported.

Times are wall-clock on whatever machine runs it; `load_avg` says how busy it was. Ratios are
from one run. Per-task CPU seconds beside wall seconds show contention (wall ≫ CPU).
`concurrency` = seconds tasks (and their sorters) were running / batch wall time: how many ran
at once on average — what the scheduler achieved, whatever each task's speed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from host_tools.batch_cluster import open_cluster
from host_tools.batch_plan import ClusterSettings, plan_from_dict
from host_tools.batch_report import write_summary
from host_tools.batch_run import run_batch
from host_tools.batch_testdata import make_batch

ROOT = Path(__file__).resolve().parents[1] / "out" / "bench_batch"
STEPS = ["replay", "calibrate", "sort", "codec"]


def _inputs(quick: bool) -> tuple[Path, int]:
    n, seconds, channels = (4, 4.0, 8) if quick else (12, 10.0, 16)
    folder = ROOT / ("in_quick" if quick else "in")
    stamp = folder / ".made"
    want = json.dumps([n, seconds, channels])
    if not (stamp.exists() and stamp.read_text() == want):
        shutil.rmtree(folder, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_batch(folder, n, seconds=seconds, channels=channels, units=8, first_seed=1000)
        stamp.write_text(want)
    return folder, n


def _doc(inputs: Path, **extra: Any) -> dict[str, Any]:
    return {"inputs": [str(inputs)], "steps": STEPS,
            "calibrate": {"sorter": "simple", "duration_s": 10.0, "min_spikes": 10}, **extra}


def _batch(doc: dict[str, Any], out: Path, workers: int, fresh: bool) -> dict[str, Any]:
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_from_dict(doc, out, "bench_batch")
    started: dict[str, float] = {}
    with LazyCluster(workers) as connect:
        t = time.perf_counter()
        s = run_batch(plan, out, connect, stream=None)
        wall = time.perf_counter() - t
        started.update(connect.startup)
    write_summary(s, out)
    tasks = [e for r in s["recordings"] for e in r["steps"].values() if e["status"] == "done"]
    sorter_s = sum(float((e.get("headline") or {}).get("sorter_s", 0)) for e in tasks)
    batch_s = wall - started.get("cluster_start_s", 0.0)
    busy = sum(e.get("seconds", 0) for e in tasks) + sorter_s
    return {"wall_s": round(batch_s, 2),
            "busy_s": round(busy, 2),
            "concurrency": round(busy / batch_s, 2) if batch_s > 0 else None,
            "cluster_start_s": round(started.get("cluster_start_s", 0.0), 2),
            "cluster_started": bool(started),
            "done": s["done"], "skipped": s["skipped"], "failed": s["failed"],
            "task_wall_s": round(sum(e.get("seconds", 0) for e in tasks), 2),
            "task_cpu_s": round(sum(e.get("cpu_seconds", 0) for e in tasks), 2),
            "failed_inputs": sorted({r["name"] for r in s["recordings"]
                                     for e in r["steps"].values() if e["status"] == "failed"}),
            "errors": sorted({e["error"] for r in s["recordings"] for e in r["steps"].values()
                              if e["status"] == "failed"})[:3],
            "summary": str(out / "batch_summary.json")}


class LazyCluster:
    """A connect() for run_batch that starts a LocalCluster on first use and times it."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.startup: dict[str, float] = {}
        self._cm: Any = None
        self._client: Any = None

    def __enter__(self) -> LazyCluster:
        return self

    def __call__(self) -> Any:
        if self._client is None:
            t = time.perf_counter()
            self._cm = open_cluster(ClusterSettings(workers=self.workers, dashboard=False))
            self._client, _ = self._cm.__enter__()
            self.startup["cluster_start_s"] = time.perf_counter() - t
        return self._client

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


def run(quick: bool) -> dict[str, Any]:
    inputs, n = _inputs(quick)
    res: dict[str, Any] = {"recordings": n, "steps": STEPS, "load_avg_before": os.getloadavg()}
    for w in (1, 2):
        res[f"workers_{w}"] = _batch(_doc(inputs), ROOT / f"out_w{w}", w, fresh=True)
    res["speedup_2_vs_1"] = round(res["workers_1"]["wall_s"] / res["workers_2"]["wall_s"], 3)
    res["rerun_all_current"] = _batch(_doc(inputs), ROOT / "out_w2", 2, fresh=False)
    res["rerun_codec_block_changed"] = _batch(_doc(inputs, codec={"block": 4096}),
                                              ROOT / "out_w2", 2, fresh=False)
    bad = ROOT / "in_corrupt"
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(inputs, bad)
    victim = next(bad.glob("*.bin"))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2 + 1])  # torn frame
    res["corrupt_input"] = _batch(_doc(bad), ROOT / "out_corrupt", 2, fresh=True)
    res["corrupt_input"]["truncated"] = victim.name
    res["load_avg_after"] = os.getloadavg()
    return res


def table(r: dict[str, Any]) -> str:
    rows = [("1 worker", r["workers_1"]), ("2 workers", r["workers_2"]),
            ("re-run, all current", r["rerun_all_current"]),
            ("re-run, codec block changed", r["rerun_codec_block_changed"]),
            ("one corrupt input", r["corrupt_input"])]
    lines = [f"hubctl batch: {r['recordings']} recordings × {len(r['steps'])} steps "
             f"({', '.join(r['steps'])}); load avg {r['load_avg_before'][0]:.1f} → "
             f"{r['load_avg_after'][0]:.1f} on {os.cpu_count()} cores",
             f"{'run':<30}{'wall s':>8}{'start s':>9}{'done':>6}{'skip':>6}{'fail':>6}"
             f"{'task wall s':>13}{'task cpu s':>12}{'at once':>9}"]
    for name, x in rows:
        lines.append(f"{name:<30}{x['wall_s']:>8.1f}{x['cluster_start_s']:>9.1f}{x['done']:>6}"
                     f"{x['skipped']:>6}{x['failed']:>6}{x['task_wall_s']:>13.1f}"
                     f"{x['task_cpu_s']:>12.1f}{x['concurrency'] or 0:>9.2f}")
    lines.append(f"2 workers vs 1: {r['speedup_2_vs_1']:.2f}× faster (same session); corrupt "
                 f"input reported: {', '.join(r['corrupt_input']['failed_inputs'])}")
    return "\n".join(lines)
