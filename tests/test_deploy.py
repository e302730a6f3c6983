"""Bundle install, refusal of a corrupt bundle, rollback on a failed self-test, and the ssh
path (issue 12). The bundles here hold the hub wheel only (``--no-deps``: no registry needed);
the venv's python stands in for the board's python3, which provides the dependencies."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from host_tools.deploy import DeployError, deploy, unpack, verify_bundle

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "build" / "native" / "libnk.so"

pytestmark = [pytest.mark.skipif(not LIB.exists() or shutil.which("sha256sum") is None,
                                 reason="needs make kernels and coreutils"),
              pytest.mark.slow]          # builds bundles, runs sshd: not in make test-fast


def _bundle_module() -> ModuleType:
    name = "implant_hub_packaging_bundle"
    spec = importlib.util.spec_from_file_location(name, REPO / "packaging" / "bundle.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod           # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good bundle, and one whose kernels fail their self-test on any machine (the hashes
    it must reproduce are wrong: as a miscompiled library would look on the board)."""
    b = _bundle_module()
    d = tmp_path_factory.mktemp("bundles")
    good = b.build("x86_64", LIB, d / "good", deps=False, work=d / "w1")
    bogus = d / "bogus_ref.json"
    bogus.write_text(json.dumps({"bandpass": "0" * 16}))
    bad = b.build("x86_64", LIB, d / "bad", deps=False, work=d / "w2", reference=bogus)
    return {"good": good, "bad": bad}


def _current(root: Path) -> str:
    return os.readlink(root / "opt" / "implant-hub" / "current")


def test_install_into_a_target_root(bundles: dict[str, Path], tmp_path: Path) -> None:
    release = deploy(bundles["good"], str(tmp_path), python=sys.executable)
    assert _current(tmp_path) == f"releases/{release}"
    site = tmp_path / "opt/implant-hub/current/site"
    assert (site / "hub/kernels/_native/libnk_x86_64.so").exists()
    assert (site / "hub/kernels/_nk_cffi.py").exists()
    assert not (site / "host_tools").exists() and not (site / "hil").exists()
    assert (tmp_path / "etc/systemd/system/implant-hub.service").exists()
    assert "HUB_ARGS" in (tmp_path / "etc/implant-hub/hub.env").read_text()


def test_corrupt_bundle_is_refused_and_nothing_installed(bundles: dict[str, Path],
                                                         tmp_path: Path) -> None:
    work = tmp_path / "x"
    work.mkdir()
    top = unpack(bundles["good"], work)
    wheel = next((top / "wheels").glob("implant_hub-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0x40
    wheel.write_bytes(bytes(data))
    with pytest.raises(DeployError, match=r"hash mismatch.*implant_hub-"):
        verify_bundle(top)
    corrupt = tmp_path / "corrupt.tar.gz"
    with tarfile.open(corrupt, "w:gz") as tf:
        tf.add(top, arcname=top.name)
    root = tmp_path / "root"
    root.mkdir()
    r = subprocess.run([sys.executable, "-m", "host_tools.cli", "deploy", str(corrupt), "--to",
                        str(root), "--python", sys.executable], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 1 and "hash mismatch" in r.stdout, r.stdout + r.stderr
    assert list(root.iterdir()) == []                     # nothing installed
    # install.sh on the board checks too, before touching the root
    r2 = subprocess.run(["sh", str(top / "install.sh"), "--root", str(root), "--python",
                         sys.executable], capture_output=True, text=True, timeout=600)
    assert r2.returncode == 3 and "corrupt" in r2.stderr and list(root.iterdir()) == []


def test_failing_selftest_rolls_back_to_the_previous_release(bundles: dict[str, Path],
                                                             tmp_path: Path) -> None:
    good = deploy(bundles["good"], str(tmp_path), python=sys.executable)
    with pytest.raises(DeployError, match=r"self-test.*rolled back"):
        deploy(bundles["bad"], str(tmp_path), python=sys.executable)
    assert _current(tmp_path) == f"releases/{good}"
    releases = sorted(p.name for p in (tmp_path / "opt/implant-hub/releases").iterdir())
    assert releases == [good]                             # the failed release is gone
    r = subprocess.run(["sh", "-c", f"cd / && PYTHONPATH={tmp_path}/opt/implant-hub/current/"
                        f"site {sys.executable} -m hub selftest"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and json.loads(r.stdout)["reference"] is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An sshd on 127.0.0.1 (ephemeral port) that accepts one generated key: the board."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd_bin).exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server not installed (make sysdeps)")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True)
    shutil.copy(d / "client.pub", d / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)   # privilege separation directory
    port = _free_port()
    cfg = d / "sshd_config"
    cfg.write_text(f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host'}\n"
                   f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
                   "PasswordAuthentication no\nPermitRootLogin prohibit-password\n"
                   f"PidFile {d / 'pid'}\n")
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port, d / "client"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_deploy_over_ssh(bundles: dict[str, Path], sshd: tuple[int, Path],
                         tmp_path: Path) -> None:
    port, key = sshd
    root = tmp_path / "board"
    root.mkdir()
    user = os.environ.get("USER") or "root"
    to = f"ssh://{user}@127.0.0.1:{port}{root}"
    opts = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]
    good = deploy(bundles["good"], to, python=sys.executable, identity=str(key),
                  ssh_options=opts)
    assert _current(root) == f"releases/{good}"
    with pytest.raises(DeployError, match="rolled back"):
        deploy(bundles["bad"], to, python=sys.executable, identity=str(key), ssh_options=opts)
    assert _current(root) == f"releases/{good}"
    assert not list(Path("/tmp").glob("implant-hub-deploy.*/implant-hub-*"))   # cleaned up
