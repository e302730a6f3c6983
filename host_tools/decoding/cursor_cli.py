"""``hubctl cursor``: the BCI loop for a person at the host.

    hubctl cursor --tcp HOST:PORT | --ble NAME [--hci T] [--features tc|units|hg] [--set …]
        [--calibrate 60 | --load DECODER.npz] [--decoder kalman_ss] [--task center_out|grid]
        [--blocks 2] [--block-s 60] [--refit] [--display window|terminal|none]
        [--snapshot VIEW.png] [--session SESSION.npz] [--nwb SESSION.nwb]
        [--save-decoder DECODER.npz]

1. Calibration (open loop, ``--calibrate`` seconds): the cursor flies to each target by itself
   — follow it (attempt or imagine the movement); the features and that velocity are the
   training set. Skipped with ``--load``.
2. The decoder is fitted (``--decoder``, any kind of ``hubctl decode-eval``) and saved
   (``--save-decoder``).
3. Closed loop: ``--blocks`` blocks of ``--block-s`` seconds of ``--task`` with the decoder in
   control. ``--refit`` refits it after the first block on that block's ReFIT intention labels
   (Gilja et al. 2012).
4. The session (every bin of every block) goes to ``--session`` (``.npz``, layout in
   ``host_tools/decoding/session.py``) and, with ``--nwb``, into an NWB file as
   ``processing/bci`` — appended to that file if it is the recording of the same hub session
   (``hubctl record --nwb``), a new file otherwise (``host_tools/decoding/session_nwb.py``);
   a summary is printed.

Displays: ``window`` (matplotlib), ``terminal`` (characters, redrawn in place), ``none``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from host_tools.decoding.base import Decoder
from host_tools.decoding.live import LiveLink, add_link_arguments
from host_tools.decoding.registry import DECODERS
from host_tools.decoding.session import CursorSession, View
from host_tools.decoding.task import CenterOut, make_task
from host_tools.nwb_record import add_subject_arguments

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_link_arguments(p)
    p.add_argument("--features", default="tc", choices=("tc", "units", "hg"))
    p.add_argument("--calibrate", type=float, default=60.0, help="calibration seconds")
    p.add_argument("--load", type=Path, help="use this decoder file (no calibration)")
    p.add_argument("--decoder", default="kalman_ss", choices=sorted(DECODERS))
    p.add_argument("--task", default="center_out", choices=("center_out", "grid"))
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--block-s", type=float, default=60.0)
    p.add_argument("--refit", action="store_true", help="ReFIT after the first block")
    p.add_argument("--speed", type=float, default=1.0, help="workspace units/s at full speed")
    p.add_argument("--display", default="window", choices=("window", "terminal", "none"))
    p.add_argument("--snapshot", type=Path, help="save the view here (PNG) at the end")
    p.add_argument("--session", type=Path, default=Path("cursor_session.npz"))
    p.add_argument("--nwb", type=Path, help="also write the session into this NWB file "
                   "(appended to it if it is a recording of the same hub session)")
    add_subject_arguments(p, "with --nwb (a new file): ")
    p.add_argument("--save-decoder", type=Path)
    p.add_argument("--seed", type=int, default=0, help="target order")


def make_view(kind: str, snapshot: bool) -> View | None:
    from host_tools.decoding.view import FigureView, TerminalView

    if kind == "window":
        return FigureView(interactive=True)
    if kind == "terminal":
        return TerminalView()
    return FigureView(interactive=False) if snapshot else None


async def run_session(args: argparse.Namespace, s: CursorSession) -> dict[str, Any]:
    from host_tools.decoding.base import load_decoder

    link = LiveLink(args, s.on_envelope)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    try:
        while not link.connected.is_set():
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        dec: Decoder
        if args.load:
            dec = load_decoder(args.load)
        else:
            calib = await s.block("calibration", CenterOut(args.seed), None, args.calibrate)
            dec = await s.fit(args.decoder, [calib])
            if args.save_decoder:
                dec.save(args.save_decoder)
        for i in range(args.blocks):
            blk = await s.block(f"{args.task}/{i + 1}", make_task(args.task, args.seed + 1 + i),
                                dec, args.block_s)
            if args.refit and i == 0 and blk.mode == "closed":
                dec = await s.fit(dec.kind, [blk], name=f"{dec.kind}-refit")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {"blocks": s.summary(), "time_sync": link.timesync.summary()}


def run(args: argparse.Namespace) -> int:
    view = make_view(args.display, args.snapshot is not None)
    s = CursorSession(args.features, view=view, speed=args.speed, seed=args.seed)
    try:
        result = asyncio.run(run_session(args, s))
    except KeyboardInterrupt:
        result = {"blocks": s.summary(), "interrupted": True}
    finally:
        if view is not None and args.snapshot is not None and hasattr(view, "snapshot"):
            view.snapshot(args.snapshot)
        if view is not None:
            view.close()
    path = s.save(args.session)
    result["session_file"] = str(path)
    rc = 0
    if args.nwb is not None:
        from host_tools.decoding.session_nwb import SessionNwbError, write_session_nwb
        from host_tools.nwb_writer import NwbOptions

        try:
            result["nwb"] = write_session_nwb(path, args.nwb, NwbOptions.from_args(args))
        except (SessionNwbError, OSError) as e:
            log.error("cursor: the session is in %s but not in %s: %s", path, args.nwb, e)
            result["nwb_error"], rc = str(e), 1
    print(json.dumps(result, indent=1, default=str))
    return rc
