"""Where the online sorter loses ground-truth spikes when its templates are perfect: the hub is
loaded with ground-truth templates (first calibration segment, through the same
`templates_from_sorting` / `nk_sort_load_templates` path as `hubctl calibrate`) and every spike
of a ground-truth unit with SNR ≥ 5 that its matched hub unit misses is classified:

- ``undetected``: no detected event within ±0.4 ms on the unit's snippet channels; split by
  whether another detected event lies within the detector's exclusion window nearby
  within twice the exclusion radius (``undetected_overlap``: suppressed by, or merged into,
  a neighbour's spike) or not
  (``undetected_quiet``: below threshold or jitter);
- ``off_channel``: detected, but on a channel where the matched unit has no cluster (the hub
  only compares a spike with the clusters of its own channel);
- ``taken``: detected on a channel of the unit, labelled to another unit
  (``taken_overlap``: another neuron's spike lies within ±OVERLAP samples of the event);
- ``unlabelled``: detected on a channel of the unit, left unsorted (−1)
  (``unlabelled_overlap``: likewise);

and every spike the matched unit labels that is not its neuron's (``false``, split into
another neuron's spike, ``false_other``, and noise, ``false_noise``; ``false_peeled`` of
them reported by the peel, nk_sort_peel.c).

    python -m bench.sorting_losses --family dense32 --seed 0 --seed 1 [--set NAME=VALUE]
        [--calibrated | --cold]

With --calibrated the hub is loaded with the calibrated run's templates (the calibration
sorter's cached sort) instead: the pooled medians of the two runs are the ceiling the matching
leaves and what the templates cost (issue 13, static families, extended tune seeds 0,1,5,6,7:
dense32 0.917 with ground truth's templates, 0.907 with MountainSort5's, 0.898 cold;
si_static32 (0,1,5,6) 0.944 / 0.945 / 0.916 — both below 0.95 with perfect templates).

Never the REPORT seeds (bench.sorting_families.REPORT_SEEDS): this is a tuning tool (TUNE seeds
by default; extra seeds past the matrix's, e.g. 5–9, as an extended tune set).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import sorting_families as sf
from hub.kernels.sorter import SorterConfig

log = logging.getLogger(__name__)

OUT = Path("out/sorting_losses")
CATS = ("hit", "undetected_quiet", "undetected_overlap", "off_channel", "taken_overlap",
        "taken", "unlabelled_overlap", "unlabelled")
#: samples either side of an event in which another neuron's spike makes it an overlap
OVERLAP = 24


def oracle_templates(m: sf.Materialised) -> Any:
    """Ground-truth templates of the calibration segment (the same path as hubctl calibrate)."""
    import spikeinterface.core as si

    from bench import sorting_eval as ev
    from host_tools.calibrate import templates_from_sorting
    from hub.sources import open_recording

    rec = open_recording(m.recording)
    last = round(ev.calibration_seconds(m.family) * rec.sampling_frequency)
    gt = si.load(m.sorting)
    ts, _ = templates_from_sorting(rec, si.NumpySorting.from_sorting(gt.frame_slice(0, last)),
                                   ev.pipeline_config(), 0, last, sorter="gt", validate=False)
    return ts


def calibration_templates(m: sf.Materialised) -> Any:
    """The calibrated run's templates (the calibration sorter's cached sort of the first
    segment, bench.sorting_eval.calibrate); SystemExit when it is not cached."""
    from bench import sorting_eval as ev

    ev.CACHED_ONLY = True     # a tuning tool never starts an offline sorter
    ts, info = ev.calibrate(m, ev.calibration_seconds(m.family))
    if ts is None:
        raise SystemExit(f"{m.key}: no calibration templates ({info.get('error')})")
    return ts


def run_hub(m: sf.Materialised, ts: Any) -> dict[str, Any]:
    """The hub over the recording with `ts` loaded: events (sample, channel, final unit,
    peeled flag) in time order and the final cluster table."""
    from bench import sorting_eval as ev
    from hub.dsp.sorting import sort_recording
    from hub.sources import open_recording

    rec = open_recording(m.recording)
    cfg = ev.pipeline_config()
    res = sort_recording(rec, cfg, ts)
    order = np.argsort(res.samples, kind="stable")
    return {"sample": res.samples[order], "channel": res.channels[order],
            "unit": res.final_units[order], "peeled": res.peeled[order],
            "clusters": res.clusters, "neighbors": res.neighbors, "stats": res.stats,
            "positions": rec.channel_positions_um,
            "fs": rec.sampling_frequency, "exclude": round(cfg.exclude_ms * 1e-3 *
                                                           rec.sampling_frequency)}


def _near(t: npt.NDArray[np.int64], q: npt.NDArray[np.int64], tol: int) -> npt.NDArray[np.int64]:
    """Index of the element of sorted `t` nearest each q within ±tol, or −1."""
    if t.size == 0:
        return np.full(q.size, -1, np.int64)
    i = np.searchsorted(t, q)
    a = np.clip(i - 1, 0, t.size - 1)
    b = np.clip(i, 0, t.size - 1)
    best = np.where(np.abs(t[a] - q) <= np.abs(t[b] - q), a, b)
    return np.where(np.abs(t[best] - q) <= tol, best, -1).astype(np.int64)


def classify(m: sf.Materialised, hub: dict[str, Any]) -> dict[str, Any]:
    """Loss categories per ground-truth unit with SNR ≥ 5 (see the module docstring)."""
    import spikeinterface.core as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    from bench import sorting_eval as ev

    fs = hub["fs"]
    tol = round(0.4e-3 * fs)
    gt = si.load(m.sorting)
    keep = hub["unit"] >= 0
    hs = si.NumpySorting.from_samples_and_labels([hub["sample"][keep]], [hub["unit"][keep]], fs)
    cmp = compare_sorter_to_ground_truth(gt, hs, exhaustive_gt=True)
    match = cmp.hungarian_match_12
    perf = cmp.get_performance()
    snrs = ev.snr(m)
    nb = hub["neighbors"]
    pos = None if hub["positions"] is None else np.asarray(hub["positions"], float)
    cl = hub["clusters"]
    S, Ch, Un = hub["sample"], hub["channel"], hub["unit"]
    gt_trains = {u: np.asarray(gt.get_unit_spike_train(u), np.int64) for u in gt.unit_ids}
    # which GT unit every hub event is (nearest GT spike of any unit within tol, on its footprint)
    all_t = np.concatenate(list(gt_trains.values()))
    all_u = np.concatenate([np.full(v.size, i) for i, v in enumerate(gt_trains.values())])
    o = np.argsort(all_t, kind="stable")
    all_t, all_u = all_t[o], all_u[o]
    rows, tot = [], dict.fromkeys(CATS, 0)
    tot.update(false_other=0, false_noise=0, false_peeled=0, off_channel_unlabelled=0)
    for gi, u in enumerate(gt.unit_ids):
        if snrs[str(u)] < ev.MIN_SNR:
            continue
        h = match.loc[u]
        t = gt_trains[u]
        res: dict[str, Any] = dict.fromkeys(CATS, 0)
        res.update(false_other=0, false_noise=0, false_peeled=0, off_channel_unlabelled=0)
        mine = Un == h if h != -1 else np.zeros(S.size, bool)
        # the unit's home channels: where its matched unit has clusters at the end
        home = set(cl["channel"][(cl["unit"] == h) & (cl["channel"] >= 0)].tolist()) \
            if h != -1 else set()
        # its footprint: the snippet channels of the channel most of its hits are on
        hit_i = _near(S[mine], t, tol)
        hits = hit_i >= 0
        res["hit"] = int(hits.sum())
        peak_ch = int(np.bincount(Ch[mine]).argmax()) if mine.any() else -1
        foot = set(nb[peak_ch][nb[peak_ch] >= 0].tolist()) if peak_ch >= 0 else set()
        on_foot = np.isin(Ch, list(foot)) if foot else np.zeros(S.size, bool)
        Sf = S[on_foot]
        idx_f = np.nonzero(on_foot)[0]
        # the channels whose events can suppress its spikes (detector's spatial exclusion)
        if pos is not None and peak_ch >= 0:
            dist = np.hypot(*(pos - pos[peak_ch]).T)
            near = np.isin(Ch, np.nonzero(dist <= 2 * SorterConfig.exclusion_radius_um)[0])
        else:
            near = on_foot
        Sn = S[near]
        for q in t[~hits]:
            j = _near(Sf, np.array([q]), tol)[0]
            if j < 0:
                k = _near(Sn, np.array([q]), hub["exclude"] + tol)[0]
                res["undetected_overlap" if k >= 0 else "undetected_quiet"] += 1
                continue
            e = idx_f[j]
            if Ch[e] not in home:
                res["off_channel"] += 1
                res["off_channel_unlabelled"] += int(Un[e] < 0)
            else:
                # does another neuron's spike share the event's snippet?
                lo, hi = np.searchsorted(all_t, [S[e] - OVERLAP, S[e] + OVERLAP + 1])
                others = set(all_u[lo:hi].tolist()) - {gi}
                if Un[e] < 0:
                    res["unlabelled_overlap" if others else "unlabelled"] += 1
                else:
                    res["taken_overlap" if others else "taken"] += 1
        # false labels of the matched unit
        if h != -1:
            mt = S[mine]
            own = _near(t, mt, tol) >= 0
            res["false_peeled"] = int((hub["peeled"][mine] & ~own).sum())
            for q in mt[~own]:
                lo, hi = np.searchsorted(all_t, [q - tol, q + tol + 1])
                res["false_other" if hi > lo else "false_noise"] += 1
        res.update(unit=str(u), matched=str(h), snr=round(snrs[str(u)], 1),
                   accuracy=round(float(perf.loc[u, "accuracy"]), 3), n=int(t.size),
                   home=sorted(home))
        rows.append(res)
        for k in tot:
            tot[k] += res[k]
    acc = [r["accuracy"] for r in rows]
    return {"units": rows, "total": tot, "median_accuracy": float(np.median(acc)),
            "mean_accuracy": float(np.mean(acc)),
            "stats": hub["stats"]}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sorting_losses", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", action="append", default=[])
    p.add_argument("--seed", action="append", type=int, default=[])
    p.add_argument("--cold", action="store_true", help="no templates (cold start)")
    p.add_argument("--calibrated", action="store_true",
                   help="the calibration sorter's templates (cached MountainSort5 sort of the "
                        "calibration segment, as the harness's calibrated run) instead of "
                        "ground truth's: the gap between the two is what calibration costs")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--units", action="store_true", help="print every unit's row")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    from bench import sorting_eval

    for item in args.set:
        name, _, value = item.partition("=")
        sorting_eval.OVERRIDES[name.strip()] = value.strip()
    seeds = args.seed or list(sf.TUNE_SEEDS)
    if any(s in sf.REPORT_SEEDS or s < 0 for s in seeds):
        p.error(f"tuning tool: never the report seeds {sf.REPORT_SEEDS}")
    OUT.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in args.family or ["dense32", "noisy_bursts32", "si_static32"]:
        for seed in seeds:
            m = sf.materialise(sf.quick(sf.family(name)), seed)
            ts = None if args.cold else \
                calibration_templates(m) if args.calibrated else oracle_templates(m)
            r = classify(m, run_hub(m, ts))
            out[f"{name}/{seed}"] = r
            t = r["total"]
            miss = sum(t[k] for k in CATS if k != "hit")
            print(f"{name} seed {seed}: median acc {r['median_accuracy']:.3f} (mean "
                  f"{r['mean_accuracy']:.3f}); GT spikes "
                  f"{t['hit'] + miss}, missed {miss}: "
                  + ", ".join(f"{k} {t[k]}" for k in CATS[1:])
                  + f"; false {t['false_other']} other + {t['false_noise']} noise "
                  f"({t['false_peeled']} of them peeled); off-channel unlabelled "
                  f"{t['off_channel_unlabelled']}; "
                  f"peeled {r['stats']['peeled']} (overlaps {r['stats'].get('overlaps', 0)})",
                  flush=True)
            if args.units:
                for u in sorted(r["units"], key=lambda x: x["accuracy"]):
                    print("   ", {k: v for k, v in u.items() if v or k == "accuracy"})
        acc = [u["accuracy"] for s in seeds for u in out[f"{name}/{s}"]["units"]]
        print(f"{name} seeds {','.join(map(str, seeds))}: pooled median acc "
              f"{float(np.median(acc)):.3f}, well detected {sum(a >= 0.8 for a in acc)} of "
              f"{len(acc)}", flush=True)
    mode = "cold" if args.cold else "calibrated" if args.calibrated else "oracle"
    (OUT / f"losses_{mode}.json").write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
