"""The one test toolkit, shared by tests/ and bench/ (import it as ``tests.support``)."""
