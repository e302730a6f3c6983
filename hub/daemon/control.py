"""The control plane: host commands in, exactly one :class:`pb.CommandResult` out per command.

Every field is validated against the settings schema (hub.wire.settings) before anything
changes; a command is applied whole or not at all; undecodable bytes get a MALFORMED result.
Commands run one after another in :class:`CommandPort` (chunks in, results out): a command that
needs the pipeline's worker (a configuration, templates) awaits it, and the event loop never
blocks. The daemon implements :class:`HubApi`; this module only decides and checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from hub.daemon.config_store import HubConfig
from hub.dsp.pipeline import ConfigError
from hub.errors import NK_ERR_ARG, NK_ERR_CAPACITY
from hub.wire import SCHEMA_VERSION, Reassembler, pb, settings
from hub.wire.masks import mask_to_channels

log = logging.getLogger(__name__)
MAX_UNITS = 1024
MAX_TEMPLATE_VALUES = 4 << 20
MAX_TEMPLATE_ABS = 1e6      # filtered counts: int16 data never comes near
MAX_CHANNEL_ID = 65535
MAX_QUEUED_COMMANDS = 64
_ARG_STATUSES = (NK_ERR_ARG, NK_ERR_CAPACITY)    # a kernel refused the input


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
    """What the daemon offers the control plane. The async methods run work in the
    pipeline's worker and return when it is done."""

    @property
    def config(self) -> HubConfig: ...
    @property
    def sampling_frequency(self) -> float: ...
    @property
    def n_channels(self) -> int | None: ...
    async def apply_config(self, cfg: HubConfig) -> None:
        """Atomic: raises ValueError and changes nothing, or applies all."""
    async def set_running(self, running: bool) -> None: ...
    async def load_templates(self, templates: Templates) -> None:
        """Raises UnsupportedError when no sorter can take them, ValueError when it refuses."""
    def status(self) -> pb.Telemetry: ...
    def time_sync(self, host_time_ns: int) -> pb.TimeSync: ...


def merged_config(cur: HubConfig, msg: pb.Configure, n_channels: int | None) -> HubConfig:
    """The configuration a Configure command asks for: each field checked against the schema
    (not yet against fs, the channel count or each other: :meth:`HubConfig.validate`)."""
    new = cur.with_values(settings.values_of(msg))
    if msg.raw_channel_mask:
        new = dataclasses.replace(new, raw_channels=mask_to_channels(msg.raw_channel_mask,
                                                                     n_channels))
    return new


def templates_from(msg: pb.LoadTemplates) -> Templates:
    """Checked templates (every value finite and bounded, every unit non-zero, channel and
    unit ids in range) or ConfigError naming the field."""
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
    peak = np.abs(wf).max(axis=(1, 2))
    if peak.max() > MAX_TEMPLATE_ABS:
        raise ConfigError(f"waveforms: |value| {float(peak.max()):.3g} exceeds "
                          f"{MAX_TEMPLATE_ABS:g} counts")
    if (peak == 0).any():
        raise ConfigError(f"waveforms: unit {int(np.argmin(peak))} is all zero")
    ch = np.asarray(msg.channels, dtype=np.int64).reshape(u, k)
    if ch.max() > MAX_CHANNEL_ID:
        raise ConfigError(f"channels: {int(ch.max())} is not a channel number "
                          f"(0–{MAX_CHANNEL_ID})")
    ids = np.asarray(msg.unit_ids or range(u), dtype=np.int64)
    if ids.size != u or np.unique(ids).size != u or ids.max() >= 2**31 - 2:
        raise ConfigError(f"unit_ids: want {u} distinct ids below 2^31 − 2 (or none)")
    return Templates(wf, ch.astype(np.int32), ids.astype(np.int32))


