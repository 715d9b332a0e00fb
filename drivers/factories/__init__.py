"""The device kinds' own hardware on the machine's ports: one module per kind, named in
the kind's ``DeviceKind.hardware`` (``HardwareFactory.real``). The simulated counterparts
are in ``simulator/factories/``."""
