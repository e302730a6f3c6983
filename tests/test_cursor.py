"""``hubctl cursor`` headless: the whole command against a stand-in hub on loopback TCP
(feature bins in the hub's wire format), the terminal and figure views, the session file."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from host_tools.cli import main as hubctl
from host_tools.decoding.task import CenterOut, GridTask
from host_tools.decoding.view import FigureView, TerminalView
from hub.wire import Chunker, pb

C, BS, FS = 8, 20, 1000.0


class FakeHub:
    """Streams time sync + feature bins (Poisson counts) to one TCP client, 200 bins/s."""

    def __init__(self) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.srv.settimeout(30)
        conn, _ = self.srv.accept()
        ch = Chunker()
        rng = np.random.default_rng(0)

        def send(env: pb.Envelope) -> None:
            for c in ch.chunks(env.SerializeToString()):
                conn.sendall(len(c).to_bytes(2, "little") + c)

        seq = {pb.STREAM_TELEMETRY: 0, pb.STREAM_FEATURES: 0}
        b = 0
        try:
            while not self.stop.is_set():
                now = time.monotonic_ns()
                if b % 25 == 0:
                    env = pb.Envelope(stream=pb.STREAM_TELEMETRY, session_id=7,
                                      seq=seq[pb.STREAM_TELEMETRY], sample_index=b * BS,
                                      hub_time_ns=now)
                    env.time_sync.sample_index, env.time_sync.hub_time_ns = b * BS, now
                    env.time_sync.sampling_frequency = FS
                    seq[pb.STREAM_TELEMETRY] += 1
                    send(env)
                env = pb.Envelope(stream=pb.STREAM_FEATURES, session_id=7,
                                  seq=seq[pb.STREAM_FEATURES], sample_index=(b + 1) * BS + 3,
                                  hub_time_ns=now)
                fb = env.features
                fb.first_bin, fb.n_bins, fb.n_channels, fb.bin_samples = b, 1, C, BS
                fb.first_sample = b * BS
                fb.counts.extend(rng.poisson(3, C).tolist())
                fb.rms_q4.extend([160] * C)
                fb.samples_seen.append(BS)
                seq[pb.STREAM_FEATURES] += 1
                send(env)
                b += 1
                time.sleep(0.005)
        except OSError:
            pass
        finally:
            conn.close()
            self.srv.close()


@pytest.mark.slow
def test_hubctl_cursor_calibrates_decodes_and_saves_the_session(tmp_path: Path,
                                                                capsys: object) -> None:
    hub = FakeHub()
    session = tmp_path / "s.npz"
    try:
        rc = hubctl(["cursor", "--tcp", f"127.0.0.1:{hub.port}", "--calibrate", "1.5",
                     "--decoder", "ridge", "--blocks", "1", "--block-s", "1.0", "--task",
                     "grid", "--display", "none", "--snapshot", str(tmp_path / "view.png"),
                     "--session", str(session), "--save-decoder", str(tmp_path / "d.npz"),
                     "--nwb", str(tmp_path / "s.nwb"), "--species", "Homo sapiens"])
    finally:
        hub.stop.set()
    assert rc == 0
    with np.load(session, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["format"] == "implant-hub-bci-session" and meta["features"] == "tc"
        assert meta["bin_s"] == BS / FS
        assert [b["name"] for b in meta["blocks"]] == ["calibration", "grid/1"]
        assert [b["mode"] for b in meta["blocks"]] == ["calibration", "closed"]
        n = len(z["b0_bins"])
        assert n >= 50 and z["b0_x"].shape == (n, C) and z["b0_cursor"].shape == (n, 2)
        assert np.all(np.diff(z["b0_bins"]) == 1)            # every bin, in order
        assert len(z["b1_latency_ms"]) == len(z["b1_bins"]) > 0
        assert np.all(np.abs(z["b1_cursor"]) <= 1.0)
    assert (tmp_path / "d.npz").exists() and (tmp_path / "view.png").stat().st_size > 5000
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(tmp_path / "s.nwb"), "r") as io, np.load(session) as z:
        bci = io.read().processing["bci"]                 # details: tests/test_cursor_nwb.py
        np.testing.assert_array_equal(bci["cursor"].data[:],
                                      np.concatenate([z["b0_cursor"], z["b1_cursor"]]))
        assert bci["blocks"].to_dataframe()["block_name"].tolist() == ["calibration", "grid/1"]
    grid = meta["blocks"][1]
    assert grid["task"] == "grid" and "bits_per_s" in grid


def test_terminal_view_draws_cursor_and_target() -> None:
    out = io.StringIO()
    v = TerminalView(cols=21, rows=11, stream=out, interval=0.0, clear=False)
    task = CenterOut(seed=0)
    v.draw(np.zeros(2), task.target, task, "calibration: follow the cursor")
    text = out.getvalue().splitlines()
    assert text[0] == "+" + "-" * 21 + "+" and len(text) == 11 + 3
    assert text[6][11] == "O"                                # the centre (row 5, col 10)
    assert sum(line.count("#") for line in text) >= 1         # the target disc
    assert text[-1].startswith("calibration: follow")   # status, cut to the width
    g = GridTask(seed=0)
    out.truncate(0)
    v.draw(np.array([0.99, 0.99]), g.target, g, "grid")
    assert out.getvalue().splitlines()[1][21] == "O"          # top-right corner


def test_figure_view_snapshot(tmp_path: Path) -> None:
    v = FigureView(interactive=False, interval=0.0)
    g = GridTask(seed=2)
    for k in range(30):
        v.draw(np.array([np.cos(k / 5), np.sin(k / 5)]) * 0.6, g.target, g, "grid/kalman_ss")
    assert v.frames == 0                 # off-screen: drawing only keeps the state (no
    p = v.snapshot(tmp_path / "v.png")   # rendering on the loop that receives the packets)
    v.close()
    assert p.stat().st_size > 5000 and v.frames == 1 and len(v.trail) == min(30, v.trail_len)
