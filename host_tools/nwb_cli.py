"""``hubctl decode PACKETS.log SESSION.nwb``: a saved packet log (``hubctl record
--packets-out`` or ``--nwb``, even one cut short by a crash) → NWB 2, with the same writer as
``record --nwb``. Prints a JSON report (sizes, counts, conversion speed)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from host_tools.nwb_record import add_subject_arguments
from host_tools.nwb_writer import NwbOptions, convert

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("packets", type=Path, metavar="PACKETS.log",
                   help="packet log written by hubctl record (--packets-out / --nwb)")
    p.add_argument("nwb", type=Path, metavar="SESSION.nwb", help="NWB file to write")
    add_subject_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace SESSION.nwb if it exists")


def run(args: argparse.Namespace) -> int:
    if not args.packets.is_file():
        raise ValueError(f"{args.packets}: no such packet log")
    if args.nwb.exists() and not args.overwrite:
        raise ValueError(f"{args.nwb} exists (--overwrite to replace it)")
    if args.nwb.suffix != ".nwb":
        raise ValueError(f"{args.nwb}: the file name must end in .nwb")
    report = convert(args.packets, args.nwb, NwbOptions.from_args(args))
    print(json.dumps(report, indent=1))
    return 0
