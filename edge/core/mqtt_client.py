"""One place that turns a ``broker:`` config into a paho-mqtt 2.x client: the MQTT version,
the session, the username and password (read from ``password_file``), TLS (``mqtts://`` or a
``tls:`` section; the system CAs unless ``tls.ca`` names a file). Used by the site's uplink
(:mod:`edge.core.uplink`), the centre-side tools (:mod:`edge.tools.centre`) and the
simulator's console; each sets its own callbacks and options on the client it gets.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import BrokerConfig


def paho_client(cfg: BrokerConfig, client_id: str, *, clean_session: bool) -> mqtt.Client:
    """A new, unconnected client for ``cfg``. ``clean_session`` applies to MQTT 3.1.1; under
    MQTT 5 the session is set when connecting (clean start, session expiry)."""
    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else clean_session,
    )
    if cfg.username:
        password = None
        if cfg.password_file is not None:
            password = cfg.password_file.read_text(encoding="utf-8").strip()
        client.username_pw_set(cfg.username, password)
    if cfg.uses_tls or cfg.tls is not None:
        tls = cfg.tls
        client.tls_set(
            ca_certs=str(tls.ca) if tls else None,
            certfile=str(tls.cert) if tls and tls.cert else None,
            keyfile=str(tls.key) if tls and tls.key else None,
        )
    return client
