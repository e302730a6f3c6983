"""Benchmarks (``make bench`` / ``hubctl bench``): JSON results plus a readable table.

Each module ``bench/bench_<name>.py`` defines
    ``run(quick: bool) -> dict``   measured figures (plain JSON types), and
    ``table(result: dict) -> str`` a short human-readable rendering.
Modules are discovered by name, so adding a benchmark needs no edit here. Timings on shared
machines are noisy: benchmarks report medians of repeats and ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)])
                  if m.name.startswith("bench_"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("out/bench.json"))
    p.add_argument("--only", action="append", default=[],
                   help=f"run only this benchmark (repeatable): {', '.join(discover())}")
    p.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")


def run(args: argparse.Namespace) -> int:
    names = args.only or discover()
    unknown = set(names) - set(discover())
    if unknown:
        raise ValueError(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {}
    if args.out.exists() and args.only:  # keep other benchmarks' last results
        results = json.loads(args.out.read_text()).get("results", {})
    failed = 0
    for name in names:
        mod = importlib.import_module(f"bench.bench_{name}")
        print(f"== bench {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            res = mod.run(args.quick)
        except Exception as e:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            res = {"error": f"{type(e).__name__}: {e}"}
            failed += 1
        res["bench_seconds"] = round(time.perf_counter() - t0, 2)
        results[name] = res
        if "error" not in res:
            print(mod.table(res), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results, "machine": _machine()}, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


def _machine() -> dict[str, Any]:
    import os
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu": model, "cpus": os.cpu_count(),
            "python": platform.python_version()}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add_arguments(p)
    return run(p.parse_args())
