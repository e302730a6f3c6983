"""The ``.nkc`` container of ``hubctl codec``: a WAV file through nk_codec, checked end to end.

Version 2 (written now), every length an unsigned LEB128 varint::

    b"NKCF" 0x02
    len + WAV bytes before the samples (RIFF/fmt/... headers, verbatim); length 0 means the
          canonical 44-byte PCM header, rebuilt from the channel count, rate and data length
    len + WAV bytes after the whole sample frames (trailing chunks, an odd byte)
    len + codec stream header (nk_codec.h)
    n_frames     sample frames (samples per channel) in the file
    n_packets    packets that follow
    max_block    samples per channel in the largest packet
    n_packets × (len + packet)
    b"NKCE" + u32 LE CRC-32 of the restored WAV file + u32 LE CRC-32 of every byte above

The decoder streams: one packet in memory at a time (at most ``max_block`` × channels
samples, bounded by ``MAX_PACKET_SAMPLES``), output written as it is decoded, and it refuses
anything that does not add up — a packet out of sequence, more or fewer frames or packets than
declared, a WAV header whose data size disagrees, a missing or wrong trailer, bytes after it,
an impossible sample rate, or an output larger than the caller allows. Version 1 (no totals,
no trailer) is still read, with a warning: a file cut at a packet boundary cannot be told
from a whole one.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from hub.errors import HubError
from hub.kernels import codec

log = logging.getLogger(__name__)

MAGIC_V1 = b"NKCF\x01"
MAGIC = b"NKCF\x02"
TRAILER = b"NKCE"
_U32 = struct.Struct("<I")
#: Largest part of the container held in memory at once (a WAV header, the codec header).
MAX_PART_BYTES = 16 << 20
#: Largest packet decoded at once, in samples (all channels): 64 MB of int16.
MAX_PACKET_SAMPLES = 32 << 20
#: Default cap on the restored WAV (the RIFF format's own limit).
MAX_OUTPUT_BYTES = (1 << 32) - 1


class ContainerError(HubError, ValueError):
    """A container that is damaged, truncated, forged or larger than allowed."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _canonical_header(channels: int, rate: int, data_len: int, suffix_len: int) -> bytes:
    """The 44-byte header most PCM WAV writers produce."""
    if not (channels >= 1 and rate >= 1 and rate * 2 * channels < 1 << 32
            and 36 + data_len + suffix_len < 1 << 32):
        raise ContainerError(f"a WAV cannot hold {channels} channel(s) at {rate} Hz with "
                             f"{data_len} data bytes (forged header?)")
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (b"RIFF" + _U32.pack(36 + data_len + suffix_len) + b"WAVEfmt " + _U32.pack(16) + fmt
            + b"data" + _U32.pack(data_len))


