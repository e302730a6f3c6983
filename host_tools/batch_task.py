"""One task of a batch — one step on one recording — as it runs on a Dask worker.

A task's key is the SHA-256 of (the recording's content fingerprint, the step, its resolved
parameters, the step's code version, the keys of the tasks it needs), so a key changes exactly
when something that could change the output changed, and everything downstream of it changes
with it. The output folder ``OUT_DIR/<recording>/<step>/`` holds ``task.json`` (the key and
the headline figures); it is built in a temporary sibling folder and renamed into place only
when the step succeeded, so a folder with a task.json is always complete. A task that was
interrupted leaves only a temporary folder, removed when the task runs again.

``execute`` is the supervisor boundary of a task: whatever the step raises is caught, logged
with its traceback to the task's log file, and returned as a failed result — one bad recording
never stops the batch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from host_tools.batch_inputs import Input, same_filesystem_tmp
from host_tools.batch_steps import COMMON_CODE, STEPS, StepContext, innermost_error, write_json

log = logging.getLogger(__name__)

#: thread-pool sizes of BLAS/OpenMP/numba, set on every worker so a task uses its share only
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")
TASK_FILE = "task.json"
#: loggers whose INFO records go to a task's log (a worker's own level may be WARNING)
TASK_LOGGERS = ("hub", "host_tools", "spikeinterface", "py.warnings")


class DependencyFailed(RuntimeError):
    """A step this task needs failed, so this one cannot run."""


def thread_env(threads: int) -> dict[str, str]:
    return {v: str(threads) for v in THREAD_VARS}


def limit_threads(threads: int) -> None:
    """Pins the thread pools already loaded in this process (BLAS, OpenMP, numba) to
    `threads`; libraries loaded later read the THREAD_VARS environment."""
    os.environ.update(thread_env(threads))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]


def _module_files(name: str) -> list[tuple[str, Path]]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"code version: module {name} not found")
    origin = Path(spec.origin)
    if origin.name != "__init__.py":
        return [(name, origin)]
    root = origin.parent
    return [(f"{name}/{p.relative_to(root)}", p) for p in sorted(root.rglob("*"))
            if p.suffix in (".py", ".so") and "__pycache__" not in p.parts]


@functools.cache
def code_version(step: str) -> str:
    """Hash of the source (and native libraries) of the modules that make `step`, the versions
    of the distributions it relies on, and the Python version."""
    s = STEPS[step]
    h = hashlib.sha256(f"python {platform.python_version()}\n".encode())
    for mod in sorted(set(COMMON_CODE + s.code)):
        for rel, path in _module_files(mod):
            h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    for lib in sorted(s.libs):
        try:
            v = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            v = "absent"
        h.update(f"{lib}=={v}\n".encode())
    return h.hexdigest()[:16]


def task_key(fingerprint: str, step: str, params: dict[str, Any], code: str,
             upstream: dict[str, str]) -> str:
    """The content key of a task (see the module docstring)."""
    blob = json.dumps({"input": fingerprint, "step": step, "params": params, "code": code,
                       "upstream": upstream}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class TaskSpec:
    """Everything a worker needs to run one task (pickled to the worker)."""

    input: Input
    step: str
    params: dict[str, Any]
    key: str
    code: str
    out_dir: Path
    log_path: Path
    threads: int = 1
    needs: tuple[str, ...] = ()
    prepared: Path | None = None  # a folder the batch filled for this task (the sorter's)


def read_done(out_dir: Path, key: str) -> dict[str, Any] | None:
    """The stored result of a finished task with this key, or None."""
    try:
        rec = json.loads((out_dir / TASK_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("key") != key or rec.get("status") != "done":
        return None
    return rec


def install(tmp: Path, final: Path) -> None:
    """Replaces `final` by the finished folder `tmp` (renames on one filesystem)."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale(final: Path) -> None:
    """Temporary folders an interrupted run of this task left behind."""
    if final.parent.exists():
        for p in final.parent.glob(f".{final.name}.*-*"):
            shutil.rmtree(p, ignore_errors=True)


class _ThreadFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


