"""Image reference parsing: Docker's grammar, local normalisation, one-line errors."""

from __future__ import annotations

import pytest

from agent.errors import InvalidArgument
from agent.images.reference import Reference, is_loopback_host, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected", "local"),
    [
        ("busybox", Reference(None, "busybox", "latest", None), "busybox:latest"),
        ("busybox:1.36", Reference(None, "busybox", "1.36", None), "busybox:1.36"),
        (
            "library/busybox:v_1-x.y",
            Reference(None, "library/busybox", "v_1-x.y", None),
            "library/busybox:v_1-x.y",
        ),
        (
            "127.0.0.1:5000/busybox",
            Reference("127.0.0.1:5000", "busybox", "latest", None),
            "127.0.0.1:5000/busybox:latest",
        ),
        ("localhost/a/b:t", Reference("localhost", "a/b", "t", None), "localhost/a/b:t"),
        (
            "registry.example.com/x__y/z-w.v",
            Reference("registry.example.com", "x__y/z-w.v", "latest", None),
            "registry.example.com/x__y/z-w.v:latest",
        ),
        ("[::1]:5000/busybox:1", Reference("[::1]:5000", "busybox", "1", None), "[::1]:5000/busybox:1"),
        (f"busybox@{DIGEST}", Reference(None, "busybox", None, DIGEST), f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", Reference(None, "busybox", "1", DIGEST), "busybox:1"),
        ("a" * 200, Reference(None, "a" * 200, "latest", None), "a" * 200 + ":latest"),
    ],
)
def test_good_references(text: str, expected: Reference, local: str) -> None:
    ref = parse_reference(text)
    assert ref == expected
    assert ref.local == local


def test_remote_ref_prefers_digest() -> None:
    assert parse_reference(f"busybox:1@{DIGEST}").remote_ref == DIGEST
    assert parse_reference("busybox").remote_ref == "latest"
    assert str(parse_reference(f"h.io/busybox:1@{DIGEST}")) == f"h.io/busybox:1@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "required"),
        ("BusyBox", "lowercase"),
        ("busybox:", "tag"),
        ("busybox:-bad", "tag"),
        ("busybox:" + "t" * 129, "tag"),
        ("busybox@sha256:abc", "digest"),
        ("busybox@md5:" + "a" * 32, "digest"),
        ("a//b", "lowercase"),
        ("a/b/", "lowercase"),
        ("_busybox", "lowercase"),
        ("busy--", "lowercase"),
        ("busy box", "whitespace"),
        ("127.0.0.1:5000/", "repository name is required"),
        ("-bad.host:5000/busybox", "registry"),
        ("a/" * 130 + "b", "at most 255"),
    ],
)
def test_bad_references(text: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_reference(text)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("invalid image ")
    assert repr(text) in message
    assert rule in message


def test_field_is_named() -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid target 'X'"):
        parse_reference("X", field="target")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:80", True),
        ("[::1]:5000", True),
        ("registry.example.com", False),
        ("10.0.0.1:5000", False),
        ("[fe80::1]:5000", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
