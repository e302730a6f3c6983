"""``hubctl codec encode IN.wav OUT`` / ``hubctl codec decode IN OUT.wav``: the nk_codec on a
WAV file, round-tripping to a byte-identical WAV.

Container (``.nkc``), every length an unsigned LEB128 varint:
    b"NKCF" + version (1 byte)
    len + WAV bytes before the samples (RIFF/fmt/... headers, stored verbatim); length 0 means
          the canonical 44-byte PCM header, rebuilt from the stream header's channel count and
          rate and the data length (the encoder checks it is byte-identical before omitting it)
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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise ValueError(f"truncated container at byte {pos}")
        b = data[pos]
        n |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return n, pos


def _canonical_header(channels: int, rate: int, data_len: int, suffix_len: int) -> bytes:
    """The 44-byte header most PCM WAV writers produce."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (b"RIFF" + _U32.pack(36 + data_len + suffix_len) + b"WAVEfmt " + _U32.pack(16) + fmt
            + b"data" + _U32.pack(data_len))


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


def wav_data_offset(path: Path) -> int:
    """Byte offset of the samples in a 16-bit PCM WAV file (reads its first 64 KiB only)."""
    with open(path, "rb") as f:
        return _wav_layout(f.read(1 << 16))[0]


def encode_wav(wav: bytes, *, block: int = codec.DEFAULT_RESYNC,
               resync_interval: int = codec.DEFAULT_RESYNC) -> bytes:
    """The container for a 16-bit PCM WAV file's bytes."""
    off, size, channels = _wav_layout(wav)
    x = np.frombuffer(wav, dtype="<i2", count=size // 2, offset=off).reshape(-1, channels)
    levels = codec.fit_ladder(x)
    rate = struct.unpack_from("<I", wav, 24)[0] if len(wav) >= 28 else 0
    enc = codec.Encoder(channels, sample_rate=min(rate, 2**31 - 1),
                        resync_interval=resync_interval, levels=levels, max_block=block)
    prefix, suffix = wav[:off], wav[off + size:]
    if prefix == _canonical_header(channels, rate, size, len(suffix)) and rate < 2**31:
        prefix = b""
    parts = [MAGIC]
    for chunk in (prefix, suffix, enc.header):
        parts += [_varint(len(chunk)), chunk]
    xs = np.ascontiguousarray(x.astype(np.int16, copy=False))
    for t in range(0, xs.shape[0], block):
        pkt = enc.encode(xs[t:t + block])
        parts += [_varint(len(pkt)), pkt]
    return b"".join(parts)


def decode_wav(data: bytes) -> bytes:
    """The original WAV bytes from a container; ValueError if it is damaged."""
    if data[:5] != MAGIC:
        raise ValueError("not an nk_codec container (bad magic)")
    pos = 5
    chunks: list[bytes] = []
    while pos < len(data):
        n, pos = _read_varint(data, pos)
        if pos + n > len(data):
            raise ValueError(f"truncated container at byte {pos}")
        chunks.append(data[pos:pos + n])
        pos += n
    if len(chunks) < 3:
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
    pcm = samples.astype("<i2").tobytes()
    if not prefix:
        prefix = _canonical_header(dec.n_channels, dec.sample_rate, len(pcm), len(suffix))
    return prefix + pcm + suffix


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
