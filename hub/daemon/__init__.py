"""The hub daemon (``hub run``): supervisor, pipeline stage, scheduler, control plane,
persisted configuration, packet building and telemetry."""
