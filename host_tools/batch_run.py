"""The batch driver: fingerprints the recordings, works out each task's key, skips what is
done, submits the rest to Dask with their dependencies, follows them to the end, and returns
the summary. It never stops at a failed task: every failure becomes that task's entry.

Keys are known before anything is submitted (fingerprints are cached by file size, mtime and
inode; missing ones are computed as Dask tasks first), so a task whose output is current is
never sent to the cluster, and the Dask key of a submitted task carries its content key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from host_tools.batch_inputs import Input, discover, stat_signature
from host_tools.batch_plan import Plan, PlanError
from host_tools.batch_steps import STEPS, innermost_error
from host_tools.batch_task import TaskSpec, code_version, execute, read_done, task_key

log = logging.getLogger(__name__)

STATE_DIR = ".batch"
#: an entry for a step that does not apply to a recording's kind (listed apart in the summary)
NOT_APPLICABLE = "not_applicable"


def write_atomic(path: Path, text: str) -> None:
    """Writes `path` through a temporary sibling and a rename (readers never see half)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def batch_lock(out_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder."""
    state = out_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise PlanError(f"{out_dir}: another hubctl batch is writing here "
                            f"(pid {fh.read().strip() or '?'})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield


def fingerprint_task(inp: Input) -> dict[str, Any]:
    """Runs on a worker: the recording's fingerprint, or {"error": why it is unreadable}."""
    from host_tools.batch_inputs import fingerprint

    try:
        return fingerprint(inp)
    except (ValueError, OSError) as e:  # RecordingError is a ValueError
        return {"error": str(e)}


def fingerprints(connect: Callable[[], Any], inputs: list[Input], out_dir: Path
                 ) -> dict[str, dict[str, Any]]:
    """name → fingerprint (or {"error"}), from the cache where the files did not change; the
    others are computed on the cluster (`connect()` gives its client)."""
    cache_path = out_dir / STATE_DIR / "fingerprints.json"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    out: dict[str, dict[str, Any]] = {}
    todo: list[Input] = []
    for inp in inputs:
        try:
            sig = stat_signature(inp)
        except (ValueError, OSError) as e:
            out[inp.name] = {"error": str(e)}
            continue
        hit = cache.get(str(inp.path))
        if hit and hit.get("signature") == sig and hit.get("kind") == inp.kind:
            out[inp.name] = hit
        else:
            todo.append(inp)
    if todo:
        log.info("fingerprinting %d recording(s)", len(todo))
        client = connect()
        futs = client.map(fingerprint_task, todo, key=[f"fingerprint-{i.name}" for i in todo],
                          pure=False)
        for inp, fp in zip(todo, client.gather(futs), strict=True):
            out[inp.name] = fp
            if "error" not in fp:
                cache[str(inp.path)] = {**fp, "kind": inp.kind}
        write_atomic(cache_path, json.dumps(cache, indent=1))
    return out


def _entry(status: str, **kw: Any) -> dict[str, Any]:
    return {"status": status, **{k: v for k, v in kw.items() if v is not None}}


def plan_tasks(plan: Plan, inputs: list[Input], fps: dict[str, dict[str, Any]],
               out_dir: Path) -> tuple[dict[tuple[str, str], dict[str, Any]],
                                       dict[tuple[str, str], TaskSpec]]:
    """(entries already decided: skipped or failed before running; specs to run), both keyed
    by (recording name, step)."""
    decided: dict[tuple[str, str], dict[str, Any]] = {}
    specs: dict[tuple[str, str], TaskSpec] = {}
    codes = {s: code_version(s) for s in STEPS}
    for inp in inputs:
        fp = fps[inp.name]
        keys: dict[str, str] = {}
        for step in STEPS:  # table order: a step's needs come before it
            if step in plan.errors or "error" in fp:
                continue
            ups = {n: keys[n] for n in plan.needs(step) if n in keys}
            if len(ups) < len(plan.needs(step)):
                continue
            keys[step] = task_key(fp["sha256"], step, plan.params[step], codes[step], ups)
        for step in plan.steps:
            where = (inp.name, step)
            out = out_dir / inp.name / step
            kinds = STEPS[step].kinds
            if kinds and inp.kind not in kinds and inp.kind != "missing":
                decided[where] = _entry(NOT_APPLICABLE, reason=f"{step} applies to "
                                        f"{' or '.join(kinds)} inputs, not {inp.kind}")
                continue
            if "error" in fp:
                decided[where] = _entry("failed", error=f"input unreadable: {fp['error']}")
                continue
            if step in plan.errors:
                decided[where] = _entry("failed", error=plan.errors[step])
                continue
            missing = [n for n in plan.needs(step) if n not in keys]
            if missing:
                decided[where] = _entry("failed", error=f"needs {missing[0]}, whose plan "
                                        f"settings are unusable: {plan.errors.get(missing[0])}")
                continue
            done = read_done(out, keys[step])
            if done is not None:
                decided[where] = _entry("skipped", **{k: done.get(k) for k in (
                    "key", "headline", "finished", "log")}, ran_seconds=done.get("seconds"),
                                        dir=str(out))
                continue
            for n in plan.needs(step):
                if n not in plan.steps and read_done(out_dir / inp.name / n, keys[n]) is None:
                    decided[where] = _entry(
                        "failed", error=f"needs the output of {n} (key {keys[n][:12]}), which "
                        f"is missing or out of date and {n} is not among the steps run "
                        f"({', '.join(plan.steps)})")
            if where in decided:
                continue
            specs[where] = TaskSpec(inp, step, plan.params[step], keys[step], codes[step],
                                    out, out_dir / inp.name / "logs" / f"{step}.log",
                                    plan.cluster.threads_per_task, plan.needs(step))
    return decided, specs


def submit(client: Any, specs: dict[tuple[str, str], TaskSpec], out_dir: Path
           ) -> tuple[dict[Any, tuple[str, str]], dict[tuple[str, str], dict[str, Any]]]:
    """Submits every spec with its upstream tasks as Dask dependencies (upstream results that
    are already on disk are passed as values). A calibration's offline sorter is submitted
    first as a Dask task of its own — SpikeInterface's ``run_sorter``, as run_sorter_jobs'
    Dask engine submits it — and the calibration depends on it. Returns (future → (recording,
    step), results of tasks that failed before they could be submitted)."""
    futures: dict[tuple[str, str], Any] = {}
    failed: dict[tuple[str, str], dict[str, Any]] = {}
    for (name, step), spec in specs.items():  # insertion order: needs come first
        args: list[Any] = []
        for n in spec.needs:
            # an upstream not submitted is current on disk (plan_tasks checked its key) or
            # failed before it was submitted
            args.append(futures.get((name, n)) or failed.get((name, n))
                        or _stored(out_dir / name / n))
        after = None
        if step == "calibrate":
            try:
                spec, after = _submit_sorter(client, spec, name)
            except (ValueError, OSError) as e:  # the recording cannot be opened for a sorter
                failed[(name, step)] = _entry("failed", error=f"{type(e).__name__}: {e}",
                                              log=str(spec.log_path))
                continue
        futures[(name, step)] = client.submit(
            execute, spec, *args, after=after, key=f"{step}-{name}-{spec.key[:16]}",
            pure=False, priority=STEPS[step].cost)
    return {f: where for where, f in futures.items()}, failed


def _submit_sorter(client: Any, spec: TaskSpec, name: str) -> tuple[TaskSpec, Any]:
    from spikeinterface.sorters import run_sorter

    from host_tools.batch_steps import sorter_job

    for old in spec.out_dir.parent.glob(f".sorter-{spec.step}-*"):
        shutil.rmtree(old, ignore_errors=True)  # an interrupted run's
    folder = spec.out_dir.parent / f".sorter-{spec.step}-{spec.key[:16]}"
    job = sorter_job(spec.input, spec.params, spec.threads, folder)
    fut = client.submit(run_sorter, **job, key=f"sorter-{name}-{spec.key[:16]}", pure=False,
                        priority=STEPS[spec.step].cost + 1)
    return replace(spec, prepared=folder), fut


def _stored(out: Path) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads((out / "task.json").read_text())
    return rec


def follow(futures: dict[Any, tuple[str, str]], specs: dict[tuple[str, str], TaskSpec],
           stream: TextIO | None = sys.stderr
           ) -> tuple[dict[tuple[str, str], dict[str, Any]], bool]:
    """Waits for every task with a progress bar and a line per finished task; a task whose
    worker died (or whose upstream did) becomes a failed entry. Returns (results, whether
    Ctrl-C interrupted the batch: unfinished tasks are then cancelled and failed)."""
    from distributed import as_completed
    from tqdm import tqdm

    results: dict[tuple[str, str], dict[str, Any]] = {}
    interrupted = False
    if not futures:
        return results, interrupted
    bar = tqdm(total=len(futures), desc="batch", unit="task", file=stream or sys.stderr,
               disable=stream is None or not futures, dynamic_ncols=True)
    try:
        for fut in as_completed(list(futures)):  # type: ignore[no-untyped-call]
            where = futures[fut]
            try:
                res = fut.result()
            except Exception as e:  # Dask's own error: a worker died, a sorter task raised
                up = [n for n in specs[where].needs if results.get((where[0], n), {})
                      .get("status") == "failed"]
                res = _entry("failed", error=f"needs {up[0]}, which failed" if up else
                             f"{type(e).__name__}: {innermost_error(str(e))}",
                             log=str(specs[where].log_path))
            results[where] = res
            bar.update()
            head = res.get("headline") or res.get("error", "")
            if stream is not None:
                bar.write(f"{res['status']:>7}  {where[1]:<10} {where[0]}  "
                          f"{res.get('seconds', 0):.1f} s  {_short(head)}", file=stream)
    except KeyboardInterrupt:
        for fut, where in futures.items():
            if where not in results:
                fut.cancel()
                results[where] = _entry("failed", error="interrupted (Ctrl-C); a re-run "
                                        "resumes here", log=str(specs[where].log_path))
        interrupted = True
    finally:
        bar.close()
    return results, interrupted


def _short(head: Any) -> str:
    if isinstance(head, dict):
        return ", ".join(f"{k} {v}" for k, v in head.items())
    return str(head)[:200]


def run_batch(plan: Plan, out_dir: Path, connect: Callable[[], Any],
              stream: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Runs the plan on the cluster `connect()` returns a client of — called only if there is
    something to compute, so a batch with everything current starts no cluster. Returns the
    summary (see batch_report)."""
    from host_tools.batch_report import build_summary

    t0 = time.time()
    inputs = discover(plan.inputs, plan.nwb_series, exclude=out_dir)
    if not inputs:
        raise PlanError(f"no recordings found in {', '.join(str(p) for p, _ in plan.inputs)}")
    fps = fingerprints(connect, inputs, out_dir)
    decided, specs = plan_tasks(plan, inputs, fps, out_dir)
    if stream is not None:
        print(f"{len(inputs)} recording(s) × {len(plan.steps)} step(s): {len(specs)} to run, "
              f"{sum(e['status'] == 'skipped' for e in decided.values())} current, "
              f"{sum(e['status'] == 'failed' for e in decided.values())} unable to run",
              file=stream)
    futures: dict[Any, tuple[str, str]] = {}
    recorded: list[dict[str, Any]] = []
    with _task_stream(connect() if specs else None, recorded):
        futures, failed = submit(connect(), specs, out_dir) if specs else ({}, {})
        decided.update(failed)
        results, interrupted = follow(futures, specs, stream)
    summary = build_summary(plan, inputs, fps, {**decided, **results}, out_dir,
                            time.time() - t0, interrupted)
    summary["task_stream"] = recorded
    return summary


@contextlib.contextmanager
def _task_stream(client: Any, into: list[dict[str, Any]]) -> Iterator[None]:
    """Dask's own record of every task that ran (sorters included): key, worker, start, stop."""
    if client is None:
        yield
        return
    from distributed import get_task_stream

    with get_task_stream(client) as ts:  # type: ignore[no-untyped-call]
        yield
    for t in ts.data:
        for ss in t.get("startstops", ()):
            if ss.get("action") == "compute":
                into.append({"key": str(t["key"]), "worker": str(t.get("worker", "?")),
                             "start": ss["start"], "stop": ss["stop"],
                             "status": t.get("status", "")})
