"""Everything that runs on the implant hub: sources, kernels, pipeline, daemon."""

__version__ = "0.1.0"
