"""``hub selftest``: the kernels' self-test the daemon runs at start (exit 0 pass, 1 fail).

Prints the result as one JSON object; ``--write-reference PATH`` records this build's hashes
instead (``make bundle`` does it on the build machine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hub.kernels import selftest


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", type=Path, default=selftest.REFERENCE,
                   help="hashes to compare against (default: the installed package's)")
    p.add_argument("--write-reference", type=Path, metavar="PATH",
                   help="write this build's hashes to PATH and exit")


def run(args: argparse.Namespace) -> int:
    if args.write_reference:
        selftest.write_reference(args.write_reference)
        return 0
    res = selftest.run(args.reference)
    print(res.to_json())
    print(f"kernels self-test {res.summary()} ({res.seconds:.2f} s)", file=sys.stderr)
    return 0 if res.passed else 1
