"""The ARM budget: what fraction of a Cortex-A53 (1.2 GHz) and a Cortex-A72 (1.8 GHz) core the
hub needs at 256 and 1024 channels × 30 kHz.

Method: aarch64 instruction counts from QEMU (linux-user) with a counting TCG plugin
(``bench/arm/insn_plugin.c``; Debian's qemu ships no ``libinsn.so``), turned into core
fractions with a stated IPC — counts are exact and stable, the IPC is the assumption:
  - kernels: ``c_kernels/bench/frontend_bench.c`` (band-pass, median reference, detection,
    snippets, feature bins: the hub's per-block chain) built for aarch64 with the hub's flags,
    counted once with the kernels and once set-up only; the difference per sample frame.
  - Python supervisor: the installed aarch64 hub (``make hil-arm``'s root) running
    ``Pipeline.process`` for N1 and N2 blocks under the arm64 python3; the marginal
    instructions per block minus the kernels' share = the Python work per 10 ms block.
IPC assumed: A53 0.9 (in-order, dual issue; streaming float loops), A72 1.6 (3-wide OoO).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "qemu"
ROOT = REPO / "out" / "hil" / "aarch64-root"      # left by make hil-arm
FS, BLOCK = 30000, 300                            # 10 ms blocks
CORES = {"A53@1.2GHz": (1.2e9, 0.9), "A72@1.8GHz": (1.8e9, 1.6)}
CFLAGS = ["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-O3", "-ffp-contract=off",
          "-fno-math-errno", f"-I{REPO / 'c_kernels' / 'include'}"]

PY_BLOCKS = """
import sys
import numpy as np
from hub.dsp.pipeline import Pipeline, PipelineConfig
C, n = int(sys.argv[1]), int(sys.argv[2])
pipe = Pipeline(PipelineConfig(), C, 30000.0, None)
rng = np.random.default_rng(1)
blocks = [rng.integers(-60, 60, size=(pipe.block_samples, C), dtype=np.int16) for _ in range(4)]
for i in range(n):
    pipe.process(blocks[i % 4])
"""


def _build() -> tuple[Path, Path]:
    BUILD.mkdir(parents=True, exist_ok=True)
    plugin, prog = BUILD / "libinsncount.so", BUILD / "frontend_bench_aarch64"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(plugin),
                    str(REPO / "bench" / "arm" / "insn_plugin.c")], check=True)
    srcs = sorted(str(p) for p in (REPO / "c_kernels" / "src").glob("*.c"))
    subprocess.run(["aarch64-linux-gnu-gcc", *CFLAGS, "-static", "-o", str(prog),
                    str(REPO / "c_kernels" / "bench" / "frontend_bench.c"), *srcs, "-lm"],
                   check=True)
    return plugin, prog


def _count(cmd: list[str], env: dict[str, str] | None = None) -> int:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    m = re.search(r"^insns (\d+)$", r.stderr, re.MULTILINE)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"{cmd[:4]}…: {r.stderr[-500:]}")
    return int(m.group(1))


def run(quick: bool) -> dict[str, Any]:
    if not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-gcc")):
        return {"error": "needs qemu-aarch64 and aarch64-linux-gnu-gcc (make sysdeps)"}
    plugin, prog = _build()
    qemu = ["qemu-aarch64", "-plugin", str(plugin)]
    T = 3000 if quick else 9000
    out: dict[str, Any] = {"ipc_assumed": {k: v[1] for k, v in CORES.items()},
                           "method": "QEMU TCG instruction counts (aarch64) ÷ (IPC × clock)",
                           "channels": {}}
    for C in (256, 1024):
        full = _count([*qemu, str(prog), str(C), str(T)])
        setup = _count([*qemu, str(prog), str(C), str(T), "0"])
        per_frame = (full - setup) / T
        row: dict[str, Any] = {"kernel_insn_per_sample_frame": round(per_frame, 1),
                               "kernel_insn_per_s": round(per_frame * FS)}
        if (ROOT / "opt" / "implant-hub" / "current").exists():
            with tempfile.NamedTemporaryFile("w", suffix=".py", dir=ROOT / "tmp",
                                             delete=False) as f:
                f.write(PY_BLOCKS)
            inside = f"/tmp/{Path(f.name).name}"
            env = {"PYTHONPATH": "/opt/implant-hub/current/site", "PATH": "/usr/bin:/bin"}
            cmd = [*qemu, "-L", str(ROOT), str(ROOT / "usr" / "bin" / "python3"), inside, str(C)]
            n1, n2 = (3, 13) if quick else (5, 45)
            a, b = _count([*cmd, str(n1)], env), _count([*cmd, str(n2)], env)
            Path(f.name).unlink()
            per_block = (b - a) / (n2 - n1)
            row["pipeline_insn_per_block"] = round(per_block)
            # the C chain and PipelineConfig() differ (adjacency, snippets): a difference,
            # not a clean Python cost; the pipeline total is the measured figure
            row["pipeline_minus_c_chain_insn_per_block"] = round(per_block - per_frame * BLOCK)
            total = per_block * FS / BLOCK
        else:
            row["pipeline_insn_per_block"] = None        # run make hil-arm first
            total = per_frame * FS
        row["total_insn_per_s"] = round(total)
        for core, (hz, ipc) in CORES.items():
            row[f"core_fraction_{core}"] = round(total / (hz * ipc), 3)
            row[f"kernel_fraction_{core}"] = round(per_frame * FS / (hz * ipc), 3)
        out["channels"][str(C)] = row
    return out


def table(res: dict[str, Any]) -> str:
    lines = ["ARM budget (aarch64 instruction counts; IPC A53 0.9, A72 1.6), 30 kHz, 10 ms blocks",
             f"{'channels':>8s} {'C chain Minsn/s':>15s} {'hub Minsn/blk':>16s} "
             f"{'A53@1.2 core':>12s} {'A72@1.8 core':>12s}"]
    for c, r in res["channels"].items():
        py = r.get("pipeline_insn_per_block")
        lines.append(f"{c:>8s} {r['kernel_insn_per_s'] / 1e6:15.0f} "
                     f"{'n/a' if py is None else f'{py / 1e6:.2f}':>16s} "
                     f"{r['core_fraction_A53@1.2GHz']:12.0%} {r['core_fraction_A72@1.8GHz']:12.0%}")
    return "\n".join(lines)
