"""Read a container's json-file log (written by shim.py): rotated files oldest first
(container.log.N ... .1, then container.log), with tail, since and follow."""

from __future__ import annotations

import calendar
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from agent.models import LogEntry

POLL = 0.05
_BLOCK = 64 * 1024


def rotated_files(log_path: Path) -> list[Path]:
    """container.log.N ... container.log.1 (oldest first); the shim keeps them contiguous."""
    out = []
    n = 1
    while (p := Path(f"{log_path}.{n}")).exists():
        out.append(p)
        n += 1
    return out[::-1]


def time_ns(stamp: str) -> int:
    """RFC 3339 UTC `2026-11-23T09:00:00.123456789Z` -> ns since the epoch."""
    secs = calendar.timegm(
        (int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]), int(stamp[11:13]), int(stamp[14:16]),
         int(stamp[17:19]), 0, 0, 0)
    )  # fmt: skip
    frac = stamp[19:].rstrip("Zz")
    ns = int(frac[1:10].ljust(9, "0")) if frac.startswith(".") else 0
    return secs * 10**9 + ns


def parse_line(raw: bytes) -> LogEntry | None:
    try:
        d = json.loads(raw)
        if d["stream"] not in ("stdout", "stderr"):
            return None
        time_ns(d["time"])  # reject stamps the since filter could not compare
        return LogEntry(time=d["time"], stream=d["stream"], line=d["log"])
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def _forward(f: IO[bytes], end: int | None) -> Iterator[bytes]:
    """Whole lines from the current position up to `end`; stops before a trailing partial."""
    while end is None or f.tell() < end:
        pos = f.tell()
        line = f.readline() if end is None else f.readline(end - pos)
        if not line.endswith(b"\n"):
            f.seek(pos)
            return
        yield line


def _backward(f: IO[bytes], end: int) -> Iterator[bytes]:
    """Lines from `end` back to the start of the file, newest first."""
    pos, rest = end, b""
    while pos > 0:
        size = min(_BLOCK, pos)
        pos -= size
        f.seek(pos)
        parts = (f.read(size) + rest).split(b"\n")
        rest = parts[0]
        yield from (p for p in reversed(parts[1:]) if p)
    if rest:
        yield rest


def _open(path: Path) -> IO[bytes] | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def read_logs(
    log_path: Path,
    tail: int | None = None,
    since: float | None = None,
    follow: bool = False,
    stop: threading.Event | None = None,
) -> Iterator[LogEntry]:
    """Entries oldest first. `tail`: only the last N (after `since`); `since`: unix time;
    `follow`: then wait for new lines (surviving rotation) until `stop` is set."""
    since_ns = int(since * 1e9) if since is not None else None

    def keep(e: LogEntry | None) -> bool:
        return e is not None and (since_ns is None or time_ns(e.time) >= since_ns)

    cur = _open(log_path)  # opened first: rotation after this point is seen by follow
    try:
        end = os.fstat(cur.fileno()).st_size if cur else 0
        sources: list[tuple[IO[bytes], int | None]] = []
        for p in rotated_files(log_path):
            if (f := _open(p)) is not None:
                sources.append((f, None))
        try:
            if cur:
                sources.append((cur, end))
            if tail is not None:
                picked: list[LogEntry] = []
                for f, stop_at in reversed(sources):
                    for raw in _backward(f, os.fstat(f.fileno()).st_size if stop_at is None else stop_at):
                        if len(picked) >= tail:
                            break
                        e = parse_line(raw)
                        if e is not None and not keep(e):
                            break  # older than `since`: so is everything before it
                        if e is not None:
                            picked.append(e)
                yield from reversed(picked)
                if cur:
                    cur.seek(end)
            else:
                for f, stop_at in sources:
                    for raw in _forward(f, stop_at):
                        if keep(e := parse_line(raw)):
                            assert e is not None
                            yield e
        finally:
            for f, _ in sources:
                if f is not cur:
                    f.close()
        if follow:
            yield from _follow(log_path, cur, keep, stop)
            cur = None  # _follow closed it
    finally:
        if cur:
            cur.close()


def _follow(
    log_path: Path,
    cur: IO[bytes] | None,
    keep: object,
    stop: threading.Event | None,
) -> Iterator[LogEntry]:
    assert callable(keep)
    ino = os.fstat(cur.fileno()).st_ino if cur else None
    try:
        while not (stop and stop.is_set()):
            got = False
            if cur:
                for raw in _forward(cur, None):
                    got = True
                    if keep(e := parse_line(raw)):
                        assert e is not None
                        yield e
            if got:
                continue
            try:
                st: os.stat_result | None = os.stat(log_path)
            except FileNotFoundError:
                st = None
            if st is not None and (cur is None or st.st_ino != ino):
                if cur:  # rotated: the writer may have added lines before the rename
                    for raw in _forward(cur, None):
                        if keep(e := parse_line(raw)):
                            assert e is not None
                            yield e
                    cur.close()
                cur, ino = _open(log_path), st.st_ino
                continue
            if cur and st is not None and st.st_size < cur.tell():
                cur.seek(0)  # truncated in place
                continue
            if stop:
                stop.wait(POLL)
            else:
                time.sleep(POLL)
        # Stopped: lines written just before the stop must still be delivered.
        if cur is None and log_path.exists():
            cur = _open(log_path)
        if cur:
            for raw in _forward(cur, None):
                if keep(e := parse_line(raw)):
                    assert e is not None
                    yield e
    finally:
        if cur:
            cur.close()
