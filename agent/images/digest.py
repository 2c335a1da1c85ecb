"""Hashing wrappers for streams, so content is digested while it is copied, never read twice."""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Protocol


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class HashingWriter:
    """Writes through to `inner`, hashing and counting what passes."""

    def __init__(self, inner: Writable) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        # gzip/tarfile hand us memoryviews too; hashlib and files take both.
        self.hash.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class HashingReader:
    """Reads from `inner`, hashing and counting what passes."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end: a digest covers every byte, the tar padding after the last entry too."""
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()
