"""The alarm's second channel: escalation over SMS and voice calls."""
