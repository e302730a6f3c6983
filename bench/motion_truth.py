"""The generator's probe motion beside the hub's online estimate (nk_sort.h "Motion").

Ground truth: the displacement ``generate_drifting_recording`` applied to every unit (its
``unit_displacements``, µm along the probe), recomputed deterministically from the family and
seed. The hub's estimate is relative to its calibration templates, which average the
calibration window; so the truth is taken relative to its mean over that window (weighted by
the units' spikes there is not needed: rigid and slow drifts move every unit alike).

``python -m bench.motion_truth [--family NAME ...] [--split tune|report] [--quick]`` runs the
calibrated hub (ground-truth templates unless ``--ms5``: the cached MountainSort5 calibration
sort) on the drifting families and writes ``out/motion/motion.json`` and ``motion.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import sorting_families as sf

log = logging.getLogger(__name__)


def ground_truth_motion(f: sf.Family, seed: int
                        ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(times s, displacement µm per unit (n_t, n_units)) the generator applies to family `f`,
    seed `seed` (regenerated lazily: no traces are computed)."""
    import spikeinterface.generation as sg

    real = sg.generate_drifting_recording
    extra: dict[str, Any] = {}

    def spy(*args: Any, **kw: Any) -> Any:
        out = real(*args, **{**kw, "extra_outputs": True})
        extra.update(out[3])
        return out[:3]

    sg.generate_drifting_recording = spy   # sf.generate imports it from the module
    try:
        sf.generate(f, seed)
    finally:
        sg.generate_drifting_recording = real
    disp = np.asarray(extra["unit_displacements"], np.float64)
    if disp.ndim == 3:                      # (n_t, n_units, 2 or 3): the y component
        disp = disp[..., 1]
    fs = float(extra["displacement_sampling_frequency"])
    return np.arange(disp.shape[0]) / fs, disp


def motion_error(trace: list[list[float]], fs: float, t_gt: npt.NDArray[np.float64],
                 disp: npt.NDArray[np.float64], cal_s: float) -> dict[str, Any]:
    """The hub's motion trace ([sample, µm] rows) against the truth (median over units,
    relative to its mean over the first `cal_s` seconds): RMS and largest error, the truth's
    own range, and both traces for plotting."""
    tr = np.asarray(trace, np.float64)
    t_hub, est = tr[:, 0] / fs, tr[:, 1]
    truth = np.median(disp, axis=1)
    truth = truth - truth[t_gt <= cal_s].mean()
    gt_at = np.interp(t_hub, t_gt, truth)
    err = est - gt_at
    return {"rms_error_um": round(float(np.sqrt(np.mean(err ** 2))), 2),
            "max_error_um": round(float(np.abs(err).max()), 2),
            "truth_range_um": round(float(gt_at.max() - gt_at.min()), 2),
            "static_rms_um": round(float(np.sqrt(np.mean(gt_at ** 2))), 2),
            "t_s": [round(float(x), 2) for x in t_hub],
            "estimate_um": [round(float(x), 2) for x in est],
            "truth_um": [round(float(x), 2) for x in gt_at]}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Estimate vs truth, one panel per recording."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.9 * n), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], rows, strict=True):
        m = r["motion"]
        ax.plot(m["t_s"], m["truth_um"], "k-", lw=1.5, label="generator (median over units)")
        ax.plot(m["t_s"], m["estimate_um"], "C1-", lw=1.2, label="hub online estimate")
        ax.set_ylabel("µm")
        ax.set_title(f"{r['family']} seed {r['seed']}: RMS error {m['rms_error_um']} µm "
                     f"(truth range {m['truth_range_um']} µm)", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_one(f: sf.Family, seed: int, ms5: bool) -> dict[str, Any] | None:
    """The calibrated hub on one recording with its motion trace scored against the truth."""
    import spikeinterface.core as si

    from bench import sorting_eval as ev
    from host_tools.calibrate import templates_from_sorting
    from hub.dsp.sorting import sort_recording
    from hub.sources import open_recording

    m = sf.materialise(f, seed)
    rec = open_recording(m.recording)
    cal_s = min(60.0, f.duration_s / 2)
    last = round(cal_s * rec.sampling_frequency)
    if ms5:
        sorting, _ = ev.offline(m, ev.CALIBRATION_SORTER, 0.0, cal_s)
        if sorting is None:
            log.warning("%s: no cached calibration sort", m.key)
            return None
    else:
        sorting = si.NumpySorting.from_sorting(si.load(m.sorting).frame_slice(0, last))
    ts, _ = templates_from_sorting(rec, sorting, ev.pipeline_config(), 0, last, validate=False)
    res = sort_recording(rec, ev.pipeline_config(), ts)
    t_gt, disp = ground_truth_motion(f, seed)
    mo = motion_error(res.stats["motion_trace"], rec.sampling_frequency, t_gt, disp, cal_s)
    log.info("%s: motion RMS error %.2f µm (truth range %.1f µm, %d voting spikes)", m.key,
             mo["rms_error_um"], mo["truth_range_um"], res.stats["motion_spikes"])
    return {"family": f.name, "seed": seed, "key": m.key, "calibration": "ms5" if ms5 else "gt",
            "motion": mo, "voting_spikes": res.stats["motion_spikes"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", action="append",
                   help="family name (repeatable; default: every drifting family)")
    p.add_argument("--split", choices=("tune", "report"), default="tune")
    p.add_argument("--quick", action="store_true", help="the harness's --quick recordings")
    p.add_argument("--ms5", action="store_true",
                   help="calibrate from the cached MountainSort5 sort (default: ground truth)")
    p.add_argument("--out", type=Path, default=Path("out/motion"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from bench import sorting_eval as ev

    ev.CACHED_ONLY = True
    fams = [sf.family(n) for n in a.family] if a.family else \
        [f for f in sf.FAMILIES if f.drifting]
    seeds = sf.TUNE_SEEDS if a.split == "tune" else sf.REPORT_SEEDS
    rows = []
    for f in fams:
        for seed in seeds:
            r = run_one(sf.quick(f) if a.quick else f, seed, a.ms5)
            if r is not None:
                rows.append(r)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "motion.json").write_text(json.dumps(rows, indent=1))
    if rows:
        plot(rows, a.out / "motion.png")
    for r in rows:
        mo = r["motion"]
        print(f"{r['family']:>18} s{r['seed']} ({r['calibration']}): RMS error "
              f"{mo['rms_error_um']:5.2f} µm, max {mo['max_error_um']:5.2f}, truth range "
              f"{mo['truth_range_um']:5.2f}, error if static {mo['static_rms_um']:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
