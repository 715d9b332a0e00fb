"""Device kinds, one package each (docs/architecture.md)."""
