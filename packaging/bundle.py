"""``make bundle ARCH=…``: the hub distribution for one architecture, installable offline.

``dist/implant-hub-<version>-<arch>.tar.gz`` holds, under ``implant-hub-<version>-<arch>/``:
``wheels/`` (the hub wheel — the ``hub`` package only, with ``libnk`` for that architecture and
the cffi module compiled at build — and wheels of every runtime dependency for that architecture
and CPython 3.11, plus pip's own wheel, which install.sh runs), ``implant-hub.service``,
``hub.env`` (the default configuration), ``install.sh``, ``BUNDLE.env`` and ``MANIFEST.sha256``
(every other file's SHA-256; install refuses a bundle that does not match it).

    python packaging/bundle.py --arch aarch64 --lib build/aarch64/libnk.so [--no-deps]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.11"        # Debian bookworm's python3: what the board runs


@dataclass(frozen=True)
class Arch:
    name: str          # make's ARCH
    machine: str       # platform.machine() on the board (names libnk_<machine>.so)
    platforms: tuple[str, ...]   # pip --platform tags, newest glibc first


def _manylinux(machine: str, legacy: str) -> tuple[str, ...]:
    # bookworm has glibc 2.36: every manylinux_2_x up to it, then the legacy aliases
    return (*(f"manylinux_2_{v}_{machine}" for v in range(36, 16, -1)),
            f"{legacy}_{machine}", f"linux_{machine}")


ARCHES = {
    "aarch64": Arch("aarch64", "aarch64", _manylinux("aarch64", "manylinux2014")),
    "armhf": Arch("armhf", "armv7l", _manylinux("armv7l", "manylinux2014")),
    "x86_64": Arch("x86_64", "x86_64", _manylinux("x86_64", "manylinux2014")),
}


def project() -> dict[str, object]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert isinstance(data, dict)
    return data


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(bundle: Path) -> None:
    """MANIFEST.sha256 in ``sha256sum`` format over every other file of the bundle."""
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256")
    lines = [f"{sha256(p)}  {p.relative_to(bundle).as_posix()}\n" for p in files]
    (bundle / "MANIFEST.sha256").write_text("".join(lines))


def _stage_package(arch: Arch, lib: Path, src: Path, version: str, deps: list[str],
                   reference: Path | None) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_native", "*.so", ".*.tmp")
    shutil.copytree(REPO / "hub", src / "hub", ignore=ignore)
    native = src / "hub" / "kernels" / "_native"
    native.mkdir()
    shutil.copy2(lib, native / f"libnk_{arch.machine}.so")
    if reference is not None:
        shutil.copy2(reference, src / "hub" / "kernels" / "_selftest_ref.json")
    dep_lines = "".join(f'    "{d}",\n' for d in deps)
    (src / "pyproject.toml").write_text(f"""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "implant-hub"
version = "{version}"
description = "The implant hub daemon (hub package and its kernels for {arch.machine})"
requires-python = ">={PYTHON_VERSION}"
dependencies = [
{dep_lines}]

[project.scripts]
hub = "hub.cli:main"

[tool.setuptools.packages.find]
include = ["hub*"]