def wav_layout(wav: Any) -> tuple[int, int, int, int]:
    """(offset of the samples, bytes of whole frames, channels, data size the header says) of
    a 16-bit PCM WAV (bytes or a memoryview); ContainerError otherwise."""
    if len(wav) < 12 or bytes(wav[:4]) != b"RIFF" or bytes(wav[8:12]) != b"WAVE":
        raise ContainerError("not a RIFF/WAVE file")
    pos, channels = 12, 0
    while pos + 8 <= len(wav):
        cid, size = bytes(wav[pos:pos + 4]), _U32.unpack_from(wav, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt " and size >= 16 and body + 16 <= len(wav):
            fmt, channels = struct.unpack_from("<HH", wav, body)
            bits = struct.unpack_from("<H", wav, body + 14)[0]
            if fmt not in (1, 0xFFFE) or bits != 16 or channels < 1:
                raise ContainerError(f"only 16-bit PCM WAV is supported (format {fmt}, "
                                     f"{bits} bit, {channels} channels)")
        elif cid == b"data":
            if channels < 1:
                raise ContainerError("WAV data chunk before its fmt chunk")
            have = min(size, len(wav) - body)
            return body, have - have % (2 * channels), channels, size
        pos = body + size + (size & 1)
    raise ContainerError("WAV file has no data chunk")


class _Sink:
    """Output with a running CRC and a size cap."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out, self.limit, self.crc, self.n = out, limit, 0, 0

    def write(self, b: bytes) -> None:
        self.n += len(b)
        if self.n > self.limit:
            raise ContainerError(f"the restored file would exceed {self.limit} bytes "
                                 "(raise the limit if that is meant)")
        self.crc = zlib.crc32(b, self.crc)
        self.out.write(b)


class _Source:
    """Input read on demand, with a running CRC of what was consumed."""

    def __init__(self, inp: BinaryIO) -> None:
        self.inp, self.pos, self.crc = inp, 0, 0
        self._ahead = b""

    def read(self, n: int, what: str) -> bytes:
        b = self._ahead[:n]
        self._ahead = self._ahead[n:]
        if len(b) < n:
            b += self.inp.read(n - len(b))
        if len(b) != n:
            raise ContainerError(f"truncated container: {what} at byte {self.pos} needs {n} "
                                 f"bytes, {len(b)} left")
        self.pos += n
        self.crc = zlib.crc32(b, self.crc)
        return b

    def eof(self) -> bool:
        if not self._ahead:
            self._ahead = self.inp.read(1)
        return not self._ahead

    def varint(self, what: str) -> int:
        n = shift = 0
        while True:
            b = self.read(1, what)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n
            if shift > 56:
                raise ContainerError(f"corrupt container: {what} at byte {self.pos} is not a "
                                     "number")

    def part(self, what: str, limit: int = MAX_PART_BYTES) -> bytes:
        n = self.varint(f"length of {what}")
        if n > limit:
            raise ContainerError(f"corrupt container: {what} of {n} bytes (limit {limit})")
        return self.read(n, what)


# ---------------------------------------------------------------- encoding
def encode(wav: Any, out: BinaryIO, *, block: int = codec.DEFAULT_RESYNC,
           resync_interval: int = codec.DEFAULT_RESYNC) -> int:
    """Writes the container of a 16-bit PCM WAV file (bytes, or a memoryview of a mapped file:
    nothing is copied whole); returns the bytes written."""
    if not 1 <= block <= codec.lib.NK_CODEC_MAX_BLOCK:
        raise ContainerError(f"block {block}: want 1..{codec.lib.NK_CODEC_MAX_BLOCK} samples")
    off, size, channels, _ = wav_layout(wav)
    x = np.frombuffer(wav, dtype="<i2", count=size // 2, offset=off).reshape(-1, channels)
    if block * channels > MAX_PACKET_SAMPLES:
        raise ContainerError(f"block {block} × {channels} channels exceeds "
                             f"{MAX_PACKET_SAMPLES} samples per packet")
    rate = _U32.unpack_from(wav, 24)[0] if len(wav) >= 28 else 0
    enc = codec.Encoder(channels, sample_rate=min(rate, 2**31 - 1),
                        resync_interval=resync_interval, levels=codec.fit_ladder(x),
                        max_block=block)
    prefix, suffix = bytes(wav[:off]), bytes(wav[off + size:])
    try:
        canonical = _canonical_header(channels, rate, size, len(suffix))
    except ContainerError:
        canonical = b""
    if prefix == canonical and rate < 2**31:
        prefix = b""
    n_frames = x.shape[0]
    n_packets = -(-n_frames // block)
    sink = _Sink(out, 1 << 62)
    wav_crc = zlib.crc32(wav)
    head = [MAGIC]
    for chunk in (prefix, suffix, enc.header):
        head += [_varint(len(chunk)), chunk]
    head += [_varint(n_frames), _varint(n_packets), _varint(min(block, max(n_frames, 1)))]
    sink.write(b"".join(head))
    for t in range(0, n_frames, block):
        pkt = enc.encode(np.ascontiguousarray(x[t:t + block], dtype=np.int16))
        sink.write(_varint(len(pkt)) + pkt)
    sink.write(TRAILER + _U32.pack(wav_crc))
    crc = sink.crc
    sink.write(_U32.pack(crc))
    return sink.n


def encode_wav(wav: bytes, *, block: int = codec.DEFAULT_RESYNC,
               resync_interval: int = codec.DEFAULT_RESYNC) -> bytes:
    """The container for a WAV file's bytes (in memory)."""
    buf = io.BytesIO()
    encode(wav, buf, block=block, resync_interval=resync_interval)
    return buf.getvalue()


# ---------------------------------------------------------------- decoding
@dataclass
class Decoded:
    version: int
    frames: int
    packets: int
    bytes_out: int


def decode(inp: BinaryIO, out: BinaryIO, *, max_output: int = MAX_OUTPUT_BYTES) -> Decoded:
    """Restores the WAV file into ``out``, streaming; ContainerError unless the container is
    whole and consistent (what was written before the error is garbage: the caller discards
    it)."""
    src = _Source(inp)
    magic = src.read(5, "magic")
    if magic not in (MAGIC, MAGIC_V1):
        raise ContainerError("not an nk_codec container (bad magic)")
    v1 = magic == MAGIC_V1
    prefix, suffix = src.part("WAV header"), src.part("WAV trailer")
    header = src.part("codec header")
    try:
        dec = codec.Decoder(header)
    except (ValueError, RuntimeError) as e:
        raise ContainerError(f"corrupt container: codec header ({e})") from e
    c = dec.n_channels
    if v1:
        log.warning("version 1 container: no totals and no checksum, so a file cut at a "
                    "packet boundary cannot be told from a whole one")
        n_frames = n_packets = -1
        max_block = codec.lib.NK_CODEC_MAX_BLOCK
    else:
        n_frames, n_packets = src.varint("frame count"), src.varint("packet count")
        max_block = src.varint("largest block")
        if max_block * c > MAX_PACKET_SAMPLES or (n_frames and max_block < 1):
            raise ContainerError(f"corrupt container: packets of {max_block} samples × {c} "
                                 "channels")
        if n_packets * max_block < n_frames:
            raise ContainerError(f"corrupt container: {n_packets} packets of at most "
                                 f"{max_block} samples cannot hold {n_frames} frames")
    data_len = 2 * c * n_frames
    if prefix:
        off, _, channels, declared = wav_layout(prefix + b"\0" * (2 * c))
        if off != len(prefix) or channels != c:
            raise ContainerError("corrupt container: the stored WAV header does not match the "
                                 f"stream ({channels} vs {c} channels)")
    else:
        if v1:
            raise ContainerError("version 1 container with a rebuilt header: decode it with "
                                 "the version that wrote it")
        prefix = _canonical_header(c, dec.sample_rate, data_len, len(suffix))
        declared = data_len
    sink = _Sink(out, max_output)
    sink.write(prefix)
    frames = packets = 0
    max_packet = int(codec.lib.nk_codec_max_packet_size(c, max_block))
    while not (src.eof() if v1 else packets == n_packets):
        pkt = src.part(f"packet {packets}", max_packet)
        y = _decode_packet(dec, pkt, packets, max_block)
        frames += y.shape[0]
        if not v1 and frames > n_frames:
            raise ContainerError(f"corrupt container: more than the {n_frames} frames declared")
        sink.write(y.astype("<i2").tobytes())
        packets += 1
    if not v1:
        if frames != n_frames:
            raise ContainerError(f"truncated container: {frames} of {n_frames} frames")
        if src.read(4, "trailer") != TRAILER:
            raise ContainerError("corrupt container: no trailer after the last packet")
    if declared != 2 * c * frames:
        raise ContainerError(f"truncated container: the WAV header says {declared} data bytes, "
                             f"the packets hold {2 * c * frames}")
    sink.write(suffix)
    if not v1:
        wav_crc = _U32.unpack(src.read(4, "checksum"))[0]
        want = src.crc
        if _U32.unpack(src.read(4, "checksum"))[0] != want:
            raise ContainerError("corrupt container: checksum of the container does not match")
        if wav_crc != sink.crc:
            raise ContainerError("corrupt container: checksum of the restored file does not "
                                 "match")
        if not src.eof():
            raise ContainerError(f"corrupt container: bytes after the trailer (byte {src.pos})")
    return Decoded(1 if v1 else 2, frames, packets, sink.n)


def _decode_packet(dec: codec.Decoder, pkt: bytes, i: int, max_block: int) -> Any:
    try:
        info = codec.peek_packet(pkt)
    except (ValueError, RuntimeError) as e:
        raise ContainerError(f"corrupt container: packet {i} ({e})") from e
    if info.n_samples > max_block:
        raise ContainerError(f"corrupt container: packet {i} holds {info.n_samples} samples, "
                             f"more than the {max_block} declared")
    try:
        y, info = dec.decode(pkt)
    except (ValueError, RuntimeError) as e:
        raise ContainerError(f"corrupt container: packet {i} ({e})") from e
    if y is None or info.lost_packets:
        raise ContainerError(f"corrupt container: packet {i} could not be decoded (stream out "
                             "of sequence)")
    return y


def decode_wav(data: bytes, *, max_output: int = MAX_OUTPUT_BYTES) -> bytes:
    """The original WAV bytes from a container in memory; ContainerError if it is damaged."""
    out = io.BytesIO()
    decode(io.BytesIO(data), out, max_output=max_output)
    return out.getvalue()
