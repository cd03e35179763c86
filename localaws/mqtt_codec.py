"""Just enough MQTT 3.1.1 / 5 packet framing for the stand-in's front and embedded broker.

The front must read the CONNECT packet (client id), frame every packet that crosses it (so it
can answer the fleet-provisioning topics itself and inject replies between whole packets),
and the embedded broker must speak the protocol. Only the fields those two need are decoded;
everything else travels as the original bytes.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

MAX_PACKET = 256 * 1024 * 1024


class MqttProtocolError(Exception):
    """The peer sent bytes that are not a well-formed MQTT packet."""


@dataclass
class Packet:
    """One framed packet: type, flags, the body after the fixed header and the raw bytes."""

    ptype: int
    flags: int
    body: bytes
    raw: bytes


@dataclass
class Connect:
    """The CONNECT fields the stand-in acts on."""

    protocol_level: int
    client_id: str
    clean: bool
    keepalive: int
    username: str | None = None
    will: tuple[str, bytes, int, bool] | None = None


@dataclass
class Publish:
    """A decoded PUBLISH."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: bytes = b""


@dataclass
class Subscribe:
    """A decoded SUBSCRIBE: packet id and (filter, requested qos) pairs."""

    packet_id: int
    topics: list[tuple[str, int]] = field(default_factory=list)


