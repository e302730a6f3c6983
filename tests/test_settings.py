"""The settings schema (hub.wire.settings, from proto/hub.proto): one table for host `--set`
parsing, validation, persistence and the pipeline."""

from __future__ import annotations

import dataclasses

import pytest

from host_tools.record_cli import configure_command
from hub.daemon.config_store import HubConfig, config_from_json
from hub.dsp.pipeline import PipelineConfig
from hub.wire import pb, settings
from hub.wire.settings import SettingError


@pytest.mark.parametrize("word", ["yes", "on", "true", "1", "YES", "On", "True"])
@pytest.mark.parametrize("field", ["sort", "lfp", "snippets", "raw_codec"])
def test_set_booleans_all_true(word: str, field: str) -> None:
    """`--set sort=yes` (or lfp=on) sent an explicit false."""
    cfg = configure_command([f"{field}={word}"], 1).configure
    msg = cfg.pipeline if field in ("sort", "lfp") else cfg
    assert msg.HasField(field) and getattr(msg, field) is True


@pytest.mark.parametrize("word", ["no", "off", "false", "0"])
def test_set_booleans_false(word: str) -> None:
    cfg = configure_command([f"sort={word}", f"snippets={word}"], 1).configure
    assert cfg.pipeline.HasField("sort") and cfg.pipeline.sort is False
    assert cfg.HasField("snippets") and cfg.snippets is False


@pytest.mark.parametrize(("item", "field"), [
    ("sort=maybe", "sort"), ("threshold=abc", "threshold"), ("threshold=-5", "threshold"),
    ("block_ms=100", "block_ms"), ("filter_order=2.5", "filter_order"),
    ("polarity=up", "polarity"), ("frobnicate=1", "frobnicate"), ("threshold", "threshold"),
    ("raw_channels=1,x", "raw_channels"), ("lfp_rate_hz=inf", "lfp_rate_hz"),
])
def test_set_errors_name_the_field(item: str, field: str) -> None:
    with pytest.raises(SettingError) as e:
        configure_command([item], 1, n_channels=8)
    assert e.value.field == field and field in str(e.value)


def test_set_values_typed() -> None:
    cmd = configure_command(["threshold=6.5", "filter_order=2", "reference=none",
                             "raw_channels=0,3", "outage_buffer_s=12"], 7, n_channels=8)
    c = cmd.configure
    assert cmd.request_id == 7 and c.pipeline.threshold == 6.5 and c.pipeline.filter_order == 2
    assert c.pipeline.reference == "none" and c.outage_buffer_s == 12.0
    assert c.raw_channel_mask == bytes([0b1001])


def test_table_covers_the_proto_and_the_pipeline() -> None:
    """Every PipelineSettings field is a setting, every setting is a PipelineConfig/HubConfig
    field with the table's default."""
    assert set(settings.PIPELINE) == {f.name for f in pb.PipelineSettings.DESCRIPTOR.fields}
    cfg_fields = {f.name for f in dataclasses.fields(PipelineConfig)} - {"sort_settings"}
    assert cfg_fields == set(settings.PIPELINE)
    assert set(settings.OUTPUTS) == {"snippets", "outage_buffer_s", "raw_codec"}
    d = settings.defaults()
    assert HubConfig().values() == d
    for s in settings.SETTINGS.values():
        assert s.check(s.default) == s.default
    assert [n for n, s in settings.SETTINGS.items() if s.live and s.message == "pipeline"] == [
        "threshold"]


def test_persisted_round_trip_and_live_change() -> None:
    cfg = HubConfig(raw_channels=(3, 1), outage_buffer_s=4.0).with_values(
        {"threshold": 7.5, "sort": True, "band_low_hz": 500.0})
    back, errors = config_from_json(cfg.to_dict())
    assert back == cfg and errors == []
    assert cfg.pipeline.live_change(dataclasses.replace(cfg.pipeline, threshold=9.0))
    assert not cfg.pipeline.live_change(dataclasses.replace(cfg.pipeline, bin_ms=9.0))


def test_relations() -> None:
    ok = settings.defaults()
    settings.check_all(ok, 30000.0, 32)
    for change, field in (({"band_low_hz": 7000.0}, "band_low_hz"),
                          ({"band_low_hz": 13600.0, "band_high_hz": 14000.0}, "band_low_hz"),
                          ({"lfp_rate_hz": 20000.0}, "lfp_rate_hz"),
                          ({"lfp_cutoff_hz": 600.0}, "lfp_cutoff_hz"),
                          ({"reference_group_size": 31}, "reference_group_size")):
        with pytest.raises(SettingError) as e:
            settings.check_all({**ok, **change}, 30000.0, 32)
        assert e.value.field == field
    settings.check_all({**ok, "reference": "none", "reference_group_size": 31}, 30000.0, 32)
