"""Bad input at the command lines is a clear error (exit 2), never a traceback (issue 10 item
10). Each case below raised on the old code: TypeError/OverflowError/EOFError/
UnboundLocalError/ZeroDivisionError tracebacks, or silently turned NaN samples into zeros."""

from __future__ import annotations

import io
import json
import wave
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from hil import implant
from host_tools.cli import main as hubctl
from hub.cli import main as hub
from hub.dsp.sorting import TemplateError, TemplateSet


def exit_code(main: Callable[[Sequence[str]], int], argv: list[str]) -> int:
    """The exit code of a command line run in-process (argparse's usage errors included)."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def raw(tmp: Path, name: str, meta: dict[str, object] | str, rows: int = 3000,
        channels: int = 4) -> Path:
    np.zeros((rows, channels), "<i2").tofile(tmp / f"{name}.bin")
    (tmp / f"{name}.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return tmp / f"{name}.bin"


def si_folder(tmp: Path, name: str, fs: object, nan_at: tuple[int, int] | None) -> Path:
    d = tmp / name
    d.mkdir()
    x = np.random.default_rng(0).normal(0, 10, (6000, 4)).astype("<f4")
    if nan_at is not None:
        x[nan_at] = np.nan
    x.tofile(d / "traces_cached_seg0.raw")
    kw = {"file_paths": ["traces_cached_seg0.raw"], "sampling_frequency": fs,
          "num_channels": 4, "dtype": "float32", "time_axis": 0, "file_offset": 0,
          "gain_to_uV": [1.0] * 4}
    (d / "binary.json").write_text(json.dumps({"kwargs": kw}))
    return d


GOOD = {"sampling_frequency": 30000, "num_channels": 4, "gain_to_uV": 0.195}


@pytest.mark.parametrize("case", ["empty_wav", "zero_samples", "zero_channels", "rate_huge",
                                  "rate_tiny", "rate_inf", "gain_absurd", "gain_nan",
                                  "si_rate_nan", "si_nan_sample"])
def test_hub_replay_refuses_bad_recordings(tmp_path: Path, case: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    if case == "empty_wav":
        with wave.open(str(tmp_path / "e.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(30000)
        path = tmp_path / "e.wav"
    elif case == "zero_samples":
        path = raw(tmp_path, "z", GOOD, rows=0)
    elif case == "zero_channels":
        path = raw(tmp_path, "c", {**GOOD, "num_channels": 0})
    elif case == "rate_huge":
        path = raw(tmp_path, "h", {**GOOD, "sampling_frequency": 1e15})
    elif case == "rate_tiny":
        path = raw(tmp_path, "t", {**GOOD, "sampling_frequency": 1e-9})
    elif case == "rate_inf":
        path = raw(tmp_path, "i", json.dumps(GOOD).replace("30000", "Infinity"))
    elif case == "gain_absurd":
        path = raw(tmp_path, "g", {**GOOD, "gain_to_uV": 1e300})
    elif case == "gain_nan":
        path = raw(tmp_path, "n", json.dumps(GOOD).replace("0.195", "NaN"))
    elif case == "si_rate_nan":
        path = si_folder(tmp_path, "si", float("nan"), None)
    else:                      # NaN samples used to become 0 silently
        path = si_folder(tmp_path, "si", 30000.0, (100, 2))
    assert exit_code(hub, ["replay", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    if case == "si_nan_sample":
        assert "sample 100 of channel 2" in err


def test_template_files_that_are_empty_truncated_or_not_zip(tmp_path: Path) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_bytes(b"hello, not a zip")
    buf = io.BytesIO()
    np.savez(buf, format=np.str_("x"), templates=np.zeros((2, 3, 48), np.float32))
    whole = buf.getvalue()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    bad = bytearray(whole)
    zi = zipfile.ZipFile(io.BytesIO(whole)).infolist()[-1]
    bad[zi.header_offset + 40] ^= 0xFF                      # a damaged member
    (tmp_path / "damaged.npz").write_bytes(bytes(bad))
    for name in ("empty", "text", "cut", "damaged"):
        with pytest.raises(TemplateError):
            TemplateSet.load(tmp_path / f"{name}.npz")


def test_unknown_sorter_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = si_folder(tmp_path, "si", 30000.0, None)
    argv = ["calibrate", str(rec), str(tmp_path / "t.npz"), "--sorter", "nosuch"]
    assert exit_code(hubctl, argv) == 2
    assert "'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["record", "--tcp", "127.0.0.1:99999", "--duration", "1"],
    ["record", "--tcp", "nohostport", "--duration", "1"],
    ["record", "--tcp", "127.0.0.1:1", "--duration", "-5"],
    ["record", "--tcp", "127.0.0.1:1", "--duration", "nan"],
    ["record", "--tcp", "127.0.0.1:1", "--connect-timeout", "0"],
    ["codec", "encode", "in.wav", "out.nkc", "--block", "0"],
])
def test_hubctl_numbers_out_of_range(argv: list[str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.wav").write_bytes(b"")
    assert exit_code(hubctl, argv) == 2


@pytest.mark.parametrize("argv", [
    ["--implant", "tcp:127.0.0.1:99999"], ["--uplink", "tcp:127.0.0.1:70000"],
    ["--rate-bps", "-1"], ["--rate-bps", "inf"], ["--telemetry-s", "0"], ["--drain-s", "-1"],
    ["--payload-size", "3"], ["--uplink", "tcp:127.0.0.1:x"],
])
def test_hub_run_numbers_out_of_range(argv: list[str], tmp_path: Path) -> None:
    base = ["run", "--state-dir", str(tmp_path), "--uplink", "tcp:127.0.0.1:0", "--implant",
            "tcp:127.0.0.1:0"]
    assert exit_code(hub, base + argv) == 2


@pytest.mark.parametrize("argv", [
    ["synth:4:30000:1", "--connect", "tcp:127.0.0.1:1", "--speed", "0"],
    ["synth:0:30000:1", "--connect", "tcp:127.0.0.1:1"],
    ["synth:4:nan", "--connect", "tcp:127.0.0.1:1"],
    ["synth:4:30000:1", "--connect", "tcp:127.0.0.1:1", "--drop", "2"],
    ["synth:4:30000:1", "--connect", "carrier-pigeon"],
])
def test_simulated_implant_numbers_out_of_range(argv: list[str]) -> None:
    assert exit_code(implant.main, argv) == 2
