"""The certificate's life in AWS IoT: the outbox of AWS actions (a row per intended change,
carried out by a worker with retries and pacing) and what the portal observes of its
certificates in AWS."""

from .models import AwsAction
from .runner import RunResult, aws_actions_run
from .services import Change, aws_actions_enqueue, aws_actions_open_for, aws_actions_retry

__all__ = [
    "AwsAction",
    "Change",
    "RunResult",
    "aws_actions_enqueue",
    "aws_actions_open_for",
    "aws_actions_retry",
    "aws_actions_run",
]
