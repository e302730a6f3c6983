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
from hub.dsp.sorting import TemplateSet
from hub.errors import NK_ERR_ARG, NK_ERR_CAPACITY
from hub.wire import SCHEMA_VERSION, Reassembler, pb, settings
from hub.wire.masks import mask_to_channels

log = logging.getLogger(__name__)
MAX_UNITS = 1024
MAX_TEMPLATE_VALUES = 4 << 20
MAX_TEMPLATE_ABS = 1e6      # filtered counts: int16 data never comes near
MAX_CHANNEL_ID = 65535
MAX_NOISE = 65536.0         # σ in filtered counts: int16 samples never come near
MAX_FS = 1e6
MAX_PARTS = 4096            # parts of one LoadTemplates set
MAX_TEMPLATE_ROWS = 1024    # channels per template (was 64: a 128-channel probe's whole rows)
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


def _no_floats() -> npt.NDArray[np.float32]:
    return np.zeros(0, np.float32)


@dataclasses.dataclass(frozen=True)
class Templates:
    """Unit templates from the host (calibration), for the online sorter's hook: the
    templates file's fields (hub/dsp/sorting.py), rows sparse per unit. The fields an older
    sender leaves out default to what it always got: no noise seed, no basis, alignment and
    rate not checked."""

    waveforms: npt.NDArray[np.float32]     # (n_units, n_channels, n_samples)
    channels: npt.NDArray[np.int32]        # (n_units, n_channels)
    unit_ids: npt.NDArray[np.int32]        # (n_units,)
    noise: npt.NDArray[np.float32] = dataclasses.field(default_factory=_no_floats)  # (C,) or (0,)
    basis: npt.NDArray[np.float32] = dataclasses.field(
        default_factory=lambda: np.zeros((0, 0), np.float32))    # (n_features, n_samples)
    pre: int | None = None                 # None: the hub's snippet_pre
    sampling_frequency: float = 0.0        # 0: the implant's

    def template_set(self, n_channels: int, fs: float, pre: int) -> TemplateSet:
        """The same set as a templates file would hold (dense over the implant's channels);
        ``fs`` and ``pre`` stand in for the fields the sender left out."""
        t = self.waveforms.shape[2]
        p = pre if self.pre is None else self.pre
        return TemplateSet(self.sampling_frequency or fs, p, t - p, self.unit_ids,
                           self.dense(n_channels),
                           self.basis if self.basis.size else np.zeros((0, t), np.float32),
                           noise=self.noise)

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


def templates_from(msg: pb.LoadTemplates, first_id: int = 0) -> Templates:
    """Checked templates (every value finite and bounded, every unit non-zero, channel and
    unit ids in range, noise σ finite and positive) or ConfigError naming the field. Empty
    unit_ids number the units from ``first_id`` (a later part of a multi-part set)."""
    u, k, t = msg.n_units, msg.n_channels, msg.n_samples
    if not 1 <= u <= MAX_UNITS:
        raise ConfigError(f"n_units={u}: must be 1–{MAX_UNITS}")
    if not 1 <= k <= MAX_TEMPLATE_ROWS:
        raise ConfigError(f"n_channels={k}: must be 1–{MAX_TEMPLATE_ROWS} per template")
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
    ids = np.asarray(msg.unit_ids or range(first_id, first_id + u), dtype=np.int64)
    if ids.size != u or np.unique(ids).size != u or ids.max() >= 2**31 - 2:
        raise ConfigError(f"unit_ids: want {u} distinct ids below 2^31 − 2 (or none)")
    noise = np.asarray(msg.noise, dtype=np.float32)
    if noise.size and not (np.isfinite(noise).all() and (noise > 0).all()
                           and (noise <= MAX_NOISE).all()):
        bad = int(np.flatnonzero(~((noise > 0) & (noise <= MAX_NOISE)))[0])
        raise ConfigError(f"noise: channel {bad} has σ {float(noise[bad])!r}; want finite, "
                          f"> 0 and ≤ {MAX_NOISE:g} counts on every channel (or none)")
    d = msg.n_features
    if d > t or len(msg.basis) != d * t:
        raise ConfigError(f"basis: {len(msg.basis)} values for n_features={d}; want "
                          f"n_features ≤ n_samples={t} and n_features×{t} values")
    basis = np.asarray(msg.basis, dtype=np.float32).reshape(d, t)
    if not (np.isfinite(basis).all() and (np.abs(basis) <= MAX_TEMPLATE_ABS).all()):
        raise ConfigError(f"basis: NaN, infinite or |value| > {MAX_TEMPLATE_ABS:g}")
    pre = msg.pre if msg.HasField("pre") else None
    if pre is not None and pre >= t:
        raise ConfigError(f"pre={pre}: must be below n_samples={t}")
    fs = msg.sampling_frequency
    if not (fs == 0 or 0 < fs <= MAX_FS):      # NaN fails both
        raise ConfigError(f"sampling_frequency={fs!r}: want 0 (not checked) or 0–{MAX_FS:g} Hz")
    return Templates(wf, ch.astype(np.int32), ids.astype(np.int32), noise, basis, pre, fs)


