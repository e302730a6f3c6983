"""Templates over the link (LoadTemplates) carry everything the templates file does: a hub
loaded through its real control path sorts exactly as one loaded from the file; what a host
cannot load is refused whole, before anything changes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hil.implant import synth_recording
from host_tools.templates_wire import load_templates_commands, load_templates_parts
from hub.daemon.control import Control, Templates
from hub.dsp.pipeline import PipelineConfig
from hub.dsp.sorting import TemplateSet, sort_recording
from hub.sources import Recording
from hub.wire import SCHEMA_VERSION, Chunker, pb
from tests.test_control import FakeHub

FS = 30000.0
RATE = 30000            # the implant frame's sampling rate field (integer Hz)
FRAME = 30                # samples per implant frame (1 ms)
CALIB_S, RUN_S = 2.0, 4.0


def calibrated(rec: Recording, n_features: int) -> TemplateSet:
    """Templates the way hubctl calibrate derives them (hub-domain means, the detector's σ at
    the end of the segment), with the hub's own cold-start sort standing in for the offline
    sorter."""
    import spikeinterface.core as si

    from host_tools.calibrate import templates_from_sorting

    cfg = PipelineConfig(sort=True)
    last = round(CALIB_S * FS)
    cold = sort_recording(rec, cfg, last=last)
    keep = cold.final_units >= 0
    sorting = si.NumpySorting.from_samples_and_labels([cold.samples[keep]],
                                                      [cold.final_units[keep]], FS)
    ts, _ = templates_from_sorting(rec, sorting, cfg, 0, last, min_spikes=5,
                                   n_features=n_features, validate=False)
    assert ts.unit_ids.size >= 4 and ts.noise.size == rec.num_channels
    assert ts.basis.shape[0] == n_features
    return ts


async def _daemon_sort(tmp_path: Path, rec: Recording, ts: TemplateSet, n_frames: int
                       ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int, int]],
                                  int, list[pb.CommandResult], PipelineConfig]:
    """The daemon, fed `rec` frame by frame over its TCP implant link: 20 frames (the stream
    starts), Configure sort=true, LoadTemplates (every part, through the command port), then
    the rest. Returns its spikes (sample, channel, unit), unit events, the sample its sorting
    pipeline started at, the command results and its pipeline configuration."""
    from hub.daemon.supervisor import Daemon, DaemonOptions
    from hub.link import encode_frame
    from hub.uplink.tcp import TcpUplink

    daemon = Daemon(DaemonOptions(implant="tcp:127.0.0.1:0", state_dir=tmp_path),
                    TcpUplink(rate_bps=None))
    results: list[pb.CommandResult] = []
    spikes: list[tuple[int, int, int]] = []
    events: list[tuple[int, int, int, int]] = []
    submit = daemon.scheduler.submit

    def capture(pkt: Any) -> None:
        env = pb.Envelope.FromString(pkt.body)
        if env.WhichOneof("payload") == "result":
            results.append(env.result)
        elif env.WhichOneof("payload") == "spikes":
            sb = env.spikes
            spikes.extend((sb.first_sample + o, c, u)
                          for o, c, u in zip(sb.offset, sb.channel, sb.unit, strict=True))
            events.extend((e.sample, e.kind, e.unit, e.other) for e in sb.unit_events)
        submit(pkt)

    daemon.scheduler.submit = capture  # type: ignore[method-assign]
    run = asyncio.create_task(daemon.run())
    while daemon.transport.address.endswith(":0"):
        await asyncio.sleep(0.01)
    host, port = daemon.transport.address[4:].rsplit(":", 1)
    _, w = await asyncio.open_connection(host, int(port))

    async def stream(k0: int, k1: int) -> None:
        """Frames [k0, k1), 100 at a time, each batch run by the worker before the next
        (the block queue never overflows; hang guard 60 s a batch)."""
        for a in range(k0, k1, 100):
            b = min(k1, a + 100)
            for k in range(a, b):
                w.write(encode_frame(k, np.ascontiguousarray(rec.read(k * FRAME,
                                                                      (k + 1) * FRAME)), RATE))
            await w.drain()
            for _ in range(1200):
                if daemon.stage_counters().blocks >= b * FRAME // 300 - 1:
                    break
                await asyncio.sleep(0.05)

    async def commands(*cmds: pb.Command) -> None:
        want = len(results) + len(cmds)
        for cmd in cmds:
            for chunk in Chunker().chunks(cmd.SerializeToString()):
                daemon._on_command(chunk)
        for _ in range(600):
            if len(results) >= want:
                return
            await asyncio.sleep(0.05)

    await stream(0, 20)
    await commands(pb.Command(request_id=100, schema_version=SCHEMA_VERSION,
                              configure=pb.Configure(pipeline=pb.PipelineSettings(sort=True))))
    await commands(*load_templates_commands(ts, first_request_id=200))
    await stream(20, n_frames)
    assert daemon.worker is not None
    base = daemon.worker.stage.base
    cfg = daemon.config.pipeline
    daemon._stop.set()
    await run
    w.close()
    return spikes, events, base, results, cfg


@pytest.mark.slow
@pytest.mark.parametrize("n_features", [0, 3])
def test_link_loaded_hub_sorts_like_file_loaded(tmp_path: Path, n_features: int) -> None:
    """Calibrated templates (noise σ per channel; with a feature basis or without) loaded over
    the daemon's command port give the same spikes, units and unit events as the same file
    loaded by `hubctl sort --templates` (hub.dsp.sorting.sort_recording) from the sample the
    daemon's sorting pipeline started at. Before LoadTemplates carried σ and the basis, the
    link-loaded hub learnt σ over a 0.2 s warm-up (and matched full waveforms) instead."""
    rec = synth_recording(f"synth:64:{FS:g}:{CALIB_S + RUN_S:g}:3")
    ts = calibrated(rec, n_features)
    path = tmp_path / "templates.npz"
    ts.save(path)
    ts = TemplateSet.load(path)
    assert len(load_templates_parts(ts)) >= 2          # the set travels in parts
    first = round(CALIB_S * FS)
    n_frames = rec.num_samples // FRAME
    spikes, events, base, results, cfg = asyncio.run(
        _daemon_sort(tmp_path / "state", _shifted(rec, first), ts, n_frames - first // FRAME))
    assert all(r.code == pb.RESULT_OK for r in results), [r.message for r in results]
    assert base == 600          # the sorting pipeline started with the 3rd block
    file = sort_recording(rec, cfg, TemplateSet.load(path), first=first + base)
    end = rec.num_samples - first - 2000        # the daemon's last snippets may be pending
    want = [(int(t) + base, int(c), int(u)) for t, c, u in
            zip(file.samples, file.channels, file.units, strict=True) if t + base < end]
    got = sorted(s for s in spikes if base <= s[0] < end)
    assert len(want) > 100 and sum(u >= 0 for _, _, u in want) > 0.6 * len(want)
    assert got == sorted(want)
    fe = [(int(e["sample"]) + base, int(e["kind"]), int(e["unit"]), int(e["other"]))
          for e in file.sort_events if e["sample"] + base < end - 500]
    assert [e for e in events if e[0] < end - 500] == fe


def _shifted(rec: Recording, first: int) -> Recording:
    """`rec` from sample `first` on (the daemon's implant stream starts there)."""
    return Recording(name=rec.name, sampling_frequency=rec.sampling_frequency,
                     num_channels=rec.num_channels, num_samples=rec.num_samples - first,
                     gain_to_uV=rec.gain_to_uV,
                     reader=lambda a, b: rec.read(first + a, first + b))


# ------------------------------------------------------------ the message, without a daemon
def _ts(n_units: int = 5, channels: int = 20, n_features: int = 2) -> TemplateSet:
    rng = np.random.default_rng(1)
    t = rng.normal(0, 3, (n_units, channels, 48)).astype(np.float32)
    t[:, np.arange(n_units) % channels, 16] -= 150
    return TemplateSet(FS, 16, 32, np.arange(n_units, dtype=np.int32) * 3 + 4, t,
                       rng.normal(0, 0.2, (n_features, 48)).astype(np.float32),
                       noise=rng.uniform(8, 30, channels).astype(np.float32))


class Recorder(FakeHub):
    def __init__(self) -> None:
        super().__init__()
        self.sorter = True
        self.loads: list[Templates] = []

    async def load_templates(self, templates: Templates) -> None:
        self.loads.append(templates)


def _send(ctl: Control, cmds: list[pb.Command]) -> list[pb.CommandResult]:
    async def go() -> list[pb.CommandResult]:
        return [await ctl.handle(c.SerializeToString()) for c in cmds]
    return asyncio.run(go())


@pytest.mark.parametrize("max_bytes", [60000, 9000])
def test_message_rebuilds_the_file_bit_for_bit(max_bytes: int) -> None:
    ts = _ts()
    parts = load_templates_parts(ts, max_bytes)
    assert (len(parts) > 1) == (max_bytes < 20000)
    assert all(p.ByteSize() <= max_bytes for p in parts)
    hub = Recorder()
    cmds = [pb.Command(request_id=i + 1, schema_version=SCHEMA_VERSION, load_templates=p)
            for i, p in enumerate(parts)]
    res = _send(Control(hub), cmds)
    assert [r.code for r in res] == [pb.RESULT_OK] * len(parts)
    assert len(hub.loads) == 1                   # applied once, with the last part
    got = hub.loads[0].template_set(20, FS, 16)
    for name in ("templates", "unit_ids", "basis", "noise"):
        assert np.array_equal(getattr(got, name), getattr(ts, name)), name
    assert (got.pre, got.post, got.sampling_frequency) == (ts.pre, ts.post, ts.sampling_frequency)


def test_an_old_sender_gets_the_documented_defaults() -> None:
    """No noise, basis, pre or rate: no σ seed, full waveforms, the hub's snippet_pre and rate."""
    hub = Recorder()
    lt = pb.LoadTemplates(n_units=1, n_channels=2, n_samples=48, waveforms=[-50.0] * 96,
                          channels=[0, 5])
    res = _send(Control(hub), [pb.Command(request_id=1, schema_version=SCHEMA_VERSION,
                                          load_templates=lt)])
    assert res[0].code == pb.RESULT_OK, res[0].message
    ts = hub.loads[0].template_set(20, FS, 16)
    assert ts.noise.size == 0 and ts.basis.shape == (0, 48)
    assert (ts.pre, ts.post, ts.sampling_frequency) == (16, 32, FS)


def _bad(field: str, value: Any) -> pb.LoadTemplates:
    lt = load_templates_parts(_ts())[0]
    if field == "noise":
        lt.noise[3] = value
    elif field == "noise_len":
        del lt.noise[-1]
    elif field == "basis":
        lt.basis[5] = value
    elif field == "n_features":
        lt.n_features = value
    else:
        setattr(lt, field, value)
    return lt


@pytest.mark.parametrize("field,value,match", [
    ("noise", float("nan"), "noise"), ("noise", -2.0, "noise"), ("noise", 0.0, "noise"),
    ("noise", float("inf"), "noise"), ("noise", 1e9, "noise"), ("noise_len", None, "noise"),
    ("basis", float("nan"), "basis"), ("basis", 1e30, "basis"), ("n_features", 3, "basis"),
    ("n_features", 49, "basis"), ("pre", 48, "pre"), ("pre", 20, "pre"),
    ("sampling_frequency", float("nan"), "sampling_frequency"),
    ("sampling_frequency", -30000.0, "sampling_frequency"),
    ("sampling_frequency", 20000.0, "sampling_frequency"),
    ("sampling_frequency", 1e12, "sampling_frequency"),
])
def test_out_of_range_fields_are_refused_before_anything_is_applied(
        field: str, value: Any, match: str) -> None:
    hub = Recorder()
    res = _send(Control(hub), [pb.Command(request_id=1, schema_version=SCHEMA_VERSION,
                                          load_templates=_bad(field, value))])
    assert res[0].code == pb.RESULT_INVALID_ARGUMENT and match in res[0].message, res[0].message
    assert hub.loads == []


def test_a_bad_part_discards_the_staged_set() -> None:
    """A part refused (or out of order) leaves nothing staged and nothing applied; the whole
    set sent again from part 0 loads."""
    ts = _ts()
    parts = load_templates_parts(ts, 9000)
    assert len(parts) >= 3
    hub = Recorder()
    ctl = Control(hub)

    def cmd(p: pb.LoadTemplates) -> pb.Command:
        return pb.Command(request_id=1, schema_version=SCHEMA_VERSION, load_templates=p)

    late = pb.LoadTemplates()
    late.CopyFrom(parts[1])
    late.noise.append(5.0)                       # set-wide field outside part 0
    skipped = [cmd(parts[0]), cmd(parts[2])]
    codes = [r.code for r in _send(ctl, [cmd(parts[0]), cmd(late), *map(cmd, parts[1:])])]
    assert codes[:2] == [pb.RESULT_OK, pb.RESULT_INVALID_ARGUMENT]
    assert codes[2] == pb.RESULT_INVALID_ARGUMENT     # part 1 after the discard: out of order
    assert hub.loads == []
    assert [r.code for r in _send(ctl, skipped)][1] == pb.RESULT_INVALID_ARGUMENT
    dup = pb.LoadTemplates()
    dup.CopyFrom(parts[-1])
    dup.unit_ids[0] = parts[0].unit_ids[0]
    codes = [r.code for r in _send(ctl, [*map(cmd, parts[:-1]), cmd(dup)])]
    assert codes[-1] == pb.RESULT_INVALID_ARGUMENT and hub.loads == []
    assert all(r.code == pb.RESULT_OK for r in _send(ctl, list(map(cmd, parts))))
    assert len(hub.loads) == 1 and np.array_equal(hub.loads[0].unit_ids, ts.unit_ids)



def test_a_set_wide_field_is_refused_with_part_0() -> None:
    """σ for another channel count is refused with the first part, not after the last."""
    parts = load_templates_parts(_ts(), 9000)
    del parts[0].noise[-1]
    hub = Recorder()
    res = _send(Control(hub), [pb.Command(request_id=1, schema_version=SCHEMA_VERSION,
                                          load_templates=parts[0])])
    assert res[0].code == pb.RESULT_INVALID_ARGUMENT and "noise" in res[0].message


# ------------------------------------------------------------ the pipeline stage
def test_the_stage_loads_like_a_file_and_keeps_the_set_across_rebuilds(
        caplog: pytest.LogCaptureFixture) -> None:
    """Loaded before its sorting pipeline's first block, the set seeds σ (as from a file);
    loaded into a running pipeline, the measured σ stays; a configuration that rebuilds the
    pipeline keeps the units (they used to vanish); one they no longer fit drops them,
    logged."""
    import dataclasses

    from hub.daemon.config_store import HubConfig
    from hub.daemon.engine import PipelineStage
    from hub.daemon.packets import Packer
    from hub.link.blocks import Block

    rec = synth_recording("synth:16:30000:1")
    cfg = HubConfig(pipeline=PipelineConfig(sort=True))
    ts = _ts(3, 16, 0)
    stage = PipelineStage(Packer(1), cfg, FS, 16)
    stage.load_templates(ts)                          # stream known, no block yet
    assert stage.pipeline is not None and stage.pipeline.sorter is not None
    assert np.allclose(stage.pipeline.detector.noise(), ts.noise, rtol=1e-6)   # seeded
    for a in range(0, 3000, 300):
        stage.process(Block(a, rec.read(a, a + 300)), 0)
    sigma = stage.pipeline.detector.noise()
    stage.load_templates(_ts(2, 16, 0))               # running: the measured σ stays
    assert np.array_equal(stage.pipeline.detector.noise(), sigma)
    assert [f["unit"] for f in stage.pipeline.sorter.fit()] == [4, 7]
    wider = dataclasses.replace(cfg, pipeline=dataclasses.replace(cfg.pipeline,
                                                                  snippet_channels=3))
    stage.apply(wider, 1)                             # rebuilt: the set comes along
    assert stage.pipeline.sorter is not None and stage.pipeline.cfg.snippet_channels == 3
    assert [f["unit"] for f in stage.pipeline.sorter.fit()] == [4, 7]
    assert np.allclose(stage.pipeline.detector.noise(), _ts(2, 16, 0).noise, rtol=1e-6)
    shifted = dataclasses.replace(wider, pipeline=dataclasses.replace(wider.pipeline,
                                                                      snippet_pre=20))
    with caplog.at_level("ERROR"):
        stage.apply(shifted, 2)
    assert stage.templates is None and stage.pipeline.sorter.fit() == []
    assert "do not fit the new pipeline" in caplog.text


# ------------------------------------------------------------ hubctl against a `hub run`
@pytest.mark.slow
def test_hubctl_record_loads_a_templates_file(tmp_path: Path) -> None:
    """`hubctl record --set sort=true --templates FILE` loads the file into a running hub
    (exit 0); a file the hub cannot take (another snippet window) prints the hub's message
    and exits 1; one for another channel count fails on the host, naming both counts."""
    import subprocess
    import sys

    from hil.chain import REPO, Chain, ChainSpec

    def hubctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "host_tools.cli", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=180)

    good, shifted, wide = (tmp_path / f"{n}.npz" for n in ("good", "shifted", "wide"))
    ts = _ts(3, 4, 2)
    ts.save(good)
    TemplateSet(FS, 20, 28, ts.unit_ids, ts.templates, np.zeros((0, 48), np.float32),
                noise=ts.noise).save(shifted)
    _ts(3, 8, 0).save(wide)
    with Chain(ChainSpec("synth:4:30000:1", rate_bps=None), tmp_path / "chain") as chain:
        chain.start_hub()
        chain._start([sys.executable, "-m", "hil.implant", "synth:4:30000:1", "--connect",
                      chain.ports["implant"], "--duration", "300"], "implant.log")
        hub = chain.ports["uplink"].removeprefix("tcp:")
        ok = hubctl("record", "--tcp", hub, "--duration", "3", "--set", "sort=true",
                    "--templates", str(good))
        refused = hubctl("record", "--tcp", hub, "--duration", "60", "--set", "sort=true",
                         "--templates", str(shifted))
        other = hubctl("record", "--tcp", hub, "--duration", "60", "--templates", str(wide))
    assert ok.returncode == 0, ok.stderr
    assert "templates loaded: 3 units in 1 part" in ok.stderr
    assert refused.returncode == 1, refused.stderr
    assert "RESULT_INVALID_ARGUMENT" in refused.stderr and "pre=20" in refused.stderr
    assert other.returncode == 1 and "8 channels" in other.stderr and "4" in other.stderr
