"""AWS's answers to the JITP setup, turned into sentences that say what to fix."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..aws.client import AwsError
from ..aws.redaction import redact_text

_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedException",
    "AuthorizationError",
    "UnauthorizedOperation",
}
_BAD_KEY = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ThrottledException",
    "SlowDown",
}
_UNAVAILABLE = {
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalFailureException",
    "InternalFailure",
    "InternalError",
    "ServiceFailure",
}
_IAM_ACTION = {
    "GetRole": "iam:GetRole",
    "GetCallerIdentity": "sts:GetCallerIdentity",
    "ListAttachedRolePolicies": "iam:ListAttachedRolePolicies",
}


def aws_error_explain(exc: Exception, *, access_key_id: str = "") -> AwsError:
    """Turn a botocore error into an AwsError whose text says what to fix (never a secret)."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, BotoConnectionError | ReadTimeoutError):
        return AwsError(
            "The portal could not reach AWS (network error: "
            f"{type(exc).__name__}); check the network, proxy and region, then run the job "
            "again.",
            code="NetworkError",
        )
    if isinstance(exc, BotoCoreError):
        return AwsError(
            f"The AWS SDK failed ({type(exc).__name__}); run the job again.",
            code=type(exc).__name__,
        )
    if not isinstance(exc, ClientError):
        raise TypeError(exc)
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = redact_text(str(error.get("Message", "")))[:200].rstrip(".")
    op = exc.operation_name
    attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
    action = _IAM_ACTION.get(op, f"iot:{op}")
    if code in _DENIED:
        if "PassRole" in message:
            text = (
                f"AWS refused {op} ({code}): the access key's user needs iam:PassRole on "
                "the JITP role; add it to the user's IAM policy."
            )
        else:
            text = (
                f"AWS refused {op} ({code}): give the access key's IAM user permission "
                f"for {action}."
            )
    elif code in _BAD_KEY:
        text = (
            f"AWS does not accept access key {access_key_id} ({code}); check the key and "
            "its secret, or enter the key again."
        )
    elif code == "NoSuchEntity":
        text = (
            "The IAM role in the settings does not exist in this AWS account "
            f"({code}); create the role (trusting iot.amazonaws.com, with the "
            "AWSIoTThingsRegistration policy) or correct the role ARN."
        )
    elif code in _THROTTLED:
        text = (
            f"AWS kept throttling {op} after {attempts} attempts ({code}); wait a few "
            "minutes and run the job again."
        )
    elif code in _UNAVAILABLE:
        text = (
            f"AWS IoT was unavailable for {op} after {attempts} attempts ({code}); run "
            "the job again later."
        )
    elif code == "CertificateValidationException":
        text = (
            f"AWS rejected the certificate in {op} ({code}: {message}); check that the "
            "CA certificate is a valid, unexpired CA (CA:true, keyCertSign) and, in "
            "DEFAULT mode, that the verification certificate was just made from a fresh "
            "registration code."
        )
    elif code == "RegistrationCodeValidationException":
        text = (
            f"AWS did not accept the verification certificate ({code}); the registration "
            "code changed or expired, run the job again."
        )
    elif code == "InvalidRequestException":
        text = (
            f"AWS rejected {op} as invalid ({code}: {message}); check the template "
            "options (thing type, groups, billing group must exist) and the role ARN."
        )
    elif code in {"LimitExceededException", "VersionsLimitExceededException"}:
        text = (
            f"An AWS IoT limit stopped {op} ({code}: {message}); remove unused CA "
            "certificates or template versions and run the job again."
        )
    else:
        text = f"AWS refused {op} ({code}: {message}); correct the settings and run the job again."
    return AwsError(text, code=code)


class StepFailed(AwsError):
    """A JITP step found something to fix before (or instead of) calling AWS."""
