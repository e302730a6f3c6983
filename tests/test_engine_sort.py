"""The daemon's pipeline stage with online sorting on: spike batches carry unit labels."""

from __future__ import annotations

import numpy as np

from hil.implant import synth_recording
from host_tools.receiver import UnitTable
from hub.daemon.config_store import HubConfig
from hub.daemon.engine import PipelineStage
from hub.daemon.packets import Packer
from hub.daemon.scheduler import SPIKES
from hub.dsp.pipeline import PipelineConfig
from hub.link.blocks import Block
from hub.wire import pb

UNITS: list[UnitTable] = []


def run_stage(sort: bool, seconds: float = 6.0) -> tuple[list[tuple[int, int, int]], int, int]:
    rec = synth_recording(f"synth:16:30000:{seconds:g}")
    stage = PipelineStage(Packer(1), HubConfig(pipeline=PipelineConfig(sort=sort)))
    stage.set_stream(30000.0, 16)
    spikes: list[tuple[int, int, int]] = []
    lost = 0
    units = UnitTable()
    born: set[int] = set()
    for start in range(0, rec.num_samples - 300, 300):
        out = stage.process(Block(start, rec.read(start, start + 300)), 0, 0)
        lost += out.spikes_lost
        for p in out.packets:
            if p.stream != SPIKES:
                continue
            sb = pb.Envelope.FromString(p.body).spikes
            assert p.items == len(sb.offset)
            units.add(sb.unit_events)
            born |= {e.unit for e in sb.unit_events if e.kind == pb.UNIT_BIRTH}
            assert all(u in born for u in sb.unit if u >= 0), "a spike's unit is born first"
            spikes += [(sb.first_sample + o, c, u) for o, c, u in zip(sb.offset, sb.channel,
                                                                        sb.unit, strict=True)]
    assert stage.pipeline is not None
    UNITS.append(units)
    return spikes, lost, stage.pipeline.snippets.pending


def test_spike_times_exact_across_block_starts() -> None:
    """Spikes are decided D samples after their peak, so a block's batch can start before the
    block: the times on the wire are those the detector found (not clipped to the block)."""
    from hub.dsp.replay import replay

    spikes, _, _ = run_stage(sort=False)
    events = replay(synth_recording("synth:16:30000:6"), progress=None).events
    want = [(int(e["sample"]), int(e["channel"])) for e in events][:len(spikes)]
    assert [(t, c) for t, c, _ in spikes] == want


def test_sorted_spike_batches_carry_units_and_exact_times() -> None:
    plain, _, _ = run_stage(sort=False)
    labelled, lost, pending = run_stage(sort=True)
    assert all(u == -1 for _, _, u in plain)
    assert len(labelled) > 50
    late = np.array([u for t, _, u in labelled if t >= 3 * 30000])  # cold start: units born
    assert late.size > 10 and (late >= 0).mean() > 0.8, "most spikes are assigned to a unit"
    # same spikes, same sample indices; the sorted ones leave once their snippet completed
    assert lost == 0
    assert [(t, c) for t, c, _ in labelled] == [(t, c) for t, c, _ in plain][:len(labelled)]
    assert len(plain) - len(labelled) == pending
    units = UNITS[-1]
    assert units.counts["births"] >= 3, units.counts
    assert {units.resolve(u) for _, _, u in labelled if u >= 0} <= units.live
