"""The topic-pattern rules on their own (pure functions shared with the API)."""

from __future__ import annotations

import pytest

from provisioning.connections.topics import (
    TopicPatternError,
    validate_downlink_pattern,
    validate_uplink_pattern,
)


@pytest.mark.parametrize(
    "pattern",
    [
        "things/{thing}/uplink/{point}",
        "things/{DevEUI}/uplink",
        "a/b/c/d/e/f/g/h",
        "fleet/{station}/dev-{device}/up",
        "x" * 256,
        "données/{device}",
    ],
)
def test_good_uplinks(pattern: str) -> None:
    assert validate_uplink_pattern(pattern) == pattern


@pytest.mark.parametrize(
    "pattern",
    [
        "things/{thing}/downlink",
        "things/{thing}/down/+",
        "things/{thing}/#",
        "+/{device}/cmd",
    ],
)
def test_good_downlinks(pattern: str) -> None:
    assert validate_downlink_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("a/+/b", "wildcards"),
        ("a/#", "wildcards"),
        ("a/b/c/d/e/f/g/h/i", "7 forward slashes"),
        ("x" * 257, "256 bytes"),
        ("é" * 129, "256 bytes"),
        ("$aws/x", "$aws"),
        ("$AWS/rules/x", "$aws"),
        ("$SYS/x", "$"),
        ("/a", "empty level"),
        ("a//b", "empty level"),
        ("a/", "empty level"),
        ("a/ /b", "spaces"),
        ("a/{x}", "unknown placeholder {x}"),
        ("a/{device", "unmatched brace"),
        ("a/}b", "unmatched brace"),
        ("a/\x00", "control"),
        ("  ", "empty"),
        (None, "empty"),
        (5, "empty"),
    ],
)
def test_bad_uplinks(pattern: object, words: str) -> None:
    with pytest.raises(TopicPatternError) as err:
        validate_uplink_pattern(pattern)
    assert words.lower() in str(err.value).lower()


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("a/{point}", "{point}"),
        ("a/b+", "whole level"),
        ("a/#/b", "last level"),
        ("a/b#", "last level"),
        ("$aws/things/x/shadow/update/delta", "$aws"),
        ("a//b", "empty level"),
    ],
)
def test_bad_downlinks(pattern: str, words: str) -> None:
    with pytest.raises(TopicPatternError) as err:
        validate_downlink_pattern(pattern)
    assert words.lower() in str(err.value).lower()
