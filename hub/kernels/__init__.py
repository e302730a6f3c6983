"""Thin cffi wrappers over the nk C kernels (one C call per block over all channels)."""

from hub.kernels._ffi import KernelError, load
from hub.kernels.frontend import (
    EVENT_DTYPE,
    Bandpass,
    Detector,
    DetectorConfig,
    FeatureBinner,
    FeatureBins,
    LfpFilter,
    Reference,
    SnippetExtractor,
    butter_sos,
)

__all__ = [
    "EVENT_DTYPE",
    "Bandpass",
    "Detector",
    "DetectorConfig",
    "FeatureBinner",
    "FeatureBins",
    "KernelError",
    "LfpFilter",
    "Reference",
    "SnippetExtractor",
    "butter_sos",
    "load",
]
