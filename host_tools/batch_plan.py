"""What a batch does: a plan (TOML) or a folder of recordings with the default plan.

    inputs = ["sessions/", "extra/day3.nwb"]   # recordings or folders (relative to the plan),
    # or {path = "probe_a/", kind = "wav_stack"} to say what a path is
    steps = ["replay", "calibrate", "sort", "codec"]   # default: every step in the table
    nwb_series = "acquisition/ElectricalSeries"        # which raw series of NWB inputs

    [pipeline]          # hub front-end settings (PipelineConfig fields) for replay, calibrate
    threshold = 5.0     # and sort; a step's own table may override any of them

    [calibrate]
    sorter = "mountainsort5"
    duration_s = 60.0
    sorter_params = { detect_threshold = 5.5 }

    [sort]
    templates = "auto"  # "calibrate" (this batch's calibration), "none" (cold), a .npz file;
                        # auto: calibrate when the plan has that step, else none
    [codec]
    block = 19531

    [cluster]           # command-line options win over these
    scheduler = ""      # a Dask scheduler address; "" starts a LocalCluster on 127.0.0.1
    workers = 2         # LocalCluster workers (default: cores / threads_per_task)
    threads_per_task = 1
    dashboard = true    # LocalCluster dashboard on 127.0.0.1, ephemeral port
    kind = "local"      # or a dask-jobqueue cluster: slurm, pbs, sge, lsf, oar, htcondor, moab
    [cluster.jobqueue]  # keyword arguments of that dask-jobqueue class (queue, account, ...)

A syntax error or an unknown top-level key makes the plan unreadable (nothing runs). A bad
setting inside one step's table (unknown key, wrong type, missing templates file) fails only
that step's tasks, with the reason in the summary; the rest of the batch runs.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.batch_inputs import fingerprint_file
from host_tools.batch_steps import STEPS, _same_type, check_pipeline_settings

TOP_KEYS = {"inputs", "steps", "nwb_series", "pipeline", "cluster", *STEPS}
JOBQUEUE_KINDS = ("slurm", "pbs", "sge", "lsf", "oar", "htcondor", "moab")


class PlanError(ValueError):
    """The plan cannot be read or names something that does not exist."""


@dataclass
class ClusterSettings:
    scheduler: str = ""
    workers: int = 0                      # 0: cores // threads_per_task
    threads_per_task: int = 1
    dashboard: bool = True
    kind: str = "local"
    jobqueue: dict[str, Any] = field(default_factory=dict)

    def n_workers(self) -> int:
        return self.workers or max(1, (os.cpu_count() or 1) // self.threads_per_task)


@dataclass
class Plan:
    inputs: list[tuple[Path, str]]        # (path, kind; "" = recognise it)
    steps: list[str]                      # what runs, in table order (after --only)
    planned: list[str]                    # the plan's steps before --only
    params: dict[str, dict[str, Any]]     # resolved parameters of every step in the table
    errors: dict[str, str]                # step → why its settings are unusable
    cluster: ClusterSettings
    source: str
    nwb_series: str = ""

    def needs(self, step: str) -> tuple[str, ...]:
        return () if step in self.errors else STEPS[step].needs(self.params[step])


def load_plan(arg: Path, only: list[str] | None = None) -> Plan:
    """A plan from a .toml file, or the default plan over a recording or folder."""
    if arg.suffix.lower() == ".toml":
        try:
            doc = tomllib.loads(arg.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise PlanError(f"{arg}: unreadable plan ({e})") from e
        return plan_from_dict(doc, arg.parent.resolve(), str(arg), only)
    if not arg.exists():
        raise PlanError(f"{arg}: no such plan, recording or folder")
    return plan_from_dict({"inputs": [str(arg.resolve())]}, Path.cwd(),
                          f"default plan over {arg}", only)


def plan_from_dict(doc: dict[str, Any], base: Path, source: str,
                   only: list[str] | None = None) -> Plan:
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise PlanError(f"{source}: unknown key(s) {sorted(unknown)} (known: {sorted(TOP_KEYS)})")
    inputs = doc.get("inputs")
    if isinstance(inputs, str | dict):
        inputs = [inputs]
    if not inputs or not isinstance(inputs, list):
        raise PlanError(f"{source}: 'inputs' must name at least one recording or folder")
    pairs: list[tuple[Path, str]] = []
    for i in inputs:
        if isinstance(i, dict) and isinstance(i.get("path"), str) and \
                set(i) <= {"path", "kind"} and isinstance(i.get("kind", ""), str):
            pairs.append(((base / i["path"]).resolve(), i.get("kind", "")))
        elif isinstance(i, str):
            pairs.append(((base / i).resolve(), ""))
        else:
            raise PlanError(f"{source}: an input is a path or {{path = ..., kind = ...}}, "
                            f"not {i!r}")
    planned = doc.get("steps", list(STEPS))
    if not isinstance(planned, list) or not planned:
        raise PlanError(f"{source}: 'steps' must be a non-empty list")
    bad = [s for s in planned if s not in STEPS]
    if bad:
        raise PlanError(f"{source}: unknown step(s) {bad} (available: {', '.join(STEPS)})")
    steps = [s for s in STEPS if s in planned]
    if only:
        missing = [s for s in only if s not in steps]
        if missing:
            raise PlanError(f"--only {' '.join(missing)}: not among the plan's steps "
                            f"({', '.join(steps)})")
        steps = [s for s in steps if s in only]
    pipeline = doc.get("pipeline", {})
    if not isinstance(pipeline, dict):
        raise PlanError(f"{source}: [pipeline] must be a table")
    params: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in STEPS:
        try:
            params[name] = _resolve(name, doc.get(name, {}), pipeline, planned, base)
        except (ValueError, TypeError, OSError) as e:
            errors[name] = f"plan [{name}]: {e}"
            params[name] = {}
    nwb = doc.get("nwb_series", "")
    if not isinstance(nwb, str):
        raise PlanError(f"{source}: 'nwb_series' must be a string")
    return Plan(pairs, steps, [s for s in STEPS if s in planned],
                params, errors, _cluster(doc.get("cluster", {}), source), source, nwb)


def _resolve(name: str, table: Any, pipeline: dict[str, Any], planned: list[str],
             base: Path) -> dict[str, Any]:
    """A step's parameters: its defaults updated by its table; front-end settings apart."""
    step = STEPS[name]
    if not isinstance(table, dict):
        raise ValueError("must be a table")
    params = dict(step.params)
    front = dict(pipeline)
    for k, v in table.items():
        if k in step.params:
            if not _same_type(v, step.params[k]):
                raise ValueError(f"{k}={v!r}: want a {type(step.params[k]).__name__}")
            params[k] = v
        elif step.pipeline:
            front[k] = v
        else:
            raise ValueError(f"unknown setting {k!r} (known: {', '.join(step.params) or 'none'})")
    if step.pipeline:
        check_pipeline_settings(front)
        params["pipeline"] = front
    if name == "sort":
        t = params["templates"]
        if t == "auto":
            params["templates"] = "calibrate" if "calibrate" in planned else "none"
        elif t not in ("calibrate", "none"):
            path = (base / t).resolve()
            if not path.is_file():
                raise ValueError(f"templates file {path} does not exist")
            params["templates"] = str(path)
            params["templates_sha256"] = fingerprint_file(path)
    return params


def _cluster(table: Any, source: str) -> ClusterSettings:
    if not isinstance(table, dict):
        raise PlanError(f"{source}: [cluster] must be a table")
    c = ClusterSettings()
    for k, v in table.items():
        if not hasattr(c, k):
            raise PlanError(f"{source}: [cluster] unknown key {k!r}")
        if not _same_type(v, getattr(c, k)):
            raise PlanError(f"{source}: [cluster] {k}={v!r}: want a "
                            f"{type(getattr(c, k)).__name__}")
        setattr(c, k, v)
    if c.kind not in ("local", *JOBQUEUE_KINDS):
        raise PlanError(f"{source}: [cluster] kind {c.kind!r} (want local or one of "
                        f"{', '.join(JOBQUEUE_KINDS)})")
    if c.threads_per_task < 1 or c.workers < 0:
        raise PlanError(f"{source}: [cluster] threads_per_task ≥ 1 and workers ≥ 0")
    return c
