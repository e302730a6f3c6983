"""``hubctl batch PLAN.toml|INPUT_DIR OUT_DIR [--scheduler ADDRESS] [--workers N]
[--only STEP…]``: re-processes a lab's recordings on Dask distributed.

One task per recording and step (replay, calibrate, sort, codec, …; ``host_tools.batch_steps``),
keyed by a content hash of (recording, step, parameters, code version): a re-run skips what is
current, redoes what an interruption cut short, and recomputes only what changed and what
depends on it. Outputs go to OUT_DIR/<recording>/<step>/ (written atomically), logs to
OUT_DIR/<recording>/logs/<step>.log, and the summary to OUT_DIR/batch_summary.{json,html}.
A failed task never stops the others; the exit status is 1 when any task failed, 2 when the
plan is unusable. The plan format is in ``host_tools.batch_plan``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from host_tools.batch_plan import Plan, PlanError, load_plan
from host_tools.batch_steps import STEPS

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = "steps: " + "; ".join(f"{s.name} — {s.help}" for s in STEPS.values())
    p.add_argument("plan", type=Path, metavar="PLAN.toml|INPUT_DIR",
                   help="a batch plan, or a folder of recordings (default plan: every step)")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="outputs, logs and summary")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler (tcp://HOST:PORT); default: a LocalCluster "
                        "on 127.0.0.1")
    p.add_argument("--workers", type=int, metavar="N",
                   help="LocalCluster workers or jobqueue jobs (default: cores / threads per "
                        "task)")
    p.add_argument("--threads-per-task", type=int, metavar="N",
                   help="cores one task may use (BLAS/OpenMP/numba pools, sorter n_jobs; "
                        "default 1)")
    p.add_argument("--only", nargs="+", metavar="STEP", choices=list(STEPS),
                   help="run only these of the plan's steps (others' outputs are used if "
                        "current)")
    p.add_argument("--no-dashboard", action="store_true",
                   help="no Dask dashboard (otherwise on 127.0.0.1, ephemeral port)")
    p.add_argument("--performance-report", action="store_true",
                   help="also write Dask's performance report to OUT_DIR/dask_report.html")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-task lines")


def _apply_overrides(plan: Plan, args: argparse.Namespace) -> None:
    c = plan.cluster
    if args.scheduler:
        c.scheduler = args.scheduler
    if args.workers is not None:
        if args.workers < 1:
            raise PlanError("--workers must be ≥ 1")
        c.workers = args.workers
    if args.threads_per_task is not None:
        if args.threads_per_task < 1:
            raise PlanError("--threads-per-task must be ≥ 1")
        c.threads_per_task = args.threads_per_task
    if args.no_dashboard:
        c.dashboard = False


def run(args: argparse.Namespace) -> int:
    from host_tools.batch_cluster import open_cluster
    from host_tools.batch_report import write_summary
    from host_tools.batch_run import batch_lock, run_batch, write_atomic

    out: Path = args.out_dir
    stream = None if args.quiet else sys.stderr
    if not log.isEnabledFor(logging.DEBUG):  # Dask's INFO chatter hides the progress (-v: all)
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        plan = load_plan(args.plan, args.only)
        _apply_overrides(plan, args)
    except PlanError as e:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "batch_summary.json", json.dumps(
            {"recordings": [], "done": 0, "skipped": 0, "failed": 0, "error": str(e)}, indent=1))
        print(f"hubctl batch: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    with batch_lock(out), contextlib.ExitStack() as stack:
        started: dict[str, Any] = {}

        def connect() -> Any:
            """The cluster, started (or connected to) when the first task needs it."""
            if not started:
                client, info = stack.enter_context(
                    open_cluster(plan.cluster, out.resolve() / ".batch" / "workers"))
                print(f"{info.description}; dashboard: {info.dashboard or 'off'}",
                      file=sys.stderr)
                if args.performance_report:
                    from distributed import performance_report

                    stack.enter_context(performance_report(  # type: ignore[no-untyped-call]
                        filename=str(out / "dask_report.html")))
                started.update(client=client, info=info)
            return started["client"]

        summary = run_batch(plan, out.resolve(), connect, stream)
    info = started.get("info")
    summary["cluster"] = {"description": info.description if info else
                          "not started (nothing to run)",
                          "dashboard": info.dashboard if info else None,
                          "workers": info.workers if info else 0,
                          "threads_per_task": plan.cluster.threads_per_task}
    write_summary(summary, out)
    print(format_table(summary))
    print(f"summary → {out / 'batch_summary.json'}, {out / 'batch_summary.html'}")
    if summary["interrupted"]:
        return 130
    return 1 if summary["failed"] else 0


def format_table(summary: dict[str, Any]) -> str:
    """Per recording: each step's outcome and time; then every failure with its reason."""
    steps = summary["steps"]
    width = max([9, *(len(r["name"]) for r in summary["recordings"])])
    lines = [f"{'recording':<{width}}  " + "  ".join(f"{s:<16}" for s in steps)]
    failures = []
    for r in summary["recordings"]:
        cells = []
        for s in steps:
            if s not in r["steps"]:
                cells.append(f"{'—':<16}")
                continue
            e = r["steps"][s]
            t = f" {e['seconds']:.1f}s" if e.get("seconds") is not None else ""
            cells.append(f"{e['status'] + t:<16}")
            if e["status"] == "failed":
                failures.append(f"  {r['name']} {s}: {e.get('error', '?')}"
                                + (f" (log: {e['log']})" if e.get("log") else ""))
        lines.append(f"{r['name']:<{width}}  " + "  ".join(cells))
    lines.append(f"{summary['done']} done, {summary['skipped']} skipped, "
                 f"{summary['failed']} failed in {summary['wall_seconds']:.1f} s")
    if failures:
        lines += ["failures:", *failures]
    return "\n".join(lines)
