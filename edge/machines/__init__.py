"""Pure state machines and policies: fed inputs and the time, they return effects.
No threads, no I/O (docs/architecture.md)."""
