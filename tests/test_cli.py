"""`hub replay` — the contract benchmarks and evaluations call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def test_hub_replay_writes_summary_and_events(gt_tiny: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    out, ev = tmp_path / "s.json", tmp_path / "e.npz"
    r = subprocess.run([sys.executable, "-m", "hub", "replay", str(gt_tiny[0]), "--json",
                        str(out), "--events-out", str(ev), "--quiet"],
                       capture_output=True, text=True, check=True)
    assert "M samples/s" in r.stdout
    s = json.loads(out.read_text())
    for key in ("samples_processed", "wall_seconds", "msamples_per_s", "spikes_per_channel",
                "noise_uV_per_channel"):
        assert key in s
    assert len(s["spikes_per_channel"]) == s["channels"] == 16
    e = np.load(ev)
    assert e["sample_index"].size == s["spikes_total"] > 0
    assert set(e.files) >= {"sample_index", "channel", "amplitude", "unit"}


def test_hub_replay_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav at all")
    r = subprocess.run([sys.executable, "-m", "hub", "replay", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "error" in r.stderr and "Traceback" not in r.stderr
