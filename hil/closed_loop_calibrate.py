"""Calibrates the simulated user and the cursor readout on tuning seeds (the closed-loop
simulator, ``hil.closed_loop_sim``), before ``make hil-bci`` runs the real loop on others.

    python -m hil.closed_loop_calibrate [--features units,tc,hg] [--seeds 1,2]
                                        [--out out/hil/bci_calibration.json]

What a person and the experimenter do over the first sessions, done by search: the literature
fixes the user's feedback delay (0.2 s) and intent noise and the grid (6×6 cells tiling the
workspace); what a user adapts — how far from the aim point they stop pushing at full speed
(``sat``), how much they trust an internal model of the cursor (``forward``) — and what the
experimenter tunes per subject — the cursor gain (``speed``, β), its smoothing (``smooth``,
α) and the dwell time (``dwell``, swept per subject by Nuyujukian et al. 2015) — are chosen to
maximise the grid's achieved bitrate on the tuning seeds. Per feature kind and seed: a
calibration block, the velocity Kalman filter fitted on it, a closed-loop center-out block,
ReFIT on both; then one grid block per setting with that decoder. Prints progress, writes
every score and the best setting per feature kind (JSON); ``hil.closed_loop``'s scenarios
carry the chosen values (``CALIBRATED``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from hil.closed_loop_sim import SimLoop, SimSpec, fit_on
from hil.closed_loop_user import UserModel
from host_tools.decoding.task import CenterOut, GridTask

log = logging.getLogger(__name__)

GRID: dict[str, tuple[float, ...]] = {
    "speed": (1.5, 2.0, 2.5, 3.0),
    "smooth": (0.0, 0.5),
    "sat": (0.35, 0.5),
    "forward": (0.0, 1.0),
    "dwell": (0.45, 0.6, 0.75, 1.0),
}
N_UNITS = {"units": 48, "tc": 48, "hg": 64}


def settings() -> list[dict[str, float]]:
    keys = list(GRID)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*GRID.values())]


def prepare(features: str, seed: int, user: UserModel) -> tuple[SimLoop, Any]:
    """The simulator after calibration → KF → center-out → ReFIT, and the ReFIT decoder."""
    sim = SimLoop(SimSpec(features=features, n_units=N_UNITS[features], seed=seed, user=user))
    calib = sim.run("calibration", CenterOut(seed), None, 60.0)
    kf = fit_on("kalman_ss", [calib])
    co = sim.run("center_out", CenterOut(seed + 10), kf, 45.0)
    return sim, fit_on("kalman_ss", [calib, co])


def grid_score(sim: SimLoop, decoder: Any, s: dict[str, float], user: UserModel, seed: int,
               seconds: float) -> dict[str, Any]:
    sim.configure(replace(user, sat=s["sat"], forward=s["forward"]), seed + 7, s["speed"],
                  s["smooth"])
    return sim.run("grid", GridTask(seed + 30, dwell_s=s["dwell"]), decoder, seconds).task


def calibrate(features: str, seeds: list[int], grid_s: float = 90.0,
              user: UserModel | None = None) -> dict[str, Any]:
    user = user or UserModel()
    runs = {seed: prepare(features, seed, user) for seed in seeds}
    scores: list[dict[str, Any]] = []
    cand = settings()
    for i, s in enumerate(cand):
        per_seed = [grid_score(sim, dec, s, user, seed, grid_s) for seed, (sim, dec) in
                    runs.items()]
        bps = [g["bits_per_s"] for g in per_seed]
        scores.append({**s, "bits_per_s": [round(b, 3) for b in bps],
                       "mean_bits_per_s": round(float(np.mean(bps)), 3),
                       "correct": [g["correct"] for g in per_seed],
                       "incorrect": [g["incorrect"] for g in per_seed]})
        if (i + 1) % 16 == 0 or i + 1 == len(cand):
            best = max(scores, key=lambda r: r["mean_bits_per_s"])
            print(f"{features}: {i + 1}/{len(cand)} settings, best so far "
                  f"{best['mean_bits_per_s']} bits/s at "
                  f"{ {k: best[k] for k in GRID} }", file=sys.stderr, flush=True)
    best = max(scores, key=lambda r: r["mean_bits_per_s"])
    return {"features": features, "tuning_seeds": seeds, "fixed_user": asdict(user),
            "best": {k: best[k] for k in GRID}, "best_bits_per_s": best["mean_bits_per_s"],
            "scores": scores}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.closed_loop_calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", default="units,tc,hg")
    p.add_argument("--seeds", default="1,2", help="tuning seeds (populations and tasks)")
    p.add_argument("--grid-s", type=float, default=90.0)
    p.add_argument("--out", type=Path, default=Path("out/hil/bci_calibration.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = {f: calibrate(f, seeds, args.grid_s) for f in args.features.split(",")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({f: {"best": r["best"], "bits_per_s": r["best_bits_per_s"]}
                      for f, r in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
