"""Topic-pattern rules (AWS IoT Core + MQTT), checked before a pattern is stored.

Pure functions, no Django. Each rule raises ``TopicPatternError`` (a domain error) with one
sentence that says what to change; the model turns it into a form error on its field.

Rules (documented in docs/connections.md):

* placeholders ``{station}``, ``{device}``, ``{DevEUI}`` (alias of ``{device}``), ``{thing}``
  (the certificate CN / AWS thing name) and, in uplinks only, ``{point}``; any other
  ``{…}`` or a stray brace is refused;
* at most 256 bytes of UTF-8 and at most 7 forward slashes (8 levels), as AWS IoT allows;
* no leading ``$`` (``$aws/…`` and every other ``$`` topic is reserved by AWS / MQTT);
* no empty level: no leading or trailing ``/`` and no ``//`` (AWS accepts them, but they are
  almost always a mistake and they break the least-privilege ``things/<thing>/…`` policies);
* no NUL, control characters or whitespace-only levels;
* uplink (a publish topic): no ``+`` or ``#`` at all;
* downlink (a subscription filter): ``+`` only as a whole level, ``#`` only as the whole last
  level, so a station can take commands for several points with one subscription.
"""

from __future__ import annotations

import re

from portal.errors import InvalidInput

PLACEHOLDERS = ("station", "device", "DevEUI", "thing", "point")
DOWNLINK_PLACEHOLDERS = ("station", "device", "DevEUI", "thing")
MAX_BYTES = 256
MAX_SLASHES = 7

_BRACED = re.compile(r"\{([^{}]*)\}")


class TopicPatternError(InvalidInput):
    """A topic pattern breaks a rule; ``detail`` is one sentence for the user."""

    code = "invalid_topic_pattern"


def _check_placeholders(pattern: str, allowed: tuple[str, ...], what: str) -> str:
    """Return the pattern with placeholders removed, after checking each one is allowed."""
    for name in _BRACED.findall(pattern):
        if name not in allowed:
            if name == "point" and "point" not in allowed:
                raise TopicPatternError(
                    f"The {what} cannot use {{point}}: it is a subscription made before any "
                    "point is known; use + for one level instead."
                )
            names = ", ".join("{" + n + "}" for n in allowed)
            raise TopicPatternError(
                f"The {what} uses the unknown placeholder {{{name}}}; use {names}."
            )
    rest = _BRACED.sub("", pattern)
    if "{" in rest or "}" in rest:
        raise TopicPatternError(
            f"The {what} has an unmatched brace; placeholders look like {{device}}."
        )
    return rest


def _check_common(pattern: object, what: str) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        raise TopicPatternError(f"The {what} is empty.")
    if len(pattern.encode("utf-8")) > MAX_BYTES:
        raise TopicPatternError(
            f"The {what} is longer than {MAX_BYTES} bytes of UTF-8, the AWS IoT topic limit."
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in pattern):
        raise TopicPatternError(f"The {what} contains a control character.")
    if pattern.lower().startswith("$aws"):
        raise TopicPatternError(
            f"The {what} starts with $aws, which AWS IoT reserves for its own topics."
        )
    if pattern.startswith("$"):
        raise TopicPatternError(f"The {what} starts with $, which MQTT reserves for the broker.")
    if pattern.count("/") > MAX_SLASHES:
        raise TopicPatternError(
            f"The {what} has more than {MAX_SLASHES} forward slashes (AWS IoT allows 8 levels)."
        )
    levels = pattern.split("/")
    if any(level == "" for level in levels):
        raise TopicPatternError(
            f"The {what} has an empty level (a leading or trailing / or //); remove it."
        )
    if any(not level.strip() for level in levels):
        raise TopicPatternError(f"The {what} has a level made only of spaces.")
    return pattern


def validate_uplink_pattern(pattern: object) -> str:
    """An uplink pattern is a publish topic: no wildcards."""
    what = "uplink topic pattern"
    text = _check_common(pattern, what)
    _check_placeholders(text, PLACEHOLDERS, what)
    if "+" in text or "#" in text:
        raise TopicPatternError(
            f"The {what} contains + or #; wildcards are not allowed in a topic to publish to."
        )
    return text


def validate_downlink_pattern(pattern: object) -> str:
    """A downlink pattern is a subscription filter: + and # only as whole levels."""
    what = "downlink topic pattern"
    text = _check_common(pattern, what)
    _check_placeholders(text, DOWNLINK_PLACEHOLDERS, what)
    levels = text.split("/")
    for index, level in enumerate(levels):
        if "+" in level and level != "+":
            raise TopicPatternError(f"In the {what}, + must be a whole level (…/+/…).")
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise TopicPatternError(f"In the {what}, # must be the whole last level (…/#).")
    return text
