"""nk_codec through its Python wrapper: round trips, loss recovery, corruption, WAV identity."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from host_tools import codec_cli
from host_tools.cli import main as hubctl
from hub.kernels import codec
from hub.kernels._ffi import KernelError
from hub.kernels.frontend import EVENT_DTYPE
from tests.conftest import shared_data


def _ladder() -> np.ndarray:
    q = np.arange(-512, 512)
    pos = np.minimum(np.round(64.06 * q[512:] + 31.03), 32767).astype(np.int16)
    return np.concatenate([~pos[::-1], pos]).astype(np.int16)


def _neural_like(n: int, channels: int, seed: int = 0) -> np.ndarray:
    """10-bit codes on the N1 ladder: LFP-like drift + noise + occasional spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    q = 40 * np.sin(2 * np.pi * t / 2000 + np.arange(channels)) + rng.normal(0, 6, (n, channels))
    q[rng.random((n, channels)) < 0.002] -= 150
    q = np.clip(np.round(q), -512, 511).astype(int)
    return _ladder()[q + 512]


def _roundtrip(x: np.ndarray, block: int, **kw: object) -> tuple[np.ndarray, list[bytes], bytes]:
    enc = codec.Encoder(x.shape[1], **kw)  # type: ignore[arg-type]
    packets = [enc.encode(x[i:i + block]) for i in range(0, x.shape[0], block)]
    dec = codec.Decoder(enc.header)
    out = []
    for p in packets:
        y, info = dec.decode(p)
        assert y is not None and not info.skipped and info.lost_packets == 0
        out.append(y.copy())
    return (np.concatenate(out) if out else x[:0]), packets, enc.header


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int16, st.tuples(st.integers(1, 700), st.integers(1, 5))),
       st.integers(1, 300), st.sampled_from([0, 1, 50, 1000]), st.booleans())
def test_roundtrip_any_int16(x: np.ndarray, block: int, resync: int, ladder: bool) -> None:
    levels = codec.fit_ladder(x) if ladder else None
    y, _, _ = _roundtrip(x, block, resync_interval=resync, levels=levels)
    np.testing.assert_array_equal(y, x)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_roundtrip_ladder_signal_with_escapes(n: int, channels: int, seed: int) -> None:
    x = _neural_like(n, channels, seed)
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 4)
    x.flat[rng.integers(0, x.size, k)] = rng.integers(-32768, 32767, k)  # off the ladder
    y, _, _ = _roundtrip(x, 250, resync_interval=1000, levels=_ladder())
    np.testing.assert_array_equal(y, x)


def test_compresses_ladder_data() -> None:
    x = _neural_like(20000, 2)
    y, packets, header = _roundtrip(x, 1000, levels=codec.fit_ladder(x))
    np.testing.assert_array_equal(y, x)
    assert x.nbytes / (len(header) + sum(map(len, packets))) > 2.5


def test_lost_packet_is_reported_and_confined() -> None:
    x = _neural_like(6000, 3)
    enc = codec.Encoder(3, resync_interval=1000, levels=_ladder())
    packets = [enc.encode(x[i:i + 250]) for i in range(0, 6000, 250)]  # resync every 4th
    dec = codec.Decoder(enc.header)
    skipped, lost = [], 0
    for i, p in enumerate(packets):
        if i == 5:
            continue  # lost on the air
        y, info = dec.decode(p)
        lost += info.lost_packets
        if info.skipped:
            skipped.append(i)
            assert y is None
        else:
            assert y is not None
            np.testing.assert_array_equal(y, x[i * 250:(i + 1) * 250])
    assert lost == 1
    assert skipped == [6, 7]  # packet 8 is the next resync point
    assert codec.peek_packet(packets[8]).resync


