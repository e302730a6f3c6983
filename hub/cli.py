"""``hub`` — what runs on the hub. Subcommands are a table of (module, help)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: name → (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("hub.cmd_replay", "run the pipeline over a recording as fast as possible"),
    "run": ("hub.cmd_run", "the hub daemon: implant link → pipeline → scheduler → uplink"),
    "selftest": ("hub.cmd_selftest", "run the kernels' self-test (as the daemon does at start)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        modules[name] = mod
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(modules[args.command].run(args))
    except (ValueError, OSError) as e:  # bad input: a clear message, not a traceback
        print(f"hub {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
