"""The node's image store: content-addressed blobs, layers unpacked once, refs in one JSON file.

Layout under `root`:
  blobs/sha256/<hex>          manifests, configs and compressed layers (verified, then renamed in)
  layers/sha256/<diff hex>/   unpacked layers in overlayfs format, shared by every image using them
  repositories.json           {"refs": {ref: manifest digest}, "images": {image id: manifest digest}}
  tmp/                        staging; anything here is garbage after a crash

An image's ID is its config digest. Content is staged and verified in tmp/ first and only
renamed into place once everything checked out, so a failed pull or load leaves nothing.
One lock serialises every operation (pulls included): simple, and rare enough on a node.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import Conflict, IntegrityError, InvalidArgument, NotFound, invalid
from agent.images.archive import ArchiveReader, SavedImage, write_archive
from agent.images.image import (
    LAYER_TYPES,
    OCI_LAYER_GZIP,
    Image,
    ImageConfig,
    LayerBlob,
    build_image_config,
    build_manifest,
    canonical_json,
    diff_ids,
    now_rfc3339,
    parse_manifest,
)
from agent.images.layers import compress_tar, dir_to_layer, unpack_layer, upper_to_layer
from agent.images.reference import Reference, parse_reference
from agent.images.registry import OCI_MANIFEST, Manifest, RegistryClient, parse_json
from agent.models import ImageInfo

log = logging.getLogger(__name__)

_FULL_ID_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_ID_PREFIX_RE = re.compile(r"^(?:sha256:)?([a-f0-9]{4,64})$")
_GZIP_LAYERS = {"application/vnd.docker.image.rootfs.diff.tar.gzip": OCI_LAYER_GZIP}

Progress = Callable[[str, str], None]
"""Called with (layer diff_id, status): pull reports "Already exists" or "Pull complete",
push "Layer already exists" or "Pushed"."""

PullObserver = Callable[[float, int, bool], None]


@dataclass(frozen=True)
class _Record:
    """What one stored manifest says; manifests are immutable, so records are cached forever."""

    manifest: Manifest
    image_id: str
    config: ImageConfig
    created: str
    layer_blobs: tuple[LayerBlob, ...]


class ImageStore:
    def __init__(
        self, root: Path, default_registry: str | None = None, on_pull: PullObserver | None = None
    ) -> None:
        self.root = root
        self.default_registry = default_registry
        self.on_pull = on_pull
        """Told of every pull: (seconds, blob bytes downloaded, succeeded); the agent's metrics."""
        self._blobs = root / "blobs" / "sha256"
        self._layers = root / "layers" / "sha256"
        self._tmp = root / "tmp"
        self._state_file = root / "repositories.json"
        self._lock = threading.RLock()
        self._records: dict[str, _Record] = {}
        for d in (self._blobs, self._layers):
            d.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._tmp, ignore_errors=True)  # staging left by a crash
        self._tmp.mkdir()
        self._refs: dict[str, str] = {}
        self._images: dict[str, str] = {}
        if self._state_file.exists():
            state = json.loads(self._state_file.read_text())
            self._refs = dict(state.get("refs", {}))
            self._images = dict(state.get("images", {}))

    # ---- lookups --------------------------------------------------------------------------------

    def get(self, ref_or_id: str) -> Image:
        with self._lock:
            return self._image(self._find(ref_or_id)[0])

    def layer_dirs(self, image: Image) -> builtins.list[Path]:
        """The overlay lowerdirs, base first (overlayfs wants them top first: reverse them)."""
        return [self._layer_dir(d) for d in image.layers]

    def info(self, image: Image) -> ImageInfo:
        return ImageInfo(
            id=image.id,
            repo_tags=list(image.repo_tags),
            repo_digests=list(image.repo_digests),
            size=image.size,
            created=image.created,
            layers=list(image.layers),
            dangling=not image.repo_tags,
        )

    def list(self) -> builtins.list[ImageInfo]:
        """Every image, newest first; untagged ones have dangling=True."""
        with self._lock:
            images = [self._image(i) for i in self._images]
        return [self.info(i) for i in sorted(images, key=lambda i: i.created, reverse=True)]

    def _find(self, text: str) -> tuple[str, str | None]:
        """(image id, the ref key when `text` named a ref rather than an ID)."""
        if _FULL_ID_RE.match(text) and text in self._images:
            return text, None
        with contextlib.suppress(InvalidArgument):
            key = self._ref_key(parse_reference(text))
            if key in self._refs:
                return self._record(self._refs[key]).image_id, key
        m = _ID_PREFIX_RE.match(text)
        if m:
            matches = [i for i in self._images if i[7:].startswith(m.group(1))]
            if len(matches) == 1:
                return matches[0], None
            if len(matches) > 1:
                raise invalid("image", text, "the ID prefix matches more than one image")
        raise NotFound(f"No such image: {text}")

    @staticmethod
    def _ref_key(ref: Reference) -> str:
        # `name:tag@digest` is looked up by its digest, as Docker does.
        return f"{ref.name}@{ref.digest}" if ref.digest else ref.local

    def _image(self, image_id: str) -> Image:
        rec = self._record(self._images[image_id])
        keys = sorted(k for k, m in self._refs.items() if self._record(m).image_id == image_id)
        return Image(
            id=image_id,
            manifest_digest=rec.manifest.digest,
            config=rec.config,
            layers=tuple(b.diff_id for b in rec.layer_blobs),
            repo_tags=tuple(k for k in keys if "@" not in k),
            repo_digests=tuple(k for k in keys if "@" in k),
            created=rec.created,
            layer_blobs=rec.layer_blobs,
        )

    def _record(self, manifest_digest: str, staged: dict[str, Path] | None = None) -> _Record:
        rec = self._records.get(manifest_digest)
        if rec is not None:
            return rec
        raw = self._blob_file(manifest_digest, staged).read_bytes()
        doc = parse_json(raw, f"manifest {manifest_digest}")
        manifest = Manifest(
            raw=raw, digest=manifest_digest, media_type=str(doc.get("mediaType") or OCI_MANIFEST)
        )
        config_desc, layer_descs = parse_manifest(doc, manifest_digest)
        image_id = str(config_desc["digest"])
        config_doc = self._config_doc(image_id, staged)
        ids = diff_ids(config_doc, image_id)
        if len(ids) != len(layer_descs):
            raise IntegrityError(f"image {image_id} has {len(ids)} diff_ids for {len(layer_descs)} layers")
        blobs = []
        for desc, diff_id in zip(layer_descs, ids, strict=True):
            media_type = str(desc.get("mediaType") or OCI_LAYER_GZIP)
            if media_type not in LAYER_TYPES:
                raise InvalidArgument(
                    f"image {image_id} has a layer of type {media_type!r}, which is not supported"
                )
            blobs.append(LayerBlob(str(desc["digest"]), int(desc.get("size") or 0), media_type, diff_id))
        rec = _Record(
            manifest=manifest,
            image_id=image_id,
            config=ImageConfig.from_docker(config_doc.get("config")),
            created=str(config_doc.get("created") or ""),
            layer_blobs=tuple(blobs),
        )
        self._records[manifest_digest] = rec
        return rec

    def _config_doc(self, config_digest: str, staged: dict[str, Path] | None = None) -> dict[str, Any]:
        return parse_json(
            self._blob_file(config_digest, staged).read_bytes(), f"image config {config_digest}"
        )

    def _blob_path(self, digest: str) -> Path:
        return self._blobs / digest.removeprefix("sha256:")

    def _blob_file(self, digest: str, staged: dict[str, Path] | None) -> Path:
        if staged and digest in staged:
            return staged[digest]
        return self._blob_path(digest)

    def _layer_dir(self, diff_id: str) -> Path:
        return self._layers / diff_id.removeprefix("sha256:")

    # ---- registry -------------------------------------------------------------------------------

    def _registry(self, ref: Reference) -> str:
        if ref.registry:
            return ref.registry
        if self.default_registry:
            return self.default_registry
        raise invalid("image", str(ref), "it names no registry and the agent has no default registry")

    def pull(self, ref: str, progress: Progress | None = None) -> ImageInfo:
        """Fetch `ref` (by tag or digest); layers already here are neither downloaded nor unpacked."""
        started = time.monotonic()
        downloaded = [0]  # bytes of the blobs fetched in full (a failed pull may count some too)
        ok = False
        try:
            info = self._pull(ref, progress, downloaded)
            ok = True
            return info
        finally:
            if self.on_pull is not None:
                self.on_pull(time.monotonic() - started, downloaded[0], ok)

    def _pull(self, ref: str, progress: Progress | None, downloaded: builtins.list[int]) -> ImageInfo:
        r = parse_reference(ref)
        host = self._registry(r)
        with self._lock, RegistryClient(host) as client, self._staging() as stage:
            named, manifest = client.resolve(r.repository, r.remote_ref)
            staged = {manifest.digest: self._stage_bytes(stage, manifest.raw, manifest.digest)}
            config_desc, _ = parse_manifest(manifest.doc, manifest.digest)
            downloaded[0] += self._fetch(client, r, str(config_desc["digest"]), stage, staged)
            # The record needs only the manifest and config; the layers it names come next.
            rec = self._record(manifest.digest, staged)
            self._records.pop(manifest.digest, None)  # cached again only once committed
            statuses = []
            for blob in rec.layer_blobs:
                fetched = self._fetch(client, r, blob.digest, stage, staged)
                downloaded[0] += fetched
                present = not fetched and self._layer_dir(blob.diff_id).exists()
                statuses.append((blob.diff_id, "Already exists" if present else "Pull complete"))
            tags = [r.local] if r.digest is None else []
            image = self._ingest(stage, staged, manifest.digest, [*tags, f"{r.name}@{named}"])
        for diff_id, status in statuses:
            log.info("pull %s: layer %s: %s", ref, diff_id, status)
            if progress:
                progress(diff_id, status)
        return self.info(image)

    def _fetch(
        self, client: RegistryClient, r: Reference, digest: str, stage: Path, staged: dict[str, Path]
    ) -> int:
        """Download a blob into staging unless the store (or staging) has it: the bytes downloaded."""
        if digest in staged or self._blob_path(digest).exists():
            return 0
        dest = stage / digest.removeprefix("sha256:")
        size = client.get_blob(r.repository, digest, dest)
        staged[digest] = dest
        return size

    def push(self, ref: str, progress: Progress | None = None) -> ImageInfo:
        """Upload `ref` (a local name:tag) to its registry; blobs the registry has are skipped."""
        r = parse_reference(ref)
        if r.digest is not None or r.tag is None:
            raise invalid("image", ref, "push needs a name:tag, not a digest")
        host = self._registry(r)
        with self._lock:
            image_id, _ = self._find(ref)
            image = self._image(image_id)
            rec = self._record(image.manifest_digest)
            with RegistryClient(host) as client:
                for digest in [image.id, *(b.digest for b in image.layer_blobs)]:
                    exists = client.has_blob(r.repository, digest)
                    if not exists:
                        client.put_blob(r.repository, digest, self._blob_path(digest))
                    if digest != image.id and progress:
                        diff_id = next(b.diff_id for b in image.layer_blobs if b.digest == digest)
                        progress(diff_id, "Layer already exists" if exists else "Pushed")
                client.put_manifest(r.repository, r.tag, rec.manifest)
            self._refs[f"{r.name}@{rec.manifest.digest}"] = rec.manifest.digest
            self._save_state()
            return self.info(self._image(image_id))

    # ---- local changes --------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> ImageInfo:
        t = parse_reference(target, "target")
        if t.digest is not None:
            raise invalid("target", target, "a tag cannot contain a digest")
        with self._lock:
            image_id, _ = self._find(source)
            self._refs[t.local] = self._images[image_id]
            self._save_state()
            return self.info(self._image(image_id))

    def remove(self, ref: str, force: bool, in_use: Callable[[str], bool]) -> builtins.list[str]:
        """`docker rmi`: untag, and delete the image (then unused blobs and layers) with its last tag."""
        with self._lock:
            image_id, key = self._find(ref)
            image = self._image(image_id)
            untag_only = key is not None and (
                ("@" in key and bool(image.repo_tags)) or ("@" not in key and len(image.repo_tags) > 1)
            )
            if untag_only:
                assert key is not None
                del self._refs[key]
                self._save_state()
                return [f"Untagged: {key}"]
            if key is None and len(image.repo_tags) > 1 and not force:
                raise Conflict(
                    f"image {ref} is referenced by {len(image.repo_tags)} tags; "
                    "remove them by name or use force"
                )
            if in_use(image_id):
                raise Conflict(f"image {ref} is in use by a container")
            lines = [f"Untagged: {k}" for k in (*image.repo_tags, *image.repo_digests)]
            for k in (*image.repo_tags, *image.repo_digests):
                del self._refs[k]
            del self._images[image_id]
            self._save_state()
            lines.append(f"Deleted: {image_id}")
            self._gc()
            return lines

    def _gc(self) -> None:
        """Delete blobs and layers that no remaining image references."""
        manifests = set(self._refs.values()) | set(self._images.values())
        keep_blobs = set(manifests)
        keep_layers: set[str] = set()
        for m in manifests:
            rec = self._record(m)
            keep_blobs.add(rec.image_id)
            keep_blobs.update(b.digest for b in rec.layer_blobs)
            keep_layers.update(b.diff_id.removeprefix("sha256:") for b in rec.layer_blobs)
        keep_hex = {d.removeprefix("sha256:") for d in keep_blobs}
        for path in self._blobs.iterdir():
            if path.name not in keep_hex:
                path.unlink()
                self._records.pop(f"sha256:{path.name}", None)
        for path in self._layers.iterdir():
            if path.name not in keep_layers:
                log.info("removing unused layer %s", path.name)
                shutil.rmtree(path)

    def import_rootfs(
        self, source: Path, ref: str | None = None, config: ImageConfig | None = None
    ) -> ImageInfo:
        """`docker import`: a one-layer image from a directory or a (gzip) tar of a root filesystem."""
        r = parse_reference(ref) if ref else None
        if r is not None and r.digest is not None:
            raise invalid("image", ref, "a tag cannot contain a digest")
        if not (source.is_dir() or source.is_file()):
            raise invalid("import source", str(source), "must be a directory or a tar archive")
        with self._lock, self._staging() as stage:
            layer_file = stage / "layer"
            if source.is_dir():
                layer = dir_to_layer(source, layer_file)
            else:
                layer = compress_tar(source, layer_file)
            created = now_rfc3339()
            history = [{"created": created, "created_by": "shoal import"}]
            config_doc = build_image_config(config or ImageConfig(), [layer[1]], created, history)
            try:
                image = self._create(stage, config_doc, [], (layer, layer_file), [r.local] if r else [])
            except IntegrityError as exc:
                raise invalid("import source", str(source), str(exc)) from None
        return self.info(image)

    def commit(self, upper_dir: Path, base: Image, ref: str | None = None) -> ImageInfo:
        """A new image: base's layers plus one made from a container's overlay upperdir."""
        r = parse_reference(ref) if ref else None
        if r is not None and r.digest is not None:
            raise invalid("image", ref, "a tag cannot contain a digest")
        with self._lock, self._staging() as stage:
            layer_file = stage / "layer"
            layer = upper_to_layer(upper_dir, layer_file)
            created = now_rfc3339()
            config_doc = self._config_doc(base.id)
            config_doc["created"] = created
            config_doc["rootfs"] = {"type": "layers", "diff_ids": [*base.layers, layer[1]]}
            config_doc["history"] = [
                *(config_doc.get("history") or []),
                {"created": created, "created_by": "shoal commit"},
            ]
            image = self._create(
                stage, config_doc, list(base.layer_blobs), (layer, layer_file), [r.local] if r else []
            )
        return self.info(image)

    def _create(
        self,
        stage: Path,
        config_doc: dict[str, Any],
        base_layers: builtins.list[LayerBlob],
        new_layer: tuple[tuple[str, str, int], Path],
        refs: builtins.list[str],
    ) -> Image:
        """Write config and manifest for base_layers + new_layer and ingest them."""
        (digest, diff_id, size), layer_file = new_layer
        config_raw = canonical_json(config_doc)
        config_digest = self._digest_of(config_raw)
        staged = {config_digest: self._stage_bytes(stage, config_raw, config_digest), digest: layer_file}
        # Docker's gzip media type means the same bytes; OCI manifests should name OCI types.
        layers = [
            LayerBlob(b.digest, b.size, _GZIP_LAYERS.get(b.media_type, b.media_type), b.diff_id)
            for b in base_layers
        ]
        layers.append(LayerBlob(digest, size, OCI_LAYER_GZIP, diff_id))
        manifest_raw = canonical_json(build_manifest(config_digest, len(config_raw), layers))
        manifest_digest = self._digest_of(manifest_raw)
        staged[manifest_digest] = self._stage_bytes(stage, manifest_raw, manifest_digest)
        return self._ingest(stage, staged, manifest_digest, refs)

    # ---- archives -------------------------------------------------------------------------------

    def save(self, refs: builtins.list[str], out_path: Path) -> None:
        """Write the images to an OCI image-layout tar (with Docker's manifest.json too)."""
        with self._lock:
            images: dict[str, tuple[str, builtins.list[str]]] = {}
            for ref in refs:
                image_id, key = self._find(ref)
                manifest_digest, names = images.setdefault(image_id, (self._images[image_id], []))
                if key is not None and "@" not in key and key not in names:
                    names.append(key)
            saved = []
            for image_id, (manifest_digest, names) in images.items():
                rec = self._record(manifest_digest)
                layer_digests = tuple(b.digest for b in rec.layer_blobs)
                saved.append(
                    SavedImage(
                        manifest=rec.manifest,
                        blobs=(image_id, *layer_digests),
                        config_digest=image_id,
                        layer_digests=layer_digests,
                        names=tuple(names),
                    )
                )
            tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.tmp")
            try:
                write_archive(tmp, saved, self._blob_path)
                os.replace(tmp, out_path)
            finally:
                tmp.unlink(missing_ok=True)

    def load(self, archive_path: Path) -> builtins.list[ImageInfo]:
        """Load what `save` (or Docker 25+'s `docker save`) writes; every blob digest is checked."""
        with self._lock, self._staging() as stage:
            reader = ArchiveReader(archive_path, stage)
            try:
                loaded = reader.read_images()
                staged = dict(reader.staged)
                images = [self._ingest(stage, staged, img.manifest.digest, list(img.names)) for img in loaded]
            finally:
                reader.close()
        return [self.info(i) for i in images]

    # ---- committing content ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        stage = self._tmp / uuid.uuid4().hex
        stage.mkdir()
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    @staticmethod
    def _digest_of(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    @staticmethod
    def _stage_bytes(stage: Path, data: bytes, digest: str) -> Path:
        path = stage / digest.removeprefix("sha256:")
        path.write_bytes(data)
        return path

    def _ingest(
        self, stage: Path, staged: dict[str, Path], manifest_digest: str, refs: builtins.list[str]
    ) -> Image:
        """Unpack missing layers in staging, then rename blobs and layers in and record the refs.

        Every staged blob was verified against its digest before it got here; unpacking checks
        each layer's diff_id, so a config that lies about its layers is refused too.
        """
        rec = self._record(manifest_digest, staged)
        self._records.pop(manifest_digest, None)  # cached again only once committed
        new_layers: dict[str, Path] = {}
        for blob in rec.layer_blobs:
            if self._layer_dir(blob.diff_id).exists() or blob.diff_id in new_layers:
                continue
            dest = stage / f"layer-{blob.diff_id.removeprefix('sha256:')}"
            got = unpack_layer(self._blob_file(blob.digest, staged), dest)
            if got != blob.diff_id:
                raise IntegrityError(f"layer {blob.digest} unpacks to {got}, not its diff_id {blob.diff_id}")
            new_layers[blob.diff_id] = dest
        needed = [manifest_digest, rec.image_id, *(b.digest for b in rec.layer_blobs)]
        for digest in needed:
            if digest in staged:
                os.replace(staged.pop(digest), self._blob_path(digest))
            elif not self._blob_path(digest).exists():
                raise IntegrityError(f"image {rec.image_id} needs blob {digest}, which is missing")
        for diff_id, path in new_layers.items():
            os.replace(path, self._layer_dir(diff_id))
        self._records[manifest_digest] = rec
        self._images[rec.image_id] = manifest_digest
        for ref in refs:
            self._refs[ref] = manifest_digest
        self._save_state()
        return self._image(rec.image_id)

    def _save_state(self) -> None:
        """Atomic replace: readers (and a crash) see the old or the new file, never half of one."""
        tmp = self._tmp / f"state-{uuid.uuid4().hex}.json"
        with tmp.open("w") as f:
            json.dump({"refs": self._refs, "images": self._images}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._state_file)


__all__ = ["Image", "ImageConfig", "ImageStore", "Progress"]