def test_corrupt_packet_raises_and_resync_recovers() -> None:
    x = _neural_like(4000, 1)
    enc = codec.Encoder(1, resync_interval=2000, levels=_ladder())
    packets = [enc.encode(x[i:i + 500]) for i in range(0, 4000, 500)]
    dec = codec.Decoder(enc.header)
    dec.decode(packets[0])
    bad = bytearray(packets[1])
    bad[len(bad) // 2] ^= 0x40
    with pytest.raises(KernelError, match="corrupt"):
        dec.decode(bytes(bad))
    _, info = dec.decode(packets[2])
    assert info.skipped and info.lost_packets == 1
    y, info = dec.decode(packets[4])
    assert info.resync and y is not None
    np.testing.assert_array_equal(y, x[2000:2500])


@pytest.mark.parametrize("junk", [b"", b"NKC", b"\x00" * 40, b"NKC\x01" + b"\xff" * 60])
def test_bad_header_is_a_clear_error(junk: bytes) -> None:
    with pytest.raises(KernelError, match="corrupt"):
        codec.Decoder(junk)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_packets_never_crash(data: bytes) -> None:
    enc = codec.Encoder(2, levels=_ladder())
    dec = codec.Decoder(enc.header)
    with contextlib.suppress(KernelError):
        dec.decode(b"\xa7\x01" + data)


def test_events_and_snippets() -> None:
    rng = np.random.default_rng(1)
    n = 300
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["sample"] = np.cumsum(rng.integers(0, 200, n)) + 10**9
    ev["channel"] = rng.integers(0, 64, n)
    ev.sort(order=["sample", "channel"])
    ev["unit"] = rng.integers(-1, 4, n)
    ev["amplitude"] = -np.round(rng.uniform(40, 400, n) * 16) / 16
    snip = rng.normal(0, 10, (n, 4, 48)).astype(np.float32)
    data = codec.encode_events(ev, step=1 / 16)  # amplitudes are multiples of 1/16: exact
    got, none = codec.decode_events(data)
    assert none is None
    for f in ("sample", "channel", "unit", "amplitude"):
        np.testing.assert_array_equal(got[f], ev[f])
    step = 2.0
    got, s2 = codec.decode_events(codec.encode_events(ev, snip, step))
    assert s2 is not None and np.abs(s2 - snip).max() <= step / 2 + 1e-4
    assert np.abs(got["amplitude"] - ev["amplitude"]).max() <= step / 2
    with pytest.raises(ValueError, match="sorted"):
        codec.encode_events(ev[::-1])
    with pytest.raises(KernelError, match="corrupt"):
        codec.decode_events(data[:-1] + bytes([data[-1] ^ 1]))


def _write_wav(path: Path, x: np.ndarray, rate: int, extra: bytes = b"") -> bytes:
    ch = x.shape[1]
    data = x.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, ch, rate, rate * 2 * ch, 2 * ch, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    raw = b"RIFF" + struct.pack("<I", 4 + len(body) - 4 + len(data) + len(extra)) + body + data
    path.write_bytes(raw + extra)
    return raw + extra


@pytest.mark.parametrize("channels,extra", [(1, b""), (3, b"LIST\x04\x00\x00\x00abcd")])
def test_cli_wav_byte_identity(tmp_path: Path, channels: int, extra: bytes) -> None:
    wav = _write_wav(tmp_path / "in.wav", _neural_like(30001, channels), 19531, extra)
    assert hubctl(["codec", "encode", str(tmp_path / "in.wav"), str(tmp_path / "c.nkc")]) == 0
    assert hubctl(["codec", "decode", str(tmp_path / "c.nkc"), str(tmp_path / "out.wav")]) == 0
    assert (tmp_path / "out.wav").read_bytes() == wav
    assert (tmp_path / "c.nkc").stat().st_size < len(wav) / 2


def test_cli_rejects_damaged_container(tmp_path: Path) -> None:
    wav = _write_wav(tmp_path / "in.wav", _neural_like(5000, 1), 19531)
    good = codec_cli.encode_wav(wav, block=1000)
    blob = bytearray(good)
    blob[-20] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt"):
        codec_cli.decode_wav(bytes(blob))
    with pytest.raises(ValueError, match="truncated"):
        codec_cli.decode_wav(good[:-3])


@pytest.mark.shared_data
def test_real_neuralink_wavs() -> None:
    files = sorted(shared_data("neuralink_wav").glob("*.wav"))[:4]
    orig = comp = 0
    for f in files:
        wav = f.read_bytes()
        blob = codec_cli.encode_wav(wav)
        assert codec_cli.decode_wav(blob) == wav
        orig, comp = orig + len(wav), comp + len(blob)
    assert orig / comp > 3.0
