"""Control plane: validation of every field, atomic apply, exactly one result; persistence."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from pathlib import Path

import pytest

from hub.daemon.config_store import ConfigStore, HubConfig, atomic_write
from hub.daemon.control import Control, Templates, UnsupportedError
from hub.wire import SCHEMA_VERSION, pb
from hub.wire.masks import channels_to_mask


class FakeHub:
    def __init__(self) -> None:
        self._config = HubConfig()
        self.applied: list[HubConfig] = []
        self.templates: Templates | None = None
        self.sorter = False

    @property
    def config(self) -> HubConfig:
        return self._config

    @property
    def sampling_frequency(self) -> float:
        return 30000.0

    @property
    def n_channels(self) -> int | None:
        return 20

    async def apply_config(self, cfg: HubConfig) -> None:
        self._config = cfg
        self.applied.append(cfg)

    async def set_running(self, running: bool) -> None:
        await self.apply_config(HubConfig(self._config.pipeline, running=running))

    async def load_templates(self, templates: Templates) -> None:
        if not self.sorter:
            raise UnsupportedError("no sorter")
        self.templates = templates

    def status(self) -> pb.Telemetry:
        return pb.Telemetry(n_channels=20)

    def time_sync(self, host_time_ns: int) -> pb.TimeSync:
        return pb.TimeSync(sample_index=5, host_time_ns=host_time_ns)


def handle(ctl: Control, payload: bytes) -> pb.CommandResult:
    return asyncio.run(ctl.handle(payload))


def command(**kw: object) -> pb.Command:
    return pb.Command(request_id=42, schema_version=SCHEMA_VERSION, **kw)  # type: ignore[arg-type]


def test_configure_applies_whole() -> None:
    hub = FakeHub()
    cmd = command(configure=pb.Configure(pipeline=pb.PipelineSettings(
        threshold=6.0, band_low_hz=400.0, reference="average"),
        raw_channel_mask=channels_to_mask([0, 3, 19], 20)))
    res = handle(Control(hub), cmd.SerializeToString())
    assert res.code == pb.RESULT_OK and res.request_id == 42 and res.command == "configure"
    c = hub.config
    assert c.pipeline.threshold == 6.0 and c.pipeline.band_hz == (400.0, 6000.0)
    assert c.pipeline.reference == "average" and c.raw_channels == (0, 3, 19)


@pytest.mark.parametrize(("settings", "field"), [
    ({"threshold": 0.5}, "threshold"),
    ({"threshold": math.nan}, "threshold"),
    ({"block_ms": 100.0}, "block_ms"),
    ({"band_low_hz": 7000.0}, "band_low_hz"),
    ({"reference": "mean"}, "reference"),
    ({"polarity": "up"}, "polarity"),
    ({"snippet_channels": 65}, "snippet_channels"),
    ({"filter_order": 99}, "filter_order"),
    ({"reference_group_size": 64}, "reference_group_size"),
    ({"lfp_rate_hz": math.inf}, "lfp_rate_hz"),
])
def test_out_of_range_rejected_whole_naming_the_field(settings: dict[str, object],
                                                      field: str) -> None:
    hub = FakeHub()
    cmd = command(configure=pb.Configure(pipeline=pb.PipelineSettings(
        bin_ms=25.0, **settings)))  # type: ignore[arg-type]
    res = handle(Control(hub), cmd.SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT
    assert field in res.message
    assert hub.applied == [] and hub.config == HubConfig()   # nothing half-applied


@pytest.mark.parametrize("mask", [b"\x01", b"\x01\x00\x00\x00", b"\x00\x00\xf0"])
def test_bad_channel_mask(mask: bytes) -> None:
    hub = FakeHub()
    res = handle(Control(hub), command(configure=pb.Configure(raw_channel_mask=mask))
                              .SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT and "raw_channel_mask" in res.message


def test_malformed_and_version_and_empty() -> None:
    ctl = Control(FakeHub())
    assert handle(ctl, b"\xff\xff\xff").code == pb.RESULT_MALFORMED
    old = pb.Command(request_id=1, schema_version=99, start=pb.Start())
    assert handle(ctl, old.SerializeToString()).code == pb.RESULT_VERSION_MISMATCH
    res = handle(ctl, pb.Command(request_id=7, schema_version=SCHEMA_VERSION).SerializeToString())
    assert res.code == pb.RESULT_MALFORMED and res.request_id == 7


def test_templates_validated_and_handed_to_hook() -> None:
    hub = FakeHub()
    ctl = Control(hub)
    bad = pb.LoadTemplates(n_units=2, n_channels=1, n_samples=8, waveforms=[0.0] * 15,
                           channels=[0, 1])
    res = handle(ctl, command(load_templates=bad).SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT and "waveforms" in res.message
    good = pb.LoadTemplates(n_units=2, n_channels=1, n_samples=8, waveforms=[1.0] * 16,
                            channels=[0, 1])
    assert handle(ctl, command(load_templates=good).SerializeToString()).code == \
        pb.RESULT_UNSUPPORTED
    hub.sorter = True
    assert handle(ctl, command(load_templates=good).SerializeToString()).code == pb.RESULT_OK
    assert hub.templates is not None and hub.templates.waveforms.shape == (2, 1, 8)


def test_status_time_sync_start_stop() -> None:
    hub = FakeHub()
    ctl = Control(hub)
    res = handle(ctl, command(request_status=pb.RequestStatus()).SerializeToString())
    assert res.code == pb.RESULT_OK and res.status.n_channels == 20
    res = handle(ctl, command(time_sync=pb.TimeSyncRequest(host_time_ns=9)).SerializeToString())
    assert res.time_sync.host_time_ns == 9
    handle(ctl, command(stop=pb.Stop()).SerializeToString())
    assert hub.config.running is False
    res = handle(ctl, command(set_thresholds=pb.SetThresholds(threshold=0.1)).SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT and "threshold" in res.message


def test_config_persists_atomically(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "state")
    assert store.load_config() is None
    cfg = HubConfig(raw_channels=(1, 2), outage_buffer_s=12.0)
    store.save_config(cfg)
    assert store.load_config() == cfg
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["config.json"]  # no temp left
    store.config_path.write_text("{not json")
    assert store.load_config() is None                      # unusable: defaults, no crash
    atomic_write(store.state_path, json.dumps({"last_sample": 5}))
    assert store.load_state().last_sample == 5


# ------------------------------------------------------------ issue 10 item 7: one result each
def test_template_channel_beyond_int32_is_invalid_argument() -> None:
    """A channel id ≥ 2^31 escaped error handling (no result at all)."""
    hub = FakeHub()
    hub.sorter = True
    lt = pb.LoadTemplates(n_units=1, n_channels=2, n_samples=8, waveforms=[1.0] * 16,
                          channels=[0, 2**31 + 5])
    res = handle(Control(hub), command(load_templates=lt).SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT and "channels" in res.message
    assert res.request_id == 42 and hub.templates is None


@pytest.mark.parametrize("value", [3.4e38, -3.39e38, 1e30])
def test_extreme_template_values_are_invalid_argument(value: float) -> None:
    """Finite but absurd values reached the kernel, whose refusal came back INTERNAL."""
    hub = FakeHub()
    hub.sorter = True
    lt = pb.LoadTemplates(n_units=1, n_channels=1, n_samples=8, waveforms=[value] * 8,
                          channels=[0])
    res = handle(Control(hub), command(load_templates=lt).SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT and "waveforms" in res.message


def test_all_zero_template_is_invalid_argument() -> None:
    hub = FakeHub()
    hub.sorter = True
    lt = pb.LoadTemplates(n_units=2, n_channels=1, n_samples=8,
                          waveforms=[1.0] * 8 + [0.0] * 8, channels=[0, 1])
    res = handle(Control(hub), command(load_templates=lt).SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT and "unit 1" in res.message


@pytest.mark.parametrize(("size", "ok"), [(0, True), (3, True), (5, True), (1, False),
                                           (19, False), (21, False)])
def test_reference_group_of_one_rejected(size: int, ok: bool) -> None:
    """On 20 channels a group size of 19 leaves channel 19 alone: its median reference is
    itself, flat forever. Rejected, naming the field."""
    hub = FakeHub()
    cmd = command(configure=pb.Configure(pipeline=pb.PipelineSettings(
        reference_group_size=size)))
    res = handle(Control(hub), cmd.SerializeToString())
    if ok:
        assert res.code == pb.RESULT_OK
    else:
        assert res.code == pb.RESULT_INVALID_ARGUMENT and "reference_group_size" in res.message
        assert hub.applied == []


def test_kernel_argument_errors_are_invalid_argument() -> None:
    """A kernel that refuses its input (status NK_ERR_ARG) answers INVALID_ARGUMENT."""

    class ArgError(RuntimeError):
        status = -1

    class Refusing(FakeHub):
        async def load_templates(self, templates: Templates) -> None:
            raise ArgError("nk_sort_load_templates: invalid argument (status -1)")

    lt = pb.LoadTemplates(n_units=1, n_channels=1, n_samples=8, waveforms=[1.0] * 8,
                          channels=[0])
    res = handle(Control(Refusing()), command(load_templates=lt).SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT


def test_command_port_answers_every_command_once() -> None:
    """Chunks in, exactly one result per command, in order, also for a command whose
    handler fails unexpectedly and for those still queued when the port stops."""
    from hub.daemon.control import CommandPort
    from hub.wire import Chunker

    class Slow(FakeHub):
        async def apply_config(self, cfg: HubConfig) -> None:
            await asyncio.sleep(0.05)
            await super().apply_config(cfg)

        def status(self) -> pb.Telemetry:
            raise KeyError("a bug")

    async def go() -> list[pb.CommandResult]:
        out: list[pb.CommandResult] = []
        port = CommandPort(Control(Slow()), out.append)
        task = asyncio.create_task(port.run())
        ch = Chunker()
        cmds = [command(configure=pb.Configure(pipeline=pb.PipelineSettings(threshold=6.0))),
                command(request_status=pb.RequestStatus()), command(start=pb.Start())]
        for i, c in enumerate(cmds):
            c.request_id = i + 1
            for chunk in ch.chunks(c.SerializeToString()):
                port.feed(chunk)
        while len(out) < 3:
            await asyncio.sleep(0.01)
        for i in (10, 11):          # queued behind a slow one, then the port stops
            c = command(configure=pb.Configure(pipeline=pb.PipelineSettings(threshold=7.0)))
            c.request_id = i
            for chunk in ch.chunks(c.SerializeToString()):
                port.feed(chunk)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return out

    out = asyncio.run(go())
    assert [r.request_id for r in out] == [1, 2, 3, 10, 11]
    assert [r.code for r in out[:3]] == [pb.RESULT_OK, pb.RESULT_INTERNAL, pb.RESULT_OK]
    assert all(r.code == pb.RESULT_INTERNAL for r in out[3:])


# ------------------------------------------------------------ issue 10 item 5: persisted state
@pytest.mark.parametrize("text", ["[]", "null", "5", '"x"', '{"schema": 7}'])
def test_config_json_not_an_object_gives_defaults(tmp_path: Path, text: str) -> None:
    store = ConfigStore(tmp_path)
    atomic_write(store.config_path, text)
    cfg = store.load_config()
    assert cfg is None or cfg == HubConfig()


@pytest.mark.parametrize("bad", [{"threshold": "abc"}, {"block_ms": "ten"},
                                 {"filter_order": 2.5}, {"reference": 3},
                                 {"threshold": 0.2}, {"sort": "yes"}, {"bin_ms": None}])
def test_config_field_type_errors_keep_the_valid_parts(tmp_path: Path,
                                                       bad: dict[str, object]) -> None:
    store = ConfigStore(tmp_path)
    d = HubConfig().with_values({"polarity": "both", "snippets": False}).to_dict()
    d["pipeline"].update(bad)
    atomic_write(store.config_path, json.dumps(d))
    cfg = store.load_config()
    assert cfg is not None
    assert cfg.pipeline.polarity == "both" and cfg.snippets is False      # the valid parts
    name = next(iter(bad))
    assert getattr(cfg.pipeline, name) == getattr(HubConfig().pipeline, name)   # default
    cfg.validate(30000.0, 20)


@pytest.mark.parametrize("pipeline", [{"band_hz": [300, 3000, 6000]}, {"block_ms": "5ms"},
                                      {"threshold": "abc"}, {"band_hz": "wide"}])
def test_first_layout_config_with_type_errors(tmp_path: Path,
                                              pipeline: dict[str, object]) -> None:
    """The first config.json layout (dataclass fields, band as a list) is read, and its type
    errors (a 3-element band, a string block size) fall back to defaults."""
    store = ConfigStore(tmp_path)
    atomic_write(store.config_path, json.dumps({"schema": 1, "config": {
        "pipeline": {"threshold": 7.0, **pipeline}, "raw_channels": [1, 2],
        "outage_buffer_s": 12.0}}))
    cfg = store.load_config()
    assert cfg is not None and cfg.raw_channels == (1, 2) and cfg.outage_buffer_s == 12.0
    cfg.validate(30000.0, 20)
    if "threshold" not in pipeline:
        assert cfg.pipeline.threshold == 7.0


@pytest.mark.parametrize("state", ['{"fs": [1]}', '{"fs": "x", "last_sample": -4}', "[]",
                                   "null", '{"n_channels": true, "last_sample": 1.5}', "{"])
def test_state_json_type_errors_are_ignored(tmp_path: Path, state: str) -> None:
    store = ConfigStore(tmp_path)
    atomic_write(store.state_path, state)
    st = store.load_state()
    assert st.fs is None and st.last_sample is None and st.n_channels is None
