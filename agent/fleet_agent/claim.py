"""Fleet provisioning by claim, as the AWS IoT Device Client does it.

A claim certificate (shared by a batch of stations, allowed to do nothing but provision)
connects, asks AWS IoT for a permanent certificate for *our* CSR (CreateCertificateFromCsr,
so the private key never leaves the station), then calls the provisioning template
(RegisterThing) with the ownership token and template parameters.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from fleet_agent.config import ClaimConfig
from fleet_agent.mqtt_link import SocketPump, build_ssl_context, new_client

CREATE_TOPIC = "$aws/certificates/create-from-csr/json"


class ClaimError(Exception):
    """Provisioning by claim failed; the message is one sentence without secrets."""


@dataclass
class ClaimResult:
    certificate_pem: str
    certificate_id: str
    thing_name: str
    device_configuration: dict[str, Any] = field(default_factory=dict)


def provision_topic(template: str) -> str:
    return f"$aws/provisioning-templates/{template}/provision/json"


def provision_by_claim(
    *,
    claim: ClaimConfig,
    csr_pem: str,
    endpoint: str,
    port: int,
    client_id: str,
    ca_file: str | None,
    connect_addr: tuple[str, int] | None = None,
    timeout: float = 30.0,
    stop: threading.Event | None = None,
) -> ClaimResult:
    """Run the two MQTT request/response exchanges and return the permanent identity."""
    try:
        ctx = build_ssl_context(
            ca_file=ca_file,
            cert_file=claim.certificate,
            key_file=claim.key,
            key_password=claim.key_password,
            port=port,
        )
    except (OSError, ValueError) as exc:
        raise ClaimError(f"the claim certificate or key cannot be loaded ({exc}).") from None
    client = new_client(client_id, ctx, connect_addr)
    inbox: dict[str, dict[str, Any]] = {}
    events: dict[str, Any] = {"connected": False, "refused": None, "subscribed": False}
    sub_mid: list[int] = []

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            events["refused"] = str(rc)
        else:
            events["connected"] = True

    def on_subscribe(c: mqtt.Client, _u: Any, mid: int, rcs: Any, _p: Any) -> None:
        if mid in sub_mid:
            events["subscribed"] = True

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            inbox[msg.topic] = json.loads(msg.payload or b"{}")
        except ValueError:
            inbox[msg.topic] = {"errorMessage": "unparseable response"}

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    deadline = time.monotonic() + timeout
    pumper = SocketPump(client)

    def wait_until(until: Any, what: str) -> None:
        while not until():
            if stop is not None and stop.is_set():
                raise ClaimError("provisioning by claim was interrupted.")
            if events["refused"]:
                raise ClaimError(f"the broker refused the claim certificate ({events['refused']}).")
            if time.monotonic() > deadline:
                raise ClaimError(f"no answer from {endpoint} while waiting for {what}.")
            if pumper.pump(0.1) != mqtt.MQTT_ERR_SUCCESS:
                raise ClaimError(f"the connection to {endpoint} dropped while waiting for {what}.")

    prov = provision_topic(claim.template_name)
    try:
        try:
            client.connect(endpoint, port, keepalive=30)
        except (OSError, ValueError) as exc:
            client.close_failed_socket()
            raise ClaimError(
                f"cannot connect to {endpoint}:{port} with the claim ({exc})."
            ) from None
        wait_until(lambda: events["connected"], "the connection")
        topics = [
            (f"{CREATE_TOPIC}/accepted", 1),
            (f"{CREATE_TOPIC}/rejected", 1),
            (f"{prov}/accepted", 1),
            (f"{prov}/rejected", 1),
        ]
        _rc, mid = client.subscribe(topics)
        if mid is None:
            raise ClaimError(f"cannot subscribe to the provisioning topics on {endpoint}.")
        sub_mid.append(mid)
        wait_until(lambda: events["subscribed"], "the subscription")

        client.publish(CREATE_TOPIC, json.dumps({"certificateSigningRequest": csr_pem}), qos=1)
        wait_until(
            lambda: f"{CREATE_TOPIC}/accepted" in inbox or f"{CREATE_TOPIC}/rejected" in inbox,
            "the certificate",
        )
        if f"{CREATE_TOPIC}/rejected" in inbox:
            err = inbox[f"{CREATE_TOPIC}/rejected"]
            raise ClaimError(
                f"AWS IoT rejected the CSR ({err.get('errorCode', '?')}: "
                f"{err.get('errorMessage', 'no message')})."
            )
        created = inbox[f"{CREATE_TOPIC}/accepted"]
        try:
            cert_pem = created["certificatePem"]
            cert_id = created["certificateId"]
            token = created["certificateOwnershipToken"]
        except KeyError as exc:
            raise ClaimError(f"the certificate answer lacks {exc.args[0]}.") from None

        body = {"certificateOwnershipToken": token, "parameters": dict(claim.parameters)}
        client.publish(prov, json.dumps(body), qos=1)
        wait_until(
            lambda: f"{prov}/accepted" in inbox or f"{prov}/rejected" in inbox, "RegisterThing"
        )
        if f"{prov}/rejected" in inbox:
            err = inbox[f"{prov}/rejected"]
            raise ClaimError(
                f"the provisioning template {claim.template_name} rejected the device "
                f"({err.get('errorCode', '?')}: {err.get('errorMessage', 'no message')})."
            )
        accepted = inbox[f"{prov}/accepted"]
        thing = accepted.get("thingName")
        if not thing:
            raise ClaimError("RegisterThing accepted the device but returned no thing name.")
        return ClaimResult(
            certificate_pem=cert_pem,
            certificate_id=str(cert_id),
            thing_name=str(thing),
            device_configuration=dict(accepted.get("deviceConfiguration") or {}),
        )
    finally:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - best effort close of a claim session
            pass
