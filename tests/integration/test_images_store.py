"""Local image store operations: import, commit, tag, ls, rm + GC, save/load, OCI interop."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from agent.errors import Conflict, IntegrityError, InvalidArgument, NotFound
from agent.images.busybox import make_busybox_rootfs
from agent.images.image import ImageConfig
from agent.images.store import ImageStore
from tests.support.registry import import_busybox


def never(_image_id: str) -> bool:
    return False


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


def test_import_dir_and_tarball(store: ImageStore, tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    from_dir = store.import_rootfs(rootfs, "fromdir:v1")
    assert from_dir.repo_tags == ["fromdir:v1"] and len(from_dir.layers) == 1
    image = store.get("fromdir:v1")
    assert image.config.cmd is None and image.config.entrypoint is None
    (layer,) = store.layer_dirs(image)
    assert os.readlink(layer / "bin/ls") == "busybox"
    assert (layer / "etc/passwd").read_text().startswith("root:x:0:0")
    assert os.stat(layer / "tmp").st_mode & 0o7777 == 0o1777

    for name, mode in (("rootfs.tar", "w"), ("rootfs.tar.gz", "w:gz")):
        archive = tmp_path / name
        with tarfile.open(archive, mode) as tar:  # type: ignore[call-overload]
            tar.add(rootfs, arcname=".")
        info = store.import_rootfs(
            archive, None, ImageConfig(entrypoint=("/bin/sh", "-c"), working_dir="/tmp")
        )
        assert info.dangling and info.repo_tags == []
        got = store.get(info.id)
        assert got.config.entrypoint == ("/bin/sh", "-c") and got.config.working_dir == "/tmp"
        assert (store.layer_dirs(got)[0] / "bin/busybox").stat().st_size == (
            rootfs / "bin/busybox"
        ).stat().st_size

    bad = tmp_path / "notatar"
    bad.write_bytes(b"hello" * 1000)
    with pytest.raises(InvalidArgument, match="invalid import source") as err:
        store.import_rootfs(bad, "bad")
    assert "\n" not in str(err.value)
    with pytest.raises(InvalidArgument, match="must be a directory or a tar"):
        store.import_rootfs(tmp_path / "missing", "bad")
    assert os.listdir(store.root / "tmp") == []


def test_get_by_name_id_prefix_and_digest(store: ImageStore, tmp_path: Path) -> None:
    info = import_busybox(store, tmp_path, "busybox")
    image = store.get("busybox")
    assert store.get("busybox:latest") == image
    assert store.get(info.id) == image
    assert store.get(info.id[7:19]) == image
    assert store.get(info.id[:11]) == image  # sha256:abcd
    for missing in ("nope", "busybox:other", "sha256:" + "0" * 64, "Not A Ref!", "abc"):
        with pytest.raises(NotFound, match=f"^No such image: {missing}$"):
            store.get(missing)


def test_tag_list_and_dangling(store: ImageStore, tmp_path: Path) -> None:
    first = import_busybox(store, tmp_path / "a", "busybox")
    tagged = store.tag("busybox", "127.0.0.1:5000/mine/busybox:v1")
    assert tagged.repo_tags == ["127.0.0.1:5000/mine/busybox:v1", "busybox:latest"]
    with pytest.raises(InvalidArgument, match=r"^invalid target 'Bad:tag'"):
        store.tag("busybox", "Bad:tag")
    second = import_busybox(store, tmp_path / "b", "busybox")  # takes the tag over
    listed = {i.id: i for i in store.list()}
    assert listed[first.id].repo_tags == ["127.0.0.1:5000/mine/busybox:v1"]
    assert listed[second.id].repo_tags == ["busybox:latest"]
    third = import_busybox(store, tmp_path / "c", "busybox")
    assert {i.id: i.dangling for i in store.list()} == {first.id: False, second.id: True, third.id: False}
    # Removing the last tag deletes the image (as Docker), so only the dangling one remains untagged.
    assert (
        store.remove("127.0.0.1:5000/mine/busybox:v1", force=False, in_use=never)[-1]
        == f"Deleted: {first.id}"
    )
    assert {i.id: i.dangling for i in store.list()} == {second.id: True, third.id: False}
    assert store.list()[0].id == third.id  # newest first
    # The state survives a restart of the agent.
    reopened = ImageStore(store.root)
    assert [i.model_dump() for i in reopened.list()] == [i.model_dump() for i in store.list()]


def test_remove_untags_refuses_in_use_and_collects_garbage(store: ImageStore, tmp_path: Path) -> None:
    base = import_busybox(store, tmp_path, "busybox")
    upper = tmp_path / "upper"
    (upper / "srv").mkdir(parents=True)
    (upper / "srv/index.html").write_text("hi")
    child = store.commit(upper, store.get("busybox"), "web:v1")
    assert child.layers[0] == base.layers[0] and len(child.layers) == 2
    store.tag("web:v1", "web:v2")

    assert store.remove("web:v1", force=False, in_use=lambda _i: True) == ["Untagged: web:v1"]
    with pytest.raises(Conflict, match=r"^image web:v2 is in use by a container$"):
        store.remove("web:v2", force=False, in_use=lambda image_id: image_id == child.id)
    assert store.get("web:v2").id == child.id

    child_layer = store.root / "layers/sha256" / child.layers[1][7:]
    base_layer = store.root / "layers/sha256" / base.layers[0][7:]
    assert child_layer.is_dir()
    assert store.remove("web:v2", force=False, in_use=never) == ["Untagged: web:v2", f"Deleted: {child.id}"]
    assert not child_layer.exists() and base_layer.is_dir()
    blobs = set(os.listdir(store.root / "blobs/sha256"))
    assert child.id[7:] not in blobs and base.id[7:] in blobs

    store.tag("busybox", "other")
    with pytest.raises(Conflict, match="referenced by 2 tags"):
        store.remove(base.id, force=False, in_use=never)
    lines = store.remove(base.id[7:19], force=True, in_use=never)
    assert lines == ["Untagged: busybox:latest", "Untagged: other:latest", f"Deleted: {base.id}"]
    assert store.list() == []
    assert os.listdir(store.root / "blobs/sha256") == []
    assert os.listdir(store.root / "layers/sha256") == []


def test_commit_records_whiteouts_and_inherits_config(store: ImageStore, tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    config = ImageConfig(cmd=("sh",), labels={"a": "b"}, exposed_ports=("80/tcp",), volumes=("/data",))
    base = store.get(store.import_rootfs(rootfs, "base", config).id)
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc/group", 0o020000, os.makedev(0, 0))
    info = store.commit(upper, base, None)
    assert info.dangling
    image = store.get(info.id)
    assert image.config == config
    top = store.layer_dirs(image)[1]
    st = os.lstat(top / "etc/group")
    assert st.st_rdev == 0 and (st.st_mode & 0o170000) == 0o020000


def test_save_load_round_trip(store: ImageStore, tmp_path: Path) -> None:
    base = import_busybox(store, tmp_path, "busybox:1")
    upper = tmp_path / "upper"
    (upper / "x").mkdir(parents=True)
    child = store.commit(upper, store.get("busybox:1"), "127.0.0.1:5000/child:v2")
    archive = tmp_path / "images.tar"
    store.save(["busybox:1", "127.0.0.1:5000/child:v2"], archive)

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        docker = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    annotations = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"])
    assert annotations == ["1", "v2"]
    assert sorted(d["RepoTags"][0] for d in docker) == ["127.0.0.1:5000/child:v2", "busybox:1"]
    for entry in docker:
        assert all(p in names for p in [entry["Config"], *entry["Layers"]])

    fresh = ImageStore(tmp_path / "fresh")
    loaded = {i.id: i for i in fresh.load(archive)}
    assert set(loaded) == {base.id, child.id}
    assert loaded[child.id].repo_tags == ["127.0.0.1:5000/child:v2"]
    assert loaded[child.id].layers == child.layers
    assert fresh.get("busybox:1").id == base.id
    # The shared base layer was unpacked once.
    assert len(os.listdir(tmp_path / "fresh/layers/sha256")) == 2


def test_load_refuses_a_tampered_archive(store: ImageStore, tmp_path: Path) -> None:
    info = import_busybox(store, tmp_path, "busybox")
    archive = tmp_path / "images.tar"
    store.save(["busybox"], archive)
    layer = store.get(info.id).layer_blobs[0].digest
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(archive) as src, tarfile.open(tampered, "w") as dst:
        for member in src.getmembers():
            f = src.extractfile(member)
            data = f.read() if f else None
            if member.name == f"blobs/sha256/{layer[7:]}" and data is not None:
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    fresh = ImageStore(tmp_path / "fresh")
    with pytest.raises(IntegrityError, match=f"blob {layer} in archive .* does not match its digest"):
        fresh.load(tampered)
    assert fresh.list() == []
    assert all(os.listdir(tmp_path / "fresh" / d) == [] for d in ("blobs/sha256", "layers/sha256", "tmp"))
    with pytest.raises(InvalidArgument, match=r"no index\.json"):
        fresh.load(_tar_with(tmp_path / "empty.tar", {"hello": b"x"}))


def _tar_with(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_skopeo_reads_our_archive_and_we_load_skopeos(store: ImageStore, tmp_path: Path) -> None:
    info = import_busybox(store, tmp_path, "busybox")
    archive = tmp_path / "busybox.tar"
    store.save(["busybox"], archive)
    layout = tmp_path / "layout"
    subprocess.run(
        ["skopeo", "copy", f"oci-archive:{archive}", f"oci:{layout}:copied"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [
            "skopeo",
            "copy",
            f"oci:{layout}:copied",
            f"oci-archive:{tmp_path / 'back.tar'}:127.0.0.1:5000/back:v1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # skopeo keeps config and layers, so the image ID survives the trip through its format.
    (loaded,) = ImageStore(tmp_path / "fresh").load(tmp_path / "back.tar")
    assert loaded.id == info.id
    assert loaded.repo_tags == ["127.0.0.1:5000/back:v1"]
    if shutil.which("umoci"):
        subprocess.run(
            ["umoci", "unpack", "--rootless", "--image", f"{layout}:copied", str(tmp_path / "bundle")],
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert (tmp_path / "bundle/rootfs/bin/busybox").exists()
