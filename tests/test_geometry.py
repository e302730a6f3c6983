"""Probe geometry: files the hub is installed with, and the daemon using them like replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hil.chain import ChainSpec, probe_file, run_chain
from hub.dsp.geometry import ProbeError, load_probe
from hub.dsp.replay import replay
from hub.sources import open_recording


def test_load_probe_formats(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"channel_positions_um": [[0, 0], [0, 20], [16, 40]]}))
    assert load_probe(plain).tolist() == [[0, 0], [0, 20], [16, 40]]
    group = tmp_path / "group.json"
    group.write_text(json.dumps({"probes": [{"contact_positions": [[5, 1], [7, 2]],
                                             "device_channel_indices": [1, 0]}]}))
    assert load_probe(group).tolist() == [[7, 2], [5, 1]]


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"channel_positions_um": [[0, 0, 1]]}',
    '{"channel_positions_um": [[0, "x"]]}', '{"probes": [{"contact_positions": [[0, 0]], '
    '"device_channel_indices": [2]}]}', '{"channel_positions_um": [[0, NaN]]}',
])
def test_bad_probe_files(tmp_path: Path, text: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(ProbeError):
        load_probe(f)


@pytest.mark.slow
def test_daemon_with_probe_detects_like_replay(gt_tiny: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    """Implant → hub daemon (installed with the probe) → host: the same spikes as replaying
    the recording (spatial de-duplication needs the geometry)."""
    rec_dir = gt_tiny[0]
    pos = open_recording(rec_dir).channel_positions_um
    probe = probe_file(str(rec_dir), tmp_path)
    assert probe is not None and np.array_equal(load_probe(probe), pos)
    seconds = 6.0
    # half real time: the hub keeps up on a loaded machine (its block queue spans 2 s)
    s = run_chain(ChainSpec(str(rec_dir), duration_s=seconds, rate_bps=1.3e6, speed=0.5),
                  tmp_path)
    events = replay(open_recording(rec_dir), progress=None).events
    expected = int((events["sample"] < seconds * 30000).sum())
    got = s["classes"]["events"]["delivered"]
    assert s["classes"]["events"]["unaccounted"] == 0
    overload = [g for g in s["gaps"] if g["reason"] == "SHED_QUEUE_FULL"]
    if overload:      # counted and reported (asserted above); the comparison needs every block
        pytest.skip(f"the hub fell behind real time ({len(overload)} queue-full gaps): the "
                    "machine is too busy for this real-time comparison")
    assert abs(got - expected) <= max(3, 0.02 * expected), (got, expected)
