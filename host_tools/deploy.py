"""``hubctl deploy BUNDLE --to DIR | ssh://user@host[:port][/root]``: install a hub bundle.

Steps: verify the bundle's SHA-256 manifest here (a corrupt bundle is refused before anything
is copied), put it on the target, run its ``install.sh`` there (which verifies again and
switches ``current`` atomically), restart the service (ssh to a systemd host), run the new
release's kernels self-test, and roll back to the previous release if the self-test or the
service start fails. ``--to DIR`` installs into a target root such as a mounted SD-card image;
the self-test runs in it through ``chroot`` when it holds a python3 (binfmt/qemu-user for a
foreign architecture), else with ``--python`` when the architectures match.

A target is driven through a :class:`Runner` — local commands, or the same commands over
``ssh`` — so both paths run the same install, self-test and rollback steps.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shlex
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)


class DeployError(ValueError):
    """The bundle or the target refused the deployment (message says which and why)."""


def verify_bundle(bundle_dir: Path) -> None:
    """Raises DeployError unless every file matches MANIFEST.sha256 and none is unlisted."""
    manifest = bundle_dir / "MANIFEST.sha256"
    if not manifest.is_file():
        raise DeployError(f"{bundle_dir.name}: no MANIFEST.sha256 (not a hub bundle)")
    listed: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*")
               if p.is_file() and p != manifest}
    if present - set(listed):
        raise DeployError(f"{bundle_dir.name}: files not in the manifest: "
                          f"{sorted(present - set(listed))}")
    bad = [name for name, digest in sorted(listed.items())
           if name not in present or hashlib.sha256(
               (bundle_dir / name).read_bytes()).hexdigest() != digest]
    if bad:
        raise DeployError(f"{bundle_dir.name}: hash mismatch (corrupt or altered bundle): "
                          f"{', '.join(bad)}")


def unpack(bundle: Path, into: Path) -> Path:
    """Extracts the bundle tarball (safely: no paths outside ``into``); its top directory."""
    try:
        with tarfile.open(bundle) as tf:
            tf.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise DeployError(f"{bundle}: not a readable bundle tarball ({e})") from e
    tops = [p for p in into.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise DeployError(f"{bundle}: expected one top directory, found {len(tops)}")
    return tops[0]


@dataclass
class Runner:
    """Runs shell commands on the target: here (``ssh`` empty) or through ssh."""

    ssh: list[str] = field(default_factory=list)     # e.g. ["ssh", "-p", "22", "root@hub"]
    scp: list[str] = field(default_factory=list)

    @property
    def remote(self) -> bool:
        return bool(self.ssh)

    def run(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self.ssh, script] if self.ssh else ["sh", "-c", script]
        log.debug("target$ %s", script)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if check and r.returncode != 0:
            raise DeployError((r.stderr or r.stdout).strip().splitlines()[-1]
                              if (r.stderr or r.stdout).strip() else f"{script}: failed")
        return r

    def put(self, local_dir: Path) -> str:
        """Copies the unpacked bundle to the target; its path there."""
        if not self.ssh:
            return str(local_dir)
        where = self.run("mktemp -d /tmp/implant-hub-deploy.XXXXXX").stdout.strip()
        with subprocess.Popen(["tar", "-C", str(local_dir.parent), "-cf", "-", local_dir.name],
                              stdout=subprocess.PIPE) as tar:
            r = subprocess.run([*self.ssh, f"tar -C {shlex.quote(where)} -xf -"],
                               stdin=tar.stdout, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0 or tar.returncode != 0:
            raise DeployError(f"copy to the target failed: {r.stderr.strip()}")
        return f"{where}/{local_dir.name}"


def parse_target(to: str, identity: str | None, options: list[str]) -> tuple[Runner, str]:
    """(runner, root on the target) for ``DIR`` or ``ssh://user@host[:port][/root]``."""
    if not to.startswith("ssh://"):
        return Runner(), str(Path(to).resolve())
    u = urlparse(to)
    if not u.hostname:
        raise DeployError(f"--to {to!r}: no host")
    ssh = ["ssh", "-o", "BatchMode=yes"]
    for o in options:
        ssh += ["-o", o]
    if identity:
        ssh += ["-i", identity]
    if u.port:
        ssh += ["-p", str(u.port)]
    dest = f"{u.username}@{u.hostname}" if u.username else u.hostname
    return Runner(ssh=[*ssh, dest]), (u.path or "/")


