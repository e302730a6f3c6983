"""A BCI session on the host: hub packets → bins → cursor loop, in blocks, with a display.

``CursorSession`` is what ``hubctl cursor`` runs for a person and what the HIL closed loop
runs with a simulated user (``on_step``). Blocks are timed by the wall clock (the hub streams
in real time); decoders are fitted in a worker thread while packets keep arriving.

The session file (``save``) is a ``.npz`` read with ``allow_pickle=False``:

- ``meta``: JSON — format ``implant-hub-bci-session`` v1, feature kind, bin width (s), the
  hub's sampling rate ``fs``, hub session id, ``started_utc`` (wall clock when the first block
  started), and per block its name, mode (calibration | closed), decoder kind, task summary
  (success, time to target, bits/s, latency percentiles) and ``events`` (``[bin, outcome]`` per
  trial or selection ended);
- per block i: ``b{i}_bins`` (hub bin indices), ``b{i}_end_sample`` (the hub sample index
  ending each bin), ``b{i}_x`` (features, bins × N), ``b{i}_velocity`` (what moved the
  cursor), ``b{i}_label`` (intended velocity: the autopilot's, or ReFIT's estimate in closed
  loop), ``b{i}_cursor``, ``b{i}_target``, ``b{i}_latency_ms`` (sample → cursor update) and
  ``b{i}_latency_bins`` (the bins those latencies belong to).

``host_tools.decoding.session_nwb`` writes the same session into an NWB file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from host_tools.decoding.base import F64, Decoder
from host_tools.decoding.features import BinAssembler
from host_tools.decoding.loop import BlockLog, CursorLoop
from host_tools.decoding.registry import make_decoder
from host_tools.decoding.task import CenterOut, Task
from hub.wire import pb

log = logging.getLogger(__name__)
SESSION_FORMAT = "implant-hub-bci-session"


class View(Protocol):
    def draw(self, pos: F64, target: F64, task: Task, status: str) -> None: ...

    def close(self) -> None: ...


class CursorSession:
    def __init__(self, features: str = "tc", *, view: View | None = None,
                 on_step: Callable[[F64, F64, F64], None] | None = None,
                 speed: float = 1.0, seed: int = 0) -> None:
        self.assembler = BinAssembler(features)
        self.task: Task = CenterOut(seed)
        self.view = view
        self._user_step = on_step
        self.loop = CursorLoop(self.task, 0.02, speed=speed, on_step=self._on_step)
        self.bin_s: float | None = None
        self.hub_session = 0
        self.decoders: dict[str, Decoder] = {}
        self.status = "waiting for the hub"
        self.started_utc: dt.datetime | None = None

    # ------------------------------------------------------------------ packets
    def on_envelope(self, env: pb.Envelope, t_ns: int) -> None:
        self.hub_session = env.session_id or self.hub_session
        for b in self.assembler.feed(env, t_ns):
            if self.bin_s is None and self.assembler.fs:
                self.bin_s = env.features.bin_samples / self.assembler.fs
                self.loop.bin_s = self.bin_s
                if self.loop.block is not None:
                    self.loop.block.bin_s = self.bin_s
            self.loop.on_bin(b)

    def _on_step(self, pos: F64, target: F64, v: F64) -> None:
        if self._user_step is not None:
            self._user_step(pos, target, v)
        if self.view is not None:
            self.view.draw(pos, target, self.task, self.status)

    def set_readout(self, speed: float, smooth: float = 0.0) -> None:
        """The cursor's gain (workspace units/s at full speed) and smoothing α from the next
        bin on (``host_tools.decoding.loop``)."""
        if not 0.0 <= smooth < 1.0 or speed <= 0:
            raise ValueError(f"want 0 ≤ smooth < 1 ({smooth}) and speed > 0 ({speed})")
        self.loop.cursor.speed, self.loop.smooth = speed, smooth

    # ------------------------------------------------------------------ blocks
    def start(self, name: str, task: Task, decoder: Decoder | None) -> None:
        self.task = task
        self.started_utc = self.started_utc or dt.datetime.now(dt.UTC)
        self.loop.start_block(name, task, decoder)
        self.status = (f"{name}: " + ("follow the cursor" if decoder is None
                                      else f"{decoder.kind} in control"))
        log.info("block %s", self.status)

    def stop(self) -> BlockLog | None:
        blk = self.loop.finish_block()
        self.status = "paused"
        return blk

    async def block(self, name: str, task: Task, decoder: Decoder | None,
                    seconds: float) -> BlockLog:
        self.start(name, task, decoder)
        await asyncio.sleep(seconds)
        blk = self.stop()
        assert blk is not None
        return blk

    async def fit(self, kind: str, blocks: list[BlockLog], name: str | None = None) -> Decoder:
        """A decoder of ``kind`` on the blocks' (features, intention labels), fitted in a
        thread; kept as ``decoders[name or kind]``."""
        X = np.concatenate([b.arrays()["x"] for b in blocks])
        Y = np.concatenate([b.arrays()["label"] for b in blocks])
        if len(X) < 50:
            raise ValueError(f"only {len(X)} bins to fit on: is the hub streaming features?")
        self.status = f"fitting {kind} on {len(X)} bins"
        dec = await asyncio.to_thread(make_decoder(kind).fit, X, Y)
        self.decoders[name or kind] = dec
        return dec

    # ------------------------------------------------------------------ results
    def summary(self) -> list[dict[str, Any]]:
        return [{"name": b.name, "mode": b.mode, "decoder": b.decoder, "bins": len(b.bins),
                 "decode_us_p50": round(float(np.median(b.decode_us)), 1) if b.decode_us
                 else None, **b.task} for b in self.loop.blocks]

    def save(self, path: Path) -> Path:
        """The session ``.npz`` (module docstring)."""
        meta = {"format": SESSION_FORMAT, "version": 1, "features": self.assembler.kind,
                "bin_s": self.bin_s, "fs": self.assembler.fs,
                "hub_session": f"{self.hub_session:08x}",
                "started_utc": self.started_utc.isoformat() if self.started_utc else None,
                "blocks": [{**s, "events": [[int(i), e] for i, e in b.events]}
                           for s, b in zip(self.summary(), self.loop.blocks, strict=True)]}
        arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta, default=str))}
        for i, b in enumerate(self.loop.blocks):
            for k, v in b.arrays().items():
                arrays[f"b{i}_{k}"] = v
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)
        return path
