"""The device kinds' simulated hardware: one module per kind, named in the kind's
``DeviceKind.hardware`` (``HardwareFactory.sim``): the real drivers on simulated devices
(ptys), the simulated devices kept for the control routes (``simulator/routes/<kind>.py``)
and the console."""
