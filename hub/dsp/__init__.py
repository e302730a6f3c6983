"""Signal processing on the hub: the block pipeline over the C kernels, probe geometry,
offline replay and the online sorter's template files. Nothing here knows about the daemon,
the implant link or the uplink."""
