"""Recording sources for replay: WAV, raw int16 + JSON sidecar, SpikeInterface binary folders.

Every source yields int16 blocks shaped (n_samples, n_channels), sample-major, as the implant
link delivers them; ``open_recording`` picks the reader from the path.
"""

from hub.sources.base import Recording, RecordingError, open_recording

__all__ = ["Recording", "RecordingError", "open_recording"]
