"""Layer tars <-> overlay directories: whiteouts, metadata, path safety, docker-diff changes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from agent.errors import IntegrityError, InvalidArgument
from agent.images.layers import (
    OPAQUE_XATTR,
    dir_to_layer,
    unpack_layer,
    upper_changes,
    upper_to_layer,
)

Entry = tuple[str, str, dict[str, object]]  # (kind, name, attributes)


def make_tar(path: Path, entries: list[Entry], gzipped: bool = False) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, attrs in entries:
            info = tarfile.TarInfo(name)
            info.mode = int(attrs.get("mode", 0o644))  # type: ignore[call-overload]
            info.uid = int(attrs.get("uid", 0))  # type: ignore[call-overload]
            info.gid = int(attrs.get("gid", 0))  # type: ignore[call-overload]
            info.mtime = int(attrs.get("mtime", 1_600_000_000))  # type: ignore[call-overload]
            data = b""
            if kind == "file":
                data = bytes(attrs.get("data", b""))  # type: ignore[call-overload]
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = str(attrs["target"])
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = str(attrs["target"])
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    return path


def is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


@pytest.mark.parametrize("gzipped", [False, True])
def test_unpack_preserves_metadata(tmp_path: Path, gzipped: bool) -> None:
    blob = make_tar(
        tmp_path / "layer",
        [
            ("dir", "./etc", {"mode": 0o750, "uid": 12, "gid": 34, "mtime": 1_500_000_000}),
            ("file", "./etc/passwd", {"data": b"root\n", "mode": 0o640, "uid": 5, "gid": 6}),
            ("file", "bin/su", {"data": b"x", "mode": 0o4755}),
            ("symlink", "bin/sh", {"target": "/bin/busybox"}),
            ("hardlink", "etc/passwd-", {"target": "etc/passwd"}),
            ("chr", "dev/null", {"mode": 0o666}),
            ("fifo", "run/fifo", {}),
        ],
        gzipped,
    )
    dest = tmp_path / "out"
    diff_id = unpack_layer(blob, dest)
    raw = gzip.decompress(blob.read_bytes()) if gzipped else blob.read_bytes()
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    st = os.stat(dest / "etc")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 12, 34, 1_500_000_000)
    st = os.stat(dest / "etc/passwd")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o640, 5, 6, 1_600_000_000)
    assert (dest / "etc/passwd").read_bytes() == b"root\n"
    assert stat.S_IMODE(os.stat(dest / "bin/su").st_mode) == 0o4755
    assert os.readlink(dest / "bin/sh") == "/bin/busybox"
    assert os.stat(dest / "etc/passwd-").st_ino == st.st_ino
    assert os.lstat(dest / "dev/null").st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(dest / "run/fifo").st_mode)


def test_whiteouts_round_trip(tmp_path: Path) -> None:
    """Unpack a layer with .wh. entries, then upper_to_layer gives the same OCI entries back."""
    blob = make_tar(
        tmp_path / "layer.tar",
        [
            ("dir", "etc", {"mode": 0o755}),
            ("file", "etc/.wh.shadow", {"mode": 0}),
            ("dir", "var", {"mode": 0o755}),
            ("dir", "var/cache", {"mode": 0o755}),
            ("file", "var/cache/.wh..wh..opq", {"mode": 0}),
            ("file", "var/cache/new", {"data": b"n"}),
        ],
    )
    upper = tmp_path / "upper"
    unpack_layer(blob, upper)
    assert is_whiteout(upper / "etc/shadow")
    assert not (upper / "etc/.wh.shadow").exists()
    assert is_opaque(upper / "var/cache")
    assert not is_opaque(upper / "var")
    assert not (upper / "var/cache/.wh..wh..opq").exists()

    digest, diff_id, size = upper_to_layer(upper, tmp_path / "back.tar.gz")
    assert size == (tmp_path / "back.tar.gz").stat().st_size
    with tarfile.open(tmp_path / "back.tar.gz") as tar:
        names = {m.name: m for m in tar.getmembers()}
    assert set(names) == {
        "etc",
        "etc/.wh.shadow",
        "var",
        "var/cache",
        "var/cache/.wh..wh..opq",
        "var/cache/new",
    }
    assert names["etc/.wh.shadow"].isreg() and names["etc/.wh.shadow"].size == 0

    # And unpacking that again gives the same overlay directory.
    again = tmp_path / "again"
    assert unpack_layer(tmp_path / "back.tar.gz", again) == diff_id
    assert is_whiteout(again / "etc/shadow") and is_opaque(again / "var/cache")
    assert (again / "var/cache/new").read_bytes() == b"n"
    assert digest.startswith("sha256:")


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    blob = make_tar(
        tmp_path / "l",
        [
            ("file", "a", {"data": b"1"}),
            ("file", "a", {"data": b"2"}),
            ("dir", "d", {}),
            ("file", "d/x", {"data": b"x"}),
            ("symlink", "d", {"target": "a"}),
        ],
    )
    dest = tmp_path / "out"
    unpack_layer(blob, dest)
    assert (dest / "a").read_bytes() == b"2"
    assert os.readlink(dest / "d") == "a"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("file", "/etc/passwd", {"data": b"x"})], "absolute"),
        ([("file", "../escape", {"data": b"x"})], "'..'"),
        ([("file", "a/../../escape", {"data": b"x"})], "'..'"),
        (
            [("symlink", "link", {"target": "/tmp"}), ("file", "link/owned", {"data": b"x"})],
            "not a directory",
        ),
        ([("symlink", "link", {"target": "../.."}), ("dir", "link/sub", {})], "not a directory"),
        ([("hardlink", "h", {"target": "../../etc/passwd"})], "'..'"),
        ([("hardlink", "h", {"target": "/etc/passwd"})], "absolute"),
        ([("hardlink", "h", {"target": "missing"})], "missing"),
        (
            [("symlink", "l", {"target": "/etc"}), ("hardlink", "h", {"target": "l/passwd"})],
            "not a directory",
        ),
        ([("symlink", "l", {"target": "/etc"}), ("file", "l/.wh.passwd", {})], "not a directory"),
    ],
)
def test_unsafe_paths_are_refused(tmp_path: Path, entries: list[Entry], message: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    blob = make_tar(tmp_path / "evil.tar", entries)
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(IntegrityError, match=message) as err:
        unpack_layer(blob, dest)
    assert "\n" not in str(err.value)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "a" / "escape").exists() and not (tmp_path / "escape").exists()


def test_corrupt_and_unsupported_layers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"not a tar at all" * 100)[:50])
    with pytest.raises(IntegrityError, match="not a valid tar"):
        unpack_layer(bad, tmp_path / "o1")
    zstd = tmp_path / "z"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 100)
    with pytest.raises(InvalidArgument, match="zstd"):
        unpack_layer(zstd, tmp_path / "o2")


def test_dir_to_layer_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "rootfs"
    (src / "bin").mkdir(parents=True)
    (src / "bin/tool").write_bytes(b"#!/bin/sh\n")
    (src / "bin/tool").chmod(0o755)
    os.link(src / "bin/tool", src / "bin/tool2")
    (src / "bin/sh").symlink_to("tool")
    os.utime(src / "bin/tool", (1_000_000, 1_000_000))
    first = dir_to_layer(src, tmp_path / "one.tgz")
    second = dir_to_layer(src, tmp_path / "two.tgz")
    assert first == second
    out = tmp_path / "out"
    assert unpack_layer(tmp_path / "one.tgz", out) == first[1]
    assert os.stat(out / "bin/tool").st_ino == os.stat(out / "bin/tool2").st_ino
    assert os.stat(out / "bin/tool").st_mtime == 1_000_000
    assert stat.S_IMODE(os.stat(out / "bin/tool").st_mode) == 0o755
    assert os.readlink(out / "bin/sh") == "tool"


def test_upper_changes(tmp_path: Path) -> None:
    base, mid, upper = tmp_path / "base", tmp_path / "mid", tmp_path / "upper"
    for d in ("etc", "tmp", "var/lib/old", "opt/keep"):
        (base / d).mkdir(parents=True)
    (base / "etc/hosts").write_text("h")
    (base / "etc/gone-in-mid").write_text("g")
    (base / "opt/keep/file").write_text("f")
    (mid / "etc").mkdir(parents=True)
    os.mknod(mid / "etc/gone-in-mid", stat.S_IFCHR, os.makedev(0, 0))
    # upper: changed file, new file in existing dir, deleted file, new dir tree, a path the
    # middle layer deleted (so it is new again), and an opaque directory.
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/hosts").write_text("changed")
    (upper / "etc/gone-in-mid").write_text("again")
    (upper / "tmp").mkdir()
    (upper / "tmp/x").write_text("x")
    os.mknod(upper / "etc/passwd-gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "srv/www").mkdir(parents=True)
    (upper / "opt/keep").mkdir(parents=True)
    os.setxattr(upper / "opt/keep", OPAQUE_XATTR, b"y")
    (upper / "opt/keep/file").write_text("new")
    changes = [(c.kind, c.path) for c in upper_changes(upper, [base, mid])]
    assert changes == [
        ("C", "/etc"),
        ("A", "/etc/gone-in-mid"),
        ("C", "/etc/hosts"),
        ("D", "/etc/passwd-gone"),
        ("C", "/opt"),
        ("C", "/opt/keep"),
        ("A", "/opt/keep/file"),
        ("A", "/srv"),
        ("A", "/srv/www"),
        ("C", "/tmp"),
        ("A", "/tmp/x"),
    ]
    assert upper_changes(tmp_path / "base" / "tmp", []) == []
