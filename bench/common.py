"""Helpers shared by benchmarks: timing by median of repeats, valgrind instruction counts."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of `repeats` calls (each call does the whole job)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def callgrind_instructions(argv: list[str], function: str) -> int | None:
    """Instructions executed inside `function` (inclusive), counted by valgrind's callgrind;
    None when valgrind is missing. Stable across runs, whatever else the machine does."""
    if shutil.which("valgrind") is None:
        return None
    r = subprocess.run(["valgrind", "--tool=callgrind", f"--toggle-collect={function}",
                        "--callgrind-out-file=/dev/null", *argv],
                       capture_output=True, text=True, check=True)
    m = re.search(r"Collected : (\d+)", r.stderr)
    return int(m.group(1)) if m else None
