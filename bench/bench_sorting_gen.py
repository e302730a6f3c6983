"""Online sorting that generalises: the hub (cold start and calibrated) against offline
MountainSort5, SpyKING CIRCUS 2 and Tridesclous 2 over the family matrix of
bench/sorting_families.py, reported on held-out seeds only, worst family first.

    python -m bench.bench_sorting_gen [--quick] [--split report|tune|all] [--family NAME]...
    python -m bench --only sorting_gen [--quick]        (part of `make bench`)

Per family (units pooled over its seeds): median accuracy over ground-truth units with SNR ≥ 5,
units found, well detected (accuracy ≥ 0.8), false-positive and redundant units, and the cost
(the sorter's share of the front-end time of the same run, contended machine; state per
channel). Offline sorters run on the report seeds only; their results (and the calibration
sorter's) are cached per recording hash under out/sorting_gen/, so re-runs only re-run the hub.
Writes out/bench_sorting_gen/families.json and families.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench import sorting_families as sf

log = logging.getLogger(__name__)

OUT = Path("out/bench_sorting_gen")
HUB_RUNS = ("hub cold", "hub calibrated")


#: seeds per split in --quick runs (None: all of the split); --seeds-per-split sets it
QUICK_SEEDS: int | None = 1


def _seeds(split: str, quick: bool) -> tuple[int, ...]:
    seeds = {"tune": sf.TUNE_SEEDS, "report": sf.REPORT_SEEDS, "all": sf.SEEDS}[split]
    return seeds[:QUICK_SEEDS] if quick and QUICK_SEEDS else seeds


def evaluate_matrix(families: list[sf.Family], split: str, quick: bool,
                    offline: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Every (family, seed) of the split, with progress on stderr."""
    from bench import sorting_eval as ev

    jobs = [(f, s) for f in families for s in _seeds(split, quick)]
    results = []
    t0 = time.perf_counter()
    for i, (f, seed) in enumerate(jobs):
        fam = sf.quick(f) if quick else f
        m = sf.materialise(fam, seed)
        held_out = seed in sf.REPORT_SEEDS
        r = ev.evaluate(m, (ev.OFFLINE if offline is None else offline) if held_out else ())
        r["held_out"] = held_out
        results.append(r)
        brief = ", ".join(f"{k} {v['median_accuracy']:.3f}" if "median_accuracy" in v
                          else f"{k} error" for k, v in r["runs"].items())
        print(f"[{i + 1}/{len(jobs)} {time.perf_counter() - t0:.0f} s] {f.name} seed {seed}: "
              f"{brief}", file=sys.stderr, flush=True)
    return results


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per family and run: units pooled over the seeds."""
    fams: dict[str, Any] = {}
    for r in results:
        fam = fams.setdefault(r["family"], {"seeds": [], "gt_units_snr5": 0, "runs": {}})
        fam["seeds"].append(r["seed"])
        fam["gt_units_snr5"] += r["gt_units_snr5"]
        for name, run in r["runs"].items():
            agg = fam["runs"].setdefault(name, {"accuracies": [], "units_found": 0,
                                                "well_detected": 0, "false_positive_units": 0,
                                                "redundant_units": 0, "errors": 0,
                                                "added_fraction": [], "wall_s": [],
                                                "memory_bytes_per_channel": []})
            if "error" in run:
                agg["errors"] += 1
                continue
            agg["accuracies"] += run["accuracies"]
            for k in ("units_found", "well_detected", "false_positive_units",
                      "redundant_units"):
                agg[k] += run[k]
            for k in ("added_fraction", "wall_s", "memory_bytes_per_channel"):
                if k in run:
                    agg[k].append(run[k])
            if "motion" in run:   # the online motion estimate's RMS error (drifting families)
                agg.setdefault("motion_rms_error_um", []).append(run["motion"]["rms_error_um"])
                agg.setdefault("motion_static_rms_um", []).append(run["motion"]["static_rms_um"])
    for fam in fams.values():
        for agg in fam["runs"].values():
            acc = np.asarray(agg.pop("accuracies"), float)
            agg["median_accuracy"] = float(np.median(acc)) if acc.size else float("nan")
            agg["units_scored"] = int(acc.size)
            agg["fp_fraction"] = agg["false_positive_units"] / max(1, agg["units_found"])
            for k in ("added_fraction", "wall_s", "memory_bytes_per_channel",
                      "motion_rms_error_um", "motion_static_rms_um"):
                v = agg.pop(k, [])
                if v:
                    agg[k] = float(np.median(v))
    return fams


def headline(fams: dict[str, Any], drifting: set[str]) -> dict[str, Any]:
    """Worst family and targets (issue 13) over the summarised families."""
    out: dict[str, Any] = {}
    for group, names in (("static", [n for n in fams if n not in drifting]),
                         ("drifting", [n for n in fams if n in drifting])):
        if not names:
            continue
        g: dict[str, Any] = {}
        for run in ("hub cold", "hub calibrated", "mountainsort5", "spykingcircus2",
                    "tridesclous2"):
            accs = {n: fams[n]["runs"].get(run, {}).get("median_accuracy", float("nan"))
                    for n in names}
            ok = {n: a for n, a in accs.items() if a == a}
            if not ok:
                continue
            worst = min(ok, key=lambda n: ok[n])
            g[run] = {"worst_family": worst, "worst_median_accuracy": ok[worst],
                      "mean_of_family_medians": float(np.mean(list(ok.values()))),
                      "max_fp_fraction": max(fams[n]["runs"][run]["fp_fraction"]
                                             for n in ok)}
        out[group] = g
    return out


def run(quick: bool, split: str = "report", families: list[str] | None = None,
        offline: tuple[str, ...] | None = None) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    fam_list = [sf.family(n) for n in families] if families else list(sf.FAMILIES)
    results = evaluate_matrix(fam_list, split, quick, offline)
    from bench import sorting_eval

    fams = summarise(results)
    drifting = {f.name for f in fam_list if f.drifting}
    res: dict[str, Any] = {"quick": quick, "split": split,
                           "seeds": list(_seeds(split, quick)),
                           "tune_seeds": list(sf.TUNE_SEEDS),
                           "report_seeds": list(sf.REPORT_SEEDS),
                           "settings": dict(sorting_eval.OVERRIDES),
                           "families": fams, "headline": headline(fams, drifting),
                           "recordings": results}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "families.json").write_text(json.dumps(res, indent=1))
    try:
        res["plot"] = str(plot(fams, drifting, OUT / "families.png"))
    except ImportError:
        log.warning("matplotlib missing: no plot")
    return res


RUN_ORDER = ("hub cold", "hub calibrated", "mountainsort5", "spykingcircus2", "tridesclous2")


def plot(fams: dict[str, Any], drifting: set[str], path: Path) -> Path:
    """Median accuracy and false-positive share per family and sorter (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in fams if n not in drifting] + [n for n in fams if n in drifting]
    runs = [r for r in RUN_ORDER if any(r in fams[n]["runs"] for n in names)]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.3 * len(names)), 7), sharex=True)
    w = 0.8 / max(1, len(runs))
    x = np.arange(len(names))
    for k, r in enumerate(runs):
        acc = [fams[n]["runs"].get(r, {}).get("median_accuracy", np.nan) for n in names]
        fp = [fams[n]["runs"].get(r, {}).get("fp_fraction", np.nan) for n in names]
        axes[0].bar(x + k * w, acc, w, label=r)
        axes[1].bar(x + k * w, fp, w, label=r)
    axes[0].axhline(0.9, color="k", lw=0.8, ls="--")
    axes[0].set_ylabel("median accuracy (SNR ≥ 5)")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(fontsize=8, ncol=len(runs), loc="lower left", bbox_to_anchor=(0.0, 1.0),
                   frameon=False)
    axes[1].axhline(0.1, color="k", lw=0.8, ls="--")
    axes[1].set_ylabel("false-positive units / found")
    axes[1].set_xticks(x + w * (len(runs) - 1) / 2)
    axes[1].set_xticklabels([n + (" (drift)" if n in drifting else "") for n in names],
                            rotation=30, ha="right", fontsize=8)
    fig.suptitle("online sorting across the family matrix (held-out seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:8.3f}" if v == v else "     nan"
    return f"{v:8d}"


def table(res: dict[str, Any]) -> str:
    lines = [f"sorting across families ({res['split']} seeds {res['seeds']}; tuning seeds "
             f"{res['tune_seeds']}, held out {res['report_seeds']}); units with SNR ≥ 5 pooled "
             "over seeds; cost = sorter time / front-end time (same run, contended)"]
    cols = ("med acc", "found", "well", "FP", "redund.", "FP frac", "cost")
    for name, fam in res["families"].items():
        lines.append(f"  {name} ({fam['gt_units_snr5']} GT units SNR ≥ 5)")
        lines.append(f"    {'':16s}" + "".join(f"{c:>8s}" for c in cols))
        for run_name in RUN_ORDER:
            r = fam["runs"].get(run_name)
            if r is None:
                continue
            if r["units_scored"] == 0:
                lines.append(f"    {run_name:16s} error on {r['errors']} recordings")
                continue
            vals = (r["median_accuracy"], r["units_found"], r["well_detected"],
                    r["false_positive_units"], r["redundant_units"], r["fp_fraction"],
                    r.get("added_fraction", float("nan")))
            lines.append(f"    {run_name:16s}" + "".join(_fmt(v) for v in vals))
    for group, g in res["headline"].items():
        for run_name, h in g.items():
            lines.append(f"  {group:8s} {run_name:16s} worst family {h['worst_family']} "
                         f"{h['worst_median_accuracy']:.3f}; mean of families "
                         f"{h['mean_of_family_medians']:.3f}; max FP share "
                         f"{h['max_fp_fraction']:.2f}")
    if "plot" in res:
        lines.append(f"  plot: {res['plot']}")
    return "\n".join(lines)


def main() -> int:
    global OUT, QUICK_SEEDS
    p = argparse.ArgumentParser(prog="python -m bench.bench_sorting_gen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one seed per split, half durations")
    p.add_argument("--split", choices=("report", "tune", "all"), default="report")
    p.add_argument("--family", action="append", default=[], help="only this family (repeat)")
    p.add_argument("--no-offline", action="store_true", help="the hub only")
    p.add_argument("--seeds-per-split", type=int, default=1,
                   help="with --quick: seeds of the split to run (default 1)")
    p.add_argument("--cached-only", action="store_true",
                   help="never run an offline sorter: use cached results where there are some")
    p.add_argument("--offline", action="append", default=[],
                   help="only this offline sorter (repeat; default: all of "
                        "mountainsort5, spykingcircus2, tridesclous2)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="run the hub with this pipeline or sorter setting (repeat)")
    p.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    offline = () if args.no_offline else (tuple(args.offline) or None)
    QUICK_SEEDS = args.seeds_per_split
    from bench import sorting_eval

    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set {item}: expected NAME=VALUE")
        sorting_eval.OVERRIDES[name.strip()] = value.strip()
    sorting_eval.pipeline_config()      # an unknown name fails here, before any work
    OUT = args.out
    if args.cached_only:
        sorting_eval.CACHED_ONLY = True
    res = run(args.quick, args.split, args.family or None, offline)
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
