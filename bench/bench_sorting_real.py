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
Nothing is kept from ../shared: the offline sorters need a file, so each recording is written
to a temporary binary folder for them and removed after.
"""

from __future__ import annotations

import contextlib
import gzip
import io
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


def _offline(name: str, rec: Any) -> tuple[Any, float]:
    import spikeinterface.core as si
    import spikeinterface.sorters as ss

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"real-{name}-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):
        s = ss.run_sorter(name, rec, folder=Path(tmp) / name, verbose=False,
                          remove_existing_folder=True)
        s = si.NumpySorting.from_sorting(s)
    return s, time.perf_counter() - t


def _hub(rec: Any, templates: Any = None) -> Any:
    import spikeinterface.core as si

    from hub.dsp.pipeline import PipelineConfig
    from hub.dsp.sorting import sort_recording

    res = sort_recording(rec, PipelineConfig(sort=True), templates)
    keep = res.final_units >= 0
    order = np.argsort(res.samples[keep], kind="stable")
    return si.NumpySorting.from_samples_and_labels(
        [res.samples[keep][order]], [res.final_units[keep][order]], FS)


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
            "offline_units_matched": matched_off,
            "hub_spike_share_agreeing": agreed / total if total else float("nan"),
            "median_agreement": float(np.median([u["agreement"] for u in units]))
            if units else float("nan"), "units": units}


def run(quick: bool) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    recs = _recordings()
    if not recs:
        return {"skipped": f"no locust data under {DATA}"}
    if quick:
        recs = dict(list(recs.items())[:1])
    from host_tools.calibrate import templates_from_sorting
    from hub.dsp.pipeline import PipelineConfig

    out: dict[str, Any] = {"recordings": {}}
    for name, x in recs.items():
        print(f"real data: {name} ({x.shape[0] / FS:.1f} s)", file=sys.stderr, flush=True)
        tmp = tempfile.TemporaryDirectory(prefix="real-rec-")
        rec = _hub_recording(name, x)
        si_rec = _si_recording(x).save(folder=Path(tmp.name) / "rec", progress_bar=False)
        offline = {}
        r: dict[str, Any] = {"duration_s": x.shape[0] / FS, "offline": {}, "hub": {}}
        for s in OFFLINE:
            try:
                offline[s], wall = _offline(s, si_rec)
                r["offline"][s] = {"units": len(offline[s].unit_ids), "wall_s": wall}
            except Exception as e:  # one sorter failing must not hide the others
                r["offline"][s] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        hubs = {"hub cold": _hub(rec)}
        half = x.shape[0] // 2
        try:
            cal, _ = _offline("mountainsort5", si_rec.frame_slice(0, half))
            ts, info = templates_from_sorting(rec, cal, PipelineConfig(), 0, half,
                                              sorter="mountainsort5")
            hubs["hub calibrated"] = _hub(rec, ts)
            r["calibration_units"] = info["units"]
        except Exception as e:  # reported, the cold run still counts
            r["calibration_error"] = f"{type(e).__name__}: {str(e)[:200]}"
        for h, hs in hubs.items():
            r["hub"][h] = {s: agreement(hs, o) for s, o in offline.items()}
        out["recordings"][name] = r
        tmp.cleanup()
    return out


def table(res: dict[str, Any]) -> str:
    if "skipped" in res:
        return f"sorting on real data: skipped ({res['skipped']})"
    lines = ["sorting on real locust tetrode data: hub units vs offline (agreement ≥ 0.5 = "
             "same unit; no ground truth)"]
    for name, r in res["recordings"].items():
        off = ", ".join(f"{s} {v['units']} units" if "units" in v else f"{s} {v['error']}"
                        for s, v in r["offline"].items())
        lines.append(f"  {name} ({r['duration_s']:.1f} s): {off}")
        for h, per in r["hub"].items():
            for s, a in per.items():
                lines.append(f"    {h:15s} vs {s:14s}: {a['hub_units']} hub units, "
                             f"{a['offline_units_matched']}/{a['offline_units']} offline units "
                             f"matched, median agreement {a['median_agreement']:.2f}, "
                             f"{100 * a['hub_spike_share_agreeing']:.0f} % of hub spikes in "
                             "agreeing units")
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    logging.basicConfig(level=logging.WARNING)
    result = run("--quick" in sys.argv)
    Path("out").mkdir(exist_ok=True)
    Path("out/bench_sorting_real.json").write_text(json.dumps(result, indent=1))
    print(table(result))
