"""``hub replay`` end to end: file → pipeline → summary and events file, as a separate process,
against the pipeline on the same samples in memory, in the same run.

Two 1024-channel NAME.bin recordings (30 kHz, the front-end benchmark's synthetic signal, 1 s of
it tiled with a per-repeat offset) of different lengths go through ``python -m hub replay
--events-out``; each child's peak resident memory (``ru_maxrss``) says whether memory is bounded
independent of length (the figure that matters: long / short). Throughput: the replay's own loop
(file read included: ``loop_msamples_per_s``), the whole command (start-up included), and the
in-process pipeline on the same data already in memory (bench_frontend's ``run_hub``). The files
were just written, so reads come from the page cache.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_frontend import FS, make_data, probe_positions, run_hub
from bench.common import REPO

CHANNELS = 1024

_CHILD = ("import resource, subprocess, sys\n"
          "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
          "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)\n")


def write_recording(path: Path, base: np.ndarray, seconds: int) -> int:
    """NAME.bin + NAME.json of ``seconds`` × the 1 s ``base`` (each repeat shifted by a few
    counts, so no two seconds are identical); returns the sample count."""
    with path.open("wb") as f:
        for k in range(seconds):
            f.write((base + np.int16(k % 7)).tobytes())
    meta = {"sampling_frequency": FS, "num_channels": base.shape[1], "gain_to_uV": 0.195,
            "num_samples": seconds * base.shape[0], "dtype": "int16",
            "channel_positions_um": probe_positions(base.shape[1]).tolist()}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return seconds * int(base.shape[0])


def replay_child(rec: Path, out: Path) -> dict[str, Any]:
    """One ``hub replay`` process: its summary, wall time and peak RSS."""
    argv = [sys.executable, "-m", "hub", "replay", str(rec), "--quiet", "--json",
            str(out / f"{rec.stem}.json"), "--events-out", str(out / f"{rec.stem}.npz")]
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD, *argv], cwd=REPO, capture_output=True,
                       text=True, check=True)
    wall = time.perf_counter() - t
    maxrss_kb, rc = (int(v) for v in r.stdout.split())
    if rc != 0:
        raise RuntimeError(f"hub replay {rec.name} exited {rc}: {r.stderr[-500:]}")
    s = json.loads((out / f"{rec.stem}.json").read_text())
    return {"seconds_of_data": s["duration_s"], "samples": s["samples_processed"],
            "peak_rss_mb": round(maxrss_kb / 1024, 1), "process_wall_s": round(wall, 3),
            "process_msamples_per_s": round(s["samples_processed"] / wall / 1e6, 1),
            "loop_msamples_per_s": round(s.get("loop_msamples_per_s") or 0.0, 1),
            "pipeline_msamples_per_s": round(s["msamples_per_s"], 1),
            "spikes": s["spikes_total"]}


def run(quick: bool) -> dict[str, Any]:
    short_s, long_s = (2, 8) if quick else (2, 30)
    base = make_data(CHANNELS, 1.0)
    res: dict[str, Any] = {"channels": CHANNELS, "sampling_hz": FS}
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        d = Path(tmp)
        runs = {}
        for name, secs in (("short", short_s), ("long", long_s)):
            write_recording(d / f"{name}.bin", base, secs)
            runs[name] = replay_child(d / f"{name}.bin", d)
            (d / f"{name}.bin").unlink()
        res["runs"] = runs
    hub = run_hub(np.tile(base, (2, 1)), probe_positions(CHANNELS))
    res["in_process_msamples_per_s"] = round(2 * base.size / hub["seconds"] / 1e6, 1)
    lr = runs["long"]
    res["peak_rss_long_over_short"] = round(lr["peak_rss_mb"] / runs["short"]["peak_rss_mb"], 3)
    res["end_to_end_over_in_process"] = round(
        lr["loop_msamples_per_s"] / res["in_process_msamples_per_s"], 3)
    res["self_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return res


def table(r: dict[str, Any]) -> str:
    lines = [f"hub replay end to end, {r['channels']} ch at {r['sampling_hz']:.0f} Hz "
             "(NAME.bin from the page cache; --events-out)",
             f"{'run':<7}{'seconds':>8}{'peak RSS':>10}{'loop':>10}{'process':>10}"
             f"{'pipeline':>10}   (M samples/s)"]
    for name, x in r["runs"].items():
        lines.append(f"{name:<7}{x['seconds_of_data']:>8.0f}{x['peak_rss_mb']:>8.0f}MB"
                     f"{x['loop_msamples_per_s']:>10.1f}{x['process_msamples_per_s']:>10.1f}"
                     f"{x['pipeline_msamples_per_s']:>10.1f}")
    lines.append(f"in-process pipeline (same data in memory): {r['in_process_msamples_per_s']} M "
                 f"samples/s; end to end / in process {r['end_to_end_over_in_process']}; peak "
                 f"RSS long / short {r['peak_rss_long_over_short']}")
    return "\n".join(lines)
