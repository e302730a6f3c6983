"""``make run``: the main job on a built-in default recording, ending with a summary.

Default recording: the Neuralink N1 WAVs in ../shared/data/neuralink_wav stacked as channels
when that folder exists, otherwise a SpikeInterface ground-truth recording generated with a
fixed seed. The summary is printed and written to out/summary.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hub.cmd_replay import format_summary
from hub.pipeline import PipelineConfig
from hub.replay import replay
from hub.sources import Recording, open_recording

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
NEURALINK = REPO.parent / "shared" / "data" / "neuralink_wav"


def default_recording(out: Path) -> tuple[Recording, PipelineConfig]:
    """The recording `make run` replays, and the settings that suit it."""
    if NEURALINK.is_dir() and any(NEURALINK.glob("*.wav")):
        print(f"default recording: {NEURALINK} (Neuralink N1 WAVs stacked as channels)",
              file=sys.stderr)
        # Each WAV is a separate electrode and session: a common reference would mix
        # unrelated signals, so none is applied.
        return open_recording(NEURALINK), PipelineConfig(reference="none")
    from host_tools.groundtruth import materialise

    print(f"{NEURALINK} not found: generating a SpikeInterface ground-truth recording "
          "(seed 42)", file=sys.stderr)
    rec_dir, _ = materialise("easy", out / "gt")
    return open_recording(rec_dir), PipelineConfig()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=REPO / "out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    rec, cfg = default_recording(args.out)
    res = replay(rec, cfg)
    summary = {"mode": "replay", **res.summary}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(format_summary(res.summary))
    print(f"summary written to {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
