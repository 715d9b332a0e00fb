"""The spine of a site: core loop, clock, durable store and outbox, uplink, signed
command intake, retained state. Knows no device (docs/architecture.md)."""
