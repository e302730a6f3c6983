"""Where a family's cold-start accuracy goes: the hub's cold sort of one cached recording
against its ground truth, per unit.

    python -m bench.sorting_diagnose dense32 0 1 [--set NAME=VALUE]...   (tune seeds only)

For every ground-truth unit with SNR ≥ 5 it reports where its spikes went — not detected (no
event within 10 samples), unlabelled (an event the sorter left without a unit; split into
before and after the unit's first labelled spike: the candidate phase before a birth), labelled
with another hub unit, or with its own (the hub unit the scorer matched) — and, for every unit
below 0.8 accuracy, which hub unit holds most of its spikes and which other ground-truth units
that hub unit also holds (same peak channel: two neighbours in one cluster; another channel: a
cross-channel link). Every false-positive hub unit is listed with where its spikes come from
(on a ground-truth spike, or 6–120 samples after one: a delayed detection of that neuron).
Run it on the tune seeds (the report seeds are for figures, not for looking inside).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import sorting_eval as ev
from bench import sorting_families as sf

log = logging.getLogger(__name__)

NEAR = 10          # samples: an event this close to a ground-truth spike detected it
LATE = (6, 120)    # samples after a ground-truth spike: a delayed detection of it


def _gt_vector(gt: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """All ground-truth spikes, time-ordered: (samples, unit index into gt.unit_ids)."""
    trains = [np.asarray(gt.get_unit_spike_train(u), np.int64) for u in gt.unit_ids]
    t = np.concatenate(trains)
    lab = np.concatenate([np.full(len(x), i, np.int64) for i, x in enumerate(trains)])
    o = np.argsort(t, kind="stable")
    return t[o], lab[o]


def _peak_channels(rec: Any, gt: Any) -> dict[Any, int]:
    """Peak channel of every ground-truth unit (mean of ≤ 200 spikes, ±1 ms)."""
    from scipy.signal import butter, sosfiltfilt

    tr = sosfiltfilt(butter(3, [300, 6000], btype="band", fs=rec.sampling_frequency,
                            output="sos"), rec.get_traces().astype(np.float32), axis=0)
    out = {}
    for u in gt.unit_ids:
        st = np.asarray(gt.get_unit_spike_train(u))
        st = st[(st > 30) & (st < tr.shape[0] - 30)][:200]
        w = np.mean([tr[s - 30:s + 30] for s in st], axis=0)
        out[u] = int(np.argmax(np.abs(w).max(axis=0)))
    return out


def diagnose(family: str, seed: int) -> dict[str, Any]:
    """The breakdown for one recording (printed as it goes)."""
    import spikeinterface.core as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    from hub.dsp.sorting import sort_recording
    from hub.sources import open_recording

    m = sf.materialise(sf.quick(sf.family(family)), seed)
    snrs = ev.snr(m)
    res = sort_recording(open_recording(m.recording), ev.pipeline_config(), None)
    o = np.argsort(res.samples, kind="stable")
    S, F, CH = res.samples[o], res.final_units[o], res.channels[o]
    keep = F >= 0
    gt = si.load(m.sorting)
    hub = si.NumpySorting.from_samples_and_labels([S[keep]], [F[keep]], gt.sampling_frequency)
    cmp = compare_sorter_to_ground_truth(gt, hub, exhaustive_gt=True)
    perf, agree, match = cmp.get_performance(), cmp.agreement_scores, cmp.hungarian_match_12
    pk = _peak_channels(si.load(m.recording), gt)
    gt_t, gt_i = _gt_vector(gt)
    counts: Counter[str] = Counter()
    print(f"== {family} seed {seed}: {len(np.unique(F[keep]))} hub units, {len(gt.unit_ids)} "
          f"ground-truth units", flush=True)
    for u in gt.unit_ids:
        if snrs[str(u)] < ev.MIN_SNR:
            continue
        acc, hu = float(perf.loc[u, "accuracy"]), match[u]
        first = S[np.equal(F, hu)].min() if np.any(np.equal(F, hu)) else np.iinfo(np.int64).max
        for s in np.asarray(gt.get_unit_spike_train(u), np.int64):
            k = np.searchsorted(S, s)
            near = [q for q in range(max(0, k - 2), min(len(S), k + 2)) if abs(S[q] - s) <= NEAR]
            labs = [int(F[q]) for q in near]
            kind = ("not detected" if not near else "own unit" if hu in labs
                    else "unlabelled before birth" if max(labs) < 0 and s < first
                    else "unlabelled" if max(labs) < 0 else "another unit")
            counts[kind] += 1
        if acc >= 0.8:
            continue
        row = agree.loc[u]
        best = row.idxmax()
        others = [g for g in agree.index if g != u and agree.loc[g, best] > 0.05]
        why = ", ".join(f"gt {g} (agreement {agree.loc[g, best]:.2f}, "
                        f"{'same peak channel' if pk[g] == pk[u] else f'peak channel {pk[g]}'})"
                        for g in others) or "nothing else"
        print(f"  gt {u}: SNR {snrs[str(u)]:.1f}, accuracy {acc:.2f}, peak channel {pk[u]}; "
              f"hub {best} holds {row[best]:.2f} of it and {why}")
    total = sum(counts.values())
    print("  spikes of SNR ≥ 5 units: " + ", ".join(
        f"{k} {v / total:.3f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    # chance of a random time falling LATE after some ground-truth spike (the firing rate
    # alone): a false-positive unit above it follows ground-truth spikes (a delayed detection)
    grid = np.arange(int(gt_t[0]), int(gt_t[-1]), 97, dtype=np.int64)
    prev = gt_t[np.clip(np.searchsorted(gt_t, grid - LATE[0], side="right") - 1, 0, None)]
    chance = float(np.mean((grid - prev >= LATE[0]) & (grid - prev <= LATE[1])))
    for hu in cmp.get_false_positive_units():
        st = S[np.equal(F, hu)]
        k = np.searchsorted(gt_t, st)
        on = late = 0
        src: Counter[Any] = Counter()
        owner: Counter[Any] = Counter()
        for s, q in zip(st, k, strict=True):
            lo = max(0, q - 3)
            d = s - gt_t[lo:q + 3]
            if np.any(np.abs(d) <= 6):
                on += 1
                owner[gt.unit_ids[gt_i[lo + int(np.argmin(np.abs(d)))]]] += 1
            elif np.any((d >= LATE[0]) & (d <= LATE[1])):
                late += 1
                j = lo + int(np.argmax((d >= LATE[0]) & (d <= LATE[1])))
                src[gt.unit_ids[gt_i[j]]] += 1
        chans = sorted(set(CH[np.equal(F, hu)].tolist()))
        source = [(str(g), n) for g, n in src.most_common(3)]
        owners = ", ".join(f"gt {g} ×{n} (accuracy {float(perf.loc[g, 'accuracy']):.2f}, "
                           f"hub {match[g]})" for g, n in owner.most_common(2))
        t0 = st[0] / gt.sampling_frequency
        print(f"  false positive hub {hu}: {len(st)} spikes from {t0:.1f} s on channels {chans}; "
              f"{on} on a ground-truth spike ({owners or 'none'}), {late} "
              f"{LATE[0]}–{LATE[1]} samples after one (mostly of {source}; chance {chance:.2f})")
    return {"counts": dict(counts), "false_positive": len(cmp.get_false_positive_units())}


def main() -> int:
    """Command line: family, tune seeds, settings."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family")
    ap.add_argument("seeds", type=int, nargs="+")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="run the hub with this pipeline or sorter setting (repeat)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for kv in a.set:
        name, _, value = kv.partition("=")
        ev.OVERRIDES[name] = value
    ev.pipeline_config()
    for seed in a.seeds:
        if seed in sf.REPORT_SEEDS:
            print(f"seed {seed} is a report seed: diagnose on the tune seeds {sf.TUNE_SEEDS}",
                  file=sys.stderr)
            return 2
        diagnose(a.family, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
