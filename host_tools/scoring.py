"""Scores hub detection against ground truth (SpikeInterface sortings and recordings)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass
class UnitInfo:
    """Per ground-truth unit: SNR (peak template amplitude / noise) and peak channel."""

    unit_ids: list[Any]
    snr: npt.NDArray[np.float64]
    peak_channel: npt.NDArray[np.int64]


def unit_info(recording: Any, sorting: Any) -> UnitInfo:
    """SNR and peak channel of every unit, from SpikeInterface's templates and noise levels."""
    import spikeinterface.core as si
    from spikeinterface.core.template_tools import get_template_extremum_channel
    from spikeinterface.metrics.quality.misc_metrics import compute_snrs

    an = si.create_sorting_analyzer(sorting, recording, format="memory", sparse=False)
    an.compute(["random_spikes", "templates", "noise_levels"], progress_bar=False)
    snrs = compute_snrs(an)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peak = get_template_extremum_channel(an, outputs="index")
    ids = list(sorting.unit_ids)
    return UnitInfo(ids, np.array([snrs[u] for u in ids], float),
                    np.array([peak[u] for u in ids], np.int64))


@dataclass
class DetectionScore:
    recall: float            # over spikes of units with SNR ≥ min_snr
    precision: float         # detected events that match any ground-truth spike
    n_gt: int
    n_detected: int
    n_matched_gt: int
    n_false: int
    units_scored: int


def score_detection(events: npt.NDArray[Any], sorting: Any, info: UnitInfo,
                    positions_um: npt.NDArray[np.float64], fs: float, tol_ms: float = 0.4,
                    radius_um: float = 50.0, min_snr: float = 5.0) -> DetectionScore:
    """Matches events (sample, channel) to ground-truth spikes: within ±tol_ms, on a channel
    within radius_um of the unit's peak channel. Each event matches at most one spike."""
    tol = round(tol_ms * fs / 1000.0)
    ev_t = np.asarray(events["sample"], np.int64)
    ev_c = np.asarray(events["channel"], np.int64)
    order = np.argsort(ev_t, kind="stable")
    ev_t, ev_c = ev_t[order], ev_c[order]
    used = np.zeros(ev_t.size, bool)
    dist = np.linalg.norm(positions_um[:, None] - positions_um[None], axis=-1)
    n_gt = n_hit = 0
    gt_all: list[tuple[npt.NDArray[np.int64], int, bool]] = []
    for k, u in enumerate(info.unit_ids):
        st = np.asarray(sorting.get_unit_spike_train(u, segment_index=0), np.int64)
        gt_all.append((st, k, bool(info.snr[k] >= min_snr)))
    # Scored units first so that their spikes claim the events they explain.
    gt_all.sort(key=lambda x: not x[2])
    for st, k, scored in gt_all:
        near = dist[info.peak_channel[k]] <= radius_um
        lo = np.searchsorted(ev_t, st - tol, "left")
        hi = np.searchsorted(ev_t, st + tol, "right")
        for s_i in range(st.size):
            hit = False
            for j in range(lo[s_i], hi[s_i]):
                if not used[j] and near[ev_c[j]]:
                    used[j] = True
                    hit = True
                    break
            if scored:
                n_gt += 1
                n_hit += hit
    n_det = int(ev_t.size)
    n_false = int((~used).sum())
    return DetectionScore(
        recall=n_hit / n_gt if n_gt else float("nan"),
        precision=(n_det - n_false) / n_det if n_det else float("nan"),
        n_gt=n_gt, n_detected=n_det, n_matched_gt=n_hit, n_false=n_false,
        units_scored=int((info.snr >= min_snr).sum()))
