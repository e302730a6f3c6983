"""Where a drifting family's calibrated accuracy goes, over time: the hub's calibrated (or cold)
sort of cached recordings against their ground truth, losses per time window.

    python -m bench.sorting_timeline drift_rigid64 0 1 [--cold] [--windows 5] [--set NAME=VALUE]...

For every ground-truth unit with SNR ≥ 5, against the hub unit the scorer matched to it, each
lost spike is counted in its time window as one of: missed — not detected (no event within
NEAR samples), unsorted (only unlabelled events), another unit (labelled with a different hub
unit: a loaded one or one born online); or false — a spike of the matched hub unit on another
ground-truth unit's spike, or on none. Totals are over the units scoring ≥ 0.85 (the ones
near a family's median, which a merged or lost unit would swamp). Drift shows as losses that
grow from the first windows to the last; a start-up effect as a first window above the rest.
Run it on the tune seeds (the report seeds are for figures, not for looking inside).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import sorting_eval as ev
from bench import sorting_families as sf

log = logging.getLogger(__name__)

NEAR = 12          # samples: an event this close to a ground-truth spike is that spike
TYPICAL = 0.85     # units scoring at least this enter the totals

I64 = npt.NDArray[np.int64]


@dataclass
class Losses:
    """One unit's (or a total's) lost spikes per window and kind."""

    windows: int
    spikes: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, window: int, n: int = 1) -> None:
        self.kinds[f"{kind}@{window}"] += n

    def row(self, kind: str) -> list[int]:
        return [self.kinds[f"{kind}@{w}"] for w in range(self.windows)]


KINDS = ("not_detected", "unsorted", "other_loaded", "other_born", "false_on_gt", "false_none")


def _near(sorted_t: I64, t: int) -> npt.NDArray[np.intp]:
    """Indices of sorted_t within NEAR samples of t."""
    a = int(np.searchsorted(sorted_t, t - NEAR, "left"))
    b = int(np.searchsorted(sorted_t, t + NEAR, "right"))
    return np.arange(a, b)


def unit_losses(train: I64, mine: I64, ev_t: I64, ev_unit: I64, gt_all: I64,
                loaded: set[int], edges: npt.NDArray[np.float64]) -> Losses:
    """Losses of one ground-truth unit (spike samples `train`) against its matched hub unit's
    spikes `mine`; ev_t/ev_unit: every detected event (time-ordered, unit −1: unsorted);
    gt_all: every ground-truth spike (sorted); `loaded`: the calibration's unit ids."""
    out = Losses(len(edges) - 1, spikes=int(train.size))

    def window(t: int) -> int:
        return min(out.windows - 1, max(0, int(np.searchsorted(edges, t, "right")) - 1))

    for t in train.tolist():
        if _near(mine, t).size:
            continue
        k = _near(ev_t, t)
        labels = [int(u) for u in ev_unit[k] if u >= 0]
        if not k.size:
            kind = "not_detected"
        elif not labels:
            kind = "unsorted"
        else:
            kind = "other_loaded" if labels[0] in loaded else "other_born"
        out.add(kind, window(t))
    for t in mine.tolist():
        if _near(train, t).size:
            continue
        out.add("false_on_gt" if _near(gt_all, t).size else "false_none", window(t))
    return out


def run_recording(f: sf.Family, seed: int, cold: bool, windows: int) -> dict[str, Any]:
    """The hub's sort of one recording, scored unit by unit and window by window."""
    import spikeinterface.core as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    from hub.dsp.sorting import sort_recording
    from hub.sources import open_recording

    m = sf.materialise(f, seed)
    gt = si.load(m.sorting)
    fs = gt.get_sampling_frequency()
    snrs = ev.snr(m)
    ts = None
    if not cold:
        ts, info = ev.calibrate(m, ev.calibration_seconds(f))
        if ts is None:
            raise SystemExit(f"{m.key}: no calibration ({info.get('error')})")
    loaded = {int(u) for u in ts.unit_ids} if ts is not None else set()
    rec = open_recording(m.recording)
    res = sort_recording(rec, ev.pipeline_config(), ts)
    o = np.argsort(res.samples, kind="stable")
    ev_t, ev_unit = res.samples[o].astype(np.int64), res.final_units[o].astype(np.int64)
    keep = ev_unit >= 0
    sorting = si.NumpySorting.from_samples_and_labels([ev_t[keep]], [ev_unit[keep]], fs)
    cmp = compare_sorter_to_ground_truth(gt, sorting, exhaustive_gt=True)
    perf = cmp.get_performance()
    gt_all = np.sort(gt.to_spike_vector()["sample_index"].astype(np.int64))
    edges = np.linspace(0.0, float(rec.num_samples), windows + 1)
    units, total = [], Losses(windows)
    for u in gt.unit_ids:
        if snrs[str(u)] < ev.MIN_SNR:
            continue
        hu = cmp.best_match_12[u]
        mine = ev_t[keep][ev_unit[keep] == int(hu)] if hu != -1 else np.zeros(0, np.int64)
        lo = unit_losses(np.asarray(gt.get_unit_spike_train(u), np.int64), mine, ev_t, ev_unit,
                         gt_all, loaded, edges)
        acc = float(perf.loc[u, "accuracy"])
        units.append({"gt": str(u), "snr": round(snrs[str(u)], 1), "hub": str(hu),
                      "accuracy": round(acc, 4), "spikes": lo.spikes,
                      **{k: lo.row(k) for k in KINDS}})
        if acc >= TYPICAL:
            total.spikes += lo.spikes
            total.kinds.update(lo.kinds)
    return {"family": f.name, "seed": seed, "run": "cold" if cold else "calibrated",
            "median_accuracy": round(float(np.median([x["accuracy"] for x in units])), 4),
            "window_s": round(float(edges[1] - edges[0]) / fs, 2), "typical_spikes": total.spikes,
            "typical": {k: total.row(k) for k in KINDS}, "units": units}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("family")
    p.add_argument("seeds", type=int, nargs="+")
    p.add_argument("--cold", action="store_true", help="the cold start (default: calibrated)")
    p.add_argument("--windows", type=int, default=5, help="time windows (default 5)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="hub pipeline or sorter setting (repeat)")
    p.add_argument("--out", type=Path, default=Path("out/sorting_timeline"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if any(s not in sf.TUNE_SEEDS for s in a.seeds):
        log.warning("seeds %s include report seeds: look inside tune seeds only", a.seeds)
    for kv in a.set:
        name, _, val = kv.partition("=")
        ev.OVERRIDES[name] = val
    ev.CACHED_ONLY = True
    f = sf.quick(sf.family(a.family))
    rows = [run_recording(f, s, a.cold, max(1, a.windows)) for s in a.seeds]
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{a.family}_{'cold' if a.cold else 'calibrated'}.json"
    path.write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(f"{r['family']} seed {r['seed']} {r['run']}: median accuracy "
              f"{r['median_accuracy']:.3f}; units ≥ {TYPICAL}: {r['typical_spikes']} spikes, "
              f"lost per {r['window_s']} s window:")
        for k in KINDS:
            print(f"  {k:>13} " + " ".join(f"{x:4d}" for x in r["typical"][k]))
        for x in r["units"]:
            if x["accuracy"] < TYPICAL:
                print(f"  unit {x['gt']} (SNR {x['snr']}) → hub {x['hub']}: accuracy "
                      f"{x['accuracy']:.3f}, " + ", ".join(
                          f"{k} {sum(x[k])}" for k in KINDS if sum(x[k])))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
