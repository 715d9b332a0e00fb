"""ansim-edge simulator."""
