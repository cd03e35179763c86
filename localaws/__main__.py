"""`python -m localaws`: run the stand-in until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .server import LocalAws, parse_broker


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0-65535)")
    return int(value)


def _rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        rate = -1
    if rate < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a rate >= 0")
    return rate


def _broker(value: str) -> str:
    try:
        parse_broker(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start, print the KEY=VALUE lines, wait for a signal."""
    p = argparse.ArgumentParser(prog="python -m localaws", description=__doc__)
    p.add_argument("--port", type=_port, default=5000, help="control plane port (0 = free port)")
    p.add_argument("--mqtt-port", type=_port, default=8883, help="MQTT/TLS port (0 = free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--broker",
        type=_broker,
        default="embedded",
        help="backend broker HOST:PORT, or 'embedded' (default: the built-in broker)",
    )
    p.add_argument("--state-dir", help="where CA keys and certificates live (default: a temp dir)")
    p.add_argument(
        "--jitp-rate", type=_rate, default=10.0, help="JITP registrations per second (0 = off)"
    )
    p.add_argument("--region", default="eu-west-1", help="region of the printed data endpoint")
    p.add_argument(
        "--no-topic-policy",
        action="store_true",
        help="do not check iot:Publish/iot:Subscribe policies inside sessions",
    )
    p.add_argument(
        "--create-role",
        metavar="NAME",
        help="create an IAM role for JITP (AWSIoTThingsRegistration) and print JITP_ROLE_ARN",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every connection decision")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    aws = LocalAws(
        host=args.host,
        port=args.port,
        mqtt_port=args.mqtt_port,
        broker=args.broker,
        state_dir=args.state_dir,
        jitp_rate=args.jitp_rate,
        region=args.region,
        enforce_topics=not args.no_topic_policy,
        log_requests=args.verbose,
    )
    try:
        aws.start()
    except OSError as exc:
        print(f"localaws: cannot start: {exc.strerror or exc}.", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lines = aws.lines()
    if args.create_role:
        lines.append(f"JITP_ROLE_ARN={aws.create_jitp_role(args.create_role)}")
    for line in lines:
        print(line, flush=True)
    try:
        stop.wait()
    finally:
        aws.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
