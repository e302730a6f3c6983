"""The settings schema: one table of everything the host can configure, read from the
``(setting)`` options in proto/hub.proto (range, unit, default, live or rebuild) and the field
types there. Host ``--set FIELD=VALUE`` parsing, the hub's validation of a Configure, the
persisted config.json and the pipeline's apply all use this table; nothing else spells a range.

Errors are :class:`SettingError` (a ``ConfigError``, a ``ValueError``) and name the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from hub.errors import InvalidInput
from hub.wire import SCHEMA_VERSION, pb
from hub.wire.masks import channels_to_mask

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
RAW_CHANNELS = "raw_channels"     # --set raw_channels=0,1,2 (a channel list, not a table field)


class ConfigError(InvalidInput):
    """A configuration the hub cannot take (a ValueError); the message names the field."""


class SettingError(ConfigError):
    """A setting that is unknown, malformed, out of range or inconsistent with another."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


_KINDS: dict[int, type] = {
    FieldDescriptor.TYPE_DOUBLE: float, FieldDescriptor.TYPE_FLOAT: float,
    FieldDescriptor.TYPE_UINT32: int, FieldDescriptor.TYPE_INT32: int,
    FieldDescriptor.TYPE_UINT64: int, FieldDescriptor.TYPE_INT64: int,
    FieldDescriptor.TYPE_BOOL: bool, FieldDescriptor.TYPE_STRING: str,
}


@dataclass(frozen=True)
class Setting:
    """One configurable field."""

    name: str
    kind: type                      # bool, int, float or str
    message: str                    # "pipeline" (PipelineSettings) or "configure" (Configure)
    min: float | None
    max: float | None
    unit: str
    live: bool                      # applied between blocks without a pipeline rebuild
    choices: tuple[str, ...]
    default: Any
    help: str

    def parse(self, text: str) -> Any:
        """A value from its text form (``--set``); booleans take yes/on/true/1 and no/off/
        false/0."""
        t = text.strip()
        if self.kind is bool:
            if t.lower() in TRUE_WORDS:
                return True
            if t.lower() in FALSE_WORDS:
                return False
            raise SettingError(self.name, f"{text!r} is not a boolean (yes/no, on/off, "
                                          "true/false, 1/0)")
        if self.kind is str:
            return self.check(t)
        try:
            v: Any = int(t) if self.kind is int else float(t)
        except ValueError:
            raise SettingError(self.name, f"{text!r} is not {self._kind_name()}") from None
        return self.check(v)

    def check(self, value: Any) -> Any:
        """``value`` if it has this setting's type and lies in its range (an int is accepted
        for a float setting); raises SettingError otherwise."""
        k = self.kind
        ok_type = (isinstance(value, bool) if k is bool else isinstance(value, str) if k is str
                   else isinstance(value, int) and not isinstance(value, bool) if k is int
                   else isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok_type:
            raise SettingError(self.name, f"{value!r} is not {self._kind_name()}")
        if k is float:
            value = float(value)
            if not math.isfinite(value):
                raise SettingError(self.name, f"{value!r} must be a finite number")
        if self.choices and value not in self.choices:
            raise SettingError(self.name, f"{value!r} must be one of {', '.join(self.choices)}")
        if k in (int, float) and ((self.min is not None and value < self.min)
                                  or (self.max is not None and value > self.max)):
            raise SettingError(self.name, f"{value!r} must be within {self.range_text()}")
        return value

    def range_text(self) -> str:
        lo = "" if self.min is None else f"{self.min:g}"
        hi = "" if self.max is None else f"{self.max:g}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{lo}–{hi}{unit}"

    def describe(self) -> str:
        """One line for help texts: name, type or range, default, live or rebuild."""
        what = ("|".join(self.choices) if self.choices else self._kind_name()
                if self.kind in (bool, str) else self.range_text())
        when = "live" if self.live else "rebuild"
        extra = f"; {self.help}" if self.help else ""
        return f"{self.name}: {what} (default {self.default!r}, {when}){extra}"

    def _kind_name(self) -> str:
        return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}[
            self.kind]


def _table() -> dict[str, Setting]:
    ext: Any = pb.setting         # the (setting) FieldOptions extension
    out: dict[str, Setting] = {}
    for message, desc in (("pipeline", pb.PipelineSettings.DESCRIPTOR),
                          ("configure", pb.Configure.DESCRIPTOR)):
        for f in desc.fields:
            opts = f.GetOptions()
            if not opts.HasExtension(ext):
                continue
            spec: pb.SettingSpec = opts.Extensions[ext]
            s = Setting(name=f.name, kind=_KINDS[f.type], message=message,
                        min=spec.min if spec.HasField("min") else None,
                        max=spec.max if spec.HasField("max") else None, unit=spec.unit,
                        live=spec.live, choices=tuple(spec.choices), default=None,
                        help=spec.help)
            object.__setattr__(s, "default", s.parse(spec.default))
            out[f.name] = s
    return out


