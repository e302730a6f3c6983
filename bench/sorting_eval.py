"""Runs and scores sorters on one materialised ground-truth recording: the hub (cold start and
calibrated, in process, through the same code `hubctl sort` / `hubctl calibrate` run) and the
offline sorters, whose results are cached on disk by recording hash (re-runs are cheap).

Scores are SpikeInterface's compare_sorter_to_ground_truth, summarised over units with
SNR ≥ 5 (bench.bench_sorting.score).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.sorting_families import Family, Materialised

log = logging.getLogger(__name__)

OFFLINE = ("mountainsort5", "spykingcircus2", "tridesclous2")
CALIBRATION_SORTER = "mountainsort5"
MIN_SNR = 5.0


def snr(m: Materialised) -> dict[str, float]:
    """SNR of every ground-truth unit (cached beside the recording)."""
    cache = m.root / "snr_units.json"
    if cache.exists():
        d: dict[str, float] = json.loads(cache.read_text())
        return d
    import spikeinterface.core as si

    from host_tools.scoring import unit_info

    info = unit_info(si.load(m.recording), si.load(m.sorting))
    d = {str(u): float(s) for u, s in zip(info.unit_ids, info.snr, strict=True)}
    cache.write_text(json.dumps(d))
    return d


def _save_sorting(path: Path, sorting: Any, meta: dict[str, Any]) -> None:
    sv = sorting.to_spike_vector()
    ids = np.asarray(sorting.unit_ids)
    labels = ids[sv["unit_index"]].astype(str) if ids.size else np.zeros(0, str)
    np.savez(path.with_suffix(".npz"), samples=sv["sample_index"].astype(np.int64),
             labels=labels, unit_ids=ids.astype(str))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


def cached_meta(path: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The cached result's metadata when it was made with `params` (a result made with other
    parameters, e.g. before a sorter's randomness was seeded, is stale: None)."""
    meta_p = path.with_suffix(".json")
    if not meta_p.exists():
        return None
    meta: dict[str, Any] = json.loads(meta_p.read_text())
    return meta if meta.get("params", {}) == json.loads(json.dumps(params)) else None


