"""``hubctl`` — the host-side tool. Subcommands are a table of (module, help), imported lazily
so that one subcommand's heavy dependencies never slow down another."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: name → (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("host_tools.bench_cli", "run the benchmarks (source checkout) → JSON"),
    "sort": ("host_tools.sort_cli", "run the hub's online sorter over a recording → SI sorting"),
    "calibrate": ("host_tools.calibrate", "offline-sort a calibration segment → hub templates"),
    "pair": ("host_tools.pair_cli", "bond with a hub over BLE while its pairing window is open"),
    "record": ("host_tools.record_cli", "receive from a hub (TCP), check continuity, summarise"),
    "codec": ("host_tools.codec_cli", "lossless codec: encode/decode a WAV file (nk_codec)"),
    "deploy": ("host_tools.deploy", "install a hub bundle into a target root or over ssh"),
    "batch": ("host_tools.batch_cli", "re-process recordings on Dask (skips what is current)"),
    "decode-eval": ("host_tools.decoding.eval_cli",
                    "cross-validated offline decoding of binned spikes → JSON + plot"),
    "cursor": ("host_tools.decoding.cursor_cli",
               "the BCI loop for a person: calibrate, decode, move a cursor on screen"),
    "lsl": ("host_tools.lsl_cli", "publish features, spikes and the decoded cursor over LSL"),
    "decode": ("host_tools.nwb_cli", "packet log (record --packets-out/--nwb) → NWB 2 file"),
    "view": ("host_tools.view_cli", "NWB session → static HTML report with PNG figures"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hubctl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    # Parse the command name first, then import only that command's module.
    known, rest = parser.parse_known_args(argv)
    module = importlib.import_module(COMMANDS[known.command][0])
    cmd = argparse.ArgumentParser(prog=f"hubctl {known.command}",
                                  description=COMMANDS[known.command][1])
    module.add_arguments(cmd)
    args = cmd.parse_args(rest)
    logging.basicConfig(level=logging.DEBUG if known.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(module.run(args))
    except (ValueError, OSError) as e:
        print(f"hubctl {known.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
