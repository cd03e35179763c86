"""The JITP setup service: register the supervisor's CA with AWS IoT for Just-In-Time Provisioning.

One path, whichever door starts it (admin button, `manage.py setup_jitp`, Celery task):

1. pre-flight: the access key works in the region, the IAM role exists and AWS IoT may assume
   it, the template's certificate parameters are fields every signing profile of this CA puts
   in device certificates (JITP fails on a certificate that lacks one);
2. generate or load the CA from the key store;
3. get the registration code and build the verification certificate (DEFAULT mode);
4. build the JITP template (inline ``templateBody`` + ``roleArn``, or a named template of type
   JITP, created or given a new default version);
5. register the CA active with auto-registration on, or, when AWS already holds it, update it;
6. read the ATS data endpoint and store the outputs.

Each step is logged into the Job; every failure ends the job with the AWS error code and a
sentence that says what to fix. The code follows AWS's documented API behaviour; moto is
looser (see the tests). Secrets (CA password, role ARN, AWS secret) never reach a log line.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sites.models import Site
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from portal.services import audit_record
from signing.keystore import WrongCaPassword, ca_certificate, get_key_store
from signing.models import JITP_PARAMETER_FOR_FIELD, CertificateAuthority, SigningProfile

from .aws import AwsError, aws_client, aws_service_get, oldest_non_default_version
from .jobs import job_create, job_finish, job_log, job_progress, job_start
from .models import AccessKey, JitpSettings, Job, JobLogLine, iot_region_choices
from .redaction import redact_text

logger = logging.getLogger(__name__)

CERTIFICATE_ID_PARAMETER = "AWS::IoT::Certificate::Id"  # AWS-internal, always available
COMMON_NAME_PARAMETER = "AWS::IoT::Certificate::CommonName"
CERTIFICATE_FIELD_PARAMETERS = frozenset(JITP_PARAMETER_FOR_FIELD.values())
SEVEN_ACTIONS = [
    "iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive", "iot:GetRetainedMessage",
    "iot:ListRetainedMessages", "iot:RetainPublish",
]
THING_NAME_VARIABLE = "${iot:Connection.Thing.ThingName}"
STEPS = 6

Echo = Callable[[JobLogLine], None]


# --- Settings -------------------------------------------------------------------------------

def jitp_settings_get() -> JitpSettings:
    """The JITP settings row of the current site, created with defaults on first use."""
    row, _ = JitpSettings.objects.get_or_create(site=Site.objects.get_current())
    return row


@transaction.atomic
def jitp_settings_update(
    *, actor: AbstractBaseUser | AnonymousUser | None = None, **fields: Any
) -> JitpSettings:
    """Change input fields of the settings row (validated); outputs are not writable here."""
    row = JitpSettings.objects.select_for_update().get(pk=jitp_settings_get().pk)
    editable = {f.name for f in JitpSettings._meta.get_fields() if getattr(f, "editable", False)}
    for name, value in fields.items():
        if name not in editable or name in {"id", "site"}:
            raise ValueError(f"{name!r} is not a JITP setting.")
        setattr(row, name, value)
    row.full_clean()
    row.save()
    audit_record(action="jitp_settings_update", obj=row, actor=actor,
                 detail={"fields": sorted(n for n in fields if n not in {"ca_password",
                                                                         "role_arn"})})
    return row


# --- Documents ------------------------------------------------------------------------------

def aws_partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def policy_document_build(*, mode: str, region: str, account_id: str) -> dict[str, Any]:
    """The device policy the template attaches (INTERFACES.md: "the default device policy").

    Least privilege: connect only with client id = the thing's name (and only while the
    certificate is attached to that thing); publish, receive, retain and read retained messages
    only under ``things/<thing>/…`` and ``$aws/things/<thing>/…``; subscribe only to filters
    under those prefixes. iot:ListRetainedMessages has no resource-level scoping in AWS (it
    would list every retained topic of the account), so this mode leaves it out.
    """
    if mode == JitpSettings.PolicyMode.SEVEN_ACTIONS_ALL:
        return {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(SEVEN_ACTIONS), "Resource": "*"}],
        }
    arn = f"arn:{aws_partition(region)}:iot:{region}:{account_id}"
    thing = THING_NAME_VARIABLE
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsOwnThingName",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/{thing}",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Sid": "OwnTopics",
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive", "iot:RetainPublish",
                           "iot:GetRetainedMessage"],
                "Resource": [f"{arn}:topic/things/{thing}/*",
                             f"{arn}:topic/$aws/things/{thing}/*"],
            },
            {
                "Sid": "OwnTopicFilters",
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [f"{arn}:topicfilter/things/{thing}/*",
                             f"{arn}:topicfilter/$aws/things/{thing}/*"],
            },
        ],
    }


def template_body_build(*, row: JitpSettings, region: str, account_id: str) -> dict[str, Any]:
    """The JITP provisioning template: thing named after the certificate's CommonName,
    certificate ACTIVE, the chosen policy, optional thing type, groups, billing group and
    attributes. Every ``AWS::IoT::Certificate::*`` it references is declared in Parameters.
    """
    parameters = {COMMON_NAME_PARAMETER, CERTIFICATE_ID_PARAMETER}
    thing: dict[str, Any] = {"ThingName": {"Ref": COMMON_NAME_PARAMETER}}
    attributes: dict[str, Any] = {}
    for name, value in sorted((row.attributes or {}).items()):
        if value in CERTIFICATE_FIELD_PARAMETERS:
            attributes[name] = {"Ref": value}
            parameters.add(value)
        else:
            attributes[name] = value
    if attributes:
        thing["AttributePayload"] = attributes
    if row.thing_type_name:
        thing["ThingTypeName"] = row.thing_type_name
    if row.thing_group_list():
        thing["ThingGroups"] = row.thing_group_list()
    if row.billing_group:
        thing["BillingGroup"] = row.billing_group
    policy = policy_document_build(mode=row.policy_mode, region=region, account_id=account_id)
    return {
        "Parameters": {name: {"Type": "String"} for name in sorted(parameters)},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": thing},
            "certificate": {
                "Type": "AWS::IoT::Certificate",
                "Properties": {"CertificateId": {"Ref": CERTIFICATE_ID_PARAMETER},
                               "Status": "ACTIVE"},
            },
            "policy": {
                "Type": "AWS::IoT::Policy",
                "Properties": {"PolicyDocument": json.dumps(policy, separators=(",", ":"))},
            },
        },
    }


def template_certificate_parameters(body: dict[str, Any]) -> set[str]:
    """The certificate fields the template needs from every device certificate."""
    return set(body.get("Parameters", {})) - {CERTIFICATE_ID_PARAMETER}


def verification_certificate_build(
    *, ca: CertificateAuthority, password: str, registration_code: str
) -> str:
    """A throw-away certificate whose CN is the registration code, signed by the CA (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, registration_code)]))
        .issuer_name(ca_certificate(ca).subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=7))
    )
    cert = get_key_store().sign(ca, password, builder)
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def aws_certificate_id(certificate_pem: str) -> str:
    """AWS IoT's certificate id: SHA-256 of the DER certificate, lower-case hex."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# --- Errors ---------------------------------------------------------------------------------

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedException",
           "AuthorizationError", "UnauthorizedOperation"}
_BAD_KEY = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
            "InvalidSignatureException", "ExpiredToken", "ExpiredTokenException",
            "IncompleteSignature"}
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException",
              "RequestLimitExceeded", "ThrottledException", "SlowDown"}
_UNAVAILABLE = {"ServiceUnavailableException", "ServiceUnavailable", "InternalFailureException",
                "InternalFailure", "InternalError", "ServiceFailure"}
_IAM_ACTION = {"GetRole": "iam:GetRole", "GetCallerIdentity": "sts:GetCallerIdentity",
               "ListAttachedRolePolicies": "iam:ListAttachedRolePolicies"}


def aws_error_explain(exc: Exception, *, access_key_id: str = "") -> AwsError:
    """Turn a botocore error into an AwsError whose text says what to fix (never a secret)."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, BotoConnectionError | ReadTimeoutError):
        return AwsError(
            "The portal could not reach AWS (network error: "
            f"{type(exc).__name__}); check the network, proxy and region, then run the job "
            "again.", code="NetworkError",
        )
    if isinstance(exc, BotoCoreError):
        return AwsError(f"The AWS SDK failed ({type(exc).__name__}); run the job again.",
                        code=type(exc).__name__)
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
            text = (f"AWS refused {op} ({code}): the access key's user needs iam:PassRole on "
                    "the JITP role; add it to the user's IAM policy.")
        else:
            text = (f"AWS refused {op} ({code}): give the access key's IAM user permission "
                    f"for {action}.")
    elif code in _BAD_KEY:
        text = (f"AWS does not accept access key {access_key_id} ({code}); check the key and "
                "its secret, or enter the key again.")
    elif code == "NoSuchEntity":
        text = ("The IAM role in the settings does not exist in this AWS account "
                f"({code}); create the role (trusting iot.amazonaws.com, with the "
                "AWSIoTThingsRegistration policy) or correct the role ARN.")
    elif code in _THROTTLED:
        text = (f"AWS kept throttling {op} after {attempts} attempts ({code}); wait a few "
                "minutes and run the job again.")
    elif code in _UNAVAILABLE:
        text = (f"AWS IoT was unavailable for {op} after {attempts} attempts ({code}); run "
                "the job again later.")
    elif code == "CertificateValidationException":
        text = (f"AWS rejected the certificate in {op} ({code}: {message}); check that the "
                "CA certificate is a valid, unexpired CA (CA:true, keyCertSign) and, in "
                "DEFAULT mode, that the verification certificate was just made from a fresh "
                "registration code.")
    elif code == "RegistrationCodeValidationException":
        text = (f"AWS did not accept the verification certificate ({code}); the registration "
                "code changed or expired, run the job again.")
    elif code == "InvalidRequestException":
        text = (f"AWS rejected {op} as invalid ({code}: {message}); check the template "
                "options (thing type, groups, billing group must exist) and the role ARN.")
    elif code in {"LimitExceededException", "VersionsLimitExceededException"}:
        text = (f"An AWS IoT limit stopped {op} ({code}: {message}); remove unused CA "
                "certificates or template versions and run the job again.")
    else:
        text = f"AWS refused {op} ({code}: {message}); correct the settings and run the job again."
    return AwsError(text, code=code)


