"""Image metadata: the runtime config Docker reads from an image, and the image record itself."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.errors import IntegrityError
from agent.images.registry import OCI_MANIFEST, node_platform

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TYPES = (
    OCI_LAYER_GZIP,
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
)


@dataclass(frozen=True)
class ImageConfig:
    """The fields of an image config's `config` object that a container run uses (as Docker)."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()
    """`80/tcp` style, sorted."""

    @classmethod
    def from_docker(cls, doc: dict[str, Any] | None) -> ImageConfig:
        """Read the `config` object of an OCI/Docker image config (missing or null fields allowed)."""
        doc = doc or {}

        def strings(key: str) -> tuple[str, ...] | None:
            value = doc.get(key)
            if value is None:
                return None
            if isinstance(value, str):  # old Docker images sometimes have a bare string
                return (value,)
            return tuple(str(v) for v in value)

        return cls(
            env=strings("Env") or (),
            entrypoint=strings("Entrypoint"),
            cmd=strings("Cmd"),
            working_dir=str(doc.get("WorkingDir") or ""),
            user=str(doc.get("User") or ""),
            stop_signal=str(doc.get("StopSignal") or ""),
            volumes=tuple(sorted(doc.get("Volumes") or {})),
            labels={str(k): str(v) for k, v in (doc.get("Labels") or {}).items()},
            exposed_ports=tuple(sorted(doc.get("ExposedPorts") or {})),
        )

    def to_docker(self) -> dict[str, Any]:
        """The `config` object, leaving out empty fields as Docker does."""
        doc: dict[str, Any] = {}
        if self.env:
            doc["Env"] = list(self.env)
        if self.entrypoint is not None:
            doc["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            doc["Cmd"] = list(self.cmd)
        if self.working_dir:
            doc["WorkingDir"] = self.working_dir
        if self.user:
            doc["User"] = self.user
        if self.stop_signal:
            doc["StopSignal"] = self.stop_signal
        if self.volumes:
            doc["Volumes"] = {v: {} for v in self.volumes}
        if self.labels:
            doc["Labels"] = dict(self.labels)
        if self.exposed_ports:
            doc["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        return doc


@dataclass(frozen=True)
class LayerBlob:
    """One manifest layer: the stored compressed blob and the diff_id naming its unpacked dir."""

    digest: str
    size: int
    media_type: str
    diff_id: str


@dataclass(frozen=True)
class Image:
    id: str
    """The config digest, `sha256:<hex>`, as Docker's image ID."""
    manifest_digest: str
    config: ImageConfig
    layers: tuple[str, ...]
    """Layer diff_ids, base first."""
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    created: str
    layer_blobs: tuple[LayerBlob, ...]
    """The manifest's layers, base first (same order as `layers`)."""

    @property
    def size(self) -> int:
        """Sum of the compressed layer sizes, as ImageInfo.size."""
        return sum(b.size for b in self.layer_blobs)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(doc: object) -> bytes:
    """Stable bytes for JSON we create, so the same content always gets the same digest."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def parse_manifest(doc: dict[str, Any], what: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config descriptor, layer descriptors) of a manifest, checked for the fields we rely on."""
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise IntegrityError(f"manifest {what} has no config or layers")
    for desc in [config, *layers]:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise IntegrityError(f"manifest {what} has a descriptor without a digest")
    return config, layers


def diff_ids(config_doc: dict[str, Any], what: str) -> list[str]:
    ids = (config_doc.get("rootfs") or {}).get("diff_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise IntegrityError(f"image config {what} has no rootfs.diff_ids")
    return list(ids)


def build_image_config(
    config: ImageConfig, layer_diff_ids: list[str], created: str, history: list[dict[str, Any]]
) -> dict[str, Any]:
    os_name, arch = node_platform()
    return {
        "architecture": arch,
        "os": os_name,
        "created": created,
        "config": config.to_docker(),
        "rootfs": {"type": "layers", "diff_ids": layer_diff_ids},
        "history": history,
    }


def build_manifest(config_digest: str, config_size: int, layers: list[LayerBlob]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
    }
