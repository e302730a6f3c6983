"""Channel geometry: contact positions (probeinterface JSON or a plain list, in µm) and the
neighbourhoods derived from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


class ProbeError(ValueError):
    """A probe file is unreadable, malformed, or does not match the channel count."""


def positions_from_probegroup(d: dict[str, Any],
                              n_channels: int | None = None) -> npt.NDArray[np.float64] | None:
    """[x, y] per device channel from a probeinterface probe group (``probes`` with
    ``contact_positions`` and ``device_channel_indices``); None if a channel has no contact."""
    probes = d.get("probes", [])
    if not isinstance(probes, list):
        raise ProbeError("'probes' must be a list")
    rows: dict[int, npt.NDArray[np.float64]] = {}
    for probe in probes:
        cp = np.asarray(probe.get("contact_positions", []), dtype=np.float64)
        if cp.ndim != 2 or cp.shape[1] < 2:
            raise ProbeError("contact_positions must be [[x, y], ...]")
        idx = probe.get("device_channel_indices") or list(range(len(cp)))
        for i, ch in enumerate(idx):
            if ch is not None and ch >= 0:
                rows[int(ch)] = cp[i, :2]
    n = n_channels if n_channels is not None else (max(rows) + 1 if rows else 0)
    if n == 0 or any(c not in rows for c in range(n)):
        return None
    return np.array([rows[c] for c in range(n)], dtype=np.float64)


def load_probe(path: Path) -> npt.NDArray[np.float64]:
    """Contact positions from a probeinterface JSON (probe group) or from
    ``{"channel_positions_um": [[x, y], ...]}``."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ProbeError(f"{path}: unreadable probe file ({e})") from e
    if not isinstance(d, dict):
        raise ProbeError(f"{path}: top level must be an object")
    try:
        pos = (np.asarray(d["channel_positions_um"], dtype=np.float64)
               if "channel_positions_um" in d else positions_from_probegroup(d))
    except (TypeError, ValueError) as e:
        raise ProbeError(f"{path}: malformed positions ({e})") from e
    if pos is None or pos.ndim != 2 or pos.shape[1] != 2 or not np.all(np.isfinite(pos)):
        raise ProbeError(f"{path}: need one finite [x, y] per channel")
    return pos


def load_probe_metadata(path: Path) -> dict[str, Any]:
    """What a recording needs besides positions, from the same probe file (all optional):
    ``uv_per_count`` (or ``gain_to_uV``: µV per ADC count), ``location`` (brain area),
    ``name`` (probe model), ``groups`` (shank per channel; probeinterface: ``shank_ids``)."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ProbeError(f"{path}: unreadable probe file ({e})") from e
    if not isinstance(d, dict):
        raise ProbeError(f"{path}: top level must be an object")
    out: dict[str, Any] = {}
    gain = d.get("uv_per_count", d.get("gain_to_uV"))
    if gain is not None:
        if not isinstance(gain, int | float) or not np.isfinite(gain) or gain <= 0:
            raise ProbeError(f"{path}: uv_per_count must be a positive number, not {gain!r}")
        out["uv_per_count"] = float(gain)
    probes = d.get("probes") if isinstance(d.get("probes"), list) else []
    for key in ("location", "name"):
        v = d.get(key) or (probes[0].get("annotations", {}).get(key) if probes else None)
        if isinstance(v, str) and v:
            out[key] = v
    groups = d.get("groups")
    if groups is None and probes:
        groups = [int(g) if str(g).lstrip("-").isdigit() else i
                  for i, p in enumerate(probes) for g in (p.get("shank_ids") or
                                                          [i] * len(p.get("contact_positions",
                                                                          [])))]
    if groups is not None:
        if not isinstance(groups, list) or not all(isinstance(g, int) and g >= 0
                                                   for g in groups):
            raise ProbeError(f"{path}: groups must be a list of non-negative integers")
        out["groups"] = groups
    return out


def adjacency(positions_um: npt.NDArray[np.float64] | None, n_channels: int,
              radius_um: float) -> list[list[int]]:
    """Neighbours of each channel within radius_um (self excluded); none without positions."""
    if positions_um is None or radius_um <= 0:
        return [[] for _ in range(n_channels)]
    d = np.linalg.norm(positions_um[:, None, :] - positions_um[None, :, :], axis=-1)
    return [[int(j) for j in np.argsort(d[i], kind="stable") if j != i and d[i, j] <= radius_um]
            for i in range(n_channels)]


def exclusion_adjacency(positions_um: npt.NDArray[np.float64] | None, n_channels: int,
                        radius_um: float, exclusion_um: float) -> list[list[int]]:
    """The detector's spatial exclusion when sorting: each channel's neighbours within
    min(radius_um, max(exclusion_um, 1.5 × its nearest contact's distance)), nearest first.
    The guard keeps a sparse probe's nearest contacts in, so that one spike is never an event
    on two neighbouring contacts; exclusion_um ≤ 0: the whole radius_um (no narrowing)."""
    if positions_um is None or radius_um <= 0 or exclusion_um <= 0 or n_channels < 2:
        return adjacency(positions_um, n_channels, radius_um)
    d = np.linalg.norm(positions_um[:, None, :] - positions_um[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    out = []
    for i in range(n_channels):
        r = min(radius_um, max(exclusion_um, 1.5 * float(d[i].min())))
        out.append([int(j) for j in np.argsort(d[i], kind="stable") if d[i, j] <= r])
    return out


def snippet_neighbors(positions_um: npt.NDArray[np.float64] | None, n_channels: int,
                      k: int, radius_um: float) -> npt.NDArray[np.int32]:
    """(n_channels, k): each channel first, then its nearest neighbours within radius, -1 pad."""
    k = max(1, min(k, n_channels))
    out = np.full((n_channels, k), -1, dtype=np.int32)
    adj = adjacency(positions_um, n_channels, radius_um)
    for c in range(n_channels):
        row = [c, *adj[c]][:k]
        out[c, : len(row)] = row
    return out
