"""The daemon's pipeline stage with online sorting on: spike batches carry unit labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hil.implant import synth_recording
from host_tools.receiver import UnitTable
from hub.daemon.config_store import HubConfig
from hub.daemon.engine import PipelineStage
from hub.daemon.packets import Packer
from hub.daemon.scheduler import SPIKES
from hub.dsp.pipeline import Pipeline, PipelineConfig
from hub.link.blocks import Block
from hub.wire import pb

UNITS: list[UnitTable] = []
LABELS: list[list[tuple[int, int, int]]] = []


def run_stage(sort: bool, seconds: float = 6.0) -> tuple[list[tuple[int, int, int]], int, int]:
    rec = synth_recording(f"synth:16:30000:{seconds:g}")
    stage = PipelineStage(Packer(1), HubConfig(pipeline=PipelineConfig(sort=sort)), 30000.0, 16)
    spikes: list[tuple[int, int, int]] = []
    lost = 0
    units = UnitTable()
    born: set[int] = set()
    labels: list[tuple[int, int, int]] = []
    for start in range(0, rec.num_samples - 300, 300):
        out = stage.process(Block(start, rec.read(start, start + 300)), 0)
        lost += out.spikes_lost
        for p in out.packets:
            if p.stream != SPIKES:
                continue
            sb = pb.Envelope.FromString(p.body).spikes
            assert p.items == len(sb.offset)
            units.add(sb.unit_events)
            born |= {e.unit for e in sb.unit_events if e.kind == pb.UNIT_BIRTH}
            labels += [(e.sample, e.channel, e.unit) for e in sb.unit_events
                       if e.kind == pb.UNIT_LABEL]
            assert all(u in born for u in sb.unit if u >= 0), "a spike's unit is born first"
            spikes += [(sb.first_sample + o, c, u) for o, c, u in zip(sb.offset, sb.channel,
                                                                        sb.unit, strict=True)]
            sent = {(t, c) for t, c, _ in spikes}
            assert all((t, c) in sent for t, c, _ in labels), "a late label names a spike sent"
    assert stage.pipeline is not None
    UNITS.append(units)
    LABELS.append(labels)
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
    # the founding spikes of the units born here come late, as UNIT_LABEL unit events
    late = LABELS[-1]
    assert units.counts["labels"] == len(late) >= units.counts["births"]
    assert all(u in units.live or u in units.merged_into for _, _, u in late)


def _units(pipe: Pipeline, rec: Any, n_blocks: int) -> list[int]:
    units: list[int] = []
    for k in range(n_blocks):
        res = pipe.process(rec.read(k * 300, (k + 1) * 300))
        units += res.snippet_events["unit"].tolist()
    return units


def test_live_threshold_change_reaches_the_sorter() -> None:
    """A live threshold change with sorting on: the sorter's σ follows (it used to stay
    scaled by the build-time threshold) and so does Detector.cfg. A pipeline built at k=5 and
    set live to k=9 before any data sorts exactly as one built at 9."""
    rec = synth_recording("synth:16:30000:8")
    built = Pipeline(PipelineConfig(sort=True, threshold=9.0), 16, 30000.0)
    live = Pipeline(PipelineConfig(sort=True, threshold=5.0), 16, 30000.0)
    assert live.apply(PipelineConfig(sort=True, threshold=9.0))
    assert live.detector.cfg.threshold == 9.0
    a, b = _units(built, rec, 790), _units(live, rec, 790)
    assert len(a) > 50 and max(a) >= 0
    assert a == b
    assert live.sorter is not None and built.sorter is not None
    assert live.sorter.detect_threshold == 9.0
    assert live.sorter.stats() == built.sorter.stats()
    for k, v in built.sorter.clusters().items():
        assert np.array_equal(live.sorter.clusters()[k], v), k


def test_live_threshold_change_mid_stream_splits_at_the_decision() -> None:
    """Changed mid-stream, spikes decided before the change are sorted with the old k and
    those after with the new; a non-live change asks for a rebuild (nothing changed)."""
    rec = synth_recording("synth:16:30000:4")
    pipe = Pipeline(PipelineConfig(sort=True), 16, 30000.0)
    _units(pipe, rec, 100)
    assert pipe.apply(PipelineConfig(sort=True, threshold=6.0))
    assert pipe.sorter is not None and pipe.sorter.detect_threshold == 5.0   # not yet
    for k in range(100, 110):
        pipe.process(rec.read(k * 300, (k + 1) * 300))
    assert pipe.sorter.detect_threshold == 6.0 and not pipe._sort_k
    assert not pipe.apply(PipelineConfig(sort=True, threshold=6.0, bin_ms=25.0))
    assert pipe.cfg.bin_ms == 20.0


def test_stage_apply_tags_versions_and_rebuilds_between_blocks() -> None:
    rec = synth_recording("synth:16:30000:2")
    stage = PipelineStage(Packer(1), HubConfig(), 30000.0, 16)
    outs = [stage.process(Block(k * 300, rec.read(k * 300, (k + 1) * 300)), 0)
            for k in range(3)]
    first = stage.pipeline
    stage.apply(HubConfig().with_values({"threshold": 8.0}), 1)
    assert stage.pipeline is first and first is not None and first.detector.cfg.threshold == 8.0
    outs.append(stage.process(Block(900, rec.read(900, 1200)), 0))
    stage.apply(HubConfig().with_values({"bin_ms": 25.0}), 2)
    assert stage.pipeline is not first                      # rebuilt, starts at the next block
    outs.append(stage.process(Block(1200, rec.read(1200, 1500)), 0))
    assert [o.version for o in outs] == [0, 0, 0, 1, 2]
    assert stage.base == 1200 and stage.counters().rebuilds == 2
    with pytest.raises(ValueError, match="bin_ms"):
        stage.apply(HubConfig().with_values({"bin_ms": 0.1}), 3)
    assert stage.version == 2
