"""The control plane: host commands in, exactly one :class:`pb.CommandResult` out per command.

Every field is validated before anything changes (the pipeline's own ``PipelineConfig.validate``
names the field at fault); a command is applied whole or not at all; undecodable bytes get a
MALFORMED result. The daemon implements :class:`HubApi`; this module only decides and checks.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from hub.daemon.config_store import HubConfig
from hub.dsp.pipeline import ConfigError
from hub.wire import SCHEMA_VERSION, pb
from hub.wire.masks import mask_to_channels

log = logging.getLogger(__name__)
MAX_UNITS = 1024
MAX_TEMPLATE_VALUES = 4 << 20


class CommandError(ValueError):
    """A command that cannot be applied; carries the result code."""

    def __init__(self, code: pb.ResultCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class UnsupportedError(CommandError):
    def __init__(self, message: str) -> None:
        super().__init__(pb.RESULT_UNSUPPORTED, message)


@dataclasses.dataclass(frozen=True)
class Templates:
    """Unit templates from the host (calibration), for the online sorter's hook."""

    waveforms: npt.NDArray[np.float32]     # (n_units, n_channels, n_samples)
    channels: npt.NDArray[np.int32]        # (n_units, n_channels)
    unit_ids: npt.NDArray[np.int32]        # (n_units,)

    def dense(self, n_channels: int) -> npt.NDArray[np.float32]:
        """(n_units, n_channels of the recording, n_samples), zeros off each unit's rows."""
        if self.channels.size and int(self.channels.max()) >= n_channels:
            raise ConfigError(f"channels: {int(self.channels.max())} is not a channel of this "
                              f"{n_channels}-channel implant")
        u, k, t = self.waveforms.shape
        out = np.zeros((u, n_channels, t), np.float32)
        for j in range(k):
            out[np.arange(u), self.channels[:, j]] = self.waveforms[:, j]
        return out


class HubApi(Protocol):
    """What the daemon offers the control plane."""

    @property
    def config(self) -> HubConfig: ...
    @property
    def sampling_frequency(self) -> float: ...
    @property
    def n_channels(self) -> int | None: ...
    def apply_config(self, cfg: HubConfig) -> None:
        """Atomic: raises ConfigError/ValueError and changes nothing, or applies all."""
    def set_running(self, running: bool) -> None: ...
    def load_templates(self, templates: Templates) -> None:
        """Raises UnsupportedError when no sorter can take them."""
    def status(self) -> pb.Telemetry: ...
    def time_sync(self, host_time_ns: int) -> pb.TimeSync: ...


#: PipelineSettings field → PipelineConfig field (band corners are combined into band_hz)
_DIRECT = ("block_ms", "filter_order", "reference", "reference_group_size", "polarity",
           "threshold", "exclude_ms", "refractory_ms", "warmup_s", "noise_tau_s",
           "neighbor_radius_um", "snippet_pre", "snippet_post", "snippet_channels", "bin_ms",
           "lfp", "lfp_cutoff_hz", "lfp_rate_hz", "sort")


def _finite(name: str, v: float) -> float:
    if not math.isfinite(v):
        raise ConfigError(f"{name}={v!r}: must be a finite number")
    return v


def merged_config(cur: HubConfig, msg: pb.Configure, n_channels: int | None) -> HubConfig:
    """The configuration a Configure command asks for (not yet validated against fs)."""
    changes: dict[str, Any] = {}
    ps = msg.pipeline
    known = {f.name for f in dataclasses.fields(cur.pipeline)}
    for name in _DIRECT:
        if ps.HasField(name):
            if name not in known:
                raise CommandError(pb.RESULT_UNSUPPORTED, f"{name}: not supported by this hub")
            v = getattr(ps, name)
            changes[name] = _finite(name, v) if isinstance(v, float) else v
    lo, hi = cur.pipeline.band_hz
    if ps.HasField("band_low_hz"):
        lo = _finite("band_low_hz", ps.band_low_hz)
    if ps.HasField("band_high_hz"):
        hi = _finite("band_high_hz", ps.band_high_hz)
    changes["band_hz"] = (lo, hi)
    pipe = dataclasses.replace(cur.pipeline, **changes)
    if n_channels is not None and pipe.reference_group_size > n_channels:
        raise ConfigError(f"reference_group_size={pipe.reference_group_size}: more than the "
                          f"{n_channels} channels")
    new = dataclasses.replace(cur, pipeline=pipe)
    if msg.raw_channel_mask:
        new = dataclasses.replace(new, raw_channels=mask_to_channels(msg.raw_channel_mask,
                                                                     n_channels))
    if msg.HasField("snippets"):
        new = dataclasses.replace(new, snippets=msg.snippets)
    if msg.HasField("raw_codec"):
        new = dataclasses.replace(new, raw_codec=msg.raw_codec)
    if msg.HasField("outage_buffer_s"):
        new = dataclasses.replace(new, outage_buffer_s=_finite("outage_buffer_s",
                                                               msg.outage_buffer_s))
    return new


