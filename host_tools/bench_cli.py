"""``hubctl bench``: runs the project's benchmarks (``python -m bench``, the top-level ``bench/``
package of a source checkout) in a child process — host_tools never imports bench."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="passed to `python -m bench` (e.g. --only codec --quick --out F.json)")


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("bench") is None:
        raise ValueError("the benchmarks live in a source checkout (bench/): run hubctl bench "
                         "from the repository root")
    return subprocess.call([sys.executable, "-m", "bench", *args.args])