class StreamRouter(io.TextIOBase):
    """A worker's sys.stdout / sys.stderr: what a task's thread prints goes to that task's
    log; other threads write to `default` (the worker's own stream, or a file)."""

    def __init__(self, default: TextIO) -> None:
        super().__init__()
        self.default = default
        self.local = threading.local()

    def _target(self) -> TextIO:
        t: TextIO | None = getattr(self.local, "target", None)
        return t if t is not None else self.default

    def write(self, s: str) -> int:
        return self._target().write(s)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.default.fileno()


def routers() -> tuple[StreamRouter, StreamRouter]:
    """This process's stdout and stderr routers (installed on first use)."""
    if not isinstance(sys.stdout, StreamRouter):
        sys.stdout = StreamRouter(sys.stdout)
    if not isinstance(sys.stderr, StreamRouter):
        sys.stderr = StreamRouter(sys.stderr)
    return sys.stdout, sys.stderr


@contextlib.contextmanager
def task_log(path: Path) -> Iterator[None]:
    """Log records of this thread, warnings and printed output go to `path` for the task."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_ThreadFilter())
        root = logging.getLogger()
        levels = {n: logging.getLogger(n).level for n in TASK_LOGGERS}
        for n in TASK_LOGGERS:
            logging.getLogger(n).setLevel(logging.INFO)
        root.addHandler(handler)
        logging.captureWarnings(True)
        outs = routers()
        for r in outs:
            r.local.target = fh
        try:
            yield
        finally:
            for r in outs:
                r.local.target = None
            root.removeHandler(handler)
            for n, lv in levels.items():
                logging.getLogger(n).setLevel(lv)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def execute(spec: TaskSpec, *upstream: dict[str, Any], after: Any = None) -> dict[str, Any]:
    """Runs one task; returns its result ({"status": "done"|"failed", ...}), never raises.
    `upstream` are the results of ``spec.needs``; `after` only orders this task after another
    Dask task (the sorter that fills ``spec.prepared``)."""
    t0, c0 = time.time(), time.thread_time()
    res: dict[str, Any] = {"status": "failed", "step": spec.step, "input": str(spec.input.path),
                           "key": spec.key, "code": spec.code, "params": spec.params,
                           "worker": _worker_address(), "pid": os.getpid(), "started": t0,
                           "log": str(spec.log_path), "dir": str(spec.out_dir)}
    tmp: Path | None = None
    with task_log(spec.log_path):
        log.info("%s on %s (key %s) on %s", spec.step, spec.input.path, spec.key[:16],
                 res["worker"])
        try:
            ups = dict(zip(spec.needs, upstream, strict=True))
            failed = [n for n, u in ups.items() if u.get("status") == "failed"]
            if failed:
                raise DependencyFailed(f"needs {failed[0]}, which failed: "
                                   f"{ups[failed[0]].get('error', '?')}")
            mine = code_version(spec.step)
            if mine != spec.code:
                raise RuntimeError(f"this worker runs different code for {spec.step} "
                                   f"(version {mine}, the batch expects {spec.code}): install "
                                   "the same implant-hub on every worker")
            limit_threads(spec.threads)
            remove_stale(spec.out_dir)
            tmp = same_filesystem_tmp(spec.out_dir)
            tmp.mkdir()
            headline = STEPS[spec.step].run(
                StepContext(spec.input, dict(spec.params), tmp, ups, spec.threads,
                            spec.prepared))
            res.update(status="done", headline=headline, upstream={n: u["key"]
                                                                   for n, u in ups.items()})
            res.update(finished=time.time(), seconds=round(time.time() - t0, 3),
                       cpu_seconds=round(time.thread_time() - c0, 3))
            write_json(tmp / TASK_FILE, res)
            install(tmp, spec.out_dir)
            tmp = None
            log.info("done in %.2f s: %s", res["seconds"], headline)
        except Exception as e:  # the task's supervisor boundary (see the module docstring)
            log.exception("%s failed", spec.step)
            res.update(status="failed", error=str(e) if isinstance(e, DependencyFailed) else
                       f"{type(e).__name__}: {innermost_error(str(e))}")
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    res.setdefault("finished", time.time())
    res.setdefault("seconds", round(res["finished"] - t0, 3))
    res.setdefault("cpu_seconds", round(time.thread_time() - c0, 3))
    return res
