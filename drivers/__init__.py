"""ansim-edge drivers."""
