"""AWS: the per-site service switch and region, access keys (secrets kept encrypted for a
storage period), the one boto3 client factory with its call log, and the one redaction."""

from .client import (
    AccessKeyUnavailable,
    AwsError,
    AwsServiceDisabled,
    aws_calls_for_action,
    aws_client,
    aws_service_get,
)

__all__ = [
    "AccessKeyUnavailable",
    "AwsError",
    "AwsServiceDisabled",
    "aws_calls_for_action",
    "aws_client",
    "aws_service_get",
]
