"""ansim-edge: the edge controller daemon core."""

__version__ = "0.1.0"
