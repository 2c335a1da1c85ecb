"""cgroup v1 readers for a container's stats. A container that is gone reads as NotFound;
a single missing file (controller not mounted) reads as zero, never as a traceback."""

from __future__ import annotations

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


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _read_keyed(path: Path) -> dict[str, int]:
    """Files of `key value` lines (memory.stat, memory.oom_control)."""
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def read_stats(cgroups_path: str, root: Path = CGROUP_ROOT) -> CgroupStats:
    mem = memory_cgroup_dir(cgroups_path, root)
    cpu = _dir("cpuacct", cgroups_path, root)
    pids = _dir("pids", cgroups_path, root)
    if not (mem.is_dir() or cpu.is_dir() or pids.is_dir()):
        raise NotFound(f"cgroup {cgroups_path} not found: the container is not running")
    usage = _read_int(mem / "memory.usage_in_bytes")
    # Working set as Docker/kubelet: usage minus the page cache the kernel can drop first.
    inactive = _read_keyed(mem / "memory.stat").get("total_inactive_file", 0)
    limit = _read_int(mem / "memory.limit_in_bytes")
    return CgroupStats(
        cpu_seconds=_read_int(cpu / "cpuacct.usage") / 1e9,
        memory_working_set_bytes=max(0, usage - inactive),
        memory_limit_bytes=limit if 0 < limit < UNLIMITED else None,
        pids=_read_int(pids / "pids.current"),
    )


def oom_kill_count(cgroups_path: str, root: Path = CGROUP_ROOT) -> int:
    return _read_keyed(memory_cgroup_dir(cgroups_path, root) / "memory.oom_control").get("oom_kill", 0)


def cgroup_pids(cgroups_path: str, root: Path = CGROUP_ROOT) -> list[int]:
    """Host pids in the container's cgroup ([] when it is gone)."""
    try:
        text = (_dir("pids", cgroups_path, root) / "cgroup.procs").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
