"""The image store against a real docker-registry on 127.0.0.1: push, pull, sharing, failures."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import IntegrityError, InvalidArgument, NotFound, Unavailable
from agent.images.image import ImageConfig
from agent.images.store import ImageStore
from tests.support.registry import Registry, import_busybox, push_busybox


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "registry") as reg:
        yield reg


def store_contents(store_root: Path) -> dict[str, list[str]]:
    return {d: sorted(os.listdir(store_root / d)) for d in ("blobs/sha256", "layers/sha256", "tmp")}


def push_two_images(registry: Registry, tmp_path: Path) -> tuple[str, str]:
    """busybox, and busybox plus one layer (as `extra`), pushed; returns their refs."""
    store = ImageStore(tmp_path / "builder", default_registry=registry.host)
    base_info = import_busybox(store, tmp_path, "busybox:latest")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/motd").write_text("hello\n")
    store.commit(upper, store.get(base_info.id), "extra:latest")
    store.push("busybox:latest")
    store.push("extra:latest")
    return f"{registry.host}/busybox:latest", f"{registry.host}/extra:latest"


def test_push_pull_round_trip_by_tag_and_digest(registry: Registry, tmp_path: Path) -> None:
    pushed = push_busybox(registry, tmp_path)
    assert pushed.repo_digests and pushed.repo_digests[0].startswith(f"{registry.host}/busybox@sha256:")
    digest = pushed.repo_digests[0].split("@", 1)[1]

    store = ImageStore(tmp_path / "node")
    info = store.pull(f"{registry.host}/busybox")
    assert info.id == pushed.id
    assert info.layers == pushed.layers
    assert info.repo_tags == [f"{registry.host}/busybox:latest"]
    assert info.repo_digests == [f"{registry.host}/busybox@{digest}"]
    image = store.get(f"{registry.host}/busybox@{digest}")
    assert image.config == ImageConfig(cmd=("sh",), env=("PATH=/bin",))
    (layer,) = store.layer_dirs(image)
    assert os.access(layer / "bin/busybox", os.X_OK)
    assert os.readlink(layer / "bin/sh") == "busybox"

    by_digest = ImageStore(tmp_path / "node2").pull(f"{registry.host}/busybox@{digest}")
    assert by_digest.id == pushed.id
    assert by_digest.repo_tags == [] and by_digest.repo_digests == [f"{registry.host}/busybox@{digest}"]


def test_default_registry(registry: Registry, tmp_path: Path) -> None:
    push_busybox(registry, tmp_path)
    store = ImageStore(tmp_path / "node", default_registry=registry.host)
    info = store.pull("busybox")
    assert info.repo_tags == ["busybox:latest"]
    assert store.get("busybox").id == info.id
    with pytest.raises(InvalidArgument, match="no default registry") as err:
        ImageStore(tmp_path / "other").pull("busybox")
    assert "\n" not in str(err.value)


def test_missing_image_is_not_found(registry: Registry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "node")
    with pytest.raises(NotFound, match=f"not found in registry {registry.host}"):
        store.pull(f"{registry.host}/nothing:here")
    assert store_contents(tmp_path / "node") == {"blobs/sha256": [], "layers/sha256": [], "tmp": []}


def test_shared_base_layer_is_fetched_once(registry: Registry, tmp_path: Path) -> None:
    busybox, extra = push_two_images(registry, tmp_path)
    store = ImageStore(tmp_path / "node")
    events: list[tuple[str, str]] = []
    base = store.pull(busybox, lambda layer, status: events.append((layer, status)))
    (base_layer,) = base.layers
    assert events == [(base_layer, "Pull complete")]
    base_dir = store.layer_dirs(store.get(base.id))[0]
    base_blob = tmp_path / "node/blobs/sha256" / store.get(base.id).layer_blobs[0].digest[7:]
    before = (os.stat(base_dir), os.stat(base_dir / "bin/busybox"), os.stat(base_blob))

    events.clear()
    info = store.pull(extra, lambda layer, status: events.append((layer, status)))
    assert info.layers[0] == base_layer and len(info.layers) == 2
    assert events == [(base_layer, "Already exists"), (info.layers[1], "Pull complete")]
    after = (os.stat(base_dir), os.stat(base_dir / "bin/busybox"), os.stat(base_blob))
    for old, new in zip(before, after, strict=True):
        assert (old.st_ino, old.st_mtime_ns, old.st_ctime_ns) == (
            new.st_ino,
            new.st_mtime_ns,
            new.st_ctime_ns,
        )
    top = store.layer_dirs(store.get(extra))
    assert [p.name for p in top] == [base_layer[7:], info.layers[1][7:]]
    assert (top[1] / "etc/motd").read_text() == "hello\n"
    assert not (top[1] / "bin").exists()


def test_registry_down_is_unavailable_and_leaves_nothing(registry: Registry, tmp_path: Path) -> None:
    push_busybox(registry, tmp_path)
    registry.stop()
    store = ImageStore(tmp_path / "node")
    with pytest.raises(Unavailable) as err:
        store.pull(f"{registry.host}/busybox")
    message = str(err.value)
    assert message.startswith(f"registry {registry.host} is unreachable: ")
    assert "\n" not in message
    assert store_contents(tmp_path / "node") == {"blobs/sha256": [], "layers/sha256": [], "tmp": []}
    assert store.list() == []


def test_tampered_blob_is_refused_and_nothing_is_stored(registry: Registry, tmp_path: Path) -> None:
    pushed = push_busybox(registry, tmp_path)
    layer_digest = ImageStore(tmp_path / "push-store").get(pushed.id).layer_blobs[0].digest
    data = bytearray(registry.blob_file(layer_digest).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    registry.blob_file(layer_digest).write_bytes(bytes(data))

    store = ImageStore(tmp_path / "node")
    with pytest.raises(IntegrityError, match=f"blob {layer_digest} .* does not match its digest") as err:
        store.pull(f"{registry.host}/busybox")
    assert "\n" not in str(err.value)
    assert store_contents(tmp_path / "node") == {"blobs/sha256": [], "layers/sha256": [], "tmp": []}
    assert store.list() == []
    with pytest.raises(NotFound):
        store.get(f"{registry.host}/busybox")


def test_push_skips_blobs_the_registry_has(registry: Registry, tmp_path: Path) -> None:
    push_busybox(registry, tmp_path)
    store = ImageStore(tmp_path / "push-store")
    events: list[str] = []
    store.tag(f"{registry.host}/busybox", f"{registry.host}/copy:v1")
    store.push(f"{registry.host}/copy:v1", lambda _layer, status: events.append(status))
    # Cross-repository blobs are not shared by distribution without a mount, so pushing to a new
    # repository uploads; pushing the same repository again skips.
    events.clear()
    store.push(f"{registry.host}/copy:v1", lambda _layer, status: events.append(status))
    assert events == ["Layer already exists"]
    with pytest.raises(InvalidArgument, match="push needs a name:tag"):
        store.push(f"{registry.host}/copy@sha256:" + "0" * 64)


def test_skopeo_accepts_what_we_push(registry: Registry, tmp_path: Path) -> None:
    busybox, extra = push_two_images(registry, tmp_path)
    for ref in (busybox, extra):
        out = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        doc = json.loads(out.stdout)
        assert doc["Os"] == "linux" and doc["Env"] == ["PATH=/bin"]
    # And we pull what skopeo pushes (a copy to a new repository, re-encoded by skopeo).
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--format=v2s2",
            f"docker://{extra}",
            f"docker://{registry.host}/byskopeo:v2",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    info = ImageStore(tmp_path / "node").pull(f"{registry.host}/byskopeo:v2")
    assert len(info.layers) == 2


def test_concurrent_pulls_share_the_base_layer(registry: Registry, tmp_path: Path) -> None:
    busybox, extra = push_two_images(registry, tmp_path)
    store = ImageStore(tmp_path / "node")
    errors: list[BaseException] = []

    def pull(ref: str) -> None:
        try:
            store.pull(ref)
            store.list()
        except BaseException as exc:  # reported below: a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=pull, args=(ref,)) for ref in (busybox, extra, busybox, extra)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(store.list()) == 2
    assert len(os.listdir(tmp_path / "node/layers/sha256")) == 2
    assert os.listdir(tmp_path / "node/tmp") == []
