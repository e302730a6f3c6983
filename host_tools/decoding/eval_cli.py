"""``hubctl decode-eval DATA [--json OUT.json]``: cross-validated offline decoding.

DATA is the Stevenson 2011 reaching folder (``../shared/data/stevenson2011_reaching_binned``,
its M1 file), a ``.mat`` of that layout, or an ``.npz`` with X, Y, bin_s. Prints a table, writes
``{"decoders": {NAME: {"r2", "corr", "causal", …}}}`` and a plot (R² and correlation per decoder
and fold, decoded vs true velocity on held-out data).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from host_tools.decoding.data import load_binned
from host_tools.decoding.evaluate import cross_validate
from host_tools.decoding.plot import plot_eval
from host_tools.decoding.registry import DECODERS

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="data folder, .mat or .npz (X, Y, bin_s)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path,
                   help="figure (PNG; default: beside --json, else out/decode_eval.png)")
    p.add_argument("--decoders", default=",".join(DECODERS),
                   help=f"comma-separated subset of {','.join(DECODERS)}")
    p.add_argument("--folds", type=int, default=5)


def run(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.decoders.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in DECODERS]
    if unknown or not kinds:
        raise ValueError(f"--decoders: unknown {unknown} (known: {', '.join(DECODERS)})")
    data = load_binned(args.data)
    print(f"{data.name}: {data.X.shape[0]} bins of {data.bin_s * 1000:.0f} ms, "
          f"{data.X.shape[1]} features; {args.folds}-fold contiguous CV", file=sys.stderr)
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    scores = cross_validate(data.X, data.Y, kinds, args.folds, progress)
    result: dict[str, Any] = {
        "decoders": {k: s.to_json() for k, s in scores.items()},
        "data": {"name": data.name, "bins": int(data.X.shape[0]),
                 "features": int(data.X.shape[1]), "bin_s": data.bin_s},
        "folds": args.folds,
        "protocol": "contiguous blocks; hyper-parameters chosen inside each training set; R² "
                    "and corr averaged over x and y velocity, then over folds",
    }
    print(f"{'decoder':10s} {'R²':>6s} {'corr':>6s} {'causal':>6s} {'MAC/bin':>9s}")
    for k, s in result["decoders"].items():
        print(f"{k:10s} {s['r2']:6.3f} {s['corr']:6.3f} {s['causal']!s:>6s} "
              f"{s['macs_per_bin']:9d}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    plot = args.plot or (args.json.with_suffix(".png") if args.json
                         else Path("out/decode_eval.png"))
    plot_eval(scores, data.Y, data.bin_s, f"{data.name}: {data.X.shape[1]} features, "
              f"{data.bin_s * 1000:.0f} ms bins", plot)
    print(f"plot: {plot}", file=sys.stderr)
    return 0
