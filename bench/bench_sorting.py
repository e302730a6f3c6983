"""Online sorting on ground truth: the hub (`hubctl sort`, cold start and calibrated) beside
MountainSort5 and SpyKING CIRCUS 2 run offline on the same recordings, plus the sorter's cost.

Settings come from host_tools.groundtruth (easy, hard); quick runs use 30 s versions of them.
Every sorter is scored with SpikeInterface's compare_sorter_to_ground_truth; accuracy,
precision and recall are summarised over units with SNR ≥ 5 (host_tools.scoring.unit_info).
The hub runs through the real command line (`hubctl calibrate`, `hubctl sort`) in a subprocess.
Calibration uses the first half of the recording (at most 60 s).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

OUT = Path("out/bench_sorting")
OFFLINE = ("mountainsort5", "spykingcircus2")
MIN_SNR = 5.0


def _recording(name: str, quick: bool) -> tuple[Path, Path]:
    from host_tools import groundtruth as gt

    if not quick:
        return gt.materialise(name)
    short = f"{name}_30s"
    if short not in gt.SETTINGS:
        gt.SETTINGS[short] = replace(gt.SETTINGS[name], name=short, duration_s=30.0)
    return gt.materialise(short)


def _snr(rec_dir: Path, sort_dir: Path) -> dict[str, float]:
    cache = rec_dir.parent / "snr_units.json"
    if cache.exists():
        d: dict[str, float] = json.loads(cache.read_text())
        return d
    import spikeinterface.core as si

    from host_tools.scoring import unit_info

    info = unit_info(si.load(rec_dir), si.load(sort_dir))
    d = {str(u): float(s) for u, s in zip(info.unit_ids, info.snr, strict=True)}
    cache.write_text(json.dumps(d))
    return d


def score(gt_sorting: Any, sorting: Any, snr: dict[str, float]) -> dict[str, Any]:
    """compare_sorter_to_ground_truth figures, summarised over units with SNR ≥ 5."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    cmp = compare_sorter_to_ground_truth(gt_sorting, sorting, exhaustive_gt=True)
    perf = cmp.get_performance()
    hi = np.array([snr[str(u)] >= MIN_SNR for u in perf.index])
    acc = perf["accuracy"].to_numpy(float)[hi]
    return {
        "units_found": len(sorting.unit_ids),
        "well_detected": int(cmp.count_well_detected_units(0.8)),
        "units_snr5": int(hi.sum()),
        "median_accuracy": float(np.median(acc)),
        "mean_accuracy": float(np.mean(acc)),
        "median_precision": float(np.median(perf["precision"].to_numpy(float)[hi])),
        "median_recall": float(np.median(perf["recall"].to_numpy(float)[hi])),
        "false_positive_units": int(cmp.count_false_positive_units()),
        "redundant_units": int(cmp.count_redundant_units()),
    }


def _hubctl(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "host_tools.cli", *args], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - t


def _pipeline_figures(stats_json: Path) -> dict[str, Any]:
    """The hub pipeline's own wall time (front-end + sorter, no file I/O) and its unit events."""
    st = json.loads(stats_json.read_text())["stats"]
    return {"pipeline_s": st["wall_seconds"], "births": st["births"], "merges": st["merges"],
            "retirements": st["retirements"]}


def _offline(name: str, rec_dir: Path, work: Path) -> tuple[Any, float]:
    import spikeinterface.core as si
    import spikeinterface.sorters as ss

    from host_tools.calibrate import seeded_params

    t = time.perf_counter()
    sorting = ss.run_sorter(name, si.load(rec_dir), folder=work / name, verbose=False,
                            remove_existing_folder=True, **seeded_params(name))
    return si.NumpySorting.from_sorting(sorting), time.perf_counter() - t


def _setting(name: str, quick: bool, offline: bool) -> dict[str, Any]:
    import spikeinterface.core as si

    rec_dir, sort_dir = _recording(name, quick)
    snr = _snr(rec_dir, sort_dir)
    gt_sorting = si.load(sort_dir)
    rec = si.load(rec_dir)
    duration = rec.get_num_samples() / rec.get_sampling_frequency()
    out: dict[str, Any] = {"recording": str(rec_dir), "duration_s": duration,
                           "channels": rec.get_num_channels(), "gt_units": len(gt_sorting.unit_ids),
                           "gt_units_snr5": sum(v >= MIN_SNR for v in snr.values()), "runs": {}}
    work = OUT / rec_dir.parent.name
    work.mkdir(parents=True, exist_ok=True)
    runs = out["runs"]
    wall = _hubctl("sort", str(rec_dir), str(work / "hub_cold"), "--json",
                   str(work / "hub_cold.json"))
    runs["hub cold start"] = {**score(gt_sorting, si.load(work / "hub_cold"), snr),
                              "wall_s": wall, **_pipeline_figures(work / "hub_cold.json")}
    calib_s = min(60.0, duration / 2)
    tpl = work / "templates.npz"
    wall_cal = _hubctl("calibrate", str(rec_dir), str(tpl), "--duration", str(calib_s))
    wall = _hubctl("sort", str(rec_dir), str(work / "hub_calibrated"), "--templates", str(tpl),
                   "--json", str(work / "hub_calibrated.json"))
    runs["hub calibrated"] = {**score(gt_sorting, si.load(work / "hub_calibrated"), snr),
                              "wall_s": wall, "calibration_wall_s": wall_cal,
                              "calibration_s": calib_s,
                              **_pipeline_figures(work / "hub_calibrated.json")}
    if offline:
        for sorter in OFFLINE:
            try:
                sorting, wall = _offline(sorter, rec_dir, Path(tempfile.mkdtemp(prefix="sc-")))
                runs[f"{sorter} (offline)"] = {**score(gt_sorting, sorting, snr), "wall_s": wall}
            except Exception as e:  # one sorter failing must not hide the others
                log.exception("%s failed", sorter)
                runs[f"{sorter} (offline)"] = {"error": f"{type(e).__name__}: {e}"}
    return out