class _StepFailed(AwsError):
    pass


# --- The job --------------------------------------------------------------------------------

class _Run:
    """One execution of the JITP setup for one job; holds the per-run state between steps."""

    def __init__(self, *, job: Job, row: JitpSettings, echo: Echo | None) -> None:
        self.job = job
        self.row = row
        self.echo = echo
        self.access_key: AccessKey
        self.region = ""
        self.account_id = ""
        self.ca: CertificateAuthority
        self.body: dict[str, Any] = {}
        self.verification_pem = ""
        self.registration_config: dict[str, str] = {}
        self.ca_certificate_id = ""
        self.endpoint = ""
        self._clients: dict[str, Any] = {}

    # logging
    def log(self, message: str, level: str = JobLogLine.Level.INFO) -> None:
        line = job_log(job=self.job, message=message, level=level)
        if self.echo is not None:
            self.echo(line)

    def warn(self, message: str) -> None:
        self.log(message, JobLogLine.Level.WARNING)

    def fail(self, message: str, code: str) -> None:
        raise _StepFailed(message, code=code)

    def client(self, service: str) -> Any:
        """One client per service and run (building a boto3 client is not cheap)."""
        if service not in self._clients:
            self._clients[service] = aws_client(service, access_key=self.access_key,
                                                region=self.region)
        return self._clients[service]

    def call(self, client: Any, operation: str, **params: Any) -> dict[str, Any]:
        """One AWS call; botocore's retries (standard mode) run inside it."""
        try:
            return getattr(client, operation)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error_explain(exc, access_key_id=self.access_key.access_key_id) from exc

    # steps
    def preflight(self) -> None:
        row = self.row
        key = AccessKey.objects.filter(pk=row.access_key_id or 0).first()
        if key is None:
            self.fail("Choose the AWS access key in the JITP settings.", "NoAccessKey")
        assert key is not None
        self.access_key = key
        if not row.role_arn:
            self.fail("Enter the IAM role ARN in the JITP settings.", "NoRoleArn")
        try:
            row.full_clean()
        except ValidationError as exc:
            self.fail("The JITP settings are not valid: " + " ".join(exc.messages),
                      "InvalidSettings")
        if not row.ca_password:
            self.fail("Enter the CA password in the JITP settings.", "NoCaPassword")
        self.region = row.region or aws_service_get().region
        if self.region not in {r for r, _ in iot_region_choices()}:
            self.fail(f"AWS IoT Core is not offered in region {self.region}; choose another "
                      "region.", "InvalidRegion")
        identity = self.call(self.client("sts"), "get_caller_identity")
        self.account_id = str(identity.get("Account", ""))
        self.log(f"Access key {self.access_key.access_key_id} works in {self.region} "
                 f"(account {self.account_id}).")

        iam = self.client("iam")
        role_name = row.role_arn.rsplit("/", 1)[-1]
        role = self.call(iam, "get_role", RoleName=role_name)["Role"]
        trust = role.get("AssumeRolePolicyDocument") or {}
        if isinstance(trust, str):
            trust = json.loads(unquote(trust))
        if not _trusts_service(trust, "iot.amazonaws.com"):
            self.fail("AWS IoT may not assume the IAM role: add iot.amazonaws.com as a "
                      "trusted service in the role's trust policy.", "RoleNotAssumable")
        self.log("The IAM role exists and trusts AWS IoT (iot.amazonaws.com).")
        role_account = row.role_arn.split(":")[4]
        if self.account_id and role_account != self.account_id:
            self.warn("The IAM role belongs to another AWS account than the access key; AWS "
                      "IoT only passes roles of its own account.")
        try:
            attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
        except (ClientError, BotoCoreError):
            attached = None
        if attached is None:
            self.warn("Could not list the role's policies; make sure it holds "
                      "AWSIoTThingsRegistration.")
        elif not any(p.get("PolicyName") == "AWSIoTThingsRegistration" for p in attached):
            self.warn("The role has no AWSIoTThingsRegistration policy attached; JITP fails "
                      "unless an inline policy grants the same rights.")

        self.body = template_body_build(row=row, region=self.region, account_id=self.account_id)
        needed = template_certificate_parameters(self.body)
        profiles = list(SigningProfile.objects.filter(ca__alias=row.ca_alias).order_by("name"))
        if not profiles:
            self.warn(f"No signing profile signs with CA '{row.ca_alias}' yet; make sure the "
                      "profile you add puts these fields in certificates: "
                      + ", ".join(sorted(p.rsplit("::", 1)[-1] for p in needed)) + ".")
        for profile in profiles:
            missing = needed - profile.jitp_parameters()
            if missing:
                names = ", ".join(sorted(p.rsplit("::", 1)[-1] for p in missing))
                self.fail(
                    f"Signing profile '{profile.name}' does not put {names} in its "
                    "certificates, but the JITP template needs it (AWS refuses such "
                    "devices); set the field in the profile or remove the attribute that "
                    "uses it.", "TemplateProfileMismatch",
                )
        if profiles:
            self.log("The template's certificate fields are in every certificate of "
                     + ", ".join(f"'{p.name}'" for p in profiles) + ".")

    def load_ca(self) -> None:
        row = self.row
        password = row.ca_password
        existing = CertificateAuthority.objects.filter(alias=row.ca_alias).first()
        if row.ca_source == JitpSettings.CaSource.GENERATE:
            reusable = (
                existing is not None and not row.overwrite_ca
                and existing.fingerprint_sha256 in {row.registered_ca_fingerprint,
                                                    row.generated_ca_fingerprint} - {""}
            )
            if reusable:
                assert existing is not None
                self.ca = existing
                self.log(f"CA '{existing.alias}' was generated by an earlier run; reusing it "
                         "(tick 'overwrite' to generate a new one).")
            elif existing is not None and not row.overwrite_ca:
                self.fail(f"A CA with alias '{row.ca_alias}' already exists in the key store; "
                          "choose 'use a CA from the key store', another alias, or tick "
                          "'overwrite'.", "CaAliasExists")
            else:
                if not row.ca_dn:
                    self.fail("Enter the distinguished name of the new CA.", "NoCaDn")
                from signing.services import ca_generate

                try:
                    self.ca = ca_generate(
                        alias=row.ca_alias, dn=row.ca_dn, password=password,
                        key_type=row.ca_key_type, days=row.ca_validity_days,
                        overwrite=row.overwrite_ca, actor=self.job.actor,
                    )
                except ValidationError as exc:
                    self.fail(" ".join(exc.messages), "InvalidCa")
                JitpSettings.objects.filter(pk=row.pk).update(
                    generated_ca_fingerprint=self.ca.fingerprint_sha256
                )
                self.log(f"Generated CA '{self.ca.alias}' ({self.ca.subject}, "
                         f"{self.ca.key_type}, valid until {self.ca.not_after:%Y-%m-%d}).")
                if existing is not None and row.aws_ca_certificate_id:
                    self.warn("The replaced CA stays registered in AWS IoT until you "
                              "deactivate it there.")
        else:
            if existing is None:
                self.fail(f"There is no CA '{row.ca_alias}' in the key store; generate or "
                          "import it first.", "CaNotFound")
            assert existing is not None
            self.ca = existing
            self.log(f"Loaded CA '{existing.alias}' from the key store ({existing.subject}).")
        if self.ca.is_expired:
            self.fail(f"CA '{self.ca.alias}' expired on {self.ca.not_after:%Y-%m-%d}; "
                      "generate or import a valid CA.", "CaExpired")
        try:
            get_key_store().load_private_key(self.ca, password)
        except WrongCaPassword as exc:
            self.fail(f"{exc} Enter the right CA password in the JITP settings.",
                      "WrongCaPassword")
        self.log(f"CA fingerprint (SHA-256): {self.ca.fingerprint_sha256}.")

    def verification(self) -> None:
        if self.row.certificate_mode == JitpSettings.CertificateMode.SNI_ONLY:
            self.log("SNI_ONLY mode: no registration code or verification certificate needed.")
            return
        code = self.call(self.client("iot"), "get_registration_code")["registrationCode"]
        self.verification_pem = verification_certificate_build(
            ca=self.ca, password=self.row.ca_password, registration_code=code
        )
        self.log("Got the registration code and signed a verification certificate "
                 "(CN = registration code) with the CA.")

    def template(self) -> None:
        row = self.row
        body = json.dumps(self.body, separators=(",", ":"))
        if not row.template_name:
            self.registration_config = {"templateBody": body, "roleArn": row.role_arn}
            self.log("Built the JITP template (thing name = certificate CommonName, "
                     f"certificate ACTIVE, policy: {row.get_policy_mode_display()}); it goes "
                     "inline into the CA's registration config.")
            return
        iot = self.client("iot")
        name = row.template_name
        try:
            iot.create_provisioning_template(
                templateName=name, templateBody=body, enabled=True, type="JITP",
                provisioningRoleArn=row.role_arn,
                description="JITP template of the fleet onboarding portal",
            )
            self.log(f"Created the JITP provisioning template '{name}'.")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                raise aws_error_explain(exc, access_key_id=self.access_key.access_key_id) \
                    from exc
            version = self._new_template_version(iot, name, body)
            self.call(iot, "update_provisioning_template", templateName=name, enabled=True,
                      provisioningRoleArn=row.role_arn)
            self.log(f"Template '{name}' exists; added version {version} as its default.")
        except BotoCoreError as exc:
            raise aws_error_explain(exc) from exc
        self.registration_config = {"templateName": name}

    def _new_template_version(self, iot: Any, name: str, body: str) -> Any:
        try:
            answer = iot.create_provisioning_template_version(
                templateName=name, templateBody=body, setAsDefault=True
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "VersionsLimitExceededException":
                raise aws_error_explain(exc, access_key_id=self.access_key.access_key_id) \
                    from exc
            # AWS keeps at most 5 versions: drop the oldest one that is not the default.
            versions = self.call(iot, "list_provisioning_template_versions",
                                 templateName=name).get("versions", [])
            old = oldest_non_default_version(versions)
            if old is None:
                raise aws_error_explain(exc) from exc
            self.call(iot, "delete_provisioning_template_version", templateName=name,
                      versionId=old["versionId"])
            self.log(f"Deleted the oldest version {old['versionId']} of template '{name}' "
                     "(AWS keeps at most 5).")
            answer = self.call(iot, "create_provisioning_template_version", templateName=name,
                               templateBody=body, setAsDefault=True)
        return answer.get("versionId")

    def register(self) -> None:
        iot = self.client("iot")
        existing = self._find_registered(iot)
        if existing is None:
            params: dict[str, Any] = {
                "caCertificate": self.ca.certificate_pem,
                "setAsActive": True,
                "allowAutoRegistration": True,
                "registrationConfig": self.registration_config,
                "certificateMode": self.row.certificate_mode,
            }
            if self.verification_pem:
                params["verificationCertificate"] = self.verification_pem
            try:
                answer = iot.register_ca_certificate(**params)
                self.ca_certificate_id = answer["certificateId"]
                self.log(f"Registered the CA with AWS IoT ({self.row.certificate_mode} mode, "
                         f"active, auto-registration on): id {self.ca_certificate_id}.")
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                    raise aws_error_explain(
                        exc, access_key_id=self.access_key.access_key_id
                    ) from exc
                existing = str(exc.response.get("resourceId") or "") or self._list_find(iot)
                if not existing:
                    raise aws_error_explain(exc) from exc
                self.log("AWS already holds this CA (ResourceAlreadyExistsException); "
                         "updating it instead.")
            except BotoCoreError as exc:
                raise aws_error_explain(exc) from exc
        self.call(iot, "update_ca_certificate", certificateId=existing, newStatus="ACTIVE",
                  newAutoRegistrationStatus="ENABLE",
                  registrationConfig=self.registration_config)
        self.ca_certificate_id = existing
        self.log(f"Updated the CA registered in AWS IoT (id {existing}): active, "
                 "auto-registration on, new registration config.")

    def _find_registered(self, iot: Any) -> str | None:
        """The AWS id of this CA when AWS already holds it (ids from the last run, or the
        DER hash AWS uses as certificate id), checked by fingerprint."""
        candidates = []
        if self.row.registered_ca_fingerprint == self.ca.fingerprint_sha256 \
                and self.row.aws_ca_certificate_id:
            candidates.append(self.row.aws_ca_certificate_id)
        candidates.append(aws_certificate_id(self.ca.certificate_pem))
        for candidate in dict.fromkeys(candidates):
            if self._describe_matches(iot, candidate):
                return candidate
        return None

    def _describe_matches(self, iot: Any, certificate_id: str) -> bool:
        """True when AWS holds ``certificate_id`` and it is this CA (same fingerprint)."""
        try:
            described = iot.describe_ca_certificate(certificateId=certificate_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return False
            raise aws_error_explain(exc, access_key_id=self.access_key.access_key_id) from exc
        except BotoCoreError as exc:
            raise aws_error_explain(exc) from exc
        pem = described.get("certificateDescription", {}).get("certificatePem", "")
        return bool(pem) and self._same_certificate(pem)

    def _list_find(self, iot: Any) -> str:
        paginator = iot.get_paginator("list_ca_certificates")
        try:
            for page in paginator.paginate():
                for item in page.get("certificates", []):
                    if self._describe_matches(iot, str(item["certificateId"])):
                        return str(item["certificateId"])
        except (ClientError, BotoCoreError) as exc:
            raise aws_error_explain(exc, access_key_id=self.access_key.access_key_id) from exc
        return ""

    def _same_certificate(self, pem: str) -> bool:
        from signing.crypto import fingerprint_sha256

        try:
            cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except ValueError:
            return False
        return fingerprint_sha256(cert) == self.ca.fingerprint_sha256

    def endpoint_read(self) -> None:
        answer = self.call(self.client("iot"), "describe_endpoint", endpointType="iot:Data-ATS")
        self.endpoint = answer["endpointAddress"]
        self.log(f"MQTT data endpoint (ATS): {self.endpoint}.")


def _trusts_service(document: dict[str, Any], service: str) -> bool:
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        if isinstance(services, str):
            services = [services]
        if service in services:
            return True
    return False


def jitp_setup_start(*, actor: AbstractBaseUser | AnonymousUser | None = None) -> Job:
    """Create the JITP setup job for the current site's settings and queue its task."""
    from .tasks import jitp_setup

    with transaction.atomic():
        row = jitp_settings_get()
        job = job_create(kind=Job.Kind.JITP_SETUP, title="Set up JITP", actor=actor,
                         total=STEPS)
        JitpSettings.objects.filter(pk=row.pk).update(last_job=job)
        audit_record(action="jitp_setup_start", obj=job, actor=actor)
        transaction.on_commit(lambda: jitp_setup.delay(job.pk))
    return job


def jitp_setup_run(*, job: Job, echo: Echo | None = None) -> Job:
    """Run the JITP setup steps for ``job`` (queued) and finish it; returns the finished job.

    ``echo`` receives each log line as it is written (the management command prints them).
    """
    if not job_start(job=job):
        return job
    row = jitp_settings_get()
    run = _Run(job=job, row=row, echo=echo)
    steps = [
        ("Pre-flight checks", run.preflight),
        ("CA", run.load_ca),
        ("Registration code and verification certificate", run.verification),
        ("JITP template", run.template),
        ("CA registration", run.register),
        ("Data endpoint", run.endpoint_read),
    ]
    try:
        for number, (title, step) in enumerate(steps, start=1):
            job.refresh_from_db(fields=["status"])
            if job.status != Job.Status.RUNNING:  # cancelled by staff between two steps
                return job
            run.log(f"Step {number}/{STEPS}: {title}.")
            step()
            job_progress(job=job, done=1)
    except AwsError as exc:
        return _finish_failed(run, str(exc), exc.code or "AwsError")
    except Exception as exc:  # noqa: BLE001 - the job must end, with a sentence
        logger.exception("JITP setup job %s crashed", job.pk)
        return _finish_failed(
            run, f"The JITP setup stopped on an internal error ({type(exc).__name__}); see "
                 "the worker log and run the job again.", "InternalError",
        )
    now = timezone.now()
    result = (f"JITP is set up: CA '{run.ca.alias}' is registered in AWS IoT (id "
              f"{run.ca_certificate_id}); devices connect to {run.endpoint}:8883.")
    JitpSettings.objects.filter(pk=row.pk).update(
        registered_ca_alias=run.ca.alias, registered_ca_fingerprint=run.ca.fingerprint_sha256,
        aws_ca_certificate_id=run.ca_certificate_id, data_endpoint=run.endpoint,
        last_run_at=now, last_result=result[:500], last_job=job,
    )
    job = job_finish(job=job, status=Job.Status.SUCCEEDED, result=result)
    _echo_last(run)
    audit_record(action="jitp_setup_succeeded", obj=row, actor=job.actor,
                 detail={"ca": run.ca.alias, "aws_ca_certificate_id": run.ca_certificate_id,
                         "endpoint": run.endpoint})
    return job


def _finish_failed(run: _Run, sentence: str, code: str) -> Job:
    job_progress(job=run.job, failed=1)
    JitpSettings.objects.filter(pk=run.row.pk).update(
        last_run_at=timezone.now(), last_result=f"Failed ({code}): {sentence}"[:500],
        last_job=run.job,
    )
    job = job_finish(job=run.job, status=Job.Status.FAILED, result=sentence, error_code=code)
    _echo_last(run)
    return job


def _echo_last(run: _Run) -> None:
    if run.echo is not None:
        line = run.job.log_lines.order_by("-id").first()
        if line is not None:
            run.echo(line)
