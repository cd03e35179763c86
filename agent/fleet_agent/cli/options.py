"""The ``run`` command's options: command line flags, a JSON config file, secret files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fleet_agent.config import AgentOptions, parse_connect_host
from fleet_agent.portal_client import portal_url_problem

RUN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "portal": (str, None),
    "token_file": (str, None),
    "state_dir": (str, None),
    "portal_ca": (str, None),
    "broker_ca": (str, None),
    "connect_host": (str, None),
    "poll_interval": (float, None),
    "request_poll_max": (float, 30.0),
    "portal_retry_max": (float, 60.0),
    "reconnect_max": (float, 60.0),
    "stable_after": (float, 10.0),
    "keepalive": (int, 30),
    "no_rate_limit": (bool, False),
    "max_publish_rate": (float, 100.0),
    "queue_max_messages": (int, 100_000),
    "queue_max_bytes": (int, 64 * 1024 * 1024),
    "inflight_window": (int, 50),
    "renewal_retry": (float, 60.0),
    "once": (bool, False),
    "no_cached_secrets": (bool, False),
    "exit_when_connected": (bool, False),
    "timeout": (float, None),
    "log_level": (str, "INFO"),
    "station": (str, None),
    "device": (str, None),
    "endpoint": (str, None),
    "key_password_file": (str, None),
    "heartbeat_interval": (float, None),
    "claim_cert": (str, None),
    "claim_key": (str, None),
    "claim_key_password_file": (str, None),
    "claim_template": (str, None),
    "claim_parameters": (str, None),
    "claim_client_id": (str, None),
}

HELP = {
    "portal": "portal base URL, e.g. https://portal.example.com",
    "token_file": "file holding the station API token",
    "state_dir": "directory for keys, certificates, state.json and the queue",
    "portal_ca": "CA bundle to trust for an HTTPS portal",
    "broker_ca": "CA bundle to trust for the MQTT server (default: system store)",
    "connect_host": "dial HOST[:PORT] but use the endpoint name for SNI and verification",
    "poll_interval": "seconds between config polls/state reports (default: portal's value)",
    "request_poll_max": "cap in seconds of the onboarding request polling backoff",
    "portal_retry_max": "cap in seconds of the backoff while the portal is unreachable",
    "reconnect_max": "cap in seconds of the MQTT reconnect backoff",
    "stable_after": "seconds a connection must last before the reconnect backoff resets",
    "keepalive": "MQTT keepalive in seconds",
    "no_rate_limit": "switch off the AWS per-connection publish limiter (benchmarks)",
    "max_publish_rate": "publishes per second per connection when limited (AWS: 100)",
    "queue_max_messages": "store-and-forward bound per device (oldest dropped)",
    "queue_max_bytes": "store-and-forward bound per device in bytes (oldest dropped)",
    "inflight_window": "QoS 1 publishes awaiting PUBACK per connection",
    "renewal_retry": "seconds before retrying a failed renewal or onboarding",
    "once": "onboard every device (wait for its certificate), report, and exit",
    "no_cached_secrets": "keep no key password in desired.json (devices wait for the portal "
    "after a restart)",
    "exit_when_connected": "exit 0 once every device has connected and sent a heartbeat",
    "timeout": "give up (exit 1) after this many seconds",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "station": "station name when running without a portal",
    "device": "local device name when running without a portal",
    "endpoint": "MQTT endpoint HOST[:PORT] of the local device (no portal)",
    "key_password_file": "file with the key password of the local device (no portal)",
    "heartbeat_interval": "heartbeat interval of the local device (no portal)",
    "claim_cert": "claim certificate: provision devices by claim instead of by portal CSR",
    "claim_key": "private key of the claim certificate",
    "claim_key_password_file": "file with the password of the claim key, if encrypted",
    "claim_template": "fleet provisioning template name",
    "claim_parameters": "JSON object of template parameters",
    "claim_client_id": "MQTT client id used with the claim certificate",
}


class UsageError(Exception):
    """Bad command line or config file; the message is one sentence."""


def metavar(dest: str, typ: Any) -> str:
    special = {
        "portal": "URL",
        "connect_host": "HOST[:PORT]",
        "endpoint": "HOST[:PORT]",
        "log_level": "LEVEL",
        "claim_parameters": "JSON",
        "claim_template": "NAME",
        "station": "NAME",
        "device": "NAME",
        "claim_client_id": "ID",
        "state_dir": "DIR",
        "max_publish_rate": "N",
    }
    if dest in special:
        return special[dest]
    if typ is float:
        return "SECONDS"
    if typ is int:
        return "N"
    return "FILE"


def read_secret_file(path: str, what: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path} ({exc.strerror}).") from None
    if not value:
        raise UsageError(f"the {what} file {path} is empty.")
    return value


def _merge_config_file(args: argparse.Namespace) -> dict[str, Any]:
    """Fill unset options from ``--config``; returns extra keys (e.g. ``devices``)."""
    extras: dict[str, Any] = {}
    if not args.config:
        return extras
    try:
        data = json.loads(Path(args.config).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read the config file {args.config} ({exc.strerror}).") from None
    except ValueError:
        raise UsageError(f"the config file {args.config} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise UsageError(f"the config file {args.config} must hold a JSON object.")
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key in RUN_OPTIONS:
            typ = RUN_OPTIONS[key][0]
            if getattr(args, key) is None:
                if key == "claim_parameters" and isinstance(value, dict):
                    value = json.dumps(value)
                try:
                    setattr(args, key, bool(value) if typ is bool else typ(value))
                except (TypeError, ValueError):
                    raise UsageError(f"config key {raw_key!r} has an invalid value.") from None
        elif key in ("devices", "claim"):
            extras[key] = value
        else:
            raise UsageError(f"unknown key {raw_key!r} in the config file {args.config}.")
    return extras


def build_options(args: argparse.Namespace) -> AgentOptions:
    """Turn parsed ``run`` arguments (+ config file) into AgentOptions."""
    extras = _merge_config_file(args)
    for dest, (_typ, default) in RUN_OPTIONS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    if not args.state_dir:
        raise UsageError("--state-dir is required.")
    token = None
    if args.portal and (problem := portal_url_problem(args.portal)):
        raise UsageError(problem)
    if args.portal:
        if not args.token_file:
            raise UsageError("--token-file is required with --portal.")
        token = read_secret_file(args.token_file, "token")
    local_devices = list(extras.get("devices") or [])
    if args.device or args.endpoint:
        if not (args.device and args.endpoint):
            raise UsageError("--device and --endpoint go together.")
        hp = parse_connect_host(args.endpoint, 8883)
        assert hp is not None
        dev: dict[str, Any] = {"name": args.device, "endpoint": hp[0], "port": hp[1]}
        if args.key_password_file:
            dev["key_password"] = read_secret_file(args.key_password_file, "key password")
        if args.heartbeat_interval:
            dev["heartbeat_interval"] = args.heartbeat_interval
        local_devices.append(dev)
    if not args.portal and not local_devices:
        raise UsageError(
            "give --portal (with --token-file) or local devices (--device/--endpoint)."
        )
    claim = extras.get("claim")
    if args.claim_cert or args.claim_key or args.claim_template:
        if not (args.claim_cert and args.claim_key and args.claim_template):
            raise UsageError("--claim-cert, --claim-key and --claim-template go together.")
        claim = {
            "certificate": args.claim_cert,
            "key": args.claim_key,
            "template_name": args.claim_template,
        }
        if args.claim_key_password_file:
            claim["key_password"] = read_secret_file(
                args.claim_key_password_file, "claim key password"
            )
        if args.claim_client_id:
            claim["client_id"] = args.claim_client_id
        if args.claim_parameters:
            try:
                params = json.loads(args.claim_parameters)
            except ValueError:
                raise UsageError("--claim-parameters must be a JSON object.") from None
            if not isinstance(params, dict):
                raise UsageError("--claim-parameters must be a JSON object.")
            claim["parameters"] = params
    return AgentOptions(
        state_dir=Path(args.state_dir),
        portal=args.portal,
        token=token,
        portal_ca=args.portal_ca,
        broker_ca=args.broker_ca,
        connect_host=args.connect_host,
        poll_interval=args.poll_interval,
        request_poll_max=args.request_poll_max,
        portal_retry_max=args.portal_retry_max,
        reconnect_max=args.reconnect_max,
        stable_after=args.stable_after,
        keepalive=args.keepalive,
        rate_limit=not args.no_rate_limit,
        max_publish_rate=args.max_publish_rate,
        queue_max_messages=args.queue_max_messages,
        queue_max_bytes=args.queue_max_bytes,
        inflight_window=args.inflight_window,
        renewal_retry=args.renewal_retry,
        once=args.once,
        cache_secrets=not args.no_cached_secrets,
        exit_when_connected=args.exit_when_connected,
        timeout=args.timeout,
        local_devices=local_devices,
        station=args.station,
        claim=claim,
    )
