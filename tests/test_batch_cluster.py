"""hubctl batch against a real Dask cluster: a ``dask scheduler`` and two ``dask worker``
processes started here on 127.0.0.1 (ephemeral ports), the batch run through the hubctl command
line with --scheduler, and everything torn down afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from host_tools.batch_testdata import make_batch

pytestmark = pytest.mark.slow              # process chains: not in make test-fast

TIMEOUT = 120.0  # generous: the machine may be busy; not a performance criterion


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """Address of a scheduler with two single-threaded workers, all separate processes."""
    from distributed import Client

    sched_file = tmp_path / "scheduler.json"
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str]) -> None:
        with open(logs / f"{name}.log", "wb") as fh:
            procs.append(subprocess.Popen([sys.executable, "-m", *argv], stdout=fh,
                                          stderr=subprocess.STDOUT))
    try:
        start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                            "0", "--no-dashboard", "--scheduler-file", str(sched_file)])
        deadline = time.monotonic() + TIMEOUT
        while not sched_file.exists():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                pytest.fail("dask scheduler did not start: "
                            + (logs / "scheduler.log").read_text()[-2000:])
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written in one go, but let its writer finish
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            start(f"worker{i}", ["distributed.cli.dask_worker", address, "--nthreads", "1",
                                 "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}"])
        with Client(address, timeout=TIMEOUT) as c:  # type: ignore[no-untyped-call]
            c.wait_for_workers(2, timeout=TIMEOUT)
        yield address
    finally:
        _stop(procs[1:])
        _stop(procs[:1])


def test_batch_on_a_separately_started_cluster(dask_cluster: str, tmp_path: Path) -> None:
    from distributed import Client

    warnings.filterwarnings("ignore", message="The extractor is not serializable")
    inputs = tmp_path / "in"
    make_batch(inputs, 3, seconds=2.0, channels=4, units=3, first_seed=300)
    (inputs / "broken.bin").write_bytes(b"\x01" * 33)
    (inputs / "broken.json").write_text('{"sampling_frequency": 30000, "num_channels": 4, '
                                        '"gain_to_uV": 0.195}')
    plan = tmp_path / "plan.toml"
    plan.write_text(f'inputs = ["{inputs}"]\nsteps = ["replay", "sort", "codec"]\n'
                    '[sort]\nthreshold = 5.5\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "host_tools.cli", "batch", str(plan), str(out),
           "--scheduler", dask_cluster, "--quiet"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10 * TIMEOUT, env=env)
    assert r.returncode == 1, r.stderr[-3000:]       # one bad input: non-zero, the rest done
    s = json.loads((out / "batch_summary.json").read_text())
    assert (s["done"], s["skipped"], s["failed"]) == (9, 0, 3), r.stdout
    with Client(dask_cluster, timeout=TIMEOUT) as c:  # type: ignore[no-untyped-call]
        workers = set(c.scheduler_info()["workers"])
    used = {e["worker"] for rec in s["recordings"] for e in rec["steps"].values()
            if e["status"] == "done"}
    assert used <= workers and used
    assert s["cluster"]["description"] == f"scheduler {dask_cluster}"
    bad = next(rec for rec in s["recordings"] if rec["name"] == "broken.bin")
    assert all(e["status"] == "failed" and "not a whole number" in e["error"]
               for e in bad["steps"].values())
    assert "broken.bin" in r.stdout and "failures:" in r.stdout

    # the same batch again: everything current is skipped, the bad input still reported
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10 * TIMEOUT, env=env)
    s = json.loads((out / "batch_summary.json").read_text())
    assert r.returncode == 1 and (s["done"], s["skipped"], s["failed"]) == (0, 9, 3)
