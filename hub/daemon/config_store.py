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
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.dsp.pipeline import ConfigError, PipelineConfig

log = logging.getLogger(__name__)
SCHEMA = 1


@dataclass(frozen=True)
class HubConfig:
    """Everything the host can configure; replaced whole (never mutated) on every change."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    raw_channels: tuple[int, ...] | None = None     # None: every channel, in order
    snippets: bool = True
    raw_codec: bool = True                          # lossless codec for raw (else int16)
    outage_buffer_s: float = 30.0
    running: bool = True

    def validate(self, fs: float, n_channels: int | None) -> None:
        self.pipeline.validate(fs)
        if not 0.0 <= self.outage_buffer_s <= 600.0:
            raise ConfigError(f"outage_buffer_s={self.outage_buffer_s!r}: must be 0–600 s")
        if self.raw_channels is not None and n_channels is not None:
            bad = [c for c in self.raw_channels if not 0 <= c < n_channels]
            if bad:
                raise ConfigError(f"raw_channels: {bad[:5]} outside 0..{n_channels - 1}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_dict(cls: type[Any], d: Any, where: str) -> Any:
    """A (possibly nested) dataclass from JSON; unknown keys are ignored with a warning."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object, got {type(d).__name__}")
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in d.items():
        f = fields.get(k)
        if f is None:
            log.warning("%s: ignoring unknown key %r", where, k)
            continue
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else None)
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            v = _from_dict(type(default), v, f"{where}.{k}")
        elif isinstance(default, tuple) or (k == "raw_channels" and v is not None):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def config_from_dict(d: dict[str, Any]) -> HubConfig:
    cfg: HubConfig = _from_dict(HubConfig, d, "config")
    if isinstance(cfg.pipeline, dict):
        raise ConfigError("config.pipeline: expected an object")
    return cfg


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
        """The persisted configuration, or None (missing or unreadable: logged, not fatal)."""
        if not self.config_path.exists():
            return None
        try:
            d = json.loads(self.config_path.read_text())
            if d.get("schema") != SCHEMA:
                raise ConfigError(f"schema {d.get('schema')!r}, expected {SCHEMA}")
            return config_from_dict(d["config"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("%s unusable (%s); starting with defaults", self.config_path, e)
            return None

    def save_config(self, cfg: HubConfig) -> None:
        atomic_write(self.config_path, json.dumps({"schema": SCHEMA, "config": cfg.to_dict()},
                                                  indent=1))

    def load_state(self) -> dict[str, Any]:
        try:
            d = json.loads(self.state_path.read_text())
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict[str, Any]) -> None:
        atomic_write(self.state_path, json.dumps(state))
