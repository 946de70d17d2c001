"""The Depth Anything 3 family: the any-view presets (DA3-SMALL ... GIANT, DualDPT head)
and the monocular ones (DA3MONO-LARGE, DA3METRIC-LARGE, DPT head with sky). Reached
through :mod:`..registry`."""
