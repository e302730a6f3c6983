"""Channel neighbourhoods from contact positions (probeinterface / sidecar, in µm)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def adjacency(positions_um: npt.NDArray[np.float64] | None, n_channels: int,
              radius_um: float) -> list[list[int]]:
    """Neighbours of each channel within radius_um (self excluded); none without positions."""
    if positions_um is None or radius_um <= 0:
        return [[] for _ in range(n_channels)]
    d = np.linalg.norm(positions_um[:, None, :] - positions_um[None, :, :], axis=-1)
    return [[int(j) for j in np.argsort(d[i], kind="stable") if j != i and d[i, j] <= radius_um]
            for i in range(n_channels)]


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
