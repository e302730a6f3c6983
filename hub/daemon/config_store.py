"""The hub's persisted configuration and state, written atomically (temp file, fsync, rename,
fsync of the directory) so that a power cut or SIGKILL leaves either the old or the new file.

``config.json`` holds what the host configured (:class:`HubConfig`); ``state.json`` holds the
last sample index the hub processed (written about once a second), so that after a restart the
hub can report the stretch it missed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from hub.dsp.pipeline import PipelineConfig
from hub.wire import pb, settings

log = logging.getLogger(__name__)
SCHEMA = 2          # config.json layout: the JSON mapping of pb.HubSettings
MAX_CHANNEL = 65535
_D = settings.defaults()


@dataclass(frozen=True)
class HubConfig:
    """Everything the host can configure; replaced whole (never mutated) on every change. The
    settings are the schema's (hub.wire.settings); ``raw_channels`` and ``running`` are set by
    the channel mask and Start/Stop."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    raw_channels: tuple[int, ...] | None = None     # None: every channel, in order
    snippets: bool = _D["snippets"]
    raw_codec: bool = _D["raw_codec"]               # lossless codec for raw (else int16)
    outage_buffer_s: float = _D["outage_buffer_s"]
    running: bool = True

    def values(self) -> dict[str, Any]:
        """Every setting of the schema, by name."""
        return {**self.pipeline.values(), **{n: getattr(self, n) for n in settings.OUTPUTS}}

    def with_values(self, values: Mapping[str, Any]) -> HubConfig:
        """A copy with these settings changed (names from the schema)."""
        pipe = {n: v for n, v in values.items() if settings.setting(n).message == "pipeline"}
        out = {n: v for n, v in values.items() if n not in pipe}
        return dataclasses.replace(self, pipeline=dataclasses.replace(self.pipeline, **pipe),
                                   **out)

    def validate(self, fs: float, n_channels: int | None) -> None:
        """Raises SettingError (naming the field) unless the whole configuration fits an
        implant of ``n_channels`` channels at ``fs``."""
        settings.check_all(self.values(), fs, n_channels)
        if self.raw_channels is not None and n_channels is not None:
            bad = [c for c in self.raw_channels if not 0 <= c < n_channels]
            if bad:
                raise settings.SettingError("raw_channels",
                                            f"{bad[:5]} outside 0..{n_channels - 1}")

    def to_message(self) -> pb.HubSettings:
        msg = pb.HubSettings(schema=SCHEMA, running=self.running)
        cfg = pb.Configure()
        for name, v in self.values().items():
            settings.set_value(cfg, name, v)
        msg.pipeline.CopyFrom(cfg.pipeline)
        for name in settings.OUTPUTS:
            setattr(msg, name, getattr(cfg, name))
        if self.raw_channels is not None:
            msg.raw_channels.SetInParent()
            msg.raw_channels.channels.extend(self.raw_channels)
        return msg

    def to_dict(self) -> dict[str, Any]:
        """config.json's content (the protobuf JSON mapping of :meth:`to_message`)."""
        d: dict[str, Any] = json_format.MessageToDict(self.to_message(),
                                                      preserving_proto_field_name=True)
        return d


def _migrate_v1(d: Any) -> tuple[Any, list[str]]:
    """The first layout ({"schema": 1, "config": dataclass fields, band_hz as [lo, hi]})."""
    if not isinstance(d, dict):
        return d, []
    out, errors = dict(d), []
    pipe = out.get("pipeline")
    if isinstance(pipe, dict):
        pipe = dict(pipe)
        pipe.pop("sort_settings", None)                # not a host setting
        band = pipe.pop("band_hz", None)
        if isinstance(band, list) and len(band) == 2:
            pipe["band_low_hz"], pipe["band_high_hz"] = band
        elif band is not None:
            errors.append(f"band_hz={band!r}: want [low, high]")
        out["pipeline"] = pipe
    rc = out.pop("raw_channels", None)
    if rc is not None:
        out["raw_channels"] = {"channels": rc}
    return out, errors


def _field_value(msg_type: type[Any], name: str, value: Any) -> Any:
    """One field through the protobuf JSON mapping (the types) and the schema (the range)."""
    msg = json_format.ParseDict({name: value}, msg_type())
    return settings.setting(name).check(getattr(msg, name))


