"""Kernel binding start-up: declarations parsed at import (the old loader: ``FFI().cdef`` over
the headers' cffi sections) against cffi out-of-line ABI mode (the module compiled at build
time) plus the ABI check, each in a fresh process (numpy and cffi already imported), medians.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_PRE = "import time, importlib.util, platform, cffi, numpy; t = time.perf_counter()\n"
_LIB = "f'hub/kernels/_native/libnk_{platform.machine()}.so'"
NEW = _PRE + (
    "s = importlib.util.spec_from_file_location('_nk_cffi', 'hub/kernels/_nk_cffi.py')\n"
    "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
    f"ffi = m.ffi; lib = ffi.dlopen({_LIB})\n"
    "assert lib.nk_version() == lib.NK_VERSION\n"
    "[getattr(lib, n) for n in dir(lib)]\n"
    "[lib.nk_sizeof(n.encode()) for n in ffi.list_types()[0]]\n"
    "print(time.perf_counter() - t)")
OLD = _PRE + (
    "exec(open('hub/kernels/_build.py').read().split('def build')[0])\n"
    "from pathlib import Path; f = cffi.FFI(); f.cdef(cdef_source(Path('c_kernels/include')))\n"
    f"f.dlopen({_LIB}); print(time.perf_counter() - t)")


def _median(code: str, n: int) -> float:
    return statistics.median(
        float(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout) for _ in range(n))


def run(quick: bool) -> dict[str, Any]:
    n = 5 if quick else 15
    old, new = _median(OLD, n), _median(NEW, n)
    return {"parse_at_import_s": round(old, 4), "out_of_line_with_abi_check_s": round(new, 4),
            "ratio": round(old / new, 1), "repeats": n}


def table(res: dict[str, Any]) -> str:
    return (f"kernel binding start-up: parse at import {res['parse_at_import_s'] * 1e3:.0f} ms, "
            f"out-of-line ABI mode + ABI check {res['out_of_line_with_abi_check_s'] * 1e3:.1f} ms "
            f"({res['ratio']}×)")