def encode_remaining_length(n: int) -> bytes:
    """Encode MQTT's variable-length 'remaining length'."""
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def _decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    mult, value = 1, 0
    for _ in range(4):
        if pos >= len(data):
            raise MqttProtocolError("truncated variable byte integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * mult
        if not byte & 0x80:
            return value, pos
        mult *= 128
    raise MqttProtocolError("malformed variable byte integer")


async def read_packet(reader: asyncio.StreamReader) -> Packet | None:
    """Read one whole packet; None on a clean end of stream before a packet starts."""
    first = await reader.read(1)
    if not first:
        return None
    header = bytearray(first)
    mult, length = 1, 0
    for _ in range(4):
        b = await reader.readexactly(1)
        header += b
        length += (b[0] & 0x7F) * mult
        if not b[0] & 0x80:
            break
        mult *= 128
    else:
        raise MqttProtocolError("malformed remaining length")
    if length > MAX_PACKET:
        raise MqttProtocolError("packet too large")
    body = await reader.readexactly(length) if length else b""
    return Packet(first[0] >> 4, first[0] & 0x0F, body, bytes(header) + body)


def build(ptype: int, flags: int, body: bytes) -> bytes:
    """Build a packet from type, flags and body."""
    return bytes([(ptype << 4) | flags]) + encode_remaining_length(len(body)) + body


def _str(data: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(data):
        raise MqttProtocolError("truncated string")
    (n,) = struct.unpack_from("!H", data, pos)
    pos += 2
    if pos + n > len(data):
        raise MqttProtocolError("truncated string")
    try:
        return data[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise MqttProtocolError("string is not UTF-8") from exc


def _bin(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(data):
        raise MqttProtocolError("truncated binary")
    (n,) = struct.unpack_from("!H", data, pos)
    pos += 2
    return data[pos : pos + n], pos + n


def enc_str(s: str | bytes) -> bytes:
    """Length-prefixed UTF-8 string (or binary)."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _skip_props(data: bytes, pos: int) -> tuple[bytes, int]:
    n, p = _decode_varint(data, pos)
    return data[p : p + n], p + n


def parse_connect(body: bytes) -> Connect:
    """Decode CONNECT (3.1, 3.1.1 and 5) far enough for the client id, will and level."""
    name, pos = _str(body, 0)
    if name not in ("MQTT", "MQIsdp") or pos + 4 > len(body):
        raise MqttProtocolError("not an MQTT CONNECT")
    level = body[pos]
    flags = body[pos + 1]
    (keepalive,) = struct.unpack_from("!H", body, pos + 2)
    pos += 4
    if level == 5:
        _, pos = _skip_props(body, pos)
    client_id, pos = _str(body, pos)
    will = None
    if flags & 0x04:
        if level == 5:
            _, pos = _skip_props(body, pos)
        wtopic, pos = _str(body, pos)
        wpayload, pos = _bin(body, pos)
        will = (wtopic, wpayload, (flags >> 3) & 3, bool(flags & 0x20))
    username = None
    if flags & 0x80:
        username, pos = _str(body, pos)
    return Connect(level, client_id, bool(flags & 0x02), keepalive, username, will)


def connack(level: int, code: int, session_present: bool = False) -> bytes:
    """CONNACK; `code` is the 3.1.1 return code or the v5 reason code."""
    body = bytes([1 if session_present else 0, code])
    if level == 5:
        body += b"\x00"
    return build(CONNACK, 0, body)


def refuse_code(level: int) -> int:
    """'Not authorized' in the client's protocol version."""
    return 0x87 if level == 5 else 5


def parse_publish(pkt: Packet, level: int) -> Publish:
    """Decode a PUBLISH packet."""
    qos = (pkt.flags >> 1) & 3
    topic, pos = _str(pkt.body, 0)
    pid = None
    if qos:
        (pid,) = struct.unpack_from("!H", pkt.body, pos)
        pos += 2
    props = b""
    if level == 5:
        start = pos
        _, pos = _skip_props(pkt.body, pos)
        props = pkt.body[start:pos]
    return Publish(topic, pkt.body[pos:], qos, bool(pkt.flags & 1), bool(pkt.flags & 8), pid, props)


def publish(
    topic: str,
    payload: bytes,
    *,
    level: int = 4,
    qos: int = 0,
    retain: bool = False,
    packet_id: int | None = None,
    properties: bytes | None = None,
) -> bytes:
    """Encode a PUBLISH for a client speaking protocol `level`."""
    body = enc_str(topic)
    if qos:
        body += struct.pack("!H", packet_id or 1)
    if level == 5:
        body += properties if properties else b"\x00"
    body += payload
    return build(PUBLISH, (qos << 1) | (1 if retain else 0), body)


def parse_subscribe(pkt: Packet, level: int) -> Subscribe:
    """Decode SUBSCRIBE."""
    (pid,) = struct.unpack_from("!H", pkt.body, 0)
    pos = 2
    if level == 5:
        _, pos = _skip_props(pkt.body, pos)
    sub = Subscribe(pid)
    while pos < len(pkt.body):
        topic, pos = _str(pkt.body, pos)
        if pos >= len(pkt.body):
            raise MqttProtocolError("SUBSCRIBE without options byte")
        sub.topics.append((topic, pkt.body[pos] & 3))
        pos += 1
    if not sub.topics:
        raise MqttProtocolError("SUBSCRIBE without topics")
    return sub


def parse_unsubscribe(pkt: Packet, level: int) -> tuple[int, list[str]]:
    """Decode UNSUBSCRIBE."""
    (pid,) = struct.unpack_from("!H", pkt.body, 0)
    pos = 2
    if level == 5:
        _, pos = _skip_props(pkt.body, pos)
    topics = []
    while pos < len(pkt.body):
        topic, pos = _str(pkt.body, pos)
        topics.append(topic)
    return pid, topics


def ack(ptype: int, packet_id: int, level: int, codes: list[int] | None = None) -> bytes:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (codes None) or SUBACK/UNSUBACK (codes = reason codes)."""
    body = struct.pack("!H", packet_id)
    if codes is None:
        return build(ptype, 2 if ptype == PUBREL else 0, body)
    if level == 5:
        body += b"\x00"
    if ptype == UNSUBACK and level != 5:
        return build(ptype, 0, body)
    return build(ptype, 0, body + bytes(codes))


def valid_filter(filt: str) -> bool:
    """Whether a topic filter is syntactically valid."""
    if not filt:
        return False
    parts = filt.split("/")
    for i, p in enumerate(parts):
        if "#" in p and (p != "#" or i != len(parts) - 1):
            return False
        if "+" in p and p != "+":
            return False
    return True
