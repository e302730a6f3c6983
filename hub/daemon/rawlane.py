"""The scheduler's raw lane: raw broadband from the implant's blocks straight into the
scheduler, with its one owner for everything raw — which channels (the host's selection, as
many as the link's spare budget fits, decided per block), how they are coded (int16, or the
lossless codec at send time: hub.daemon.rawcodec) and the accounting of every channel-sample
(queued, or shed at the source with its reason and channels).

Only samples the implant delivered are sent: a stretch the block assembler filled with held
values to bridge an implant gap (``Gap.filled``) is cut out of the raw stream (the gap itself is
reported once, as an implant gap).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hub.daemon.packets import Packer
from hub.daemon.rawcodec import RawCodec
from hub.link.blocks import Block
from hub.wire import pb

if TYPE_CHECKING:
    from hub.daemon.scheduler import Scheduler

log = logging.getLogger(__name__)


class RawLane:
    """Lives on the event loop with its scheduler; the pipeline's worker never sees raw."""

    def __init__(self, scheduler: Scheduler, packer: Packer) -> None:
        self.scheduler, self.packer = scheduler, packer
        self.channels: tuple[int, ...] | None = None    # None: every channel, in order
        self.use_codec = True
        self.n_channels = 0
        self.codec: RawCodec | None = None
        self.sent_channels = 0                            # channels packed for the last block
        self._filled: list[tuple[int, int]] = []          # held-sample stretches not yet passed

    def configure(self, channels: tuple[int, ...] | None, codec: bool) -> None:
        """The host's selection (applies from the next block)."""
        self.channels, self.use_codec = channels, codec

    def set_stream(self, fs: float, n_channels: int) -> None:
        self.n_channels = n_channels
        self.codec = RawCodec(fs)
        self._filled.clear()

    def note_filled(self, start: int, end: int) -> None:
        """Samples [start, end) of blocks to come are held values, not implant data."""
        if end > start:
            self._filled.append((start, end))

    @property
    def bits_per_sample(self) -> float:
        rc = self.codec
        return 16.0 / rc.ratio if rc is not None and self.use_codec else 16.0

    def push(self, block: Block, t_ns: int) -> None:
        """One block of the implant's samples: packs the channels that fit, accounts the rest."""
        chans = list(self.channels) if self.channels is not None else list(
            range(self.n_channels))
        sch = self.scheduler
        n_fit = sch.raw_channels_fit(len(chans), self.bits_per_sample)
        self.sent_channels = n_fit
        sent, shed = chans[:n_fit], tuple(chans[n_fit:])
        reason = pb.SHED_BUDGET if sch.uplink.connected else pb.SHED_OUTAGE
        for first, end in self._delivered(block):
            rows = block.samples[first - block.first_sample:end - block.first_sample]
            if self.use_codec and self.codec is not None:
                packets = self.packer.raw_coded(rows, first, sent, t_ns, self.codec)
            else:
                packets = self.packer.raw(rows, first, sent, t_ns)
            for p in packets:
                sch.submit(p)
            if shed:
                sch.account_at_source(pb.STREAM_RAW, len(shed) * (end - first), first, end,
                                      reason, shed)

    def _delivered(self, block: Block) -> list[tuple[int, int]]:
        """[first, end) stretches of the block that came from the implant."""
        first, end = block.first_sample, block.first_sample + block.samples.shape[0]
        self._filled = [(a, b) for a, b in self._filled if b > first]
        out, pos = [], first
        for a, b in sorted(self._filled):
            if a >= end:
                break
            if a > pos:
                out.append((pos, a))
            pos = max(pos, min(b, end))
        if pos < end:
            out.append((pos, end))
        return out