def templates_from(msg: pb.LoadTemplates) -> Templates:
    u, k, t = msg.n_units, msg.n_channels, msg.n_samples
    if not 1 <= u <= MAX_UNITS:
        raise ConfigError(f"n_units={u}: must be 1–{MAX_UNITS}")
    if not 1 <= k <= 64:
        raise ConfigError(f"n_channels={k}: must be 1–64 per template")
    if not 4 <= t <= 512:
        raise ConfigError(f"n_samples={t}: must be 4–512")
    if u * k * t > MAX_TEMPLATE_VALUES:
        raise ConfigError(f"templates: {u}×{k}×{t} values exceed {MAX_TEMPLATE_VALUES}")
    if len(msg.waveforms) != u * k * t:
        raise ConfigError(f"waveforms: {len(msg.waveforms)} values, want {u}×{k}×{t}")
    if len(msg.channels) != u * k:
        raise ConfigError(f"channels: {len(msg.channels)} values, want {u}×{k}")
    wf = np.asarray(msg.waveforms, dtype=np.float32).reshape(u, k, t)
    if not np.isfinite(wf).all():
        raise ConfigError("waveforms: contains NaN or infinity")
    ids = np.asarray(msg.unit_ids or range(u), dtype=np.int64)
    if ids.size != u or np.unique(ids).size != u or ids.max() > 2**31 - 1:
        raise ConfigError(f"unit_ids: want {u} distinct ids below 2^31 (or none)")
    return Templates(wf, np.asarray(msg.channels, dtype=np.int32).reshape(u, k),
                     ids.astype(np.int32))


class Control:
    """Decodes, validates and applies commands against a :class:`HubApi`."""

    def __init__(self, hub: HubApi) -> None:
        self.hub = hub
        self.handled = 0
        self.rejected = 0

    def handle(self, payload: bytes) -> pb.CommandResult:
        """Exactly one result for one command payload, whatever the bytes."""
        self.handled += 1
        try:
            cmd = pb.Command.FromString(payload)
        except (DecodeError, ValueError, RuntimeError) as e:
            self.rejected += 1
            return pb.CommandResult(code=pb.RESULT_MALFORMED, message=f"undecodable command: {e}")
        which = cmd.WhichOneof("command") or ""
        res = pb.CommandResult(request_id=cmd.request_id, command=which)
        try:
            if cmd.schema_version != SCHEMA_VERSION:
                raise CommandError(pb.RESULT_VERSION_MISMATCH,
                                   f"schema_version={cmd.schema_version}: this hub speaks "
                                   f"{SCHEMA_VERSION}")
            self._dispatch(cmd, which, res)
            res.code = pb.RESULT_OK
        except CommandError as e:
            res.code, res.message = e.code, str(e)
        except ValueError as e:        # ConfigError and the kernels' own checks
            res.code, res.message = pb.RESULT_INVALID_ARGUMENT, str(e)
        except (OSError, RuntimeError) as e:   # the hub failed (timeout, kernel error)
            res.code, res.message = pb.RESULT_INTERNAL, f"{type(e).__name__}: {e}"
        if res.code != pb.RESULT_OK:
            self.rejected += 1
            log.info("command %s (request %d) rejected: %s", which or "?", cmd.request_id,
                     res.message)
        return res

    def _dispatch(self, cmd: pb.Command, which: str, res: pb.CommandResult) -> None:
        hub = self.hub
        if which == "configure":
            new = merged_config(hub.config, cmd.configure, hub.n_channels)
            new.validate(hub.sampling_frequency, hub.n_channels)
            hub.apply_config(new)
        elif which == "start":
            hub.set_running(True)
        elif which == "stop":
            hub.set_running(False)
        elif which == "set_thresholds":
            k = _finite("threshold", cmd.set_thresholds.threshold)
            new = dataclasses.replace(hub.config, pipeline=dataclasses.replace(
                hub.config.pipeline, threshold=k))
            new.validate(hub.sampling_frequency, hub.n_channels)
            hub.apply_config(new)
        elif which == "load_templates":
            hub.load_templates(templates_from(cmd.load_templates))
        elif which == "request_status":
            res.status.CopyFrom(hub.status())
        elif which == "time_sync":
            res.time_sync.CopyFrom(hub.time_sync(cmd.time_sync.host_time_ns))
        else:
            raise CommandError(pb.RESULT_MALFORMED, "no command set in the message")