def _load_sorting(path: Path, fs: float,
                  params: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    data_p = path.with_suffix(".npz")
    meta = cached_meta(path, params)
    if meta is None:
        return None
    if "error" in meta:
        return None, meta
    if not data_p.exists():
        return None
    import spikeinterface.core as si

    with np.load(data_p, allow_pickle=False) as z:
        samples, labels = z["samples"], z["labels"]
    sorting = si.NumpySorting.from_samples_and_labels([samples], [labels], fs)
    return sorting, meta


#: set by the harness's --cached-only: offline sorters are never run, only read from cache
CACHED_ONLY = False
#: set by the harness's --set NAME=VALUE: pipeline (PipelineConfig) or sorter (SorterConfig)
#: settings the hub runs with instead of the defaults (ablations, before/after figures)
OVERRIDES: dict[str, str] = {}


def pipeline_config() -> Any:
    """PipelineConfig(sort=True) with OVERRIDES applied (ValueError naming an unknown one)."""
    import dataclasses

    from hub.dsp.pipeline import PipelineConfig

    cfg = PipelineConfig(sort=True)
    sort_cfg = cfg.sort_settings
    for name, text in OVERRIDES.items():
        for obj in (cfg, sort_cfg):
            if name in {f.name for f in dataclasses.fields(obj)}:
                kind = type(getattr(obj, name))
                val: Any = (text.lower() in ("1", "true", "yes", "on")) if kind is bool \
                    else kind(text)
                if obj is cfg:
                    cfg = dataclasses.replace(cfg, **{name: val})
                else:
                    sort_cfg = dataclasses.replace(sort_cfg, **{name: val})
                break
        else:
            raise ValueError(f"--set {name}: not a pipeline or sorter setting")
    return dataclasses.replace(cfg, sort_settings=sort_cfg)


def sorter_params(sorter: str) -> dict[str, Any]:
    """Parameters an offline sorter runs with here (its defaults, except where a default needs
    what is not installed): SpyKING CIRCUS 2's default motion correction (DREDGE) needs torch,
    which is not a dependency, so without torch it uses SpikeInterface's torch-free preset
    ("nonrigid_fast_and_accurate": the decentralised estimate) instead of failing on every
    probe large enough to be motion-corrected; and randomness a sorter leaves unseeded is
    seeded (host_tools.calibrate.seeded_params: one result per recording)."""
    import importlib.util

    from host_tools.calibrate import seeded_params

    if sorter == "spykingcircus2" and importlib.util.find_spec("torch") is None:
        return seeded_params(sorter,
                             {"motion_correction": {"preset": "nonrigid_fast_and_accurate"}})
    return seeded_params(sorter)


def offline(m: Materialised, sorter: str, start_s: float = 0.0,
            duration_s: float | None = None) -> tuple[Any, dict[str, Any]]:
    """(sorting or None, {wall_s | error}) of an offline sorter on [start, start + duration) of
    the recording; cached under the recording's key."""
    import spikeinterface.core as si
    import spikeinterface.sorters as ss

    rec = si.load(m.recording)
    fs = rec.get_sampling_frequency()
    tag = sorter if duration_s is None else f"{sorter}_{start_s:g}_{duration_s:g}"
    path = m.root / "offline" / tag
    params = sorter_params(sorter)
    hit = _load_sorting(path, fs, params)
    if hit is not None:
        return hit
    if CACHED_ONLY:
        return None, {"error": "not run (--cached-only, no cached result)", "sorter": sorter,
                      "not_cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    if duration_s is not None:
        a = round(start_s * fs)
        rec = rec.frame_slice(a, min(rec.get_num_samples(), a + round(duration_s * fs)))
    work = Path(tempfile.mkdtemp(prefix=f"sortgen-{sorter}-"))
    log.info("running %s on %s (%s) %s", sorter, m.key, tag, params or "")
    t = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # MS5 prints its progress
            sorting = ss.run_sorter(sorter, rec, folder=work / sorter, verbose=False,
                                    remove_existing_folder=True, **params)
        sorting = si.NumpySorting.from_sorting(sorting)
        meta: dict[str, Any] = {"wall_s": time.perf_counter() - t, "sorter": sorter,
                                "params": params}
        _save_sorting(path, sorting, meta)
        return sorting, meta
    except Exception as e:  # a sorter failing on one recording is a result, not a crash
        log.warning("%s failed on %s: %s", sorter, m.key, e)
        # the last lines name the cause (the first only say where it surfaced)
        meta = {"error": f"{type(e).__name__}: {str(e)[-600:]}", "sorter": sorter,
                "params": params}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return None, meta
    finally:
        shutil.rmtree(work, ignore_errors=True)


def hub_sort(m: Materialised, templates: Any = None) -> tuple[Any, dict[str, Any]]:
    """The hub's online sorter over the whole recording (causal, block by block): the
    SpikeInterface sorting a host would build (merges applied) and the run's figures."""
    import spikeinterface.core as si

    from hub.dsp.sorting import sort_recording
    from hub.sources import open_recording

    rec = open_recording(m.recording)
    res = sort_recording(rec, pipeline_config(), templates)
    keep = res.final_units >= 0
    order = np.argsort(res.samples[keep], kind="stable")
    sorting = si.NumpySorting.from_samples_and_labels(
        [res.samples[keep][order]], [res.final_units[keep][order]], rec.sampling_frequency)
    st = res.stats
    stages = st["stage_seconds"]
    front = sum(v for k, v in stages.items() if k != "sort")
    fig = {"births": st["births"], "merges": st["merges"], "retirements": st["retirements"],
           "pipeline_s": st["wall_seconds"], "sort_s": stages.get("sort", 0.0),
           "frontend_s": front, "added_fraction": stages.get("sort", 0.0) / max(front, 1e-9),
           "memory_bytes_per_channel": st["memory_bytes"] / rec.num_channels,
           "spikes": st["spikes"], "labelled": st["labelled"]}
    for k in ("fit", "drift_um", "motion_um", "motion_spikes", "motion_trace", "motion_jumps"):
        if k in st:
            fig[k] = st[k]
    return sorting, fig


def calibration_seconds(f: Family) -> float:
    """What the calibrated run sorts offline first: half the recording, at most 60 s."""
    return min(60.0, f.duration_s / 2)


def calibrate(m: Materialised, duration_s: float) -> tuple[Any, dict[str, Any]]:
    """Templates from the calibration sorter on the first `duration_s` (its sort cached), by
    the same code as `hubctl calibrate`; (TemplateSet or None, info)."""
    from host_tools.calibrate import templates_from_sorting
    from hub.sources import open_recording

    sorting, meta = offline(m, CALIBRATION_SORTER, 0.0, duration_s)
    if sorting is None:
        return None, meta
    rec = open_recording(m.recording)
    last = min(rec.num_samples, round(duration_s * rec.sampling_frequency))
    ts, info = templates_from_sorting(rec, sorting, pipeline_config(), 0, last,
                                      sorter=CALIBRATION_SORTER)
    info["sorter_seconds"] = meta.get("wall_s")
    return ts, info


def score_run(m: Materialised, sorting: Any, snrs: dict[str, float]) -> dict[str, Any]:
    """bench_sorting.score's summary plus the accuracy of every unit with SNR ≥ 5 (so that a
    family's figures can pool units over its seeds)."""
    import spikeinterface.core as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    from bench.bench_sorting import score

    gt = si.load(m.sorting)
    out = score(gt, sorting, snrs)
    perf = compare_sorter_to_ground_truth(gt, sorting, exhaustive_gt=True).get_performance()
    hi = np.array([snrs[str(u)] >= MIN_SNR for u in perf.index])
    out["accuracies"] = [round(float(a), 4) for a in perf["accuracy"].to_numpy(float)[hi]]
    return out


def evaluate(m: Materialised, offline_sorters: tuple[str, ...] = OFFLINE,
             hub: bool = True) -> dict[str, Any]:
    """Every run on one recording: {run name: scores and figures}."""
    snrs = snr(m)
    out: dict[str, Any] = {"key": m.key, "family": m.family.name, "seed": m.seed,
                           "gt_units": len(snrs),
                           "gt_units_snr5": sum(v >= MIN_SNR for v in snrs.values()),
                           "runs": {}}
    runs = out["runs"]
    if hub:
        sorting, fig = hub_sort(m)
        runs["hub cold"] = {**score_run(m, sorting, snrs), **fig}
        cal_s = calibration_seconds(m.family)
        ts, info = calibrate(m, cal_s)
        if ts is None and info.get("not_cached"):
            pass
        elif ts is None:
            runs["hub calibrated"] = {"error": f"calibration failed: {info.get('error')}"}
        else:
            sorting, fig = hub_sort(m, ts)
            trace = fig.pop("motion_trace", None)
            runs["hub calibrated"] = {**score_run(m, sorting, snrs), **fig,
                                      "calibration_s": cal_s,
                                      "calibration_units": info["units"],
                                      "calibration_rejected": info["rejected"]}
            if m.family.drifting and trace:
                # the online motion estimate against the generator's displacement
                import spikeinterface.core as si

                from bench.motion_truth import ground_truth_motion, motion_error

                t_gt, disp = ground_truth_motion(m.family, m.seed)
                fs = si.load(m.recording).get_sampling_frequency()
                runs["hub calibrated"]["motion"] = motion_error(trace, fs, t_gt, disp, cal_s)
    for name in offline_sorters:
        sorting, meta = offline(m, name)
        if sorting is None and meta.get("not_cached"):
            continue
        if sorting is None:
            runs[name] = {"error": meta.get("error", "failed")}
        else:
            runs[name] = {**score_run(m, sorting, snrs), "wall_s": meta["wall_s"]}
    return out
