"""Online sorting on real tetrode data (no ground truth): the hub's units against offline
Tridesclous 2 and MountainSort5 on the locust recordings in ../shared/data, per unit.

    python -m bench.bench_sorting_real        (part of `make bench`; skipped without the data)

Recordings (see each folder's PROVENANCE.md): tridesclous_locust trials 01 and 02 (int16 ADC
counts, 15 kHz, 28.8 s each) and pouzat_locust_2002 (the four Locust_N.dat sites stacked into
one tetrode, float64 scaled by the authors, 20 s at 15 kHz; quantised here at MAD/25 per count).
Geometry: a tetrode (4 contacts on a 20 µm square). The hub runs cold and calibrated (its own
MountainSort5 sort of the first half). For every hub unit with ≥ 20 spikes: the offline unit
it agrees with best (SpikeInterface compare_two_sorters agreement, 0.4 ms) and that agreement;
summarised as the share of hub spikes in units that agree ≥ 0.5 with an offline unit.
Per pair of sorters also the one-to-one matched pairs (Hungarian assignment on the agreement
scores, a pair counts at ≥ 0.5) with their agreement, each sorter's unit count, and TDC2 against
MS5 as the yardstick of how far two offline sorters agree on the same data.
Nothing is kept from ../shared: the offline sorters need a file, so each recording is written
to a temporary binary folder for them and removed after; their spike trains (not the signal)
are cached under out/sorting_real/ by a hash of the recording, so re-runs only re-run the hub.
Writes out/bench_sorting_real.json and out/bench_sorting_real.png.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FS = 15000.0
TETRODE_UM = np.array([[-10.0, -10.0], [10.0, -10.0], [-10.0, 10.0], [10.0, 10.0]])
OFFLINE = ("tridesclous2", "mountainsort5")
MIN_SPIKES = 20
MATCH = 0.5
CACHE = Path("out/sorting_real")
OUT = Path("out")


def _recordings() -> dict[str, npt.NDArray[np.int16]]:
    out: dict[str, npt.NDArray[np.int16]] = {}
    tdc = DATA / "tridesclous_locust"
    for trial in ("01", "02"):
        p = tdc / f"locust_trial_{trial}.raw"
        if p.exists():
            x = np.fromfile(p, dtype="<i2").reshape(-1, 4)
            # remove the DC offset (the hub's band-pass would, but int16 headroom matters)
            out[f"tdc_locust_trial{trial}"] = (x - np.median(x, axis=0)).astype(np.int16)
    pz = DATA / "pouzat_locust_2002"
    files = [pz / f"Locust_{k}.dat.gz" for k in range(1, 5)]
    if all(f.exists() for f in files):
        cols = [np.frombuffer(gzip.decompress(f.read_bytes()), dtype="<f8") for f in files]
        x = np.stack(cols, axis=1)
        mad = np.median(np.abs(x - np.median(x, axis=0)), axis=0) / 0.6745
        out["pouzat_locust"] = np.clip(np.round(x / (mad / 25.0)), -32768, 32767
                                       ).astype(np.int16)
    return out


def _hub_recording(name: str, x: npt.NDArray[np.int16]) -> Any:
    from hub.sources import Recording

    def reader(a: int, b: int) -> npt.NDArray[np.int16]:
        return np.ascontiguousarray(x[a:b])

    return Recording(name, FS, x.shape[1], x.shape[0], np.ones(x.shape[1]), reader,
                     TETRODE_UM.copy())


def _si_recording(x: npt.NDArray[np.int16]) -> Any:
    import probeinterface as pi
    import spikeinterface.core as si

    rec = si.NumpyRecording([x], sampling_frequency=FS)
    probe = pi.Probe(ndim=2, si_units="um")
    probe.set_contacts(positions=TETRODE_UM, shapes="circle", shape_params={"radius": 6})
    probe.set_device_channel_indices(np.arange(4))
    rec.set_probe(probe, in_place=True)
    return rec


def _key(x: npt.NDArray[np.int16]) -> str:
    import spikeinterface

    h = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    h.update(spikeinterface.__version__.encode())
    return h.hexdigest()[:12]


def _offline(name: str, rec: Any, cache: Path | None = None) -> tuple[Any, float]:
    """(sorting, wall seconds) of an offline sorter; cached as spike trains under `cache`."""
    import spikeinterface.core as si
    import spikeinterface.sorters as ss

    from bench.sorting_eval import cached_meta
    from host_tools.calibrate import seeded_params

    params = seeded_params(name)
    meta = None if cache is None else cached_meta(cache, params)   # other params: stale
    if cache is not None and meta is not None and cache.with_suffix(".npz").exists():
        with np.load(cache.with_suffix(".npz"), allow_pickle=False) as z:
            s = si.NumpySorting.from_samples_and_labels([z["samples"]], [z["labels"]], FS)
        return s, float(meta["wall_s"])
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"real-{name}-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):
        s = ss.run_sorter(name, rec, folder=Path(tmp) / name, verbose=False,
                          remove_existing_folder=True, **params)
        s = si.NumpySorting.from_sorting(s)
    wall = time.perf_counter() - t
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        sv = s.to_spike_vector()
        ids = np.asarray(s.unit_ids).astype(str)
        np.savez(cache.with_suffix(".npz"), samples=sv["sample_index"].astype(np.int64),
                 labels=ids[sv["unit_index"]] if ids.size else np.zeros(0, str))
        cache.with_suffix(".json").write_text(json.dumps({"wall_s": wall, "sorter": name,
                                                          "params": params}))
    return s, wall


def _hub(rec: Any, templates: Any = None) -> Any:
    import spikeinterface.core as si

    from hub.dsp.pipeline import PipelineConfig
    from hub.dsp.sorting import sort_recording

    res = sort_recording(rec, PipelineConfig(sort=True), templates)
    keep = res.final_units >= 0
    order = np.argsort(res.samples[keep], kind="stable")
    return si.NumpySorting.from_samples_and_labels(
        [res.samples[keep][order]], [res.final_units[keep][order]], FS)


def matched_pairs(scores: Any, threshold: float = MATCH) -> list[dict[str, Any]]:
    """One-to-one pairs (Hungarian assignment maximising agreement) scoring ≥ `threshold`,
    best first: [{a, b, agreement}]."""
    from scipy.optimize import linear_sum_assignment

    m = scores.to_numpy(float)
    if m.size == 0:
        return []
    rows, cols = linear_sum_assignment(-m)
    pairs = [{"a": str(scores.index[r]), "b": str(scores.columns[c]),
              "agreement": round(float(m[r, c]), 3)}
             for r, c in zip(rows, cols, strict=True) if m[r, c] >= threshold]
    return sorted(pairs, key=lambda p: -p["agreement"])


def agreement(hub: Any, other: Any) -> dict[str, Any]:
    """Per hub unit (≥ MIN_SPIKES spikes): best offline unit and agreement; summary."""
    from spikeinterface.comparison import compare_two_sorters

    cmp = compare_two_sorters(hub, other, "hub", "offline", delta_time=0.4)
    scores = cmp.agreement_scores
    units = []
    total = agreed = 0
    for u in hub.unit_ids:
        n = int(hub.get_unit_spike_train(u).size)
        if n < MIN_SPIKES:
            continue
        row = scores.loc[u] if u in scores.index else None
        best = float(row.max()) if row is not None and row.size else 0.0
        match = str(row.idxmax()) if row is not None and row.size else None
        units.append({"unit": str(u), "spikes": n, "best_offline_unit": match,
                      "agreement": round(best, 3)})
        total += n
        agreed += n if best >= 0.5 else 0
    off_units = [u for u in other.unit_ids
                 if other.get_unit_spike_train(u).size >= MIN_SPIKES]
    matched_off = sum(1 for u in off_units if u in scores.columns and scores[u].max() >= 0.5)
    return {"hub_units": len(units), "offline_units": len(off_units),
            "hub_units_all": len(hub.unit_ids), "offline_units_all": len(other.unit_ids),
            "pairs": matched_pairs(scores),
            "offline_units_matched": matched_off,
            "hub_spike_share_agreeing": agreed / total if total else float("nan"),
            "median_agreement": float(np.median([u["agreement"] for u in units]))
            if units else float("nan"), "units": units}


def run(quick: bool) -> dict[str, Any]:
    """Every locust recording (the first only with `quick`): offline sorts (cached), the hub
    cold and calibrated, and the agreement tables."""
    warnings.filterwarnings("ignore")
    recs = _recordings()
    if not recs:
        return {"skipped": f"no locust data under {DATA}"}
    if quick:
        recs = dict(list(recs.items())[:1])
    from host_tools.calibrate import templates_from_sorting
    from hub.dsp.pipeline import PipelineConfig

    out: dict[str, Any] = {"recordings": {}, "match_threshold": MATCH}
    for name, x in recs.items():
        print(f"real data: {name} ({x.shape[0] / FS:.1f} s)", file=sys.stderr, flush=True)
        tmp = tempfile.TemporaryDirectory(prefix="real-rec-")
        rec = _hub_recording(name, x)
        si_rec = _si_recording(x).save(folder=Path(tmp.name) / "rec", progress_bar=False)
        cache = CACHE / f"{name}-{_key(x)}"
        offline = {}
        r: dict[str, Any] = {"duration_s": x.shape[0] / FS, "offline": {}, "hub": {}}
        for s in OFFLINE:
            try:
                offline[s], wall = _offline(s, si_rec, cache / s)
                r["offline"][s] = {"units": len(offline[s].unit_ids), "wall_s": wall}
            except Exception as e:  # one sorter failing must not hide the others
                r["offline"][s] = {"error": f"{type(e).__name__}: {str(e)[-200:]}"}
        hubs = {"hub cold": _hub(rec)}
        half = x.shape[0] // 2
        try:
            cal, _ = _offline("mountainsort5", si_rec.frame_slice(0, half),
                              cache / "mountainsort5_first_half")
            ts, info = templates_from_sorting(rec, cal, PipelineConfig(), 0, half,
                                              sorter="mountainsort5")
            hubs["hub calibrated"] = _hub(rec, ts)
            r["calibration_units"] = info["units"]
        except Exception as e:  # reported, the cold run still counts
            r["calibration_error"] = f"{type(e).__name__}: {str(e)[:200]}"
        for h, hs in hubs.items():
            r["hub"][h] = {s: agreement(hs, o) for s, o in offline.items()}
        if len(offline) == 2:
            a, b = OFFLINE
            r["offline_vs_offline"] = {f"{a} vs {b}": agreement(offline[a], offline[b])}
        out["recordings"][name] = r
        tmp.cleanup()
    try:
        OUT.mkdir(parents=True, exist_ok=True)
        out["plot"] = str(plot(out, OUT / "bench_sorting_real.png"))
    except ImportError:
        log.warning("matplotlib missing: no plot")
    return out


def rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (recording, hub run or offline sorter, compared-to sorter)."""
    out = []
    for name, r in res.get("recordings", {}).items():
        pairs = [(h, s, a) for h, per in r["hub"].items() for s, a in per.items()]
        pairs += [(k.split(" vs ")[0], k.split(" vs ")[1], a)
                  for k, a in r.get("offline_vs_offline", {}).items()]
        for who, s, a in pairs:
            ps = a.get("pairs", [])
            out.append({"recording": name, "sorter": who, "against": s,
                        "units": a.get("hub_units_all", a["hub_units"]),
                        "against_units": a.get("offline_units_all", a["offline_units"]),
                        "matched_pairs": len(ps),
                        "median_pair_agreement": float(np.median([p["agreement"] for p in ps]))
                        if ps else float("nan"),
                        "spike_share_agreeing": a["hub_spike_share_agreeing"],
                        "pair_agreements": [p["agreement"] for p in ps]})
    return out


