"""``make hil-arm``: the aarch64 hub in the HIL chain, and its outputs bit-identical to x86-64's.

1. A Debian bookworm arm64 userland (``packaging/rootfs.sh``: mmdebstrap, built once and cached
   as a tarball under ~/.cache/implant-hub), unpacked fresh under ``out/hil/arm-root``; binfmt
   (qemu-user-static) runs its binaries here.
2. ``hubctl deploy dist/implant-hub-<version>-aarch64.tar.gz --to out/hil/arm-root`` (install
   and the kernels self-test, inside the root).
3. Bit identity: ``hil/arm_identity.py`` (pipeline + codecs over a fixed recording) under the
   installed aarch64 hub and under this machine's hub; every hash must match.
4. The HIL chain: simulated implant → the aarch64 hub daemon (chroot, qemu-user) → TCP uplink
   → ``hubctl record``; ``out/hil/arm_summary.json`` with the machine and the accounting (zero
   unaccounted in every class).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hil.chain import REPO, ChainSpec, run_chain

DEB_ARCH = {"aarch64": "arm64", "armhf": "armhf"}
QEMU = {"aarch64": "qemu-aarch64", "armhf": "qemu-arm"}


def ensure_binfmt(arch: str) -> None:
    """binfmt_misc mounted and the qemu-user-static handler registered (root)."""
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)], check=True)
    entry = misc / QEMU[arch]
    if not entry.exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", QEMU[arch]], check=False)
    if not entry.exists():
        raise SystemExit(f"binfmt handler {QEMU[arch]} missing: install qemu-user-static and "
                         "binfmt-support (make sysdeps)")


def rootfs(arch: str) -> Path:
    """The cached userland tarball (built on first use)."""
    r = subprocess.run(["sh", str(REPO / "packaging" / "rootfs.sh"), DEB_ARCH[arch]],
                       check=True, capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    return Path(r.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """/proc and /dev inside the root for the hub's life; unmounted whatever happens."""
    done: list[Path] = []
    try:
        for src, dst, how in (("proc", root / "proc", ["-t", "proc"]),
                              ("/dev", root / "dev", ["--bind"])):
            subprocess.run(["mount", *how, src, str(dst)], check=True)
            done.append(dst)
        yield
    finally:
        for d in reversed(done):
            subprocess.run(["umount", "-l", str(d)], check=False)


def fresh_root(tarball: Path, root: Path) -> None:
    if root.exists():
        for d in ("proc", "dev"):      # never delete through a leftover mount
            subprocess.run(["umount", "-l", str(root / d)], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)
    root.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(root)], check=True)


def identity(root: Path) -> dict[str, Any]:
    probe = REPO / "hil" / "arm_identity.py"
    shutil.copy(probe, root / "tmp" / probe.name)
    arm = subprocess.run(["chroot", str(root), "env", "PYTHONPATH=/opt/implant-hub/current/site",
                          "python3", f"/tmp/{probe.name}"], check=True, capture_output=True,
                         text=True, timeout=1800)
    here = subprocess.run([sys.executable, str(probe)], check=True, capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    a, h = json.loads(arm.stdout), json.loads(here.stdout)
    same = {k: a["sha256"][k] == h["sha256"][k] for k in h["sha256"]}
    return {"identical": all(same.values()) and a["counts"] == h["counts"], "per_output": same,
            "machines": [a["machine"], h["machine"]], "counts": h["counts"],
            "sha256": h["sha256"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(DEB_ARCH), default="aarch64")
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "hil")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--channels", type=int, default=16)
    args = ap.parse_args(argv)
    t_all = time.monotonic()
    ensure_binfmt(args.arch)
    t0 = time.monotonic()
    tarball = rootfs(args.arch)
    t_rootfs = time.monotonic() - t0
    root = args.out / f"{args.arch}-root"
    fresh_root(tarball, root)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "host_tools.cli", "deploy", str(args.bundle),
                        "--to", str(root), "--python", sys.executable], cwd=REPO,
                       capture_output=True, text=True)
    t_deploy = time.monotonic() - t0
    print(r.stdout.strip(), file=sys.stderr)
    if r.returncode != 0:
        print(r.stderr[-3000:], file=sys.stderr)
        return 1
    machine = subprocess.run(["chroot", str(root), "python3", "-c",
                              "import platform; print(platform.machine())"],
                             check=True, capture_output=True, text=True).stdout.strip()
    print(f"hil-arm: identity probe ({machine} vs {platform.machine()})", file=sys.stderr)
    t0 = time.monotonic()
    ident = identity(root)
    t_ident = time.monotonic() - t0
    print(f"hil-arm: chain: simulated implant → {machine} hub → TCP uplink → host "
          f"({args.channels} ch, {args.duration:.0f} s)", file=sys.stderr)
    t0 = time.monotonic()
    with mounted(root):
        spec = ChainSpec(recording=f"synth:{args.channels}:30000", duration_s=args.duration,
                         uplink="tcp", rate_bps=1.3e6, label=f"hil-arm-{args.arch}",
                         hub_cmd=["chroot", str(root), "/opt/implant-hub/bin/hub"],
                         hub_root=root, hub_start_s=180.0)
        chain = run_chain(spec, args.out / f"arm_chain_{args.arch}")
    t_chain = time.monotonic() - t0
    classes = chain.get("classes", {})
    unaccounted = {k: v.get("unaccounted", 0) for k, v in classes.items()}
    summary = {
        "machine": machine, "host_machine": platform.machine(), "arch": args.arch,
        "bundle": args.bundle.name, "bundle_bytes": args.bundle.stat().st_size,
        "classes": classes, "unaccounted": unaccounted,
        "unaccounted_total": sum(unaccounted.values()),
        "final_report_seen": chain.get("final_report_seen"),
        "hub_exit_code": chain.get("hub_exit_code"),
        "hub_cpu_core_fraction_under_qemu": chain.get("hub_cpu_core_fraction"),
        "bit_identity": ident,
        "seconds": {"rootfs": round(t_rootfs, 1), "deploy": round(t_deploy, 1),
                    "identity": round(t_ident, 1), "chain": round(t_chain, 1),
                    "total": round(time.monotonic() - t_all, 1)},
        "chain": {k: chain[k] for k in ("spec", "implant") if k in chain},
    }
    name = "arm_summary.json" if args.arch == "aarch64" else f"{args.arch}_summary.json"
    (args.out / name).write_text(json.dumps(summary, indent=1, default=str))
    ok = (machine == ("aarch64" if args.arch == "aarch64" else "armv7l")
          and summary["unaccounted_total"] == 0 and bool(classes) and ident["identical"]
          and summary["hub_exit_code"] == 0)
    print(f"hil-arm: {args.out / name}: machine {machine}, unaccounted "
          f"{summary['unaccounted_total']}, bit-identical {ident['identical']}, "
          f"{summary['seconds']['total']:.0f} s — {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
