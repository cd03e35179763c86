"""Provisioning templates in the stand-in (JITP and FLEET_PROVISIONING), with versions, as
AWS IoT keeps them: moto has none. Patched into moto by ``iot_extensions.apply``.
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.iot.exceptions import (
    InvalidRequestException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    VersionsLimitExceededException,
)
from moto.iot.models import IoTBackend
from moto.iot.responses import IoTResponse

from .iot_state import (
    DeleteConflictException,
    ProvisioningTemplate,
    TemplateVersion,
    bool_param,
    ext,
    parse_template_body,
)

TEMPLATE_TYPES = ("JITP", "FLEET_PROVISIONING")
MAX_TEMPLATE_VERSIONS = 5


def _tpl(self: IoTBackend, name: str) -> ProvisioningTemplate:
    tpl = ext(self).templates.get(name)
    if tpl is None:
        raise ResourceNotFoundException(f"The provisioning template {name} does not exist.")
    return tpl


def _create_provisioning_template(
    self: IoTBackend,
    name: str,
    body: str,
    role_arn: str,
    *,
    template_type: str | None,
    enabled: bool,
    description: str | None,
    hook: dict[str, Any] | None,
) -> ProvisioningTemplate:
    ttype = template_type or "FLEET_PROVISIONING"
    if ttype not in TEMPLATE_TYPES:
        raise InvalidRequestException(f"Unknown provisioning template type {ttype}.")
    if not name:
        raise InvalidRequestException("templateName is required.")
    if name in ext(self).templates:
        raise ResourceAlreadyExistsException(
            f"A provisioning template named {name} already exists.", name, name
        )
    if not role_arn:
        raise InvalidRequestException("provisioningRoleArn is required.")
    parse_template_body(body)
    if hook and ttype == "JITP":
        raise InvalidRequestException("A JITP template cannot have a pre-provisioning hook.")
    arn = f"arn:aws:iot:{self.region_name}:{self.account_id}:provisioningtemplate/{name}"
    tpl = ProvisioningTemplate(
        name=name,
        arn=arn,
        type=ttype,
        enabled=bool(enabled),
        role_arn=role_arn,
        description=description or "",
        pre_provisioning_hook=hook,
        versions=[TemplateVersion(1, body)],
    )
    ext(self).templates[name] = tpl
    return tpl


def _template_summary(t: ProvisioningTemplate) -> dict[str, Any]:
    return {
        "templateArn": t.arn,
        "templateName": t.name,
        "description": t.description,
        "creationDate": t.created,
        "lastModifiedDate": t.modified,
        "enabled": t.enabled,
        "type": t.type,
    }


def _r_create_provisioning_template(self: IoTResponse) -> ActionResult:
    tpl = _create_provisioning_template(
        self.iot_backend,
        self._get_param("templateName"),
        self._get_param("templateBody"),
        self._get_param("provisioningRoleArn"),
        template_type=self._get_param("type"),
        enabled=bool_param(self, "enabled"),
        description=self._get_param("description"),
        hook=self._get_param("preProvisioningHook"),
    )
    return ActionResult(
        {
            "templateArn": tpl.arn,
            "templateName": tpl.name,
            "defaultVersionId": tpl.default_version_id,
        }
    )


def _r_describe_provisioning_template(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    out = _template_summary(t)
    out.update(
        {
            "defaultVersionId": t.default_version_id,
            "templateBody": t.body,
            "provisioningRoleArn": t.role_arn,
        }
    )
    if t.pre_provisioning_hook:
        out["preProvisioningHook"] = t.pre_provisioning_hook
    return ActionResult(out)


def _r_list_provisioning_templates(self: IoTResponse) -> ActionResult:
    templates = ext(self.iot_backend).templates.values()
    return ActionResult({"templates": [_template_summary(t) for t in templates]})


def _r_update_provisioning_template(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    if self._get_param("description") is not None:
        t.description = self._get_param("description")
    if self._get_param("enabled") is not None:
        t.enabled = bool_param(self, "enabled")
    if self._get_param("provisioningRoleArn"):
        t.role_arn = self._get_param("provisioningRoleArn")
    if self._get_param("preProvisioningHook"):
        t.pre_provisioning_hook = self._get_param("preProvisioningHook")
    if self._get_param("removePreProvisioningHook"):
        t.pre_provisioning_hook = None
    vid = self._get_param("defaultVersionId")
    if vid is not None:
        if int(vid) not in {v.version_id for v in t.versions}:
            raise ResourceNotFoundException(f"Version {vid} of template {t.name} does not exist.")
        t.default_version_id = int(vid)
    t.modified = utcnow()
    return EmptyResult()


def _r_delete_provisioning_template(self: IoTResponse) -> ActionResult:
    name = self._get_param("templateName")
    _tpl(self.iot_backend, name)
    for ca in self.iot_backend.ca_certificates.values():
        if (ca.registration_config or {}).get("templateName") == name:
            raise DeleteConflictException(
                f"The provisioning template {name} is in use by CA certificate {ca.certificate_id}."
            )
    del ext(self.iot_backend).templates[name]
    return EmptyResult()


def _r_create_provisioning_template_version(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    body = self._get_param("templateBody")
    parse_template_body(body)
    if len(t.versions) >= MAX_TEMPLATE_VERSIONS:
        raise VersionsLimitExceededException(t.name)
    vid = max(v.version_id for v in t.versions) + 1
    t.versions.append(TemplateVersion(vid, body))
    is_default = bool_param(self, "setAsDefault")
    if is_default:
        t.default_version_id = vid
    t.modified = utcnow()
    return ActionResult(
        {
            "templateArn": t.arn,
            "templateName": t.name,
            "versionId": vid,
            "isDefaultVersion": is_default,
        }
    )


def _version_dict(t: ProvisioningTemplate, v: TemplateVersion, body: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "versionId": v.version_id,
        "creationDate": v.created,
        "isDefaultVersion": v.version_id == t.default_version_id,
    }
    if body:
        d["templateBody"] = v.body
    return d


def _find_version(t: ProvisioningTemplate, vid: Any) -> TemplateVersion:
    for v in t.versions:
        if str(v.version_id) == str(vid):
            return v
    raise ResourceNotFoundException(f"Version {vid} of template {t.name} does not exist.")


def _r_describe_provisioning_template_version(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    return ActionResult(_version_dict(t, _find_version(t, self._get_param("versionId")), True))


def _r_list_provisioning_template_versions(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    return ActionResult({"versions": [_version_dict(t, v, False) for v in t.versions]})


def _r_delete_provisioning_template_version(self: IoTResponse) -> ActionResult:
    t = _tpl(self.iot_backend, self._get_param("templateName"))
    v = _find_version(t, self._get_param("versionId"))
    if v.version_id == t.default_version_id:
        raise DeleteConflictException("The default version of a template cannot be deleted.")
    t.versions.remove(v)
    return EmptyResult()


#: IoTBackend methods this module adds to moto.
BACKEND_PATCHES = {"create_provisioning_template": _create_provisioning_template}

#: IoTResponse handlers this module adds to moto.
RESPONSE_PATCHES = {
    "create_provisioning_template": _r_create_provisioning_template,
    "describe_provisioning_template": _r_describe_provisioning_template,
    "list_provisioning_templates": _r_list_provisioning_templates,
    "update_provisioning_template": _r_update_provisioning_template,
    "delete_provisioning_template": _r_delete_provisioning_template,
    "create_provisioning_template_version": _r_create_provisioning_template_version,
    "describe_provisioning_template_version": _r_describe_provisioning_template_version,
    "list_provisioning_template_versions": _r_list_provisioning_template_versions,
    "delete_provisioning_template_version": _r_delete_provisioning_template_version,
}
