"""MQTT/TLS plumbing shared by the device runtime and claim provisioning.

Builds the TLS context the way AWS IoT Core expects it (TLS 1.2+, client certificate with
its CA chain so JITP can see the issuer, SNI = endpoint name) and a paho client that can
dial a different address than the endpoint name (``--connect-host``, like
``curl --resolve``) while still sending and verifying that name.
"""

from __future__ import annotations

import random
import socket
import ssl
from typing import Any

import paho.mqtt.client as mqtt


def build_ssl_context(
    *,
    ca_file: str | None,
    cert_file: str,
    key_file: str,
    key_password: str | None,
    port: int = 8883,
) -> ssl.SSLContext:
    """Client TLS context: verifies the broker, presents the device certificate chain."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    ctx.load_cert_chain(cert_file, key_file, password=key_password or None)
    if port == 443:
        # AWS IoT Core multiplexes MQTT on 443 by ALPN.
        ctx.set_alpn_protocols(["x-amzn-mqtt-ca"])
    return ctx


class RoutedClient(mqtt.Client):
    """paho client whose TCP connection can go to another address than the TLS name.

    paho uses its ``host`` for TCP, SNI and hostname verification alike; overriding the
    socket factory keeps SNI/verification on the endpoint name.
    """

    def __init__(self, *args: Any, connect_addr: tuple[str, int] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self._connect_addr = connect_addr

    def _create_socket_connection(self) -> socket.socket:
        if self._connect_addr is None:
            return super()._create_socket_connection()
        return socket.create_connection(self._connect_addr, timeout=self._connect_timeout)


def new_client(
    client_id: str, ssl_context: ssl.SSLContext, connect_addr: tuple[str, int] | None
) -> RoutedClient:
    client = RoutedClient(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
        connect_addr=connect_addr,
    )
    client.tls_set_context(ssl_context)
    client.connect_timeout = 10.0
    return client


class Backoff:
    """Exponential backoff with jitter, never below ``minimum`` (AWS: 1 connect/s/client id)."""

    def __init__(self, *, minimum: float = 1.0, maximum: float = 60.0) -> None:
        self.minimum = minimum
        self.maximum = max(maximum, minimum)
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.minimum * (2**self.attempt))
        self.attempt += 1
        # "equal jitter": half fixed, half random, so clients spread but still back off.
        return max(self.minimum, ceiling / 2 + random.uniform(0, ceiling / 2))

    def reset(self) -> None:
        self.attempt = 0