def plot(res: dict[str, Any], path: Path) -> Path:
    """Agreement of every matched unit pair, per recording and comparison (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = rows(res)
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rs) + 1.2))
    for i, r in enumerate(rs):
        ag = r["pair_agreements"]
        ax.scatter(ag, [i] * len(ag), s=18, color="C0" if r["sorter"].startswith("hub")
                   else "C2", zorder=3)
        ax.text(1.01, i, f"{r['matched_pairs']} pairs / {r['units']} vs {r['against_units']}"
                " units", va="center", fontsize=7, transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(rs)))
    ax.set_yticklabels([f"{r['recording']}: {r['sorter']} vs {r['against']}" for r in rs],
                       fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(MATCH - 0.02, 1.02)
    ax.set_xlabel("agreement of a matched unit pair (one-to-one, ≥ 0.5)")
    ax.grid(axis="x", lw=0.4)
    ax.set_title("locust tetrodes: hub units against offline sorters (no ground truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def table(res: dict[str, Any]) -> str:
    if "skipped" in res:
        return f"sorting on real data: skipped ({res['skipped']})"
    lines = ["sorting on real locust tetrode data: units matched one to one (agreement ≥ 0.5; "
             "no ground truth; TDC2 vs MS5 as the yardstick)",
             f"  {'recording':20s} {'sorter':15s} {'against':14s} {'units':>6s} {'vs':>4s} "
             f"{'pairs':>6s} {'med agr':>8s} {'spikes agreeing':>16s}"]
    for r in rows(res):
        lines.append(f"  {r['recording']:20s} {r['sorter']:15s} {r['against']:14s} "
                     f"{r['units']:6d} {r['against_units']:4d} {r['matched_pairs']:6d} "
                     f"{r['median_pair_agreement']:8.2f} "
                     f"{100 * r['spike_share_agreeing']:15.0f}%")
    for name, rec in res["recordings"].items():
        for s, v in rec["offline"].items():
            if "error" in v:
                lines.append(f"  {name}: {s} failed: {v['error']}")
    if "plot" in res:
        lines.append(f"  plot: {res['plot']}")
    return "\n".join(lines)


if __name__ == "__main__":
    _p = argparse.ArgumentParser(prog="python -m bench.bench_sorting_real", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _p.add_argument("--quick", action="store_true", help="the first recording only")
    _args = _p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(_args.quick)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_sorting_real.json").write_text(json.dumps(result, indent=1))
    print(table(result))
