"""Fills the offline-sorter cache of the family matrix: which (recording, sorter) results the
report needs and are not cached yet, an estimate of each, and a run of the missing ones in
order of value (the outside check first, then the calibration sorter's segments that the
calibrated hub needs, then MountainSort5, Tridesclous 2, SpyKING CIRCUS 2), cheapest first
within a tier so that a cut run leaves the most done. Long: run it under `nice -n 10`.

    python -m bench.sorting_fill [--quick] [--family NAME]... [--list] [--budget-min M]

A sorter that fails on a recording is cached as its error (a result, shown in the table), so
a later run does not retry it; delete the `<tag>.json` file under
out/sorting_gen/<key>/offline/ to retry.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from bench import sorting_eval as ev
from bench import sorting_families as sf

log = logging.getLogger(__name__)

#: order of value: what the report cannot do without first
TIERS = ("calibration", "mountainsort5", "tridesclous2", "spykingcircus2")
#: rough seconds per (channel × second of recording), about the 90th percentile of a full fill
#: of the --quick matrix on the 2-core development machine with two fills side by side (medians
#: 0.047 / 0.0067 / 0.014 over 23 / 36 / 36 runs; the values before, from runs beside CI,
#: were 4–13× too high); only orders the jobs and sizes a budget
COST = {"mountainsort5": 0.1, "tridesclous2": 0.01, "spykingcircus2": 0.025}


@dataclass(frozen=True)
class Job:
    family: sf.Family
    seed: int
    sorter: str
    start_s: float
    duration_s: float | None      # None: the whole recording

    @property
    def tag(self) -> str:
        if self.duration_s is None:
            return self.sorter
        return f"{self.sorter}_{self.start_s:g}_{self.duration_s:g}"

    @property
    def tier(self) -> int:
        """The outside check's recordings first, then by TIERS."""
        kind = TIERS.index("calibration" if self.duration_s is not None else self.sorter)
        return kind + (0 if self.family.stock else len(TIERS))

    @property
    def kind(self) -> str:
        return ("outside check, " if self.family.stock else "") + TIERS[self.tier % len(TIERS)]

    @property
    def estimate_s(self) -> float:
        seconds = self.family.duration_s if self.duration_s is None else self.duration_s
        return COST[self.sorter] * self.family.num_channels * seconds

    def path(self) -> Path:
        return sf.CACHE / sf.key(self.family, self.seed) / "offline" / self.tag


def jobs(families: list[sf.Family], quick: bool,
         sorters: tuple[str, ...] = ev.OFFLINE) -> list[Job]:
    """Every offline result the report of `families` (REPORT seeds) reads, in run order."""
    out = []
    for f0 in families:
        f = sf.quick(f0) if quick else f0
        for seed in sf.REPORT_SEEDS:
            if ev.CALIBRATION_SORTER in sorters:
                out.append(Job(f, seed, ev.CALIBRATION_SORTER, 0.0,
                               ev.calibration_seconds(f)))
            out += [Job(f, seed, s, 0.0, None) for s in sorters]
    return sorted(out, key=lambda j: (j.tier, j.estimate_s))


def missing(all_jobs: list[Job]) -> list[Job]:
    """The jobs with no cached result made with the sorter's current parameters."""
    return [j for j in all_jobs if ev.cached_meta(j.path(), ev.sorter_params(j.sorter)) is None]


def run_job(j: Job) -> str:
    m = sf.materialise(j.family, j.seed)
    sorting, meta = ev.offline(m, j.sorter, j.start_s, j.duration_s)
    if sorting is None:
        return f"error: {meta.get('error', '?')[:160]}"
    return f"{len(sorting.unit_ids)} units in {meta['wall_s']:.0f} s"


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sorting_fill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the --quick recordings (default)")
    p.add_argument("--full", action="store_true", help="the full-length recordings")
    p.add_argument("--family", action="append", default=[], help="only this family (repeat)")
    p.add_argument("--sorter", action="append", default=[], help="only this sorter (repeat)")
    p.add_argument("--list", action="store_true", help="list the missing jobs and stop")
    p.add_argument("--budget-min", type=float, default=None,
                   help="start no job after this many minutes")
    p.add_argument("--max-estimate-min", type=float, default=None,
                   help="skip jobs estimated longer than this (listed as not run)")
    p.add_argument("--cheapest-first", action="store_true",
                   help="order by estimate only (most results in a short budget)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    fams = [sf.family(n) for n in args.family] if args.family else list(sf.FAMILIES)
    todo = missing(jobs(fams, not args.full, tuple(args.sorter) or ev.OFFLINE))
    if args.max_estimate_min is not None:
        skipped = [j for j in todo if j.estimate_s > 60 * args.max_estimate_min]
        todo = [j for j in todo if j.estimate_s <= 60 * args.max_estimate_min]
        for j in skipped:
            print(f"  not run (estimate ~{j.estimate_s / 60:.0f} min): {j.family.name}-s{j.seed} "
                  f"{j.tag}", file=sys.stderr)
    if args.cheapest_first:
        todo.sort(key=lambda j: j.estimate_s)
    total = sum(j.estimate_s for j in todo)
    print(f"{len(todo)} offline results missing, estimated {total / 60:.0f} min",
          file=sys.stderr)
    if args.list:
        for j in todo:
            print(f"  {j.kind:28s} {j.family.name}-s{j.seed} {j.tag:26s} "
                  f"~{j.estimate_s / 60:5.1f} min")
        return 0
    t0 = time.perf_counter()
    for i, j in enumerate(todo):
        elapsed = (time.perf_counter() - t0) / 60
        if args.budget_min is not None and elapsed > args.budget_min:
            print(f"budget of {args.budget_min:g} min spent: {len(todo) - i} jobs not started",
                  file=sys.stderr)
            break
        print(f"[{i + 1}/{len(todo)} {elapsed:.0f} min] {j.family.name}-s{j.seed} {j.tag} "
              f"(~{j.estimate_s / 60:.1f} min) ...", file=sys.stderr, flush=True)
        print(f"    {run_job(j)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
