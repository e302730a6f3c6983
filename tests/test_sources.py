"""Recording readers: WAV, raw + JSON sidecar, SpikeInterface folders, and bad input."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from hub.sources import RecordingError, open_recording
from hub.sources.raw import write_raw
from tests.conftest import shared_data


def write_wav(path: Path, x: np.ndarray, rate: int = 19531, channels: int = 1,
              width: int = 2) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(x.tobytes())


def test_wav_roundtrip_and_stack(tmp_path: Path) -> None:
    a = np.arange(1000, dtype=np.int16)
    write_wav(tmp_path / "a.wav", a)
    write_wav(tmp_path / "b.wav", -a[:900])
    rec = open_recording(tmp_path)
    assert (rec.num_channels, rec.num_samples, rec.sampling_frequency) == (2, 900, 19531.0)
    assert np.array_equal(rec.read(0, 900)[:, 1], -a[:900])


def test_wav_not_mono_int16(tmp_path: Path) -> None:
    write_wav(tmp_path / "st.wav", np.zeros(200, np.int16), channels=2)
    with pytest.raises(RecordingError, match="mono 16-bit"):
        open_recording(tmp_path / "st.wav")
    write_wav(tmp_path / "u8.wav", np.zeros(200, np.uint8), width=1)
    with pytest.raises(RecordingError, match="mono 16-bit"):
        open_recording(tmp_path / "u8.wav")


def test_wav_truncated_or_garbage(tmp_path: Path) -> None:
    write_wav(tmp_path / "t.wav", np.arange(1000, dtype=np.int16))
    data = (tmp_path / "t.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(data[:1000])
    with pytest.raises(RecordingError, match="truncated"):
        open_recording(tmp_path / "t.wav")
    (tmp_path / "g.wav").write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(RecordingError):
        open_recording(tmp_path / "g.wav")
    # a chunk whose size runs past the file's end (found by tests/fuzz/fuzz_sources.py): the
    # stdlib reader raises a bare RuntimeError on the seek
    (tmp_path / "c.wav").write_bytes(b"RIFF\x02\x00\x0d\x00WAVE\x00\x00\xffFFIF\xe5,")
    with pytest.raises(RecordingError, match="not a readable WAV"):
        open_recording(tmp_path / "c.wav")


def test_raw_sidecar(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.int16).reshape(10, 4)
    write_raw(tmp_path / "r.bin", x, 30000.0, 0.195, [[0, i * 20] for i in range(4)])
    rec = open_recording(tmp_path / "r.bin")
    assert np.array_equal(rec.read(0, 10), x)
    assert rec.channel_positions_um is not None and rec.channel_positions_um[3, 1] == 60


@pytest.mark.parametrize("change,key", [
    ({"num_channels": 3}, "num_channels"),     # 80 bytes is not whole 3-channel frames
    ({"num_samples": 11}, "num_samples"),
    ({"sampling_frequency": -1}, "sampling_frequency"),
    ({"gain_to_uV": [1, 2]}, "gain_to_uV"),
    ({"dtype": "float32"}, "dtype"),
    ({"channel_positions_um": [[0, 0]]}, "channel_positions_um"),
])
def test_raw_sidecar_contradictions(tmp_path: Path, change: dict[str, object], key: str) -> None:
    x = np.zeros((10, 4), np.int16)
    write_raw(tmp_path / "r.bin", x, 30000.0, 0.195)
    meta = json.loads((tmp_path / "r.json").read_text())
    meta.update(change)
    (tmp_path / "r.json").write_text(json.dumps(meta))
    with pytest.raises(RecordingError, match=key):
        open_recording(tmp_path / "r.bin")


def test_raw_missing_key_and_truncated(tmp_path: Path) -> None:
    write_raw(tmp_path / "r.bin", np.zeros((10, 4), np.int16), 30000.0, 0.195)
    meta = json.loads((tmp_path / "r.json").read_text())
    del meta["gain_to_uV"]
    (tmp_path / "r.json").write_text(json.dumps(meta))
    with pytest.raises(RecordingError, match="gain_to_uV"):
        open_recording(tmp_path / "r.bin")
    write_raw(tmp_path / "s.bin", np.zeros((10, 4), np.int16), 30000.0, 0.195)
    (tmp_path / "s.bin").write_bytes((tmp_path / "s.bin").read_bytes()[:-3])
    with pytest.raises(RecordingError, match="whole number"):
        open_recording(tmp_path / "s.bin")


def test_spikeinterface_folder(gt_tiny: tuple[Path, Path]) -> None:
    import spikeinterface.core as si

    rec = open_recording(gt_tiny[0])
    ref = si.load(gt_tiny[0])
    assert rec.num_channels == ref.get_num_channels()
    assert rec.num_samples == ref.get_num_samples()
    assert rec.channel_positions_um is not None
    np.testing.assert_allclose(rec.channel_positions_um, ref.get_channel_locations())
    x = rec.read(1000, 1100).astype(float) * rec.gain_to_uV
    np.testing.assert_allclose(x, ref.get_traces(start_frame=1000, end_frame=1100), atol=0.1)


def test_unknown_and_missing(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such"):
        open_recording(tmp_path / "nope.wav")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(RecordingError, match="unknown recording type"):
        open_recording(tmp_path / "x.txt")


def test_neuralink_file_reads() -> None:
    folder = shared_data("neuralink_wav")
    first = sorted(folder.glob("*.wav"))[0]
    rec = open_recording(first)
    assert rec.num_channels == 1 and rec.sampling_frequency == 19531.0
    assert rec.num_samples > 90000
