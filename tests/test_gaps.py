"""A gap is a gap: counter gaps on the implant link never invent spikes or samples.

The adversary's run on the old code: ten 0.3 s gaps in 16 channels of noise → 31,968 spike
events (5 without gaps). The assembler held the last value through the gap, the noise estimate
collapsed on the flat stretch, every channel crossed threshold when data resumed, and the held
samples went out as raw data.
"""

from __future__ import annotations

import numpy as np

from hub.daemon.config_store import HubConfig
from hub.daemon.engine import PipelineStage
from hub.daemon.packets import Packer
from hub.daemon.scheduler import FEATURES, SPIKES
from hub.link import BlockAssembler, FrameParser, encode_frame
from hub.link.blocks import Block
from hub.wire import pb

FS, C, SPF = 30000, 16, 30
SECONDS = 10
GAPS_S = [(0.8 + 0.9 * k, 0.3) for k in range(10)]      # ten 0.3 s gaps


def noise_frames(seed: int = 3) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Gaussian noise (σ 20 counts) on an ADC offset per channel; the frames that survive the
    gaps, and the gaps' sample ranges."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 400, C)
    n_frames = SECONDS * FS // SPF
    lost = set()
    gaps = []
    for t, d in GAPS_S:
        a, b = round(t * FS / SPF), round((t + d) * FS / SPF)
        lost.update(range(a, b))
        gaps.append((a * SPF, b * SPF))
    out = []
    for k in range(n_frames):
        x = np.clip(np.rint(rng.normal(0, 20, (SPF, C)) + offset), -32768, 32767)
        if k not in lost:
            out.append(encode_frame(k, x.astype(np.int16), FS))
    return out, gaps


def run(frames: list[bytes]) -> tuple[int, list[tuple[int, int]], PipelineStage, int]:
    """(spike events, sample ranges of the blocks — what the raw lane sends from —, the stage,
    feature-bin samples) through the hub's link and pipeline stage, as the daemon runs them."""
    stage = PipelineStage(Packer(1), HubConfig(), float(FS), C)
    asm = BlockAssembler(block_samples=stage.block_samples)
    parser = FrameParser()
    spikes, blocks, bin_samples = 0, [], 0
    for frame in parser.feed(b"".join(frames)):
        for item in asm.push(frame):
            if not isinstance(item, Block):
                continue
            blocks.append((item.first_sample, item.first_sample + item.samples.shape[0]))
            out = stage.process(item, 0)
            for p in out.packets:
                if p.stream == SPIKES:
                    spikes += p.items
                elif p.stream == FEATURES:
                    bin_samples += sum(pb.Envelope.FromString(p.body).features.samples_seen)
    return spikes, blocks, stage, bin_samples


def test_gaps_invent_no_spikes_and_no_samples() -> None:
    kept, gaps = noise_frames()
    full, _, full_stage, _ = run(noise_frames_all())
    spikes, blocks, stage, bin_samples = run(kept)
    assert spikes <= full + 3, f"{spikes} spikes with gaps vs {full} without: invented"
    for a, b in blocks:                # no sample from inside a gap (the raw lane sends these)
        assert all(b <= g0 or a >= g1 for g0, g1 in gaps), ((a, b), gaps)
    # the pipeline resumed (σ held, sorter kept) instead of being rebuilt at every gap
    assert stage.rebuilds == 1 and stage.pipeline is not None and stage.pipeline.gaps == 10
    sig, sig_full = stage.pipeline.noise_counts(), full_stage.pipeline.noise_counts()  # type: ignore[union-attr]
    assert np.all(np.abs(sig / sig_full - 1) < 0.1)
    # feature bins count only samples that arrived (all but the bins still open at the end)
    arrived = len(kept) * SPF
    assert arrived - 2 * stage.pipeline.bin_samples <= bin_samples <= arrived


def noise_frames_all() -> list[bytes]:
    global GAPS_S
    saved, GAPS_S = GAPS_S, []
    try:
        return noise_frames()[0]
    finally:
        GAPS_S = saved
