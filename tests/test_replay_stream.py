"""`hub replay` streams: memory bounded independent of the recording's length, events written as
they are final (the same events and unit labels as in memory), and a safe default reference."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hil.implant import synth_recording
from hub.dsp.pipeline import Pipeline, PipelineConfig
from hub.dsp.replay import EventsFile, choose_reference, copy_units, replay
from hub.kernels import EVENT_DTYPE
from hub.sources import open_recording
from hub.sources.raw import write_raw

REPO = Path(__file__).resolve().parent.parent


def hub_replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", "replay", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_streamed_events_and_units_equal_the_whole_recording_at_once() -> None:
    """Sorting on: the labels a streaming replay writes equal those found by matching all
    labelled snippets against all events at the end (what replay did before streaming)."""
    rec = synth_recording("synth:16:30000:8:3")
    cfg = PipelineConfig(sort=True)
    pipe = Pipeline(cfg, rec.num_channels, rec.sampling_frequency)
    evs, lab = [], []
    for _, block in rec.blocks(pipe.block_samples):
        r = pipe.process(block)
        evs.append(r.events.copy())
        lab.append(r.snippet_events.copy())
    want = np.concatenate(evs)
    copy_units(want, np.concatenate(lab))
    got: list[Any] = []
    res = replay(rec, cfg, progress=None, sink=got.append)
    streamed = np.concatenate(got)
    assert res.events.size == 0 and res.summary["spikes_total"] == want.size
    assert (want["unit"] >= 0).sum() > 50
    for f in ("sample", "channel", "unit", "amplitude"):
        assert np.array_equal(streamed[f], want[f]), f
    assert res.summary["unit_labels_unmatched"] == 0
    assert replay(rec, cfg, progress=None).events.tobytes() == streamed.tobytes()


def test_events_file_is_an_npz_like_savez(tmp_path: Path) -> None:
    ev = np.zeros(70_000, EVENT_DTYPE)
    ev["sample"] = np.arange(ev.size) * 3
    ev["channel"] = np.arange(ev.size) % 5
    ev["unit"] = -1
    ev["amplitude"] = np.linspace(-100, -10, ev.size)
    with EventsFile(tmp_path / "e.npz", 30000.0) as f:
        f(ev[:1000])
        f(ev[1000:])
    z = np.load(tmp_path / "e.npz")
    assert np.array_equal(z["sample_index"], ev["sample"])
    assert np.array_equal(z["channel"], ev["channel"])
    assert np.array_equal(z["amplitude"], ev["amplitude"])
    assert float(z["sampling_frequency"]) == 30000.0
    assert not list(tmp_path.glob("*.tmp"))


_CHILD_RSS = ("import resource, subprocess, sys\n"
              "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)\n")


def _peak_rss_mb(path: Path, tmp: Path) -> float:
    """Peak resident memory of one `hub replay` process (its own child's ru_maxrss)."""
    r = subprocess.run([sys.executable, "-c", _CHILD_RSS, sys.executable, "-m", "hub", "replay",
                        str(path), "--quiet", "--events-out", str(tmp / "e.npz")],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    kb, rc = (int(v) for v in r.stdout.split())
    assert rc == 0
    return kb / 1024


@pytest.mark.slow
def test_replay_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    """Was: the whole file became resident (a memory map), ~59 MB per second at 1024 channels.
    Here 256 channels: the 20 s file (307 MB) peaks within 12 MB of the 1 s one (15 MB)."""
    one = synth_recording("synth:256:30000:1:5").read(0, 30000)
    for name, seconds in (("short", 1), ("long", 20)):
        with (tmp_path / f"{name}.bin").open("wb") as f:
            for k in range(seconds):
                f.write((one + np.int16(k)).tobytes())
        meta = {"sampling_frequency": 30000.0, "num_channels": 256, "gain_to_uV": 0.195}
        (tmp_path / f"{name}.json").write_text(json.dumps(meta))
    short = _peak_rss_mb(tmp_path / "short.bin", tmp_path)
    long = _peak_rss_mb(tmp_path / "long.bin", tmp_path)
    assert long - short < 12, (short, long)


def test_wav_stack_reads_block_by_block(tmp_path: Path) -> None:
    x = synth_recording("synth:3:20000:2:4").read(0, 40000)
    for j in range(3):
        with wave.open(str(tmp_path / f"c{j}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(20000)
            w.writeframes(x[: 40000 - 7 * j, j].tobytes())
    rec = open_recording(tmp_path)
    assert rec.num_samples == 40000 - 14
    got = np.concatenate([b for _, b in rec.blocks(333)])
    assert np.array_equal(got, x[: 40000 - 14])


def test_wav_stack_small_reads_come_from_a_read_ahead_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated implant reads one ~1 ms frame at a time: one preadv per file per frame
    made a 520-WAV stack replay at a third of real time (make run). Small reads are served from
    a window read ahead, so the reads per file are a few per window, not one per frame."""
    import os

    x = synth_recording("synth:6:20000:2:5").read(0, 40000)
    _wavs_from(x, tmp_path / "stack", 20000)
    rec = open_recording(tmp_path / "stack")
    calls = [0]
    real = os.preadv

    def counting(fd: int, bufs: Any, pos: int) -> int:
        calls[0] += 1
        return real(fd, bufs, pos)

    monkeypatch.setattr(os, "preadv", counting)
    frames = [rec.read(p, p + 20) for p in range(0, 40000, 20)]
    assert np.array_equal(np.concatenate(frames), x)
    assert calls[0] <= 6 * 4, calls[0]          # 2000 frames; 6 files × one 349k-row window
    assert np.array_equal(rec.read(100, 39000), x[100:39000])      # a large read, direct


# ---------------------------------------------------------------- default reference
def _wavs_from(x: np.ndarray, folder: Path, fs: int) -> None:
    folder.mkdir()
    for j in range(x.shape[1]):
        with wave.open(str(folder / f"ch{j:03d}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(fs)
            w.writeframes(np.ascontiguousarray(x[:, j]).tobytes())


@pytest.mark.parametrize("n_wavs", [1, 2])
def test_replay_of_one_or_two_wavs_keeps_the_signal(tmp_path: Path, n_wavs: int) -> None:
    """Was: median reference by default → 0 spikes, σ 0.00, no warning."""
    x = synth_recording("synth:2:30000:4:7").read(0, 120000)[:, :n_wavs]
    _wavs_from(x, tmp_path / "w", 30000)
    r = hub_replay(str(tmp_path / "w"), "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    none = hub_replay(str(tmp_path / "w"), "--reference", "none", "--json",
                      str(tmp_path / "n.json"))
    assert none.returncode == 0, none.stderr
    want = json.loads((tmp_path / "n.json").read_text())
    assert s["spikes_total"] == want["spikes_total"] > 10
    assert s["noise_counts_per_channel"] == want["noise_counts_per_channel"]
    assert min(s["noise_counts_per_channel"]) > 5
    assert s["reference"] == "none" and "no common reference" in r.stderr
    forced = hub_replay(str(tmp_path / "w"), "--reference", "median", "--quiet")
    assert forced.returncode == 0 and "WARNING" in forced.stderr and "forced" in forced.stderr


def test_choose_reference() -> None:
    many = synth_recording("synth:16:30000:0.1")
    few = synth_recording("synth:4:30000:0.1")
    assert choose_reference(many)[0] == PipelineConfig.reference == "robust"
    assert choose_reference(few)[0] == "none"
    assert choose_reference(few, "average")[0] == "average"        # forced (warned)
    assert choose_reference(many, "none")[0] == "none"
    many.info["files"] = [f"{i}.wav" for i in range(16)]              # unrelated WAVs
    assert choose_reference(many)[0] == "none"


def test_raw_reader_checks_its_rows(tmp_path: Path) -> None:
    write_raw(tmp_path / "r.bin", np.arange(40, dtype=np.int16).reshape(10, 4), 30000.0, 1.0)
    rec = open_recording(tmp_path / "r.bin")
    assert np.array_equal(rec.read(3, 5), np.arange(12, 20).reshape(2, 4))
    with pytest.raises(IndexError):
        rec.read(8, 11)


def test_hubctl_sort_of_two_wavs_keeps_the_signal(tmp_path: Path) -> None:
    """Was: median reference by default → no spikes to sort."""
    x = synth_recording("synth:2:30000:4:7").read(0, 120000)
    _wavs_from(x, tmp_path / "w", 30000)
    r = subprocess.run([sys.executable, "-m", "host_tools.cli", "sort", str(tmp_path / "w"),
                        str(tmp_path / "sorting"), "--json", str(tmp_path / "s.json")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    found = int(r.stdout.split(" of ")[1].split()[0])
    none = hub_replay(str(tmp_path / "w"), "--reference", "none", "--json",
                      str(tmp_path / "n.json"), "--quiet")
    assert none.returncode == 0, none.stderr
    assert found == json.loads((tmp_path / "n.json").read_text())["spikes_total"] > 10


def test_read_ahead_keeps_order_and_raises_the_readers_error() -> None:
    from hub.dsp.replay import read_ahead

    assert list(read_ahead(iter(range(100)), depth=2)) == list(range(100))

    def broken() -> Any:
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for x in read_ahead(broken()):
            got.append(x)
    assert got == [1]
    it = read_ahead(iter(range(10**6)), depth=2)       # a consumer that stops early
    assert next(it) == 0
    it.close()                                         # the reader thread ends
