"""A cursor session into NWB (``hubctl cursor --nwb``): a new file, and appended to a recording
of the same hub session on the recording's clock; pynwb reads back the session's values,
nwbinspector finds nothing critical; wrong inputs are clear errors that leave the file alone."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from pynwb import NWBHDF5IO, NWBFile, ProcessingModule

from host_tools.decoding.features import Bin
from host_tools.decoding.registry import make_decoder
from host_tools.decoding.session import CursorSession
from host_tools.decoding.session_nwb import SessionNwbError, main, write_session_nwb
from host_tools.decoding.task import CenterOut, GridTask, ideal_velocity
from host_tools.nwb_tables import table
from tests.nwb_checks import inspector_problems

C, BS, FS, ORIGIN, SID = 6, 20, 1000.0, 37, 0x2A


def simulated_session(path: Path) -> Path:
    """Calibration, then a grid block under a ridge decoder, from a user whose channels'
    counts follow the velocity toward the target; saved as ``hubctl cursor`` saves it."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 1, (2, C))
    s = CursorSession("tc", seed=1)
    s.bin_s, s.loop.bin_s, s.assembler.fs, s.hub_session = BS / FS, BS / FS, FS, SID
    i = 0

    def run(bins: int) -> None:
        nonlocal i
        for _ in range(bins):
            v = ideal_velocity(s.loop.cursor.pos, s.task.target, s.task.radius)
            x = rng.poisson(np.exp(1.0 + 0.8 * (v @ w))).astype(np.float64)
            t = time.monotonic_ns()
            s.loop.on_bin(Bin(i, ORIGIN + (i + 1) * BS, x, t if i % 7 else None))
            i += 1
        i += 5                                           # a pause between blocks

    s.start("calibration", CenterOut(1), None)
    run(1500)
    calib = s.stop()
    assert calib is not None
    X, Y = calib.arrays()["x"], calib.arrays()["label"]
    s.start("grid/1", GridTask(2), make_decoder("ridge").fit(X, Y))
    run(1500)
    s.stop()
    return s.save(path)


def session_at(path: Path, hub_session: int, end_samples: np.ndarray) -> Path:
    """A calibration block whose bins end on ``end_samples`` (hub session ``hub_session``)."""
    s = CursorSession("tc")
    s.bin_s, s.loop.bin_s, s.assembler.fs, s.hub_session = BS / FS, BS / FS, FS, hub_session
    s.start("calibration", CenterOut(0), None)
    for i, e in enumerate(end_samples):
        s.loop.on_bin(Bin(i, int(e), np.ones(C), None))
    s.stop()
    return s.save(path)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_session(tmp_path_factory.mktemp("cursor_nwb") / "s.npz")


def check_bci(nwb: Path, npz: Path, seconds: object) -> None:
    """Every series equals the session file's arrays; times through ``seconds``."""
    with np.load(npz, allow_pickle=False) as z, NWBHDF5IO(str(nwb), "r") as io:
        meta = json.loads(str(z["meta"]))
        bci = io.read().processing["bci"]
        n = len(meta["blocks"])

        def cat(k: str) -> np.ndarray:
            return np.concatenate([z[f"b{i}_{k}"] for i in range(n)])

        t = seconds(cat("end_sample"))                   # type: ignore[operator]
        for name, key in (("features", "x"), ("decoded_velocity", "velocity"),
                          ("intention", "label"), ("cursor", "cursor"), ("target", "target")):
            np.testing.assert_array_equal(bci[name].data[:], cat(key))
            np.testing.assert_allclose(bci[name].timestamps[:], t, atol=1e-9)
        np.testing.assert_array_equal(bci["latency"].data[:], cat("latency_ms"))
        assert len(bci["latency"].data) < len(t)          # bins without a sample time
        blocks = bci["blocks"].to_dataframe()
        assert blocks["block_name"].tolist() == ["calibration", "grid/1"]
        assert blocks["mode"].tolist() == ["calibration", "closed"]
        assert blocks["decoder"].tolist() == ["", "ridge"]
        assert blocks["bits_per_s"].iloc[1] == meta["blocks"][1]["bits_per_s"]
        trials = bci["trials"].to_dataframe()
        events = sum(len(b["events"]) for b in meta["blocks"])
        assert len(trials) == events > 10
        assert set(trials["outcome"]) <= {"success", "timeout", "correct", "incorrect"}
        assert np.all(trials["stop_time"] > trials["start_time"])
        assert (trials["outcome"] == "correct").sum() == meta["blocks"][1]["correct"]