def config_from_json(d: Any) -> tuple[HubConfig, list[str]]:
    """The configuration a config.json holds, and what was wrong with it: every field of the
    wrong type or out of range is replaced by its default (the valid ones are kept); a file
    that is not an object of a known layout gives the defaults."""
    errors: list[str] = []
    if isinstance(d, dict) and d.get("schema") == 1 and "config" in d:
        d, errors = _migrate_v1(d["config"])
    elif isinstance(d, dict) and d.get("schema") != SCHEMA:
        return HubConfig(), [f"schema {d.get('schema')!r}, expected {SCHEMA}"]
    if not isinstance(d, dict):
        return HubConfig(), [f"expected an object, got {type(d).__name__}"]
    pipe = d.get("pipeline", {})
    if not isinstance(pipe, dict):
        errors.append(f"pipeline: expected an object, got {type(pipe).__name__}")
        pipe = {}
    values: dict[str, Any] = {}
    for name, s in settings.SETTINGS.items():
        src, mtype = (pipe, pb.PipelineSettings) if s.message == "pipeline" else (
            d, pb.HubSettings)
        if name in src:
            try:
                values[name] = _field_value(mtype, name, src[name])
            except (json_format.ParseError, ValueError, TypeError) as e:
                errors.append(f"{name}={src[name]!r}: {e}")
    known = {"schema", "pipeline", "running", "raw_channels", *settings.OUTPUTS}
    errors += [f"unknown key {k!r} ignored" for k in d if k not in known]
    errors += [f"pipeline: unknown key {k!r} ignored" for k in pipe
               if k not in settings.PIPELINE]
    cfg = HubConfig().with_values(values)
    running = d.get("running", True)
    if isinstance(running, bool):
        cfg = dataclasses.replace(cfg, running=running)
    else:
        errors.append(f"running={running!r}: not a boolean")
    if d.get("raw_channels") is not None:
        try:
            rc = json_format.ParseDict(d["raw_channels"], pb.RawChannels())
            if any(c > MAX_CHANNEL for c in rc.channels):
                raise ValueError(f"channel numbers above {MAX_CHANNEL}")
            cfg = dataclasses.replace(cfg, raw_channels=tuple(rc.channels))
        except (json_format.ParseError, ValueError, TypeError) as e:
            errors.append(f"raw_channels={d['raw_channels']!r}: {e}; every channel")
    return cfg, errors


def fit_to_stream(cfg: HubConfig, fs: float, n_channels: int) -> HubConfig:
    """``cfg`` with every setting that does not fit this implant (the sampling rate, the
    channel count, each other) reset to its default, each one logged; the defaults
    themselves are fitted too (a one-channel implant gets no reference)."""
    for _ in range(len(settings.SETTINGS) + 2):
        try:
            cfg.validate(fs, n_channels)
            return cfg
        except settings.SettingError as e:
            if e.field == "raw_channels":
                log.error("configuration does not fit this implant (%s): every raw channel", e)
                cfg = dataclasses.replace(cfg, raw_channels=None)
                continue
            name: str = e.field
            value: Any = _D.get(name)
            if name not in _D or cfg.values()[name] == value:   # the defaults do not fit
                name, value = "reference", "none"               # (a one-channel implant)
            log.error("configuration does not fit this implant (%s): %s=%r", e, name, value)
            cfg = cfg.with_values({name: value})
    raise settings.SettingError("config", "no configuration fits this implant")


@dataclass(frozen=True)
class HubState:
    """state.json: where the hub was (each field None when missing or invalid)."""

    last_sample: int | None = None
    fs: float | None = None
    n_channels: int | None = None
    session_id: int | None = None

    @staticmethod
    def from_json(d: Any) -> tuple[HubState, list[str]]:
        if not isinstance(d, dict):
            return HubState(), [f"expected an object, got {type(d).__name__}"]
        errors: list[str] = []

        def integer(name: str, lo: int, hi: int) -> int | None:
            v = d.get(name)
            if v is None:
                return None
            if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi:
                return v
            errors.append(f"{name}={v!r}: want an integer in {lo}..{hi}")
            return None

        fs = d.get("fs")
        if fs is not None and not (isinstance(fs, (int, float)) and not isinstance(fs, bool)
                                   and math.isfinite(fs) and 1.0 <= fs <= 1e7):
            errors.append(f"fs={fs!r}: want a sampling rate in Hz")
            fs = None
        return HubState(integer("last_sample", 0, 2**63 - 1),
                        None if fs is None else float(fs),
                        integer("n_channels", 1, MAX_CHANNEL + 1),
                        integer("session_id", 0, 2**32 - 1)), errors

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def atomic_write(path: Path, text: str) -> None:
    """Replaces ``path`` with ``text``: the old or the new content survives any crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class ConfigStore:
    """config.json + state.json in one directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.config_path = directory / "config.json"
        self.state_path = directory / "state.json"

    def load_config(self) -> HubConfig | None:
        """The persisted configuration (fields that are unusable: logged, their defaults), or
        None when there is none or it is unreadable as a whole (logged, never fatal)."""
        if not self.config_path.exists():
            return None
        try:
            d = json.loads(self.config_path.read_text())
        except (OSError, ValueError) as e:
            log.error("%s unreadable (%s); starting with defaults", self.config_path, e)
            return None
        cfg, errors = config_from_json(d)
        for err in errors:
            log.error("%s: %s; using the default", self.config_path, err)
        return cfg

    def save_config(self, cfg: HubConfig) -> None:
        atomic_write(self.config_path, json.dumps(cfg.to_dict(), indent=1))

    def load_state(self) -> HubState:
        """The persisted state; invalid fields are logged and left out."""
        try:
            d = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return HubState()
        except (OSError, ValueError) as e:
            log.error("%s unreadable (%s); ignored", self.state_path, e)
            return HubState()
        st, errors = HubState.from_json(d)
        for err in errors:
            log.error("%s: %s; ignored", self.state_path, err)
        return st

    def save_state(self, state: HubState) -> None:
        atomic_write(self.state_path, json.dumps(state.to_json()))
