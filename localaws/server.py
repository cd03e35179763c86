"""`LocalAws`: the whole stand-in (moto control plane, MQTT/TLS front, backend broker).

Used by `python -m localaws`, by tests and by in-process benchmarks:

    with LocalAws(region="eu-west-1") as aws:
        boto3.client("iot", endpoint_url=aws.endpoint_url, region_name="eu-west-1", ...)
        # devices connect to 127.0.0.1:aws.mqtt_port, trusting aws.server_ca_path
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from botocore.session import get_session
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from . import iot_extensions as ix
from .broker import Broker
from .front import FrontStats, MqttFront
from .pki import StandInPki, setup_pki

log = logging.getLogger(__name__)


class _MotoServer(ThreadedMotoServer):
    """ThreadedMotoServer that reports a failed bind instead of waiting for ever."""

    bind_error: OSError | None = None

    def _server_entry(self) -> None:
        try:
            super()._server_entry()
        except OSError as exc:
            self.bind_error = exc
            self._server_ready_event.set()
        except SystemExit:  # werkzeug exits when the port is taken
            self.bind_error = OSError(f"port {self._port} is already in use")
            self._server_ready_event.set()

    def start(self) -> None:
        super().start()
        if self.bind_error is not None:
            self._server = None
            raise self.bind_error


def parse_broker(value: str) -> tuple[str, int] | None:
    """'embedded' -> None, 'HOST:PORT' -> (host, port); ValueError with a sentence otherwise."""
    if value == "embedded":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker must be HOST:PORT or 'embedded', not {value!r}")
    return host, int(port)


class LocalAws:
    """The local AWS IoT stand-in; a context manager (`start()`/`stop()` also work)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mqtt_port: int = 0,
        broker: str | tuple[str, int] | None = None,
        state_dir: str | Path | None = None,
        jitp_rate: float = 10.0,
        region: str = "eu-west-1",
        account_id: str = DEFAULT_ACCOUNT_ID,
        enforce_topics: bool = True,
        log_requests: bool = False,
    ) -> None:
        self.host = host
        self._port = port
        self._mqtt_port = mqtt_port
        self._broker_arg = parse_broker(broker) if isinstance(broker, str) else broker
        self._own_state_dir = not state_dir
        self._patched = False
        self.state_dir = (
            Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="localaws-"))
        )
        self.jitp_rate = jitp_rate
        self.region = region
        self.account_id = account_id
        self.enforce_topics = enforce_topics
        self.log_requests = log_requests
        self.pki: StandInPki | None = None
        self._moto: ThreadedMotoServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None
        self.front: MqttFront | None = None
        self.broker_address: tuple[str, int] | None = None

    # ----------------------------------------------------------------- properties

    @property
    def endpoint_url(self) -> str:
        """The control plane (moto + extensions), e.g. http://127.0.0.1:5123."""
        assert self._moto is not None, "LocalAws is not started"
        host, port = self._moto.get_host_and_port()
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    @property
    def mqtt_port(self) -> int:
        assert self.front is not None, "LocalAws is not started"
        return self.front.port

    @property
    def data_endpoint(self) -> str:
        """What describe_endpoint(iot:Data-ATS) returns for the default account and region."""
        return ix.data_endpoint(self.account_id, self.region)

    @property
    def server_ca_path(self) -> Path:
        """PEM of the CA that signed the MQTT front's server certificate."""
        assert self.pki is not None, "LocalAws is not started"
        return self.pki.server_ca_path

    @property
    def amazon_ca_path(self) -> Path:
        """PEM of the stand-in 'Amazon' CA that signs certificates AWS issues."""
        assert self.pki is not None, "LocalAws is not started"
        return self.pki.amazon_ca_path

    @property
    def stats(self) -> FrontStats:
        assert self.front is not None, "LocalAws is not started"
        return self.front.stats

    def server_names(self) -> list[str]:
        """SANs of the front's certificate: the data endpoint, every region, localhost."""
        regions = set(get_session().get_available_regions("iot")) | {self.region}
        names = [self.data_endpoint, f"*.iot.{self.region}.amazonaws.com"]
        names += sorted(f"*.iot.{r}.amazonaws.com" for r in regions if r != self.region)
        names += ["localhost", "127.0.0.1"]
        if self.host not in names and self.host not in ("0.0.0.0", "::"):
            names.append(self.host)
        return names

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> LocalAws:
        """Start every part; returns when all ports are bound."""
        ix.apply()
        self._patched = True
        if not self.log_requests:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.pki = setup_pki(self.state_dir, self.server_names())
        ix.set_amazon_ca(self.pki.amazon_ca_key, self.pki.amazon_ca_cert)
        moto = _MotoServer(ip_address=self.host, port=self._port, verbose=False)
        moto.start()
        self._moto = moto
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="localaws", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start_async(), self._loop).result(30)
        except BaseException:
            self.stop()
            raise
        return self

    async def _start_async(self) -> None:
        if self._broker_arg is None:
            self._broker = Broker("127.0.0.1", 0)
            await self._broker.start()
            self.broker_address = ("127.0.0.1", self._broker.port)
        else:
            self.broker_address = self._broker_arg
        assert self.pki is not None
        self.front = MqttFront(
            host=self.host,
            port=self._mqtt_port,
            pki=self.pki,
            broker=self.broker_address,
            jitp_rate=self.jitp_rate,
            enforce_topics=self.enforce_topics,
        )
        await self.front.start()

    async def _stop_async(self) -> None:
        if self.front:
            await self.front.stop()
        if self._broker:
            await self._broker.stop()

    def stop(self) -> None:
        """Stop every part (idempotent)."""
        if self._loop and self._thread and self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._stop_async(), self._loop).result(10)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                log.exception("error while stopping the MQTT front")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
        self._loop = None
        self._thread = None
        if self._moto:
            self._moto.stop()
            self._moto = None
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if self._patched:
            self._patched = False
            ix.revert()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def boto3_client(self, service: str) -> Any:
        """A boto3 client for this stand-in (dummy credentials, `self.region`)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="AKIALOCALAWSSTANDIN",
            aws_secret_access_key="localaws-not-a-secret",  # moto accepts any secret
        )

    def create_jitp_role(self, name: str = "localaws-jitp") -> str:
        """Create (once) the IAM role a JITP registrationConfig names; returns its ARN.

        The role trusts iot.amazonaws.com and gets AWS's AWSIoTThingsRegistration policy (an
        inline copy when moto has not loaded AWS managed policies).
        """
        iam = self.boto3_client("iam")
        try:
            return str(iam.get_role(RoleName=name)["Role"]["Arn"])
        except iam.exceptions.NoSuchEntityException:
            pass
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "iot.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        arn = str(
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
                "Arn"
            ]
        )
        try:
            iam.attach_role_policy(
                RoleName=name,
                PolicyArn="arn:aws:iam::aws:policy/service-role/AWSIoTThingsRegistration",
            )
        except iam.exceptions.NoSuchEntityException:
            registration = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": [
                            "iot:AddThingToThingGroup",
                            "iot:AttachPolicy",
                            "iot:AttachPrincipalPolicy",
                            "iot:AttachThingPrincipal",
                            "iot:CreateCertificateFromCsr",
                            "iot:CreatePolicy",
                            "iot:CreateThing",
                            "iot:DescribeCertificate",
                            "iot:DescribeThing",
                            "iot:DescribeThingGroup",
                            "iot:DescribeThingType",
                            "iot:DetachPolicy",
                            "iot:DetachThingPrincipal",
                            "iot:GetPolicy",
                            "iot:ListAttachedPolicies",
                            "iot:ListPolicyPrincipals",
                            "iot:ListPrincipalPolicies",
                            "iot:ListPrincipalThings",
                            "iot:ListTargetsForPolicy",
                            "iot:ListThingGroupsForThing",
                            "iot:ListThingPrincipals",
                            "iot:RegisterCertificate",
                            "iot:RegisterThing",
                            "iot:RemoveThingFromThingGroup",
                            "iot:UpdateCertificate",
                            "iot:UpdateThing",
                            "iot:UpdateThingGroupsForThing",
                            "iot:AddThingToBillingGroup",
                            "iot:DescribeBillingGroup",
                            "iot:RemoveThingFromBillingGroup",
                        ],
                        "Resource": ["*"],
                    }
                ],
            }
            iam.put_role_policy(
                RoleName=name,
                PolicyName="AWSIoTThingsRegistration",
                PolicyDocument=json.dumps(registration),
            )
        return arn

    def lines(self) -> list[str]:
        """The KEY=VALUE lines `python -m localaws` prints when ready."""
        assert self.broker_address is not None
        return [
            f"AWS_ENDPOINT_URL={self.endpoint_url}",
            f"MQTT_ENDPOINT={self.data_endpoint}",
            f"MQTT_PORT={self.mqtt_port}",
            f"BROKER_CA={self.server_ca_path}",
            f"AMAZON_CA={self.amazon_ca_path}",
            f"BROKER={self.broker_address[0]}:{self.broker_address[1]}",
        ]