def deploy(bundle: Path, to: str, *, python: str = "python3", identity: str | None = None,
           ssh_options: list[str] | None = None, restart: bool = True,
           selftest: bool = True) -> str:
    """Installs ``bundle`` on the target; returns the release now current. Raises
    DeployError (after rolling back, when the new release was already switched in)."""
    runner, root = parse_target(to, identity, ssh_options or [])
    with tempfile.TemporaryDirectory(prefix="hubctl-deploy-") as tmp:
        local = unpack(bundle, Path(tmp))
        verify_bundle(local)
        t0 = time.monotonic()
        where = runner.put(local)
        q = shlex.quote
        inst = f"sh {q(where)}/install.sh --root {q(root)} --python {q(python)}"
        try:
            out = runner.run(inst).stdout.strip()
            log.info("%s (%.1f s)", out.splitlines()[-1] if out else "installed",
                     time.monotonic() - t0)
            systemd = restart and runner.remote and root == "/" and runner.run(
                "test -d /run/systemd/system", check=False).returncode == 0
            if systemd:
                runner.run("systemctl daemon-reload && systemctl restart implant-hub")
            if selftest:
                _check(runner, inst, systemd)
        finally:
            if runner.remote:
                runner.run(f"rm -rf {q(str(Path(where).parent))}", check=False)
        current = runner.run(f"readlink {q(root.rstrip('/'))}/opt/implant-hub/current")
        return current.stdout.strip().removeprefix("releases/")


def _check(runner: Runner, inst: str, systemd: bool) -> None:
    """The new release's self-test (and service state); on failure roll back and raise."""
    r = runner.run(f"{inst} --selftest", check=False)
    problem = "" if r.returncode == 0 else (r.stderr.strip().splitlines() or ["failed"])[-1]
    if not problem and systemd:
        time.sleep(3.0)
        if runner.run("systemctl is-active --quiet implant-hub", check=False).returncode:
            problem = "implant-hub.service did not stay active"
    if not problem:
        log.info("self-test passed: %s", (r.stderr.strip().splitlines() or [""])[-1])
        return
    rb = runner.run(f"{inst} --rollback", check=False)
    if systemd:
        runner.run("systemctl restart implant-hub", check=False)
    raise DeployError(f"new release failed its start-up self-test ({problem}); "
                      f"{(rb.stdout or rb.stderr).strip() or 'rollback failed'}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path, help="dist/implant-hub-<version>-<arch>.tar.gz")
    p.add_argument("--to", required=True,
                   help="target root directory, or ssh://user@host[:port][/root]")
    p.add_argument("--python", default="python3",
                   help="python that runs the bundle's pip (and the self-test when no chroot "
                        "is possible) on the target (default %(default)s)")
    p.add_argument("--identity", help="ssh private key")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                   help="ssh -o option, repeatable (e.g. StrictHostKeyChecking=accept-new)")
    p.add_argument("--no-restart", action="store_true", help="do not restart the service")
    p.add_argument("--no-selftest", action="store_true", help="skip the self-test")


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        release = deploy(args.bundle, args.to, python=args.python, identity=args.identity,
                         ssh_options=args.ssh_option, restart=not args.no_restart,
                         selftest=not args.no_selftest)
    except DeployError as e:
        print(f"hubctl deploy: error: {e}")
        return 1
    print(f"hubctl deploy: implant-hub {release} is current on {args.to} "
          f"({time.monotonic() - t0:.1f} s)")
    return 0
