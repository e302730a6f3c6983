"""The Dask cluster a batch runs on: a LocalCluster on 127.0.0.1 (default), an existing
scheduler (``--scheduler tcp://HOST:PORT``), or a dask-jobqueue cluster (SLURM, PBS, … —
``kind`` in the plan's [cluster] table).

A worker runs one task at a time, and a task may use ``threads_per_task`` cores (default 1)
for its inner pools: LocalCluster workers have one thread each and the thread-pool variables
(OMP/OPENBLAS/MKL/NUMBA…) set before they start, cores // threads_per_task of them; jobqueue
jobs run one single-threaded worker, export the variables in their prologue and (SLURM) book
threads_per_task CPUs; and every worker, including ones the batch did not start, gets a plugin
that sets the variables and pins already-loaded pools with threadpoolctl. Workers of an
external cluster should be started with ``--nthreads 1`` (one per threads_per_task cores), or
their tasks share cores. A calibration's sorter is a task of its own (one core, like the rest).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from host_tools.batch_plan import ClusterSettings
from host_tools.batch_task import limit_threads, routers, thread_env

log = logging.getLogger(__name__)

#: a task that kills its worker (a crash in a C kernel, memory) is tried once more, not thrice
DASK_CONFIG = {"distributed.scheduler.allowed-failures": 1}


class WorkerSetup(WorkerPlugin):
    """Run on every worker when it joins (or at once, if it is running): thread-pool sizes,
    and — for workers the batch started — what they print outside a task (a sorter running as
    its own Dask task) goes to OUTPUT/worker-PID.log instead of the terminal."""

    name = "hubctl-batch-worker-setup"

    def __init__(self, threads: int, output: str | None = None) -> None:
        self.threads, self.output = threads, output

    def setup(self, worker: Any) -> None:
        os.environ.update(thread_env(self.threads))
        limit_threads(self.threads)
        if self.output:
            Path(self.output).mkdir(parents=True, exist_ok=True)
            fh = open(Path(self.output) / f"worker-{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115
            for r in routers():
                r.default = fh


@dataclass
class ClusterInfo:
    description: str
    dashboard: str | None
    workers: int


def jobqueue_cluster(kind: str, threads: int, options: dict[str, Any],
                     dashboard: bool) -> Any:
    """A dask-jobqueue cluster of `kind` whose jobs run one worker of `threads` threads with
    the thread-pool variables exported; `options` go to its constructor (queue, account,
    memory, walltime, …). Its scheduler runs here; jobs reach it on this host's interface."""
    names = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
             "lsf": "LSFCluster", "oar": "OARCluster", "htcondor": "HTCondorCluster",
             "moab": "MoabCluster"}
    try:
        mod = importlib.import_module("dask_jobqueue")
    except ImportError as e:
        raise ValueError("a jobqueue cluster needs dask-jobqueue (pip install dask-jobqueue)") \
            from e
    kw = dict(options)
    kw.setdefault("cores", 1)        # worker threads: one task at a time per job …
    kw.setdefault("processes", 1)
    if kind == "slurm":
        kw.setdefault("job_cpu", threads)  # … with `threads` cores booked for it
    kw.setdefault("memory", "4GiB")
    prologue = [f"export {k}={v}" for k, v in thread_env(threads).items()]
    kw["job_script_prologue"] = prologue + list(kw.get("job_script_prologue", []))
    # the scheduler listens where the jobs can reach it; its dashboard only on loopback
    # (reach it through an ssh tunnel), or not at all
    kw.setdefault("scheduler_options", {}).setdefault(
        "dashboard_address", "127.0.0.1:0" if dashboard else None)
    return getattr(mod, names[kind])(**kw)


@contextlib.contextmanager
def open_cluster(c: ClusterSettings, worker_output: Path | None = None
                 ) -> Iterator[tuple[Client, ClusterInfo]]:
    """A connected client (and what it is connected to); closes what it started. Workers this
    starts write what they print outside tasks under `worker_output`."""
    cluster: Any = None
    with dask.config.set(DASK_CONFIG):
        if c.scheduler:
            client = Client(c.scheduler, timeout="30s")  # type: ignore[no-untyped-call]
            desc = f"scheduler {c.scheduler}"
        elif c.kind == "local":
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=c.n_workers(), threads_per_worker=1, processes=True,
                host="127.0.0.1", scheduler_port=0,
                dashboard_address="127.0.0.1:0" if c.dashboard else None,
                worker_dashboard_address=None, env=thread_env(c.threads_per_task))
            client = Client(cluster)  # type: ignore[no-untyped-call]
            desc = (f"LocalCluster: {c.n_workers()} worker(s) on 127.0.0.1, one task each "
                    f"at a time, {c.threads_per_task} thread(s) per task")
        else:
            cluster = jobqueue_cluster(c.kind, c.threads_per_task, c.jobqueue, c.dashboard)
            cluster.scale(jobs=c.n_workers())
            client = Client(cluster)  # type: ignore[no-untyped-call]
            log.info("waiting for the first job to start")
            client.wait_for_workers(1)
            desc = f"{c.kind} cluster via dask-jobqueue: {c.n_workers()} job(s)"
        try:
            own = cluster is not None and worker_output is not None
            client.register_plugin(WorkerSetup(c.threads_per_task,
                                               str(worker_output) if own else None))
            n = len(client.scheduler_info().get("workers", {}))
            yield client, ClusterInfo(desc, client.dashboard_link if c.dashboard or c.scheduler
                                      else None, n)
        finally:
            client.close()  # type: ignore[no-untyped-call]
            if cluster is not None:
                cluster.close()
