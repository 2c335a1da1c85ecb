"""cgroup v1 readers for a container's stats. A container that is gone reads as NotFound;
a single missing file (controller not mounted) reads as zero, never as a traceback."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.errors import NotFound, invalid

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 2**62  # v1 reports "no limit" as PAGE_COUNTER_MAX pages (~2^63)


@dataclass(frozen=True)
class CgroupStats:
    cpu_seconds: float
    memory_working_set_bytes: int
    memory_limit_bytes: int | None
    pids: int


def _dir(controller: str, cgroups_path: str, root: Path) -> Path:
    if not cgroups_path.startswith("/") or ".." in cgroups_path.split("/"):
        raise invalid("cgroups_path", cgroups_path, "must be absolute without '..'")
    return root / controller / cgroups_path.lstrip("/")


def memory_cgroup_dir(cgroups_path: str, root: Path = CGROUP_ROOT) -> Path:
    return _dir("memory", cgroups_path, root)


def read_small(path: Path | str) -> str:
    """A small kernel file in one read: pathlib's text layer costs more than the kernel's work
    here, and metrics read several of these per container per scrape."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)


def _read_int(path: str) -> int:
    try:
        return int(read_small(path).split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def keyed_value(text: str, key: str) -> int:
    """The value of the `key value` line in `text` (memory.stat, memory.oom_control); 0 if absent.
    Found by search rather than by parsing every line: memory.stat has dozens."""
    start = 0
    while (i := text.find(key + " ", start)) >= 0:
        if i == 0 or text[i - 1] == "\n":
            begin = i + len(key) + 1
            end = text.find("\n", begin)
            value = text[begin : end if end >= 0 else len(text)].strip()
            return int(value) if value.isdigit() else 0
        start = i + 1
    return 0


def _read_keyed(path: str, key: str) -> int:
    try:
        return keyed_value(read_small(path), key)
    except OSError:
        return 0


def read_stats(cgroups_path: str, root: Path = CGROUP_ROOT) -> CgroupStats:
    # Plain string paths: pathlib's joins cost more than reading these files (metrics read
    # them for every container on every scrape).
    mem = str(memory_cgroup_dir(cgroups_path, root))
    cpu = str(_dir("cpuacct", cgroups_path, root))
    pids = str(_dir("pids", cgroups_path, root))
    if not (os.path.isdir(mem) or os.path.isdir(cpu) or os.path.isdir(pids)):
        raise NotFound(f"cgroup {cgroups_path} not found: the container is not running")
    usage = _read_int(f"{mem}/memory.usage_in_bytes")
    # Working set as Docker/kubelet: usage minus the page cache the kernel can drop first.
    inactive = _read_keyed(f"{mem}/memory.stat", "total_inactive_file")
    limit = _read_int(f"{mem}/memory.limit_in_bytes")
    return CgroupStats(
        cpu_seconds=_read_int(f"{cpu}/cpuacct.usage") / 1e9,
        memory_working_set_bytes=max(0, usage - inactive),
        memory_limit_bytes=limit if 0 < limit < UNLIMITED else None,
        pids=_read_int(f"{pids}/pids.current"),
    )


def oom_kill_count(cgroups_path: str, root: Path = CGROUP_ROOT) -> int:
    return _read_keyed(f"{memory_cgroup_dir(cgroups_path, root)}/memory.oom_control", "oom_kill")


def cgroup_pids(cgroups_path: str, root: Path = CGROUP_ROOT) -> list[int]:
    """Host pids in the container's cgroup ([] when it is gone)."""
    try:
        text = (_dir("pids", cgroups_path, root) / "cgroup.procs").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
