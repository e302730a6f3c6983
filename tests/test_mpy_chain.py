"""The MicroPython implant in the chain (what `make hil-mpy` runs, short) and its deployment
with mpremote to the unix port posing as a board over socket:// (`make flash-emulator`)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hil.mpy_hil import main as mpy_hil_main
from hub.link import FrameParser

pytestmark = pytest.mark.slow              # process chains: not in make test-fast

REPO = Path(__file__).resolve().parent.parent


def test_make_hil_mpy_short(tmp_path: Path) -> None:
    assert mpy_hil_main(["--only", "summary", "--seconds", "6", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "mpy_summary.json").read_text())
    assert m["implant_runtime"] == "micropython" and m["unaccounted_total"] == 0
    assert m["final_report_seen"] and m["classes"]["events"]["delivered"] > 0
    assert m["firmware"]["frames"] == 6000 and m["firmware"]["mpy_abi"] == "6.3"
    ts = m["time_sync_check"]
    assert ts is not None and ts["fit"] is not None and ts["spikes_stamped"] > 0


@pytest.fixture()
def board(tmp_path: Path):  # type: ignore[no-untyped-def]
    ready = tmp_path / "board.json"
    p = subprocess.Popen([sys.executable, "-m", "hil.mpy_board", str(tmp_path / "fs"),
                          "--ready-file", str(ready)], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert p.poll() is None and time.monotonic() < deadline, "board did not start"
        time.sleep(0.05)
    yield json.loads(ready.read_text())["port"], tmp_path / "fs"
    p.terminate()                  # the bridge powers its board process off
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def test_flash_emulator_to_the_unix_port_over_socket(board: tuple[str, Path],
                                                     tmp_path: Path) -> None:
    port, fs = board
    srv = socket.create_server(("127.0.0.1", 0))      # the hub's implant link
    srv.settimeout(60)
    frames: list[int] = []

    def hub() -> None:
        conn, _ = srv.accept()
        parser = FrameParser()
        with conn:
            while data := conn.recv(1 << 16):
                frames.extend(f.counter for f in parser.feed(data))
                if len(frames) > 200:
                    return

    t = threading.Thread(target=hub, daemon=True)
    t.start()
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"link": f"tcp:127.0.0.1:{srv.getsockname()[1]}",
                               "channels": 8, "log": False}))
    r = subprocess.run([sys.executable, "-m", "hil.flash", "--port", port, "--config", str(cfg)],
                       cwd=REPO, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["board"]["implementation"] == "micropython" and out["reset"]
    assert {p.name for p in fs.iterdir()} >= {"fw_main.mpy", "main.py", "implant_cfg.json"}
    t.join(60)                   # after the soft reset the board boots into the firmware
    assert frames[:200] == list(range(200))
    srv.close()


def test_flash_refuses_an_incompatible_board() -> None:
    from hil.flash import FlashError, check_compatible

    info = {"implementation": "micropython", "version": [1, 19, 1], "mpy_major": 6}
    with pytest.raises(FlashError, match="needs"):
        check_compatible(info, "6.3")
    with pytest.raises(FlashError, match="v5"):
        check_compatible({**info, "version": [1, 24, 0], "mpy_major": 5}, "6.3")
    check_compatible({**info, "version": [1, 28, 0]}, "6.3")
