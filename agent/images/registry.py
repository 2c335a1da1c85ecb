"""A minimal OCI distribution (registry v2) client: manifests, verified blob downloads, push.

No authentication: Shoal talks to its own registry. Every byte fetched is checked against
its digest before the caller may store or unpack it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from agent.errors import IntegrityError, InvalidArgument, NotFound, Unavailable
from agent.images.reference import DIGEST_RE, is_loopback_host

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
_ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
_CHUNK = 1 << 20
_MAX_MANIFEST = 4 * 1024 * 1024  # registries cap manifests at 4 MiB too


def node_platform() -> tuple[str, str]:
    """(os, architecture) in OCI terms for this node."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return "linux", arch


@dataclass(frozen=True)
class Manifest:
    """An image manifest exactly as served: its bytes are what the digest covers."""

    raw: bytes
    digest: str
    media_type: str

    @property
    def doc(self) -> dict[str, Any]:
        return parse_json(self.raw, f"manifest {self.digest}")


def parse_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{what} is not a JSON object")
    return doc


def select_platform(index: dict[str, Any], what: str) -> dict[str, Any]:
    """The index entry for this node's platform (NotFound when the image does not have one)."""
    want_os, want_arch = node_platform()
    for entry in index.get("manifests") or []:
        plat = entry.get("platform") or {}
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            if want_arch != "arm64" or plat.get("variant") in (None, "", "v8"):
                return dict(entry)
    raise NotFound(f"image {what} has no manifest for {want_os}/{want_arch}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


class RegistryClient:
    """One registry host. Use as a context manager so the connection pool is closed."""

    def __init__(self, host: str) -> None:
        self.host = host
        scheme = "http" if is_loopback_host(host) else "https"
        # trust_env=False: proxy and CA variables of the agent's environment must not redirect
        # image traffic (a proxy on a node would otherwise see every pull).
        self._http = httpx.Client(
            base_url=f"{scheme}://{host}", timeout=_TIMEOUT, trust_env=False, follow_redirects=True
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- plumbing -------------------------------------------------------------------------------

    def _send(self, request: httpx.Request, stream: bool = False) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> Unavailable:
        return Unavailable(
            f"registry {self.host} is unreachable: {_one_line(str(exc)) or type(exc).__name__}"
        )

    def _failed(self, response: httpx.Response, what: str) -> Unavailable:
        if response.status_code == 401:
            return Unavailable(f"registry {self.host} requires authentication, which Shoal does not support")
        try:
            body = _one_line(response.read().decode("utf-8", "replace"))[:200]
        except httpx.HTTPError:
            body = ""
        return Unavailable(f"registry {self.host} answered {response.status_code} to {what}: {body}")

    # ---- pull -----------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest for a tag or digest; an index/list is resolved to this node's platform."""
        return self.resolve(repository, reference)[1]

    def resolve(self, repository: str, reference: str) -> tuple[str, Manifest]:
        """(the digest `reference` names, an index's if it is one, and this platform's manifest)."""
        top = self._fetch_manifest(repository, reference)
        if top.media_type not in INDEX_TYPES:
            return top.digest, top
        entry = select_platform(top.doc, f"{repository}:{reference}")
        manifest = self._fetch_manifest(repository, str(entry.get("digest")))
        if manifest.media_type not in MANIFEST_TYPES:
            raise InvalidArgument(f"image {repository}: nested index {manifest.digest} is not supported")
        return top.digest, manifest

    def _fetch_manifest(self, repository: str, reference: str) -> Manifest:
        path = f"/v2/{repository}/manifests/{reference}"
        request = self._http.build_request("GET", path, headers={"Accept": _ACCEPT})
        response = self._send(request)
        if response.status_code == 404:
            raise NotFound(f"image {repository}:{reference} not found in registry {self.host}")
        if response.status_code != 200:
            raise self._failed(response, f"GET {path}")
        raw = response.content
        if len(raw) > _MAX_MANIFEST:
            raise IntegrityError(f"manifest {repository}:{reference} is larger than 4 MiB")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        expected = reference if DIGEST_RE.match(reference) else response.headers.get("Docker-Content-Digest")
        if expected and expected.startswith("sha256:") and expected != digest:
            raise IntegrityError(
                f"manifest {repository}@{expected} from registry {self.host} does not match its digest "
                f"(got {digest}); discarded"
            )
        media_type = parse_json(raw, f"manifest {repository}:{reference}").get("mediaType") or (
            response.headers.get("Content-Type", "").split(";")[0].strip()
        )
        if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            raise InvalidArgument(
                f"image {repository}:{reference} has manifest type {media_type!r}, which is not supported"
            )
        return Manifest(raw=raw, digest=digest, media_type=media_type)

    def get_blob(self, repository: str, digest: str, dest: Path) -> int:
        """Stream a blob into `dest` while hashing it; `dest` only stays when the digest matches."""
        if not DIGEST_RE.match(digest):
            raise IntegrityError(f"image {repository} names a blob with a malformed digest {digest!r}")
        path = f"/v2/{repository}/blobs/{digest}"
        response = self._send(self._http.build_request("GET", path), stream=True)
        h = hashlib.sha256()
        size = 0
        try:
            if response.status_code == 404:
                raise NotFound(f"blob {digest} of {repository} not found in registry {self.host}")
            if response.status_code != 200:
                raise self._failed(response, f"GET {path}")
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            got = "sha256:" + h.hexdigest()
            if got != digest:
                raise IntegrityError(
                    f"blob {digest} from registry {self.host} does not match its digest "
                    f"(got {got}); discarded"
                )
        except httpx.TransportError as exc:
            dest.unlink(missing_ok=True)
            raise self._unreachable(exc) from None
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        return size

    # ---- push -----------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        path = f"/v2/{repository}/blobs/{digest}"
        response = self._send(self._http.build_request("HEAD", path))
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._failed(response, f"HEAD {path}")

    def put_blob(self, repository: str, digest: str, source: Path) -> None:
        """A monolithic upload: POST for an upload URL, then one PUT with the whole blob."""
        path = f"/v2/{repository}/blobs/uploads/"
        response = self._send(self._http.build_request("POST", path))
        if response.status_code != 202 or "Location" not in response.headers:
            raise self._failed(response, f"POST {path}")
        location = response.headers["Location"]
        url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
        headers = {
            "Content-Type": "application/octet-stream",
            # An explicit length stops httpx from sending the stream chunked.
            "Content-Length": str(os.path.getsize(source)),
        }
        request = self._http.build_request("PUT", url, headers=headers, content=_chunks(source))
        response = self._send(request)
        if response.status_code != 201:
            raise self._failed(response, f"PUT blob {digest}")

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        path = f"/v2/{repository}/manifests/{reference}"
        request = self._http.build_request(
            "PUT", path, headers={"Content-Type": manifest.media_type}, content=manifest.raw
        )
        response = self._send(request)
        if response.status_code != 201:
            raise self._failed(response, f"PUT {path}")


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk
