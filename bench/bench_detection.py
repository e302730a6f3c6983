"""Causal detection against ground truth: the hub vs SpikeInterface's causal chain.

Recording: the 'easy' ground-truth setting (32 ch, 30 kHz, 120 s, 20 units, seed 42; see
host_tools/groundtruth.py). A detected spike matches a ground-truth spike within ±0.4 ms on a
channel within 50 µm of the unit's peak channel; recall counts spikes of units with SNR ≥ 5,
precision counts every detected event. SpikeInterface runs its defaults, made causal:
bandpass_filter(300–6000 Hz, direction="forward") + common_reference(median) +
detect_peaks(locally_exclusive, 5 × MAD).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict
from typing import Any

import numpy as np

from bench.common import REPO


def run(quick: bool) -> dict[str, Any]:
    import spikeinterface.core as si
    import spikeinterface.preprocessing as spre
    from spikeinterface.sortingcomponents.peak_detection import detect_peaks

    from host_tools.groundtruth import materialise
    from host_tools.scoring import score_detection, unit_info
    from hub.dsp.replay import replay
    from hub.kernels import EVENT_DTYPE
    from hub.sources import open_recording

    warnings.filterwarnings("ignore", category=FutureWarning)
    setting = "tiny" if quick else "easy"
    rec_dir, sort_dir = materialise(setting, REPO / "out" / "gt")
    rec = open_recording(rec_dir)
    assert rec.channel_positions_um is not None
    si_rec, sorting = si.load(rec_dir), si.load(sort_dir)
    info = unit_info(si_rec, sorting)

    t = time.perf_counter()
    hub = replay(rec, progress=None)
    hub_s = time.perf_counter() - t
    hub_score = score_detection(hub.events, sorting, info, rec.channel_positions_um,
                                rec.sampling_frequency)

    t = time.perf_counter()
    f = spre.bandpass_filter(si_rec, freq_min=300.0, freq_max=6000.0, direction="forward")
    cmr = spre.common_reference(f, reference="global", operator="median")
    job = {"n_jobs": 1, "chunk_duration": "1s", "progress_bar": False}
    peaks = detect_peaks(cmr, method="locally_exclusive", job_kwargs=job)
    si_s = time.perf_counter() - t
    ev = np.zeros(peaks.size, EVENT_DTYPE)
    ev["sample"], ev["channel"] = peaks["sample_index"], peaks["channel_index"]
    si_score = score_detection(ev, sorting, info, rec.channel_positions_um,
                               rec.sampling_frequency)
    return {
        "setting": setting, "units": len(info.unit_ids),
        "units_snr_ge_5": int((info.snr >= 5).sum()),
        "hub": {**asdict(hub_score), "seconds": round(hub_s, 2)},
        "spikeinterface_causal": {**asdict(si_score), "seconds": round(si_s, 2)},
        "targets": {"recall": 0.95, "precision": 0.95},
    }


def table(r: dict[str, Any]) -> str:
    h, s = r["hub"], r["spikeinterface_causal"]
    return "\n".join([
        f"detection vs ground truth ({r['setting']}: {r['units']} units, "
        f"{r['units_snr_ge_5']} with SNR ≥ 5)",
        f"  hub              recall {h['recall']:.3f}  precision {h['precision']:.3f}  "
        f"({h['n_detected']} events, {h['n_false']} unmatched, {h['seconds']} s)",
        f"  SI causal chain  recall {s['recall']:.3f}  precision {s['precision']:.3f}  "
        f"({s['n_detected']} events, {s['n_false']} unmatched, {s['seconds']} s)",
        "  targets: recall ≥ 0.95, precision ≥ 0.95",
    ])


