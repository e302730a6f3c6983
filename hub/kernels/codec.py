"""Lossless broadband codec and compact event/snippet coding (see nk_codec.h, nk_codec_events.h).

The hub encodes each block with :class:`Encoder` (one packet per block); the host decodes the
packets in order with :class:`Decoder`, built from the encoder's stream header. A lost or
corrupt packet is reported (``PacketInfo.lost_packets``, ``skipped``) and decoding resumes at
the next resync point. Buffers sized by the C ``max_size`` functions are allocated once and
reused; numpy inputs are passed to C without copying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.errors import NK_ERR_CORRUPT, KernelCorruptInput
from hub.kernels._ffi import buf_in, buf_out, check, load, new_state
from hub.kernels.frontend import EVENT_DTYPE

ffi, lib = load()

I16 = npt.NDArray[np.int16]
F32 = npt.NDArray[np.float32]

#: Default resync interval: one second at the Neuralink N1's 19531 Hz.
DEFAULT_RESYNC = 19531
#: Largest snippet batch decode_events accepts (floats): a guard against forged headers.
_MAX_SNIPPET_FLOATS = 1 << 24


def fit_ladder(data: npt.ArrayLike) -> I16 | None:
    """The level ladder of int16 ``data`` (sorted levels, gaps of a regular ladder filled),
    or None when the data does not look like a scaled low-resolution ADC."""
    x = np.ascontiguousarray(data, dtype=np.int16).ravel()
    out = np.empty(65536, dtype=np.int16)
    n = int(lib.nk_codec_fit_ladder(buf_in("int16_t *", x), x.size, buf_out("int16_t *", out),
                                    out.size))
    if n < 0:
        check(n, "nk_codec_fit_ladder")
    return out[:n].copy() if n > 0 else None


@dataclass(frozen=True)
class PacketInfo:
    """Header fields of one packet, and what the decoder did with it."""

    n_samples: int
    resync: bool
    skipped: bool          # not decodable: an earlier packet was lost, waiting for a resync
    seq: int
    first_sample: int      # mod 2**32
    lost_packets: int      # packets missing just before this one

    @classmethod
    def _from_c(cls, info: Any) -> PacketInfo:
        return cls(int(info.n_samples), bool(info.resync), bool(info.skipped), int(info.seq),
                   int(info.first_sample), int(info.lost_packets))


class Encoder:
    """Block encoder for ``n_channels`` int16 channels; :attr:`header` starts the stream."""

    def __init__(self, n_channels: int, *, sample_rate: int = 0,
                 resync_interval: int = DEFAULT_RESYNC, levels: npt.ArrayLike | None = None,
                 max_block: int = 4096) -> None:
        lv = None if levels is None else np.ascontiguousarray(levels, dtype=np.int16)
        if lv is not None and (lv.ndim != 1 or lv.size < 2 or np.any(np.diff(lv) <= 0)):
            raise ValueError("levels must be a strictly increasing 1-D int16 array (≥ 2 levels)")
        if not 1 <= n_channels <= lib.NK_CODEC_MAX_CHANNELS:
            raise ValueError(f"n_channels must be in 1..{lib.NK_CODEC_MAX_CHANNELS}")
        if resync_interval < 0 or sample_rate < 0:
            raise ValueError("resync_interval and sample_rate must be ≥ 0")
        n_levels = 0 if lv is None else int(lv.size)
        cfg = ffi.new("nk_codec_config *", {"n_channels": n_channels, "sample_rate": sample_rate,
                                            "resync_interval": resync_interval,
                                            "n_levels": n_levels})
        out = ffi.new("nk_codec_enc **")
        self._st = new_state(
            lib.nk_codec_enc_new(cfg, ffi.NULL if lv is None else buf_in("int16_t *", lv), out),
            out, lib.nk_codec_enc_free, "nk_codec_enc_new")
        self.n_channels = n_channels
        self.levels = lv
        hbuf = bytearray(int(lib.nk_codec_max_header_size(n_levels)))
        n = ffi.new("int32_t *")
        check(lib.nk_codec_enc_header(self._st, buf_out("uint8_t *", hbuf), len(hbuf), n),
              "nk_codec_enc_header")
        self.header = bytes(hbuf[: n[0]])
        self._buf = bytearray(0)
        self._grow(max_block)
        self._n = ffi.new("int64_t *")

    def _grow(self, n_samples: int) -> None:
        need = int(lib.nk_codec_max_packet_size(self.n_channels, n_samples))
        if len(self._buf) < need:
            self._buf = bytearray(need)
            self._cbuf = buf_out("uint8_t *", self._buf)

    def encode(self, block: I16) -> bytes:
        """One packet for ``block`` of shape (n_samples, n_channels), C-contiguous int16."""
        if not isinstance(block, np.ndarray) or block.dtype != np.int16:
            raise TypeError("block must be a numpy int16 array")
        if block.ndim == 1 and self.n_channels == 1:
            block = block.reshape(-1, 1)
        if block.ndim != 2 or block.shape[1] != self.n_channels:
            raise ValueError(f"block must have shape (n, {self.n_channels}), got {block.shape}")
        if not 1 <= block.shape[0] <= lib.NK_CODEC_MAX_BLOCK:
            raise ValueError(f"a block holds 1..{lib.NK_CODEC_MAX_BLOCK} samples per channel")
        block = np.ascontiguousarray(block)
        self._grow(block.shape[0])
        check(lib.nk_codec_encode(self._st, buf_in("int16_t *", block), block.shape[0],
                                  self._cbuf, len(self._buf), self._n), "nk_codec_encode")
        return bytes(self._buf[: self._n[0]])

    def force_resync(self) -> None:
        """Makes the next packet a resync point."""
        lib.nk_codec_enc_force_resync(self._st)


class Decoder:
    """Decodes the packets of one stream, in order, from its header."""

    def __init__(self, header: bytes) -> None:
        out = ffi.new("nk_codec_dec **")
        self._st = new_state(lib.nk_codec_dec_new(header, len(header), out), out,
                             lib.nk_codec_dec_free, "nk_codec_dec_new (stream header)")
        cfg = ffi.new("nk_codec_config *")
        check(lib.nk_codec_dec_config(self._st, cfg, ffi.NULL, 0), "nk_codec_dec_config")
        self.n_channels = int(cfg.n_channels)
        self.sample_rate = int(cfg.sample_rate)
        self.resync_interval = int(cfg.resync_interval)
        self.levels: I16 | None = None
        if cfg.n_levels:
            lv = np.empty(cfg.n_levels, dtype=np.int16)
            check(lib.nk_codec_dec_config(self._st, cfg, buf_out("int16_t *", lv), lv.size),
                  "nk_codec_dec_config")
            self.levels = lv
        self._info = ffi.new("nk_codec_packet_info *")
        self._dummy = ffi.new("int16_t[]", self.n_channels)

    def decode(self, packet: bytes, out: I16 | None = None) -> tuple[I16 | None, PacketInfo]:
        """(samples (n_samples, n_channels) or None when skipped, packet info).
        Raises KernelError for a corrupt packet; the next resync point recovers."""
        if lib.nk_codec_packet_peek(packet, len(packet), self._info) != 0:
            # let the decoder see the bad packet too: it then waits for a resync point
            check(lib.nk_codec_decode(self._st, packet, len(packet), self._dummy, 0, self._info),
                  "nk_codec_decode")
        n = int(self._info.n_samples)
        if out is None:
            out = np.empty((n, self.n_channels), dtype=np.int16)
        if out.dtype != np.int16 or out.ndim != 2 or out.shape[1] != self.n_channels \
                or out.shape[0] < n or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous int16 of shape (≥{n}, {self.n_channels})")
        check(lib.nk_codec_decode(self._st, packet, len(packet), buf_out("int16_t *", out),
                                  out.shape[0], self._info), "nk_codec_decode")
        info = PacketInfo._from_c(self._info)
        return (None if info.skipped else out[:n]), info

    def reset(self) -> None:
        """Forgets the packet sequence: the next resync point starts decoding again."""
        lib.nk_codec_dec_reset(self._st)


def peek_packet(packet: bytes) -> PacketInfo:
    """Header fields of a packet (CRC checked) without decoding it."""
    info = ffi.new("nk_codec_packet_info *")
    check(lib.nk_codec_packet_peek(packet, len(packet), info), "nk_codec_packet_peek")
    return PacketInfo._from_c(info)


def encode_events(events: np.ndarray[Any, Any], snippets: F32 | None = None,
                  step: float = 1.0) -> bytes:
    """A batch of events (EVENT_DTYPE, sorted by sample then channel) and optionally their
    snippets (n, K, W) float32 as one byte string; amplitudes and snippet samples are
    quantised to ``step`` counts (error ≤ step/2), the threshold is not sent."""
    ev = np.ascontiguousarray(events, dtype=EVENT_DTYPE)
    if ev.ndim != 1:
        raise ValueError("events must be a 1-D array of EVENT_DTYPE")
    k = w = 0
    sn = ffi.NULL
    if snippets is not None:
        s = np.ascontiguousarray(snippets, dtype=np.float32)
        if s.ndim != 3 or s.shape[0] != ev.size:
            raise ValueError(f"snippets must have shape ({ev.size}, K, W), got {s.shape}")
        k, w = int(s.shape[1]), int(s.shape[2])
        sn = buf_in("float *", s)
    cap = int(lib.nk_codec_events_max_size(ev.size, k, w))
    buf = bytearray(cap)
    n = ffi.new("int64_t *")
    st = lib.nk_codec_events_encode(buf_in("nk_event *", ev), ev.size, sn, k, w, step,
                                    buf_out("uint8_t *", buf), cap, n)
    if st == lib.NK_ERR_ARG:
        raise ValueError("events must be sorted by (sample, channel) with channel ≥ 0, unit ≥ -1 "
                         "and |amplitude|/step < 1e9; snippets finite with |x|/step < 32767; "
                         "step > 0")
    check(st, "nk_codec_events_encode")
    return bytes(buf[: n[0]])


def decode_events(data: bytes) -> tuple[np.ndarray[Any, Any], F32 | None]:
    """(events, snippets or None) from :func:`encode_events` output; threshold is 0."""
    n, k, w = ffi.new("int32_t *"), ffi.new("int32_t *"), ffi.new("int32_t *")
    check(lib.nk_codec_events_peek(data, len(data), n, k, w), "nk_codec_events_peek")
    if n[0] > 64 * len(data) or n[0] * k[0] * w[0] > _MAX_SNIPPET_FLOATS:
        raise KernelCorruptInput("nk_codec_events_decode: corrupt input (batch size)",
                                 status=NK_ERR_CORRUPT, call="nk_codec_events_decode")
    ev = np.zeros(n[0], dtype=EVENT_DTYPE)
    snip = np.zeros((n[0], k[0], w[0]), dtype=np.float32) if k[0] else None
    got = ffi.new("int32_t *")
    check(lib.nk_codec_events_decode(
        data, len(data), buf_out("nk_event *", ev), ev.size,
        ffi.NULL if snip is None else buf_out("float *", snip),
        0 if snip is None else snip.size, got), "nk_codec_events_decode")
    return ev, snip
