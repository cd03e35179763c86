"""Test helpers: CAs and device certificates, CA registration as the portal does it,
and small MQTT clients (a raw probe that reports exactly how a connection ended, and paho)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import struct
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from provisioning.jitp.documents import certificate_resource

ROLE_ARN = "arn:aws:iam::123456789012:role/JITPRole"

DEVICE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}",
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Receive"],
            "Resource": "arn:aws:iot:*:*:topic/things/${iot:Connection.Thing.ThingName}/*",
        },
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": "arn:aws:iot:*:*:topicfilter/things/${iot:Connection.Thing.ThingName}/*",
        },
    ],
}

OPEN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
}


def jitp_template(
    policy: dict[str, Any] | None = None, *, extra_params: tuple[str, ...] = ()
) -> str:
    """The portal's default JITP template (Thing = CN, certificate ACTIVE, inline policy)."""
    params = {
        "AWS::IoT::Certificate::CommonName": {"Type": "String"},
        "AWS::IoT::Certificate::Country": {"Type": "String"},
        "AWS::IoT::Certificate::Id": {"Type": "String"},
    }
    for p in extra_params:
        params[p] = {"Type": "String"}
    return json.dumps(
        {
            "Parameters": params,
            "Resources": {
                "thing": {
                    "Type": "AWS::IoT::Thing",
                    "Properties": {
                        "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
                        "AttributePayload": {"country": {"Ref": "AWS::IoT::Certificate::Country"}},
                    },
                },
                "certificate": certificate_resource(),
                "policy": {
                    "Type": "AWS::IoT::Policy",
                    "Properties": {"PolicyDocument": json.dumps(policy or DEVICE_POLICY)},
                },
            },
        }
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return pem(self.cert)


def make_ca(cn: str, *, is_ca: bool = True, rsa_bits: int = 0) -> Ca:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        if rsa_bits
        else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(hours=1))
        .not_valid_after(_now() + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Ca(key, cert)


def issue(
    ca: Ca, subject: dict[Any, str], key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, v) for oid, v in subject.items()])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(hours=1))
        .not_valid_after(_now() + dt.timedelta(days=30))
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


@dataclass
class Device:
    name: str
    cert_path: Path
    key_path: Path
    cert: x509.Certificate


def device(
    tmp: Path, ca: Ca, cn: str, *, country: str | None = "DE", rsa_bits: int = 0, **extra: str
) -> Device:
    """A device certificate (and key) signed by `ca`, written to files for MQTT clients."""
    subject: dict[Any, str] = {NameOID.COMMON_NAME: cn}
    if country:
        subject[NameOID.COUNTRY_NAME] = country
    for attr, value in extra.items():
        subject[getattr(NameOID, attr)] = value
    key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits) if rsa_bits else None
    cert, key = issue(ca, subject, key)
    return write_device(tmp, cn, cert, key)


def write_device(tmp: Path, name: str, cert: x509.Certificate, key: Any) -> Device:
    cp, kp = tmp / f"{name}.crt", tmp / f"{name}.key"
    cp.write_text(pem(cert))
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Device(name, cp, kp, cert)


def register_ca(
    iot: Any,
    ca: Ca,
    *,
    template_body: str | None = None,
    template_name: str | None = None,
    sni_only: bool = False,
    auto: bool = True,
) -> str:
    """Register `ca` exactly as the portal's JITP job does; returns the CA certificate id."""
    kwargs: dict[str, Any] = {
        "caCertificate": ca.pem,
        "setAsActive": True,
        "allowAutoRegistration": auto,
    }
    if template_body:
        kwargs["registrationConfig"] = {"templateBody": template_body, "roleArn": ROLE_ARN}
    elif template_name:
        kwargs["registrationConfig"] = {"templateName": template_name}
    if sni_only:
        kwargs["certificateMode"] = "SNI_ONLY"
    else:
        code = iot.get_registration_code()["registrationCode"]
        ver, _ = issue(ca, {NameOID.COMMON_NAME: code})
        kwargs["verificationCertificate"] = pem(ver)
    return iot.register_ca_certificate(**kwargs)["certificateId"]


# ----------------------------------------------------------------- MQTT clients


def _connect_packet(client_id: str, level: int = 4) -> bytes:
    body = struct.pack("!H", 4) + b"MQTT" + bytes([level, 0x02]) + struct.pack("!H", 30)
    if level == 5:
        body += b"\x00"
    cid = client_id.encode()
    body += struct.pack("!H", len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def probe(
    aws: Any, dev: Device | None, client_id: str, *, sni: str | None = None, level: int = 4
) -> str:
    """Connect once; 'tls_refused', 'dropped' (closed without CONNACK) or 'connack:<code>'."""
    ctx = ssl.create_default_context(cafile=str(aws.server_ca_path))
    if dev is not None:
        ctx.load_cert_chain(dev.cert_path, dev.key_path)
    ctx.check_hostname = sni is not None
    raw = socket.create_connection(("127.0.0.1", aws.mqtt_port), timeout=30)
    sock: socket.socket = raw
    try:
        try:
            sock = ctx.wrap_socket(raw, server_hostname=sni)
            sock.sendall(_connect_packet(client_id, level))
            data = b""
            while len(data) < 4:
                chunk = sock.recv(4 - len(data))
                if not chunk:
                    break
                data += chunk
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return "tls_refused"
        if not data:
            return "dropped"
        if data[0] >> 4 != 2:
            return f"unexpected:{data!r}"
        return f"connack:{data[3]}"
    finally:
        sock.close()
        raw.close()


class SniClient(mqtt.Client):
    """paho client that dials 127.0.0.1 while sending `host` as SNI (like a real endpoint)."""

    def __init__(self, *args: Any, dial_port: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dial_port = dial_port

    def _create_socket_connection(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self._dial_port), timeout=30)


class PahoDevice:
    """A paho MQTT 3.1.1 client over TLS with a device certificate; records messages."""

    def __init__(
        self,
        aws: Any,
        dev: Device,
        client_id: str,
        *,
        host: str = "127.0.0.1",
        protocol: int = mqtt.MQTTv311,
    ) -> None:
        self.client = SniClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            dial_port=aws.mqtt_port,
        )
        self.client.tls_set(
            ca_certs=str(aws.server_ca_path), certfile=str(dev.cert_path), keyfile=str(dev.key_path)
        )
        self.client.connect_timeout = 30  # generous: the test machine is shared
        self.host = host
        self.port = aws.mqtt_port
        self.connected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Condition()
        self.rc: Any = None
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.rc = rc
        if not rc.is_failure:
            self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.got:
            self.messages.append((msg.topic, msg.payload))
            self.got.notify_all()

    def connect(self, timeout: float = 30) -> bool:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self.connected.wait(timeout)

    def wait_message(self, topic_prefix: str, timeout: float = 30) -> tuple[str, bytes]:
        with self.got:
            ok = self.got.wait_for(
                lambda: any(t.startswith(topic_prefix) for t, _ in self.messages), timeout
            )
        assert ok, f"no message on {topic_prefix}; got {[t for t, _ in self.messages]}"
        return next((t, p) for t, p in self.messages if t.startswith(topic_prefix))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PlainSubscriber:
    """A plain (no TLS) paho subscriber on the backend broker."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("sub"))
        self.client.connect_timeout = 30
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(30), "subscriber never got SUBACK"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.cond:
            self.messages.append((msg.topic, msg.payload))
            self.cond.notify_all()

    def wait(self, n: int = 1, timeout: float = 30) -> list[tuple[str, bytes]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
