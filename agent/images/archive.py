"""Image archives: an OCI image layout in a tar, plus Docker's manifest.json so `docker load` takes it.

Reading never extracts paths from the archive: only `index.json` and `blobs/sha256/<hex>` are
looked up by name, and every blob is copied out while hashing and checked against its digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import IntegrityError, InvalidArgument, invalid
from agent.images.image import canonical_json, parse_manifest
from agent.images.reference import DIGEST_RE, parse_reference
from agent.images.registry import INDEX_TYPES, MANIFEST_TYPES, Manifest, parse_json, select_platform

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"  # what Docker 25+ and containerd write alongside REF_NAME
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


@dataclass(frozen=True)
class SavedImage:
    manifest: Manifest
    blobs: tuple[str, ...]
    """Config then layer digests."""
    config_digest: str
    layer_digests: tuple[str, ...]
    names: tuple[str, ...]
    """Local refs (`name:tag`) to record in the archive."""


def blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def write_archive(out_file: Path, images: list[SavedImage], blob_path: Callable[[str], Path]) -> None:
    """Write the tar to `out_file` (the caller renames it into place)."""
    index: list[dict[str, Any]] = []
    docker: list[dict[str, Any]] = []
    blobs: dict[str, None] = {}  # ordered set
    for img in images:
        desc = {
            "mediaType": img.manifest.media_type,
            "digest": img.manifest.digest,
            "size": len(img.manifest.raw),
        }
        if not img.names:
            index.append(desc)
        for name in img.names:
            ref = parse_reference(name)
            # As Docker 25: the tag in ref.name (what `skopeo oci-archive:PATH:TAG` matches) and the
            # full name in containerd's annotation.
            index.append({**desc, "annotations": {REF_NAME: ref.tag or "latest", IMAGE_NAME: name}})
        docker.append(
            {
                "Config": blob_name(img.config_digest),
                "RepoTags": list(img.names),
                "Layers": [blob_name(d) for d in img.layer_digests],
            }
        )
        blobs.update(dict.fromkeys([img.manifest.digest, *img.blobs]))
    index_doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    }
    manifests = {img.manifest.digest: img.manifest.raw for img in images}
    with tarfile.open(out_file, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest in blobs:
            if digest in manifests:
                _add_bytes(tar, blob_name(digest), manifests[digest])
            else:
                info = tar.gettarinfo(str(blob_path(digest)), arcname=blob_name(digest))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                with blob_path(digest).open("rb") as f:
                    tar.addfile(info, f)
        _add_bytes(tar, "oci-layout", _LAYOUT)
        _add_bytes(tar, "index.json", canonical_json(index_doc))
        _add_bytes(tar, "manifest.json", json.dumps(docker).encode())


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class LoadedImage:
    manifest: Manifest
    names: tuple[str, ...]


class ArchiveReader:
    """Reads an image archive; blobs are copied into `stage` only after their digest checks out."""

    def __init__(self, path: Path, stage: Path) -> None:
        self.path = path
        self.stage = stage
        self.staged: dict[str, Path] = {}
        try:
            self._tar = tarfile.open(path, "r:*")
            self._members = {m.name.removeprefix("./"): m for m in self._tar.getmembers() if m.isfile()}
        except (OSError, tarfile.TarError) as exc:
            raise invalid("archive", str(path), f"not a readable tar archive ({exc})") from None
        if "index.json" not in self._members:
            raise invalid("archive", str(path), "not an OCI image layout: it has no index.json")

    def close(self) -> None:
        self._tar.close()

    def read_images(self) -> list[LoadedImage]:
        """Every image in index.json (indexes resolved to this node's platform), blobs staged."""
        index = parse_json(self._read("index.json"), f"index.json of {self.path}")
        out: list[LoadedImage] = []
        for desc in index.get("manifests") or []:
            names = _names(desc.get("annotations") or {})
            manifest = self._manifest(desc)
            if manifest.media_type in INDEX_TYPES:
                entry = select_platform(manifest.doc, f"{manifest.digest} in {self.path}")
                manifest = self._manifest(entry)
            if manifest.media_type not in MANIFEST_TYPES:
                raise IntegrityError(f"archive {self.path} has manifest {manifest.digest} of unknown type")
            config, layers = parse_manifest(manifest.doc, manifest.digest)
            for blob in [config, *layers]:
                self.stage_blob(str(blob["digest"]))
            out.append(LoadedImage(manifest=manifest, names=names))
        return out

    def _manifest(self, desc: dict[str, Any]) -> Manifest:
        digest = str(desc.get("digest"))
        raw = self.stage_blob(digest).read_bytes()
        media_type = parse_json(raw, f"manifest {digest}").get("mediaType") or desc.get("mediaType") or ""
        return Manifest(raw=raw, digest=digest, media_type=str(media_type))

    def stage_blob(self, digest: str) -> Path:
        if digest in self.staged:
            return self.staged[digest]
        if not DIGEST_RE.match(digest):
            raise IntegrityError(f"archive {self.path} names a blob with a malformed digest {digest!r}")
        member = self._members.get(blob_name(digest))
        src = self._tar.extractfile(member) if member else None
        if src is None:
            raise IntegrityError(f"archive {self.path} is missing blob {digest}")
        dest = self.stage / digest.removeprefix("sha256:")
        h = hashlib.sha256()
        with dest.open("wb") as out:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if "sha256:" + h.hexdigest() != digest:
            dest.unlink()
            raise IntegrityError(f"blob {digest} in archive {self.path} does not match its digest; discarded")
        self.staged[digest] = dest
        return dest

    def _read(self, name: str) -> bytes:
        f = self._tar.extractfile(self._members[name])
        assert f is not None
        with f:
            return f.read()


def _names(annotations: dict[str, Any]) -> tuple[str, ...]:
    """The local ref an index entry names: containerd's full name, else a full ref.name."""
    for key in (IMAGE_NAME, REF_NAME):
        name = annotations.get(key)
        # A bare ref.name ("latest") is only a tag: without a repository it cannot name an image.
        if isinstance(name, str) and ("/" in name or ":" in name):
            try:
                return (parse_reference(name).local,)
            except InvalidArgument:  # an unparsable name leaves the image untagged, not unloaded
                return ()
    return ()