def check_templates(templates: Templates, n_channels: int | None, fs: float,
                    pre: int, post: int) -> None:
    """The checks that need the hub's stream and configuration (ConfigError naming the
    field); the kernels' own checks follow when the set is loaded, still before any change."""
    if n_channels is not None and templates.noise.size not in (0, n_channels):
        raise ConfigError(f"noise: {templates.noise.size} values; want one σ per implant "
                          f"channel ({n_channels}) or none")
    t, p = templates.waveforms.shape[2], templates.pre
    if p is not None and (p, t - p) != (pre, post):
        raise ConfigError(f"pre={p}, n_samples={t}: the hub's snippets are pre={pre}, "
                          f"post={post} (n_samples {pre + post})")
    f = templates.sampling_frequency
    if f and fs and abs(f - fs) > 1e-6 * fs:
        raise ConfigError(f"sampling_frequency={f:g}: the implant streams at {fs:g} Hz")


def _set_wide(msg: pb.LoadTemplates) -> list[str]:
    """The set-wide fields a LoadTemplates carries (only part 0 may)."""
    return [name for name, there in (
        ("noise", bool(msg.noise)), ("basis", bool(msg.basis) or msg.n_features > 0),
        ("pre", msg.HasField("pre")), ("sampling_frequency", msg.sampling_frequency != 0))
        if there]


def join_parts(parts: list[Templates]) -> Templates:
    """One set from the parts of a multi-part LoadTemplates (ConfigError on a unit id used
    twice); the set-wide fields are part 0's."""
    ids = np.concatenate([p.unit_ids for p in parts])
    if np.unique(ids).size != ids.size:
        raise ConfigError(f"unit_ids: {ids.size - np.unique(ids).size} ids used twice across "
                          f"the {len(parts)} parts")
    first = parts[0]
    return dataclasses.replace(first, waveforms=np.concatenate([p.waveforms for p in parts]),
                               channels=np.concatenate([p.channels for p in parts]),
                               unit_ids=ids)


class Control:
    """Decodes, validates and applies commands against a :class:`HubApi`."""

    def __init__(self, hub: HubApi) -> None:
        self.hub = hub
        self.handled = 0
        self.rejected = 0
        self._staged: list[Templates] = []     # parts of a multi-part LoadTemplates so far
        self._staged_parts = 0

    def _templates(self, msg: pb.LoadTemplates) -> Templates | None:
        """The whole set once its last part is here (None: this part is staged), checked
        against the hub's stream and configuration; any refused part discards the staged ones
        (ConfigError naming the field)."""
        n, i = max(1, msg.n_parts), msg.part
        staged, self._staged = self._staged, []
        if n > MAX_PARTS or i >= n:
            raise ConfigError(f"part={i}, n_parts={n}: want part < n_parts ≤ {MAX_PARTS}")
        if i > 0:
            if n != self._staged_parts or i != len(staged):
                raise ConfigError(f"part={i} of n_parts={n}: expected part {len(staged)} of "
                                  f"{self._staged_parts or '?'} (the staged parts are "
                                  "discarded: send the set again from part 0)")
            if wide := _set_wide(msg):
                raise ConfigError(f"{', '.join(wide)}: only in part 0 of a set")
            s0 = staged[0].waveforms.shape
            if (msg.n_channels, msg.n_samples) != s0[1:]:
                raise ConfigError(f"part={i}: n_channels={msg.n_channels}, n_samples="
                                  f"{msg.n_samples}; part 0 had {s0[1]} and {s0[2]}")
        units = sum(p.unit_ids.size for p in staged)
        t = templates_from(msg, units)
        p = self.hub.config.pipeline
        check_templates(t, self.hub.n_channels, self.hub.sampling_frequency, p.snippet_pre,
                        p.snippet_post)
        if units + t.unit_ids.size > MAX_UNITS or \
                sum(p.waveforms.size for p in staged) + t.waveforms.size > MAX_TEMPLATE_VALUES:
            raise ConfigError(f"part={i}: the set exceeds {MAX_UNITS} units or "
                              f"{MAX_TEMPLATE_VALUES} values")
        if i < n - 1:
            self._staged, self._staged_parts = [*staged, t], n
            return None
        return join_parts([*staged, t]) if staged else t

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
            templates = self._templates(cmd.load_templates)
            if templates is None:
                lt = cmd.load_templates
                res.message = f"part {lt.part} of {lt.n_parts} staged (applied with the last)"
                return
            await hub.load_templates(templates)
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
