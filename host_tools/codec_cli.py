"""``hubctl codec encode IN.wav OUT`` / ``hubctl codec decode IN OUT.wav``: the nk_codec on a
WAV file, round-tripping to a byte-identical WAV.

Container (``.nkc``), all lengths u32 little-endian:
    b"NKCF" + version (1 byte)
    len + WAV bytes before the samples (RIFF/fmt/... headers, stored verbatim)
    len + WAV bytes after the whole sample frames (trailing chunks, an odd byte)
    len + codec stream header (nk_codec.h)
    then packets, each len + packet, to the end of the file.
The level ladder is fitted to the whole file (the per-file code table of a scaled ADC);
a file that does not follow a ladder is coded with the identity map.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

from hub.kernels import codec
from hub.kernels._ffi import KernelError

MAGIC = b"NKCF\x01"
_U32 = struct.Struct("<I")


def _wav_layout(wav: bytes) -> tuple[int, int, int]:
    """(offset of the samples, length of the whole frames in bytes, n_channels) of a 16-bit
    PCM WAV; raises ValueError otherwise."""
    if len(wav) < 12 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, channels, bits = 12, 0, 0
    while pos + 8 <= len(wav):
        cid, size = wav[pos:pos + 4], _U32.unpack_from(wav, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt " and size >= 16:
            fmt, channels = struct.unpack_from("<HH", wav, body)
            bits = struct.unpack_from("<H", wav, body + 14)[0]
            if fmt not in (1, 0xFFFE) or bits != 16:
                raise ValueError(f"only 16-bit PCM WAV is supported (format {fmt}, {bits} bit)")
        elif cid == b"data":
            if channels < 1:
                raise ValueError("WAV data chunk before its fmt chunk")
            size = min(size, len(wav) - body)
            frame = 2 * channels
            return body, size - size % frame, channels
        pos = body + size + (size & 1)
    raise ValueError("WAV file has no data chunk")


def encode_wav(wav: bytes, *, block: int = codec.DEFAULT_RESYNC,
               resync_interval: int = codec.DEFAULT_RESYNC) -> bytes:
    """The container for a 16-bit PCM WAV file's bytes."""
    off, size, channels = _wav_layout(wav)
    x = np.frombuffer(wav, dtype="<i2", count=size // 2, offset=off).reshape(-1, channels)
    levels = codec.fit_ladder(x)
    rate = struct.unpack_from("<I", wav, 24)[0] if len(wav) >= 28 else 0
    enc = codec.Encoder(channels, sample_rate=min(rate, 2**31 - 1),
                        resync_interval=resync_interval, levels=levels, max_block=block)
    parts = [MAGIC]
    for chunk in (wav[:off], wav[off + size:], enc.header):
        parts += [_U32.pack(len(chunk)), chunk]
    xs = np.ascontiguousarray(x.astype(np.int16, copy=False))
    for t in range(0, xs.shape[0], block):
        pkt = enc.encode(xs[t:t + block])
        parts += [_U32.pack(len(pkt)), pkt]
    return b"".join(parts)


def decode_wav(data: bytes) -> bytes:
    """The original WAV bytes from a container; ValueError if it is damaged."""
    if data[:5] != MAGIC:
        raise ValueError("not an nk_codec container (bad magic)")
    pos = 5
    chunks: list[bytes] = []
    while pos + 4 <= len(data):
        n = _U32.unpack_from(data, pos)[0]
        if pos + 4 + n > len(data):
            raise ValueError(f"truncated container at byte {pos}")
        chunks.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    if pos != len(data) or len(chunks) < 3:
        raise ValueError("truncated container")
    prefix, suffix, header = chunks[:3]
    try:
        dec = codec.Decoder(header)
        blocks = []
        for i, pkt in enumerate(chunks[3:]):
            y, info = dec.decode(pkt)
            if y is None or info.lost_packets:
                raise ValueError(f"packet {i} could not be decoded (stream out of sequence)")
            blocks.append(y)
    except KernelError as e:
        raise ValueError(f"corrupt container: {e}") from e
    samples = np.concatenate(blocks) if blocks else np.zeros((0, 1), np.int16)
    return prefix + samples.astype("<i2").tobytes() + suffix


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    e = sub.add_parser("encode", help="WAV → compressed container")
    e.add_argument("input", type=Path)
    e.add_argument("output", type=Path)
    e.add_argument("--block", type=int, default=codec.DEFAULT_RESYNC,
                   help="samples per packet (default %(default)s)")
    e.add_argument("--resync", type=int, default=codec.DEFAULT_RESYNC,
                   help="samples between resync points, 0 = none (default %(default)s)")
    d = sub.add_parser("decode", help="compressed container → the original WAV")
    d.add_argument("input", type=Path)
    d.add_argument("output", type=Path)


def run(args: argparse.Namespace) -> int:
    data = args.input.read_bytes()
    if args.action == "encode":
        if not 1 <= args.block <= 65535 or args.resync < 0:
            raise ValueError("--block must be in 1..65535 and --resync ≥ 0")
        out = encode_wav(data, block=args.block, resync_interval=args.resync)
    else:
        out = decode_wav(data)
    args.output.write_bytes(out)
    print(f"{args.input} ({len(data)} bytes) → {args.output} ({len(out)} bytes)")
    return 0
