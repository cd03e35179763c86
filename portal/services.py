"""Services of the portal app: audit, staff API tokens, encryption canary."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Model

from .models import ApiToken, AuditEvent, EncryptionCanary
from .tokens import hash_token, new_token

Actor = AbstractBaseUser | AnonymousUser | None
"""Who did something: a user (staff in the admin or the API), or None for the system."""


def acting_user(actor: Actor) -> Any:
    """The authenticated user behind ``actor``, or None (anonymous, system).

    Typed ``Any`` because AUTH_USER_MODEL is swappable: the foreign keys that receive it
    accept whatever user model the project configures.
    """
    if actor is not None and getattr(actor, "is_authenticated", False):
        return actor
    return None


def audit_record(
    *,
    action: str,
    obj: Model,
    actor: Actor = None,
    actor_label: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. Never pass secrets in ``detail``."""
    user = acting_user(actor)
    return AuditEvent.objects.create(
        action=action,
        actor=user,
        actor_label=actor_label or (user.get_username() if user else "system"),
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        detail=detail or {},
    )


@transaction.atomic
def api_token_create(*, username: str) -> tuple[ApiToken, str]:
    """Create a staff API token for an active staff user; returns the row and the token once."""
    User = get_user_model()
    try:
        user = User.objects.get(**{User.USERNAME_FIELD: username})
    except User.DoesNotExist:
        raise ValueError(f"There is no user named {username!r}.") from None
    if not (user.is_active and user.is_staff):
        raise ValueError(f"User {username!r} must be an active staff user to hold an API token.")
    token = new_token()
    row = ApiToken.objects.create(user=user, token_hash=hash_token(token), prefix=token[:8])
    audit_record(action="api_token_create", obj=row, actor=user)
    return row, token


def encryption_canary_ensure(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """Create the canary row once the table exists (called after migrate)."""
    if "portal_encryptioncanary" not in connections[using].introspection.table_names():
        return
    if not EncryptionCanary.objects.using(using).exists():
        EncryptionCanary.objects.using(using).create(value=EncryptionCanary.PLAINTEXT)


def heartbeat_record(*, name: str) -> None:
    """Stamp ``name`` as alive now (one UPDATE, or an INSERT the first time)."""
    from django.utils import timezone

    from .models import Heartbeat

    now = timezone.now()
    if not Heartbeat.objects.filter(name=name).update(at=now):
        Heartbeat.objects.update_or_create(name=name, defaults={"at": now})
