"""MQTT/TLS plumbing shared by the device runtime and claim provisioning.

Builds the TLS context the way AWS IoT Core expects it (TLS 1.2+, client certificate with
its CA chain so JITP can see the issuer, SNI = endpoint name) and a paho client that can
dial a different address than the endpoint name (``--connect-host``, like
``curl --resolve``) while still sending and verifying that name.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
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
        self._tcp_sock: socket.socket | None = None

    def _create_socket_connection(self) -> socket.socket:
        if self._connect_addr is None:
            sock = super()._create_socket_connection()
        else:
            sock = socket.create_connection(self._connect_addr, timeout=self._connect_timeout)
        self._tcp_sock = sock
        return sock

    def close_failed_socket(self) -> None:
        """paho leaves the TCP socket open when the TLS handshake fails; close it."""
        sock, self._tcp_sock = self._tcp_sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


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


class Waker:
    """A file descriptor another thread can poke to end a ``poll()`` early.

    Lets an idle device thread sleep for long stretches (cheap with many agents in one
    process) yet react at once to a queued data point or a stop request.
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self._closed = False
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    def wake(self) -> None:
        if self._closed:
            return  # never write to a descriptor number that may have been reused
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._w, b"x")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._r, 4096):
                pass

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s unless woken (used while there is no connection)."""
        poller = select.poll()
        poller.register(self._r, select.POLLIN)
        if poller.poll(max(0, int(timeout * 1000))):
            self.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


class SocketPump:
    """Drive one paho client with ``poll()`` instead of paho's ``loop()``.

    paho's ``loop()`` uses ``select.select``, which fails for file descriptors >= 1024; a
    process running hundreds of agents (the fleet benchmark) passes that quickly, and paho
    then reports a lost connection. ``poll`` has no such limit and needs no socket pair.
    """

    _READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP

    def __init__(self, client: mqtt.Client, wake: Waker | None = None) -> None:
        self.client = client
        self._poller = select.poll()
        self._fd: int | None = None
        self._mask = 0
        self._wake = wake
        if wake is not None:
            self._poller.register(wake.fileno(), select.POLLIN)

    def pump(self, timeout: float) -> mqtt.MQTTErrorCode:
        """Wait up to ``timeout`` s for network events and process them (like ``loop()``)."""
        client = self.client
        sock = client.socket()
        if sock is None:
            return mqtt.MQTT_ERR_NO_CONN
        fd = sock.fileno()
        if fd < 0:
            return mqtt.MQTT_ERR_CONN_LOST
        mask = select.POLLIN | select.POLLPRI
        if client.want_write():
            mask |= select.POLLOUT
        if fd != self._fd:
            if self._fd is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._poller.unregister(self._fd)
            self._poller.register(fd, mask)
            self._fd, self._mask = fd, mask
        elif mask != self._mask:
            self._poller.modify(fd, mask)
            self._mask = mask
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        try:
            events = self._poller.poll(0 if pending else max(0, int(timeout * 1000)))
        except InterruptedError:
            events = []
        revents = 0
        for efd, ev in events:
            if efd == fd:
                revents |= ev
            elif self._wake is not None:
                self._wake.clear()
        if pending or revents & self._READ:
            rc = client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return rc
            if client.socket() is None:
                return mqtt.MQTT_ERR_CONN_LOST
        if revents & select.POLLOUT:
            rc = client.loop_write()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return rc
        return client.loop_misc()


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

    def at_maximum(self) -> float:
        """The longest delay (with a little jitter), and stay there until :meth:`reset`."""
        self.attempt = max(self.attempt, 64)
        return max(self.minimum, self.maximum * random.uniform(0.9, 1.0))

    def reset(self) -> None:
        self.attempt = 0