def test_a_new_nwb_file_holds_the_session(session: Path, tmp_path: Path) -> None:
    nwb = tmp_path / "cursor.nwb"
    assert main([str(session), str(nwb), "--subject-id", "sim-1", "--species",
                 "Macaca mulatta"]) == 0
    check_bci(nwb, session, lambda s: (s - (ORIGIN + 0 * BS)) / FS)
    assert inspector_problems(nwb) == []


def recording(path: Path, hub_id: int, slope: float, icept: float) -> None:
    """A recording's ``processing/hub`` time-sync tables (the layout of
    ``host_tools/nwb_hubtables.py``): points on the line ``icept + slope·sample`` plus delays."""
    f = NWBFile(session_description="recording", identifier=str(uuid.uuid4()),
                session_start_time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    hub = ProcessingModule(name="hub", description="the hub")
    f.add_processing_module(hub)
    hub.add(table("time_sync_fits", "fits", {
        "hub_session": ("index", np.array([0, 1])),
        "hub_session_id": ("id", ["00000001", f"{hub_id:08x}"])}))
    smp = np.arange(0, 80_000, 500, dtype=np.int64)
    delay = np.random.default_rng(0).exponential(2.0, len(smp))           # ms
    hub.add(table("time_sync_points", "points", {
        "hub_session": ("index", np.r_[np.zeros(5, np.int64), np.ones(len(smp), np.int64)]),
        "sample_index": ("sample", np.r_[np.arange(5), smp]),
        "time": ("s", np.r_[np.zeros(5), icept + slope * smp + delay / 1e3]),
        "residual_ms": ("ms", np.r_[np.zeros(5), delay])}))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)


def test_appended_to_the_recording_on_its_clock(session: Path, tmp_path: Path) -> None:
    nwb = tmp_path / "rec.nwb"
    slope, icept = (1 + 40e-6) / FS, 3.25                 # a hub clock 40 ppm fast
    recording(nwb, SID, slope, icept)
    out = write_session_nwb(session, nwb)
    assert out["appended"] and out["bins"] == 3000
    check_bci(nwb, session, lambda s: icept + slope * s)
    with NWBHDF5IO(str(nwb), "r") as io:                  # the recording is still there
        assert "time_sync_points" in io.read().processing["hub"].data_interfaces
    with pytest.raises(SessionNwbError, match="already holds processing/bci"):
        write_session_nwb(session, nwb)


def test_another_sessions_recording_is_refused_and_left_alone(session: Path,
                                                              tmp_path: Path) -> None:
    nwb = tmp_path / "other.nwb"
    recording(nwb, SID + 1, 1 / FS, 0.0)
    before = nwb.read_bytes()
    with pytest.raises(SessionNwbError, match="no time sync for hub session 0000002a"):
        write_session_nwb(session, nwb)
    assert nwb.read_bytes() == before
    bad = tmp_path / "bad.npz"
    np.savez(bad, meta=np.array(json.dumps({"format": "something else", "blocks": []})))
    assert main([str(bad), str(tmp_path / "x.nwb")]) == 1
    cut = tmp_path / "cut.npz"                            # a truncated session file
    cut.write_bytes(session.read_bytes()[: session.stat().st_size // 2])
    assert main([str(cut), str(tmp_path / "x.nwb")]) == 1
    assert not (tmp_path / "x.nwb").exists()
