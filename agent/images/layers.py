"""Layer tars <-> directories in overlayfs format, and `docker diff`-style change lists.

Unpacked layers are overlay lowerdirs, so OCI whiteouts become what overlayfs understands:
`.wh.NAME` -> a 0/0 character device NAME, `.wh..wh..opq` -> trusted.overlay.opaque=y.
Layers come from registries and archives, so every path is checked: nothing is written
outside the destination, and never through a symlink the layer itself planted.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO, cast

from agent.errors import IntegrityError, InvalidArgument
from agent.images.digest import HashingReader, HashingWriter
from agent.models import Change

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_PAX_XATTR = "SCHILY.xattr."
_CHUNK = 1 << 20


@contextlib.contextmanager
def open_layer(path: Path) -> Iterator[BinaryIO]:
    """The uncompressed tar stream of a layer file, gzip or plain (told apart by magic, as Docker)."""
    with path.open("rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic.startswith(ZSTD_MAGIC):
            raise InvalidArgument(f"layer {path.name} is zstd-compressed, which is not supported")
        if magic.startswith(GZIP_MAGIC):
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield cast(BinaryIO, gz)
        else:
            yield raw


# ---- unpacking ---------------------------------------------------------------------------------


def unpack_layer(blob: Path, dest: Path) -> str:
    """Unpack `blob` into the (new or empty) directory `dest`; returns the layer's diff_id.

    Raises IntegrityError for unsafe or corrupt content; `dest` is then left for the caller
    to remove (it is always a staging directory).
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with open_layer(blob) as stream:
            reader = HashingReader(stream)
            with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as tar:
                _Unpacker(dest, tar).run()
            reader.drain()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise IntegrityError(f"layer {blob.name} is not a valid tar archive: {_one_line(exc)}") from None
    return reader.digest


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Unpacker:
    def __init__(self, dest: Path, tar: tarfile.TarFile) -> None:
        self.dest = dest
        self.tar = tar
        self.real_dirs: set[Path] = {dest}
        """Directories this unpack created or checked: not symlinks, so safe to write into."""
        self.dir_meta: dict[Path, tarfile.TarInfo] = {}

    def run(self) -> None:
        for member in self.tar:
            self._extract(member)
        # Directory times and modes last: creating entries inside changes the mtime, and a
        # read-only mode would stop us writing into them.
        for path in sorted(self.dir_meta, key=lambda p: len(p.parts), reverse=True):
            self._set_meta(path, self.dir_meta[path])

    def _parts(self, name: str) -> tuple[str, ...]:
        if name.startswith("/"):
            raise IntegrityError(f"layer entry {name!r} is an absolute path")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise IntegrityError(f"layer entry {name!r} escapes the layer directory with '..'")
        return parts

    def _parent(self, parts: tuple[str, ...], name: str, create: bool = True) -> Path:
        """The real directory that will hold `parts[-1]`, checked component by component."""
        cur = self.dest
        for comp in parts[:-1]:
            cur = cur / comp
            if cur in self.real_dirs:
                continue
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                if not create:
                    raise IntegrityError(f"layer entry {name!r} refers to a missing path") from None
                os.mkdir(cur, 0o755)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    raise IntegrityError(
                        f"layer entry {name!r} goes through {comp!r}, which is not a directory"
                    )
            self.real_dirs.add(cur)
        return cur

    def _clear(self, path: Path, keep_dir: bool) -> None:
        """Make room for a new entry: a later entry for the same path replaces the earlier one."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(path)
            self.real_dirs = {d for d in self.real_dirs if not d.is_relative_to(path)}
            self.dir_meta = {d: m for d, m in self.dir_meta.items() if not d.is_relative_to(path)}
        else:
            os.unlink(path)

    def _extract(self, member: tarfile.TarInfo) -> None:
        parts = self._parts(member.name)
        if not parts:
            if member.isdir():
                self.dir_meta[self.dest] = member  # the layer's root directory itself
            return
        parent = self._parent(parts, member.name)
        base = parts[-1]
        if base == OPAQUE_MARKER:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX):
            target = base[len(WHITEOUT_PREFIX) :]
            if target in ("", ".", ".."):
                raise IntegrityError(f"layer entry {member.name!r} is a malformed whiteout")
            path = parent / target
            self._clear(path, keep_dir=False)
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            return
        path = parent / base
        self._clear(path, keep_dir=member.isdir())
        if member.isdir():
            if not path.exists():
                os.mkdir(path, 0o700)
            self.real_dirs.add(path)
            self.dir_meta[path] = member
            return
        if member.islnk():
            link_parts = self._parts(member.linkname)
            if not link_parts:
                raise IntegrityError(f"layer entry {member.name!r} is a hard link to the layer root")
            source = self._parent(link_parts, member.linkname, create=False) / link_parts[-1]
            if not os.path.lexists(source):
                raise IntegrityError(f"layer entry {member.name!r} links to missing {member.linkname!r}")
            os.link(source, path, follow_symlinks=False)
            return  # a hard link shares the target's inode, metadata included
        if member.issym():
            os.symlink(member.linkname, path)
        elif member.isreg():
            self._write_file(path, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            return  # other GNU extensions (volume headers...) carry no file
        self._set_meta(path, member)

    def _write_file(self, path: Path, member: tarfile.TarInfo) -> None:
        src = self.tar.extractfile(member)
        if src is None:
            raise IntegrityError(f"layer entry {member.name!r} has no data")
        # O_EXCL|O_NOFOLLOW: _clear removed any old entry, so this can never follow a symlink.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)

    def _set_meta(self, path: Path, member: tarfile.TarInfo) -> None:
        os.lchown(path, member.uid, member.gid)
        for key, value in member.pax_headers.items():
            if key.startswith(_PAX_XATTR):
                with contextlib.suppress(OSError):
                    raw = value.encode("utf-8", "surrogateescape")
                    os.setxattr(path, key[len(_PAX_XATTR) :], raw, follow_symlinks=False)
        if not member.issym():
            # chmod after chown: chown clears the setuid/setgid bits.
            os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


# ---- packing -----------------------------------------------------------------------------------


def dir_to_layer(src_dir: Path, out_file: Path) -> tuple[str, str, int]:
    """A deterministic gzip tar of `src_dir` -> (compressed digest, diff_id, compressed size)."""
    return _write_layer(out_file, lambda plain: _tar_tree(plain, src_dir, overlay=False))


def upper_to_layer(upper_dir: Path, out_file: Path) -> tuple[str, str, int]:
    """Like dir_to_layer for an overlay upperdir: its whiteouts become OCI `.wh.` entries."""
    return _write_layer(out_file, lambda plain: _tar_tree(plain, upper_dir, overlay=True))


def compress_tar(src: Path, out_file: Path) -> tuple[str, str, int]:
    """Re-encode a plain or gzip tar as a gzip layer (for `import` of a tarball).

    The tar is copied byte for byte, not re-packed, so its diff_id is the uncompressed tar's.
    """

    def copy(plain: HashingWriter) -> None:
        with open_layer(src) as stream:
            shutil.copyfileobj(stream, plain, _CHUNK)

    return _write_layer(out_file, copy)


def _write_layer(out_file: Path, fill: Callable[[HashingWriter], None]) -> tuple[str, str, int]:
    with out_file.open("wb") as out:
        compressed = HashingWriter(out)
        # mtime=0 and no file name: the same tree always gives the same digest.
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
            plain = HashingWriter(gz)
            fill(plain)
    return compressed.digest, plain.digest, compressed.size


def _tar_tree(plain: HashingWriter, root: Path, overlay: bool) -> None:
    with tarfile.open(fileobj=cast(IO[bytes], plain), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, root, "", overlay)


def _add_dir(tar: tarfile.TarFile, dirpath: Path, prefix: str, overlay: bool) -> None:
    for name in sorted(os.listdir(dirpath)):
        path = dirpath / name
        arcname = prefix + name
        st = os.lstat(path)
        if overlay and _is_whiteout(st):
            tar.addfile(_marker(prefix + WHITEOUT_PREFIX + name, st))
            continue
        if stat.S_ISSOCK(st.st_mode):
            continue  # sockets cannot be archived (Docker skips them too)
        info = tar.gettarinfo(str(path), arcname=arcname)  # also turns repeat inodes into hard links
        info.uname = info.gname = ""  # numeric ids only: the host's user names mean nothing in images
        info.mtime = int(st.st_mtime)
        if info.isreg():
            with path.open("rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)
        if info.isdir():
            if overlay and _is_opaque(path):
                tar.addfile(_marker(f"{arcname}/{OPAQUE_MARKER}", st))
            _add_dir(tar, path, arcname + "/", overlay)


def _marker(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0
    info.mtime = int(st.st_mtime)
    return info


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


# ---- changes -----------------------------------------------------------------------------------


def upper_changes(upper_dir: Path, lowers: list[Path]) -> list[Change]:
    """`docker diff` for an overlay upperdir over `lowers` (base first), sorted by path.

    A path in upper that exists in the lowers is C, else A; a whiteout is D. Directories
    holding a change are in upper too (overlayfs copies them up), so they show as C, as Docker.
    """
    changes: list[Change] = []

    def walk(dirpath: Path, rel: tuple[str, ...], hidden: bool) -> None:
        for name in sorted(os.listdir(dirpath)):
            path = dirpath / name
            parts = (*rel, name)
            st = os.lstat(path)
            shown = "/" + "/".join(parts)
            if _is_whiteout(st):
                changes.append(Change(kind="D", path=shown))
                continue
            existed = not hidden and _in_lowers(lowers, parts)
            changes.append(Change(kind="C" if existed else "A", path=shown))
            if stat.S_ISDIR(st.st_mode):
                # Below an opaque (or new) directory nothing from the lowers shows through.
                walk(path, parts, hidden or not existed or _is_opaque(path))

    walk(upper_dir, (), False)
    return sorted(changes, key=lambda c: c.path)


def _in_lowers(lowers: list[Path], parts: tuple[str, ...]) -> bool:
    """Whether the merged view of `lowers` has this path (whiteouts and opaque dirs applied)."""
    for layer in reversed(lowers):
        cur = layer
        for i, comp in enumerate(parts):
            cur = cur / comp
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                break
            if _is_whiteout(st):
                return False
            last = i == len(parts) - 1
            if last:
                return True
            if not stat.S_ISDIR(st.st_mode):
                return False  # a file here hides whatever lower layers have below this name
        # Not in this layer: an opaque directory on the way hides the layers below.
        if any(_is_opaque(layer.joinpath(*parts[: i + 1])) for i in range(len(parts) - 1)):
            return False
    return False
