"""Shared fixtures: generated ground truth (fixed seeds) and the path to ../shared/data."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(sub: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    p = SHARED_DATA / sub
    if not p.exists():
        pytest.skip(f"{p} is absent (recorded data lives outside the repository)")
    return p


@pytest.fixture(scope="session")
def gt_tiny() -> tuple[Path, Path]:
    """(recording folder, sorting folder) of the 'tiny' ground-truth setting, generated once
    per checkout and SpikeInterface version into build/ (materialise checks the setting's
    parameters; tests only read it)."""
    import spikeinterface

    from host_tools.groundtruth import materialise

    warnings.filterwarnings("ignore", message="The extractor is not serializable")
    return materialise("tiny", REPO / "build" / f"gt-si{spikeinterface.__version__}")