class Control:
    """Decodes, validates and applies commands against a :class:`HubApi`."""

    def __init__(self, hub: HubApi) -> None:
        self.hub = hub
        self.handled = 0
        self.rejected = 0

    async def handle(self, payload: bytes) -> pb.CommandResult:
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
            await self._dispatch(cmd, which, res)
            res.code = pb.RESULT_OK
        except CommandError as e:
            res.code, res.message = e.code, str(e)
        except (ValueError, TypeError, ArithmeticError) as e:   # the schema's and kernels' checks
            res.code, res.message = pb.RESULT_INVALID_ARGUMENT, str(e)
        except (OSError, RuntimeError) as e:   # the hub failed (a kernel error, …)
            status = getattr(e, "status", None)
            res.code = pb.RESULT_INVALID_ARGUMENT if status in _ARG_STATUSES else pb.RESULT_INTERNAL
            res.message = f"{type(e).__name__}: {e}"
        if res.code != pb.RESULT_OK:
            self.rejected += 1
            log.info("command %s (request %d) rejected: %s", which or "?", cmd.request_id,
                     res.message)
        return res

    async def _dispatch(self, cmd: pb.Command, which: str, res: pb.CommandResult) -> None:
        hub = self.hub
        if which == "configure":
            new = merged_config(hub.config, cmd.configure, hub.n_channels)
            new.validate(hub.sampling_frequency, hub.n_channels)
            await hub.apply_config(new)
        elif which == "start":
            await hub.set_running(True)
        elif which == "stop":
            await hub.set_running(False)
        elif which == "set_thresholds":
            new = hub.config.with_values({"threshold": settings.setting("threshold").check(
                cmd.set_thresholds.threshold)})
            new.validate(hub.sampling_frequency, hub.n_channels)
            await hub.apply_config(new)
        elif which == "load_templates":
            await hub.load_templates(templates_from(cmd.load_templates))
        elif which == "request_status":
            res.status.CopyFrom(hub.status())
        elif which == "time_sync":
            res.time_sync.CopyFrom(hub.time_sync(cmd.time_sync.host_time_ns))
        else:
            raise CommandError(pb.RESULT_MALFORMED, "no command set in the message")


class CommandPort:
    """Command chunks in (from the uplink's control endpoint), results out, in order: the
    payloads are reassembled, queued, and handled one at a time by :meth:`run` (a command that
    waits for the worker holds back the ones after it, never the event loop). Every payload
    gets exactly one result, also when the queue is full (an error result at once) or the
    port stops (an error result for each one still queued)."""

    def __init__(self, control: Control, send: Callable[[pb.CommandResult], None]) -> None:
        self.control, self.send = control, send
        self.reassembler = Reassembler()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED_COMMANDS)
        self.busy = False

    def feed(self, chunk: bytes) -> None:
        """One chunk from the host; never blocks."""
        for payload in self.reassembler.feed(chunk):
            try:
                self._queue.put_nowait(payload)
            except asyncio.QueueFull:
                self.control.handled += 1
                self.control.rejected += 1
                self.send(pb.CommandResult(request_id=_request_id(payload),
                                           code=pb.RESULT_INTERNAL,
                                           message=f"{MAX_QUEUED_COMMANDS} commands waiting: "
                                                   "busy, try again"))

    @property
    def idle(self) -> bool:
        return self._queue.empty() and not self.busy

    async def run(self) -> None:
        """Handles queued commands until cancelled; on cancellation every queued or running
        command still gets its (error) result."""
        payload = b""
        try:
            while True:
                payload = await self._queue.get()
                self.busy = True
                try:
                    res = await self.control.handle(payload)
                except Exception as e:   # supervisor boundary: a bug still answers the host
                    log.exception("command handler failed")
                    res = pb.CommandResult(request_id=_request_id(payload),
                                           code=pb.RESULT_INTERNAL,
                                           message=f"{type(e).__name__}: {e}")
                self.send(res)
                self.busy = False
        except asyncio.CancelledError:
            if self.busy:
                self.send(_stopped(payload))
            while not self._queue.empty():
                self.send(_stopped(self._queue.get_nowait()))
            self.busy = False
            raise


def _request_id(payload: bytes) -> int:
    with contextlib.suppress(DecodeError, ValueError, RuntimeError):
        return int(pb.Command.FromString(payload).request_id)
    return 0


def _stopped(payload: bytes) -> pb.CommandResult:
    return pb.CommandResult(request_id=_request_id(payload), code=pb.RESULT_INTERNAL,
                            message="the hub is stopping (or its command stage restarted)")
