"""Record to NWB over the virtual BLE radio (hubctl record --nwb), then check the file as a
lab would: nwbinspector, pynwb, SpikeInterface; every spike as the hub sent it; raw bit-exact
against what the implant replayed; every gap in the ledger a gap in the file. The report
renders in headless Chromium with every figure loaded. A SIGKILLed recorder's log still
decodes. The 60 s session runs with ``make hil-nwb`` (NWB_LONG=1); a short one in make test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hil.chain import ChainSpec, run_chain
from host_tools.packetlog import Kind, PacketLogReader
from tests.nwb_checks import check_session, inspector_problems

pytestmark = pytest.mark.slow              # process chains: not in make test-fast

REPO = Path(__file__).resolve().parent.parent
SUBJECT = ["--subject-id", "sim-1", "--species", "Macaca mulatta",
           "--session-description", "simulated implant replaying a ground-truth recording"]


def record(out: Path, recording: Path, seconds: float, **kw: object) -> Path:
    nwb = out / "session.nwb"
    spec = ChainSpec(recording=str(recording), duration_s=seconds, uplink="ble",
                     link_model={"phy": "2M", "interval_ms": 7.5}, nwb=nwb,
                     settings=["sort=true"], record_args=SUBJECT, label="nwb", **kw)  # type: ignore[arg-type]
    run_chain(spec, out)
    return nwb


@pytest.fixture(scope="module")
def short_session(tmp_path_factory: pytest.TempPathFactory,
                  gt_tiny: tuple[Path, Path]) -> tuple[Path, Path, Path]:
    out = tmp_path_factory.mktemp("nwb_short")
    nwb = record(out, gt_tiny[0], 8.0, drop=0.002)       # implant-link gaps
    return nwb, nwb.with_name(nwb.name + ".packets.log"), gt_tiny[0]


def test_short_ble_session_to_nwb(short_session: tuple[Path, Path, Path]) -> None:
    nwb, log, rec = short_session
    figures = check_session(nwb, log, str(rec))
    print(json.dumps(figures))
    assert figures["spikes"] > 0 and figures["raw_channel_samples_checked"] > 0


def test_decode_reproduces_the_recorded_file(short_session: tuple[Path, Path, Path],
                                             tmp_path: Path) -> None:
    _nwb, log, rec = short_session
    again = tmp_path / "again.nwb"
    p = subprocess.run([sys.executable, "-m", "host_tools.cli", "decode", str(log), str(again),
                        *SUBJECT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout)
    assert report["units"] > 0 and report["log"]["clean_end"]
    check_session(again, log, str(rec))


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (make sysdeps)")
    return exe


def test_report_renders_in_headless_chromium(short_session: tuple[Path, Path, Path],
                                             tmp_path: Path) -> None:
    nwb, _, _ = short_session
    out = tmp_path / "report"
    p = subprocess.run([sys.executable, "-m", "host_tools.cli", "view", str(nwb), "--out",
                        str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    figures = json.loads((out / "figures.json").read_text())
    assert len(figures) >= 7
    # the page plus a probe that records, after load, which images decoded
    probe = ("<script>window.addEventListener('load', () => { const ok = [...document.images]"
             ".filter(i => i.complete && i.naturalWidth > 0).map(i => i.getAttribute('src'));"
             " document.body.setAttribute('data-loaded', ok.join(',')); });</script>")
    page = (out / "index.html").read_text().replace("</body>", probe + "</body>")
    (out / "probe.html").write_text(page)
    dom = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
         "--dump-dom", (out / "probe.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    m = re.search(r'data-loaded="([^"]*)"', dom.stdout)
    assert m is not None, dom.stderr[-2000:]
    assert sorted(m.group(1).split(",")) == sorted(figures)


def test_sigkilled_recorder_log_decodes(tmp_path: Path, gt_tiny: tuple[Path, Path]) -> None:
    out = tmp_path / "kill"
    spec = ChainSpec(recording=str(gt_tiny[0]), duration_s=8.0, uplink="ble",
                     link_model={"phy": "2M", "interval_ms": 7.5}, packets_out=True,
                     kill_receiver_at=5.0, label="kill")
    res = run_chain(spec, out)
    log = out / "packets.bin"
    reader = PacketLogReader(log)
    chunks = [r for r in reader if r.kind == Kind.CHUNK]
    assert chunks and not reader.stats.clean_end
    print(f"log ends {(res['receiver_killed_ns'] - chunks[-1].t_ns) / 1e9:.3f} s before the "
          f"SIGKILL ({reader.stats.truncated_tail_bytes} bytes of a cut record)")
    nwb = tmp_path / "killed.nwb"
    p = subprocess.run([sys.executable, "-m", "host_tools.cli", "decode", str(log), str(nwb),
                        *SUBJECT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not inspector_problems(nwb)
    check_session(nwb, log, str(gt_tiny[0]))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NWB_LONG"), reason="the 60 s session: make hil-nwb")
def test_sixty_second_ble_session(tmp_path: Path) -> None:
    from host_tools.groundtruth import materialise

    rec, _ = materialise("easy", REPO / "out" / "gt")
    nwb = tmp_path / "session.nwb"      # implant gaps, a 3 s radio outage, a hub SIGKILL
    spec = ChainSpec(recording=str(rec), duration_s=60.0, uplink="ble",
                     link_model={"phy": "2M", "interval_ms": 7.5, "outages": [[20.0, 3.0]]},
                     nwb=nwb, settings=["sort=true"], record_args=SUBJECT, label="nwb60",
                     drop=0.001, kill_hub_at=40.0)
    run_chain(spec, tmp_path)
    figures = check_session(nwb, nwb.with_name(nwb.name + ".packets.log"), str(rec))
    print(json.dumps(figures))


def test_ctrl_c_closes_the_recording_into_nwb(tmp_path: Path,
                                              gt_tiny: tuple[Path, Path]) -> None:
    """hubctl record --tcp … --nwb interrupted (SIGINT, as Ctrl-C) mid-stream: the log closes
    cleanly and is converted (the TCP twin of the BLE session above)."""
    import signal
    import time

    from hil.chain import PY, Chain

    spec = ChainSpec(recording=str(gt_tiny[0]), duration_s=20.0, uplink="tcp", rate_bps=1.3e6)
    nwb = tmp_path / "ctrlc.nwb"
    with Chain(spec, tmp_path) as ch:
        ch.start_hub()
        rx = subprocess.Popen([PY, "-m", "host_tools.cli", "record", "--tcp",
                               ch.ports["uplink"].removeprefix("tcp:"), "--nwb", str(nwb),
                               *SUBJECT], cwd=REPO, env=ch.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        ch._start([PY, "-m", "hil.implant", str(gt_tiny[0]), "--connect", ch.ports["implant"],
                   "--duration", "20"], "implant.log")
        log = nwb.with_name(nwb.name + ".packets.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < 200_000):
            time.sleep(0.2)
        rx.send_signal(signal.SIGINT)
        _out, err = rx.communicate(timeout=300)
    assert rx.returncode == 0, err[-2000:]
    reader = PacketLogReader(log)
    assert sum(r.kind == Kind.CHUNK for r in reader) > 0 and reader.stats.clean_end
    assert not inspector_problems(nwb)
    check_session(nwb, log, str(gt_tiny[0]))


def test_cursor_session_appends_on_the_recordings_clock(short_session: tuple[Path, Path, Path],
                                                        tmp_path: Path) -> None:
    """``hubctl cursor --nwb`` onto this recording (host_tools/decoding/session_nwb.py): bins
    ending on the recording's spike samples land on those spikes' times."""
    import numpy as np
    from pynwb import NWBHDF5IO

    from host_tools.decoding.session_nwb import write_session_nwb
    from tests.test_cursor_nwb import session_at

    nwb = tmp_path / "rec.nwb"
    shutil.copy(short_session[0], nwb)
    with NWBHDF5IO(str(nwb), "r") as io:
        f = io.read()
        sid = f.processing["hub"]["time_sync_fits"]["hub_session_id"][0]
        u = f.units.to_dataframe()
    row = u.loc[u["spike_samples"].map(len).idxmax()]
    samples, keep = np.unique(np.asarray(row["spike_samples"], np.int64), return_index=True)
    npz = session_at(tmp_path / "s.npz", int(sid, 16), samples)
    write_session_nwb(npz, nwb)
    with NWBHDF5IO(str(nwb), "r") as io:
        t = io.read().processing["bci"]["features"].timestamps[:]
    np.testing.assert_allclose(t, np.asarray(row["spike_times"])[keep], atol=1e-6)
    assert inspector_problems(nwb) == []