[tool.setuptools.package-data]
"hub.kernels" = ["_native/libnk_{arch.machine}.so", "_selftest_ref.json"]
"hub" = ["systemd/*.service"]
""")
    # One platform, any Python 3: the library is dlopen'ed, not a CPython extension.
    (src / "setup.cfg").write_text(
        f"[bdist_wheel]\nplat_name = linux_{arch.machine}\npython_tag = py3\n")


def _unit() -> str:
    text = (REPO / "hub" / "systemd" / "implant-hub.service").read_text()
    start = text.index("ExecStart=")
    end = text.index("\n", text.index("--uplink", start))
    return (text[:start] + "EnvironmentFile=-/etc/implant-hub/hub.env\n"
            "ExecStart=/opt/implant-hub/bin/hub run $HUB_ARGS" + text[end:]).replace(
        "WorkingDirectory=/opt/implant-hub", "WorkingDirectory=/opt/implant-hub/current")


DEFAULT_ENV = """# implant-hub configuration (read by implant-hub.service; kept across upgrades).
# Arguments of `hub run` (see `hub run --help`): implant link, uplink, probe, telemetry period.
HUB_ARGS="--implant serial:/dev/ttyS2,3000000 --uplink tcp:0.0.0.0:7800"
"""


def build(arch_name: str, lib: Path, out_dir: Path, *, deps: bool = True,
          work: Path | None = None, reference: Path | None = None) -> Path:
    """Builds the bundle tarball; returns its path. ``reference``: the self-test hashes the
    board must reproduce (default: this machine's native build, computed here)."""
    arch = ARCHES[arch_name]
    meta = project()
    version = str(meta["version"])
    runtime = [str(d) for d in meta["dependencies"]]    # type: ignore[attr-defined]
    name = f"implant-hub-{version}-{arch.name}"
    work = work or REPO / "build" / "bundle" / arch.name
    shutil.rmtree(work, ignore_errors=True)
    bundle, src = work / name, work / "src"
    (bundle / "wheels").mkdir(parents=True)
    if reference is None:
        reference = work / "selftest_ref.json"
        subprocess.run([sys.executable, "-m", "hub", "selftest", "--write-reference",
                        str(reference)], cwd=REPO, check=True)
    _stage_package(arch, lib, src, version, runtime, reference)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    print(f"bundle {name}: hub wheel", flush=True)
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(bundle / "wheels"), str(src)], check=True)
    if deps:
        print(f"bundle {name}: dependency wheels for {arch.machine}, CPython {PYTHON_VERSION}",
              flush=True)
        plat = [a for p in arch.platforms for a in ("--platform", p)]
        r = subprocess.run([*pip, "download", "-q", "-d", str(bundle / "wheels"), *plat,
                            "--python-version", PYTHON_VERSION, "--implementation", "cp",
                            "--only-binary=:all:", *runtime, "pip"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            missing = [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR")]
            raise SystemExit(f"bundle {name}: no wheels on PyPI for {arch.machine}: "
                             + " ".join(missing))
    shutil.copy2(REPO / "packaging" / "install.sh", bundle / "install.sh")
    (bundle / "implant-hub.service").write_text(_unit())
    (bundle / "hub.env").write_text(DEFAULT_ENV)
    (bundle / "BUNDLE.env").write_text(
        f'NAME=implant-hub\nVERSION={version}\nARCH={arch.name}\nMACHINE={arch.machine}\n'
        f'PY_VERSION={PYTHON_VERSION}\nDEPS={1 if deps else 0}\n'
        f'PLATFORMS="{" ".join(arch.platforms)}"\n')
    write_manifest(bundle)
    out_dir.mkdir(parents=True, exist_ok=True)
    tarball = out_dir / f"{name}.tar.gz"
    _tar(bundle, tarball)
    return tarball


def _tar(bundle: Path, tarball: Path) -> None:
    """Deterministic tar.gz: sorted names, fixed owner and time."""
    tmp = tarball.with_name(f".{tarball.name}.tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tf:
        for p in [bundle, *sorted(bundle.rglob("*"))]:
            info = tf.gettarinfo(str(p), arcname=p.relative_to(bundle.parent).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if p.is_file():
                with p.open("rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)
    os.replace(tmp, tarball)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHES), required=True)
    ap.add_argument("--lib", type=Path, required=True, help="libnk.so built for --arch")
    ap.add_argument("--out", type=Path, default=REPO / "dist")
    ap.add_argument("--no-deps", action="store_true",
                    help="hub wheel only: the target's python3 provides pip and the "
                         "dependencies (tests; no registry needed)")
    args = ap.parse_args()
    path = build(args.arch, args.lib, args.out, deps=not args.no_deps)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