#: Every setting, in proto order: PipelineSettings fields, then Configure's.
SETTINGS: Mapping[str, Setting] = _table()
PIPELINE: tuple[str, ...] = tuple(n for n, s in SETTINGS.items() if s.message == "pipeline")
OUTPUTS: tuple[str, ...] = tuple(n for n, s in SETTINGS.items() if s.message == "configure")


def defaults() -> dict[str, Any]:
    """Every setting's default value."""
    return {n: s.default for n, s in SETTINGS.items()}


def setting(name: str) -> Setting:
    """The table entry; SettingError naming the field (and the known ones) if unknown."""
    s = SETTINGS.get(name)
    if s is None:
        raise SettingError(name, f"unknown setting (known: {', '.join(SETTINGS)}, "
                                 f"{RAW_CHANNELS})")
    return s


def values_of(msg: pb.Configure) -> dict[str, Any]:
    """The settings a Configure carries (only the fields it sets), each checked."""
    out: dict[str, Any] = {}
    for name, s in SETTINGS.items():
        src: Any = msg.pipeline if s.message == "pipeline" else msg
        if src.HasField(name):
            out[name] = s.check(getattr(src, name))
    return out


def set_value(msg: pb.Configure, name: str, value: Any) -> None:
    """Writes one checked setting into a Configure."""
    s = setting(name)
    setattr(msg.pipeline if s.message == "pipeline" else msg, name, s.check(value))


def parse_assignments(items: Sequence[str], n_channels: int | None = None) -> pb.Configure:
    """``FIELD=VALUE`` strings → one Configure (``raw_channels=0,1,2`` becomes the channel mask
    and needs the hub's channel count; ``raw_channels=`` selects none)."""
    cfg = pb.Configure()
    cfg.SetInParent()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingError(key or item, f"{item!r}: want FIELD=VALUE")
        if key == RAW_CHANNELS:
            if n_channels is None:
                raise SettingError(key, "needs the hub's channel count")
            try:
                chans = [int(c) for c in text.split(",") if c.strip()]
            except ValueError:
                raise SettingError(key, f"{text!r} is not a list of channel numbers") from None
            try:
                cfg.raw_channel_mask = channels_to_mask(chans, n_channels)
            except ValueError as e:
                raise SettingError(key, str(e)) from None
            continue
        set_value(cfg, key, setting(key).parse(text))
    return cfg


def configure_command(items: Sequence[str], request_id: int,
                      n_channels: int | None = None) -> pb.Command:
    """A Configure command from ``--set`` strings."""
    cmd = pb.Command(request_id=request_id, schema_version=SCHEMA_VERSION)
    cmd.configure.CopyFrom(parse_assignments(items, n_channels))
    return cmd


def check_all(values: Mapping[str, Any], fs: float, n_channels: int | None) -> None:
    """Every setting in ``values`` (a full set) checked alone, then against each other, the
    sampling rate and the channel count."""
    for name, s in SETTINGS.items():
        if name in values:
            s.check(values[name])
    check_relations(values, fs, n_channels)


def check_relations(v: Mapping[str, Any], fs: float, n_channels: int | None) -> None:
    """The constraints between settings (a full set of values)."""
    lo, hi = v["band_low_hz"], v["band_high_hz"]
    if not lo < hi:
        raise SettingError("band_low_hz", f"{lo:g} Hz must be below band_high_hz ({hi:g} Hz)")
    if not lo < 0.45 * fs:
        raise SettingError("band_low_hz", f"{lo:g} Hz must be below 0.45·fs ({0.45 * fs:.0f} Hz)")
    if not v["lfp_rate_hz"] <= fs / 2:
        raise SettingError("lfp_rate_hz", f"{v['lfp_rate_hz']:g} Hz must be at most fs/2 "
                                          f"({fs / 2:.0f} Hz)")
    if not v["lfp_cutoff_hz"] < v["lfp_rate_hz"] / 2:
        raise SettingError("lfp_cutoff_hz", f"{v['lfp_cutoff_hz']:g} Hz must be below half "
                                            f"lfp_rate_hz ({v['lfp_rate_hz'] / 2:g} Hz)")
    g = v["reference_group_size"]
    if n_channels is not None and v["reference"] != "none":
        if g > n_channels:
            raise SettingError("reference_group_size", f"{g} is more than the {n_channels} "
                                                       "channels")
        size = g or n_channels
        alone = n_channels - 1 if n_channels % size == 1 else None
        if size == 1 or alone is not None:
            which = "every channel" if size == 1 else f"channel {alone}"
            raise SettingError("reference_group_size",
                               f"{g} leaves {which} alone in a group of one on {n_channels} "
                               f"channels (its {v['reference']} reference is itself: flat "
                               "forever); choose another size or reference=none")
