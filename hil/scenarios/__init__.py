"""HIL scenarios: data files (chain + expectations) and their runner (``make hil``)."""
