"""A board's boot entry (``make flash-emulator`` copies it as ``main.py``): the firmware is the
compiled ``fw_main.mpy`` beside it, configured by ``implant_cfg.json``."""

import fw_main

fw_main.main()
