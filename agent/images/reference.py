"""Image references (`[registry/]repo/path[:tag][@sha256:hex]`), parsed with Docker's grammar.

Pure functions only: the store, the CLI and the agent's RPC validation share them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import invalid

DEFAULT_TAG = "latest"

# Docker's distribution/reference grammar, with the pieces named as there.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
COMPONENT_RE = re.compile(rf"^{_COMPONENT}$")
DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    registry: str | None
    """Host[:port] when the reference names one, else None (the store's default applies)."""
    repository: str
    """Path inside the registry, e.g. `library/busybox`."""
    tag: str | None
    """`latest` unless a digest alone was given (then None, as Docker)."""
    digest: str | None

    @property
    def name(self) -> str:
        """The repository as written by the user, registry included."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def local(self) -> str:
        """The key the store records: `name:tag` or, for a bare digest, `name@digest`."""
        if self.tag is not None:
            return f"{self.name}:{self.tag}"
        return f"{self.name}@{self.digest}"

    @property
    def remote_ref(self) -> str:
        """What to ask the registry for: the digest wins over the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, field: str = "image") -> Reference:
    """Parse `text` or raise InvalidArgument naming `field`, the value and the broken rule."""
    if not text:
        raise invalid(field, text, "an image reference is required")
    if text != text.strip() or any(c.isspace() for c in text):
        raise invalid(field, text, "image references may not contain whitespace")
    rest, _, digest = text.partition("@")
    if "@" in text and not DIGEST_RE.match(digest):
        raise invalid(field, text, "the digest must be sha256: followed by 64 lowercase hex digits")
    # A ':' after the last '/' starts the tag; earlier ones belong to a registry port.
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag: str | None = None
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.match(tag):
            raise invalid(field, text, "the tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
    registry: str | None = None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not DOMAIN_RE.match(first):
            raise invalid(field, text, "the registry must be a host name or address with an optional :port")
        registry, rest = first, remainder
    if not rest:
        raise invalid(field, text, "a repository name is required")
    for component in rest.split("/"):
        if not COMPONENT_RE.match(component):
            raise invalid(
                field,
                text,
                "repository path components use lowercase letters and digits separated by . _ __ or -",
            )
    name_length = len(rest) + (len(registry) + 1 if registry else 0)
    if name_length > MAX_NAME:
        raise invalid(field, text, f"the repository name must be at most {MAX_NAME} characters")
    if tag is None and not digest:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=rest, tag=tag, digest=digest or None)


def is_loopback_host(host: str) -> bool:
    """127.x, localhost or [::1], with or without a port: these are spoken to over plain http."""
    if host.startswith("["):
        return host.split("]", 1)[0] == "[::1"
    hostname = host.split(":", 1)[0]
    return hostname == "localhost" or hostname.startswith("127.")