def cost(rec_dir: Path, seconds: float = 20.0, repeats: int = 3) -> dict[str, Any]:
    """Front-end time per sample with and without the sorter on the same data (medians)."""
    from hub.dsp.pipeline import Pipeline, PipelineConfig
    from hub.sources import open_recording

    rec = open_recording(rec_dir)
    n = min(rec.num_samples, round(seconds * rec.sampling_frequency))
    data = rec.read(0, n)
    times: dict[bool, list[float]] = {False: [], True: []}
    sort_share: list[float] = []
    mem = 0
    for _ in range(repeats):
        for sort in (False, True):
            pipe = Pipeline(PipelineConfig(sort=sort), rec.num_channels, rec.sampling_frequency,
                            rec.channel_positions_um)
            b = pipe.block_samples
            t = time.perf_counter()
            for s in range(0, n, b):
                pipe.process(data[s: s + b])
            times[sort].append(time.perf_counter() - t)
            if sort and pipe.sorter is not None:
                sort_share.append(pipe.times.seconds.get("sort", 0.0))
                mem = pipe.sorter.memory_bytes
    without, with_ = float(np.median(times[False])), float(np.median(times[True]))
    samples = n * rec.num_channels
    return {"seconds": n / rec.sampling_frequency, "channels": rec.num_channels,
            "ns_per_sample_frontend": without / samples * 1e9,
            "ns_per_sample_with_sort": with_ / samples * 1e9,
            "added_fraction": with_ / without - 1.0,
            "sort_kernel_fraction": float(np.median(sort_share)) / without,
            "memory_bytes": mem, "memory_bytes_per_channel": mem / rec.num_channels}


def run(quick: bool) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    res: dict[str, Any] = {"quick": quick, "settings": {}}
    for name in ("easy", "hard"):
        res["settings"][name] = _setting(name, quick, offline=True)
    res["cost"] = cost(Path(res["settings"]["easy"]["recording"]), 10.0 if quick else 20.0)
    return res


def table(res: dict[str, Any]) -> str:
    lines = []
    cols = ("units", "well≥0.8", "med acc", "mean acc", "med prec", "med rec", "FP units",
            "redund.", "wall s")
    for name, s in res["settings"].items():
        lines.append(f"sorting, {name}: {s['channels']} ch, {s['duration_s']:.0f} s, "
                     f"{s['gt_units']} GT units ({s['gt_units_snr5']} with SNR ≥ 5); "
                     "accuracy/precision/recall over SNR ≥ 5")
        lines.append(f"  {'':28s}" + "".join(f"{c:>9s}" for c in cols))
        for run_name, r in s["runs"].items():
            if "error" in r:
                lines.append(f"  {run_name:28s} error: {r['error'][:80]}")
                continue
            vals = (r["units_found"], r["well_detected"], r["median_accuracy"],
                    r["mean_accuracy"], r["median_precision"], r["median_recall"],
                    r["false_positive_units"], r["redundant_units"], r["wall_s"])
            lines.append(f"  {run_name:28s}" + "".join(
                f"{v:9d}" if isinstance(v, int) else f"{v:9.3f}" if v < 10 else f"{v:9.1f}"
                for v in vals))
        hub = [f"{k} {r['pipeline_s']:.1f} s" for k, r in s["runs"].items() if "pipeline_s" in r]
        lines.append(f"  hub pipeline alone (front-end + sorter, causal, one core): "
                     f"{', '.join(hub)} for {s['duration_s']:.0f} s of data")
    c = res["cost"]
    lines.append(f"sorting cost ({c['channels']} ch, {c['seconds']:.0f} s, medians): front-end "
                 f"{c['ns_per_sample_frontend']:.2f} ns/sample, with sorting "
                 f"{c['ns_per_sample_with_sort']:.2f} ns/sample → "
                 f"+{100 * c['added_fraction']:.1f} % (sorter kernel alone "
                 f"{100 * c['sort_kernel_fraction']:.1f} %); state "
                 f"{c['memory_bytes_per_channel'] / 1024:.1f} KiB per channel (fixed)")
    return "\n".join(lines)
