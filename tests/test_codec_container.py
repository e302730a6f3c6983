"""The ``.nkc`` container checked end to end (issue 10 item 6). On the old container a file
cut at a packet boundary decoded with exit 0 to a shorter WAV, a small crafted file decoded
to hundreds of MB held in memory at once, and a forged sample rate gave a traceback."""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_tools import codec_container as cc
from host_tools.cli import main as hubctl
from hub.kernels import codec

REPO = Path(__file__).resolve().parent.parent


def wav_bytes(x: np.ndarray, rate: int = 19531) -> bytes:
    ch = x.shape[1]
    data = x.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, ch, rate, rate * 2 * ch, 2 * ch, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", len(data)) + data)


def signal(n: int, ch: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.integers(-3, 4, (n, ch)), axis=0) * 64).astype(np.int16)


def packet_ends(blob: bytes) -> list[int]:
    """Byte offsets just after each packet (where a cut leaves whole packets)."""
    src = cc._Source(__import__("io").BytesIO(blob))
    src.read(5, "magic")
    for what in ("a", "b", "c"):
        src.part(what)
    n_packets = (src.varint("f"), src.varint("p"), src.varint("m"))[1]
    ends = []
    for _ in range(n_packets):
        src.part("packet", 1 << 30)
        ends.append(src.pos)
    return ends


def test_cut_at_every_packet_boundary_is_an_error_and_leaves_no_output(tmp_path: Path) -> None:
    wav = wav_bytes(signal(20000))
    blob = cc.encode_wav(wav, block=3000)
    assert cc.decode_wav(blob) == wav
    for end in [*packet_ends(blob)[:-1], len(blob) - 12, len(blob) - 1]:
        (tmp_path / "cut.nkc").write_bytes(blob[:end])
        rc = hubctl(["codec", "decode", str(tmp_path / "cut.nkc"), str(tmp_path / "o.wav")])
        assert rc == 2 and not (tmp_path / "o.wav").exists()
        assert not (tmp_path / "o.wav.partial").exists()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 255))
def test_any_flipped_byte_is_refused(pos: int, x: int) -> None:
    blob = bytearray(cc.encode_wav(wav_bytes(signal(3000, 1)), block=1000))
    blob[pos % len(blob)] ^= x
    with pytest.raises(cc.ContainerError):
        cc.decode_wav(bytes(blob))


def test_bytes_after_the_trailer_are_refused() -> None:
    blob = cc.encode_wav(wav_bytes(signal(3000, 1)), block=1000)
    with pytest.raises(cc.ContainerError, match="after the trailer"):
        cc.decode_wav(blob + b"\0")


def test_forged_sample_rate_is_a_clear_error(tmp_path: Path) -> None:
    """A codec header whose rate cannot be a WAV's (rate × 2 × channels ≥ 2³²)."""
    x = signal(2000)
    enc = codec.Encoder(2, sample_rate=2**31 - 1, resync_interval=1000)
    body = [cc.MAGIC]
    for part in (b"", b"", enc.header):
        body += [cc._varint(len(part)), part]
    body += [cc._varint(2000), cc._varint(2), cc._varint(1000)]
    for t in (0, 1000):
        pkt = enc.encode(np.ascontiguousarray(x[t:t + 1000]))
        body += [cc._varint(len(pkt)), pkt]
    (tmp_path / "forged.nkc").write_bytes(b"".join(body))
    rc = hubctl(["codec", "decode", str(tmp_path / "forged.nkc"), str(tmp_path / "o.wav")])
    assert rc == 2 and not (tmp_path / "o.wav").exists()


def test_packet_larger_than_declared_and_output_cap() -> None:
    wav = wav_bytes(signal(5000, 1))
    blob = cc.encode_wav(wav, block=5000)
    with pytest.raises(cc.ContainerError, match="exceed"):
        cc.decode_wav(blob, max_output=10_000)
    b = bytearray(blob)          # declare packets of at most 100 samples: the packet has 5000
    i = b.index(cc._varint(5000) + cc._varint(1) + cc._varint(5000))
    b[i:i + 6] = cc._varint(5000) + cc._varint(50) + cc._varint(100)
    with pytest.raises(cc.ContainerError):
        cc.decode_wav(bytes(b))


def _peak_rss_mb(args: list[str]) -> float:
    code = ("import resource, sys; from host_tools.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); "
            "sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_decode_streams_with_bounded_memory(tmp_path: Path) -> None:
    """Peak RSS of ``hubctl codec decode`` for a 64 MB WAV vs a 40 kB one, same run: the old
    decoder held the whole output several times over (blocks, concatenation, bytes)."""
    big = np.zeros((16_000_000, 2), np.int16)
    big[::1000] = 64
    (tmp_path / "big.wav").write_bytes(wav_bytes(big))
    (tmp_path / "small.wav").write_bytes(wav_bytes(big[:10_000]))
    for name in ("big", "small"):
        assert hubctl(["codec", "encode", str(tmp_path / f"{name}.wav"),
                       str(tmp_path / f"{name}.nkc"), "--block", "20000"]) == 0
    small = _peak_rss_mb(["codec", "decode", str(tmp_path / "small.nkc"),
                          str(tmp_path / "small.out.wav")])
    large = _peak_rss_mb(["codec", "decode", str(tmp_path / "big.nkc"),
                          str(tmp_path / "big.out.wav")])
    assert (tmp_path / "big.out.wav").read_bytes() == (tmp_path / "big.wav").read_bytes()
    assert large - small < 24, (small, large)          # the file is 64 MB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_version_1_files_still_decode() -> None:
    """The old container (no totals) is read, with a warning."""
    wav = wav_bytes(signal(3000, 1))
    off, _, _, _ = cc.wav_layout(wav)
    enc = codec.Encoder(1, sample_rate=19531, resync_interval=1000)
    parts = [cc.MAGIC_V1]
    for part in (wav[:off], b"", enc.header):
        parts += [cc._varint(len(part)), part]
    x = np.frombuffer(wav, "<i2", offset=off).reshape(-1, 1)
    for t in range(0, 3000, 1000):
        pkt = enc.encode(np.ascontiguousarray(x[t:t + 1000]))
        parts += [cc._varint(len(pkt)), pkt]
    blob = b"".join(parts)
    assert cc.decode_wav(blob) == wav
    with pytest.raises(cc.ContainerError, match="truncated"):   # the WAV header knows
        cc.decode_wav(blob[:-len(pkt) - len(cc._varint(len(pkt)))])
