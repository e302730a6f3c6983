"""Control plane: validation of every field, atomic apply, exactly one result; persistence."""

from __future__ import annotations

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

    def apply_config(self, cfg: HubConfig) -> None:
        self._config = cfg
        self.applied.append(cfg)

    def set_running(self, running: bool) -> None:
        self.apply_config(HubConfig(self._config.pipeline, running=running))

    def load_templates(self, templates: Templates) -> None:
        if not self.sorter:
            raise UnsupportedError("no sorter")
        self.templates = templates

    def status(self) -> pb.Telemetry:
        return pb.Telemetry(n_channels=20)

    def time_sync(self, host_time_ns: int) -> pb.TimeSync:
        return pb.TimeSync(sample_index=5, host_time_ns=host_time_ns)


def command(**kw: object) -> pb.Command:
    return pb.Command(request_id=42, schema_version=SCHEMA_VERSION, **kw)  # type: ignore[arg-type]


def test_configure_applies_whole() -> None:
    hub = FakeHub()
    cmd = command(configure=pb.Configure(pipeline=pb.PipelineSettings(
        threshold=6.0, band_low_hz=400.0, reference="average"),
        raw_channel_mask=channels_to_mask([0, 3, 19], 20)))
    res = Control(hub).handle(cmd.SerializeToString())
    assert res.code == pb.RESULT_OK and res.request_id == 42 and res.command == "configure"
    c = hub.config
    assert c.pipeline.threshold == 6.0 and c.pipeline.band_hz == (400.0, 6000.0)
    assert c.pipeline.reference == "average" and c.raw_channels == (0, 3, 19)


@pytest.mark.parametrize(("settings", "field"), [
    ({"threshold": 0.5}, "threshold"),
    ({"threshold": math.nan}, "threshold"),
    ({"block_ms": 100.0}, "block_ms"),
    ({"band_low_hz": 7000.0}, "band_hz"),
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
    res = Control(hub).handle(cmd.SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT
    assert field in res.message
    assert hub.applied == [] and hub.config == HubConfig()   # nothing half-applied


@pytest.mark.parametrize("mask", [b"\x01", b"\x01\x00\x00\x00", b"\x00\x00\xf0"])
def test_bad_channel_mask(mask: bytes) -> None:
    hub = FakeHub()
    res = Control(hub).handle(command(configure=pb.Configure(raw_channel_mask=mask))
                              .SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT and "raw_channel_mask" in res.message


def test_malformed_and_version_and_empty() -> None:
    ctl = Control(FakeHub())
    assert ctl.handle(b"\xff\xff\xff").code == pb.RESULT_MALFORMED
    old = pb.Command(request_id=1, schema_version=99, start=pb.Start())
    assert ctl.handle(old.SerializeToString()).code == pb.RESULT_VERSION_MISMATCH
    res = ctl.handle(pb.Command(request_id=7, schema_version=SCHEMA_VERSION).SerializeToString())
    assert res.code == pb.RESULT_MALFORMED and res.request_id == 7


def test_templates_validated_and_handed_to_hook() -> None:
    hub = FakeHub()
    ctl = Control(hub)
    bad = pb.LoadTemplates(n_units=2, n_channels=1, n_samples=8, waveforms=[0.0] * 15,
                           channels=[0, 1])
    res = ctl.handle(command(load_templates=bad).SerializeToString())
    assert res.code == pb.RESULT_INVALID_ARGUMENT and "waveforms" in res.message
    good = pb.LoadTemplates(n_units=2, n_channels=1, n_samples=8, waveforms=[1.0] * 16,
                            channels=[0, 1])
    assert ctl.handle(command(load_templates=good).SerializeToString()).code == \
        pb.RESULT_UNSUPPORTED
    hub.sorter = True
    assert ctl.handle(command(load_templates=good).SerializeToString()).code == pb.RESULT_OK
    assert hub.templates is not None and hub.templates.waveforms.shape == (2, 1, 8)


def test_status_time_sync_start_stop() -> None:
    hub = FakeHub()
    ctl = Control(hub)
    res = ctl.handle(command(request_status=pb.RequestStatus()).SerializeToString())
    assert res.code == pb.RESULT_OK and res.status.n_channels == 20
    res = ctl.handle(command(time_sync=pb.TimeSyncRequest(host_time_ns=9)).SerializeToString())
    assert res.time_sync.host_time_ns == 9
    ctl.handle(command(stop=pb.Stop()).SerializeToString())
    assert hub.config.running is False
    res = ctl.handle(command(set_thresholds=pb.SetThresholds(threshold=0.1)).SerializeToString())
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
    assert store.load_state() == {"last_sample": 5}
