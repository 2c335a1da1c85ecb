"""Build an OCI runtime spec (config.json) with Docker's defaults. Pure: no I/O except
`resolve_user`, which reads the image's /etc/passwd and /etc/group."""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.errors import invalid
from agent.models import Resources
from agent.runtime.seccomp import default_profile

OCI_VERSION = "1.0.2"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000
MIN_CPU_QUOTA = 1_000  # the kernel rejects smaller cfs quotas
NOFILE_MAX = 1_048_576  # dockerd's usual limit (LimitNOFILE in its unit), which containers inherit

DEFAULT_CAPS: tuple[str, ...] = tuple(
    "CAP_" + c
    for c in (
        "CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP "
        "NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE"
    ).split()
)
# Kernel order (bit 0..40); runc ignores, with a warning, those its library does not know.
ALL_CAPS: tuple[str, ...] = tuple(
    "CAP_" + c
    for c in (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
        "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
        "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
        "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
        "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
        "CHECKPOINT_RESTORE"
    ).split()
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


@dataclass(frozen=True)
class OciMount:
    destination: str
    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "type": self.type,
            "source": self.source,
            "options": list(self.options),
        }


# Docker's default mounts (moby oci/defaults.go). /dev/pts gid=5 is the tty group.
DEFAULT_MOUNTS: tuple[OciMount, ...] = (
    OciMount("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
    OciMount("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    OciMount(
        "/dev/pts",
        "devpts",
        "devpts",
        ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
    ),
    OciMount("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    OciMount("/sys/fs/cgroup", "cgroup", "cgroup", ("ro", "nosuid", "noexec", "nodev")),
    OciMount("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    OciMount("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
)


def _dev(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


# Deny everything, then Docker's allow-list: mknod of any node (it cannot be opened unless
# allowed), null, zero, full, random, urandom, tty, ptmx and the pty slaves.
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    _dev("c", None, None, "m"),
    _dev("b", None, None, "m"),
    _dev("c", 1, 3),
    _dev("c", 1, 5),
    _dev("c", 1, 7),
    _dev("c", 1, 8),
    _dev("c", 1, 9),
    _dev("c", 5, 0),
    _dev("c", 5, 1),
    _dev("c", 5, 2),
    _dev("c", 136, None),
)


@dataclass(frozen=True)
class OciInputs:
    args: Sequence[str]
    rootfs: Path
    cgroups_path: str
    """cgroupfs style, e.g. "/shoal/<id>" (relative to each hierarchy's root)."""
    env: Sequence[str] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: Sequence[int] = ()
    hostname: str = ""
    mounts: Sequence[OciMount] = ()
    resources: Resources = field(default_factory=Resources)
    network: Literal["none", "host"] = "none"
    netns_path: str | None = None
    """With network "none": join this existing namespace (set up by the node network) instead of a new one."""
    privileged: bool = False
    cap_add: Sequence[str] = ()
    no_new_privileges: bool = True
    nofile: int | None = None
    """RLIMIT_NOFILE soft and hard; None: `default_nofile()`."""


def default_nofile() -> int:
    """Containers inherit the runtime's limit, as with Docker: runc cannot raise the hard
    limit above what it has itself (it sets rlimits after dropping CAP_SYS_RESOURCE)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE_MAX if hard == resource.RLIM_INFINITY else min(NOFILE_MAX, hard)


def normalize_cap(name: str) -> str:
    """`net_admin`, `NET_ADMIN` or `CAP_NET_ADMIN` -> `CAP_NET_ADMIN`."""
    cap = name.strip().upper()
    cap = cap if cap.startswith("CAP_") else "CAP_" + cap
    if cap not in ALL_CAPS:
        raise invalid("--cap-add", name, "unknown capability; expected a name like NET_ADMIN or ALL")
    return cap


def capabilities(privileged: bool, cap_add: Sequence[str]) -> list[str]:
    if privileged or any(c.strip().upper() in ("ALL", "CAP_ALL") for c in cap_add):
        return list(ALL_CAPS)
    caps = list(DEFAULT_CAPS)
    for name in cap_add:
        cap = normalize_cap(name)
        if cap not in caps:
            caps.append(cap)
    return caps


def _validate(inp: OciInputs) -> None:
    if not inp.args or not inp.args[0]:
        raise invalid("command", list(inp.args), "a command is required (the image has no Cmd)")
    if not inp.cwd.startswith("/"):
        raise invalid("--workdir", inp.cwd, "the working directory must be absolute")
    if inp.network not in ("none", "host"):
        raise invalid("--network", inp.network, "expected none or host")
    for name, value in (("uid", inp.uid), ("gid", inp.gid), *(("gid", g) for g in inp.additional_gids)):
        if not 0 <= value < 2**31:
            raise invalid(name, value, "must be between 0 and 2147483647")
    if not inp.cgroups_path.startswith("/") or ".." in inp.cgroups_path.split("/"):
        raise invalid("cgroups_path", inp.cgroups_path, "must be absolute without '..'")
    for m in inp.mounts:
        if not m.destination.startswith("/"):
            raise invalid("mount target", m.destination, "the container path must be absolute")


def _with_defaults(env: Sequence[str], hostname: str) -> list[str]:
    """Docker puts PATH (and HOSTNAME) first unless the image or user set them."""
    keys = {e.partition("=")[0] for e in env}
    head = [] if "PATH" in keys else [DEFAULT_PATH_ENV]
    if hostname and "HOSTNAME" not in keys:
        head.append(f"HOSTNAME={hostname}")
    return head + list(env)


def _mounts(inp: OciInputs) -> list[dict[str, Any]]:
    """Defaults first; a user mount on the same target (or a parent like /dev) replaces them."""
    targets = {m.destination.rstrip("/") or "/" for m in inp.mounts}
    out = []
    for m in DEFAULT_MOUNTS:
        shadowed = any(m.destination == t or m.destination.startswith(t + "/") for t in targets)
        if shadowed:
            continue
        if inp.privileged and m.type in ("sysfs", "cgroup"):
            m = OciMount(m.destination, m.type, m.source, tuple(o for o in m.options if o != "ro"))
        out.append(m.to_json())
    return out + [m.to_json() for m in inp.mounts]


def _resources(inp: OciInputs) -> dict[str, Any]:
    r = inp.resources
    devices = [{"allow": True, "access": "rwm"}] if inp.privileged else list(DEFAULT_DEVICE_RULES)
    out: dict[str, Any] = {"devices": devices}
    if r.memory_bytes is not None:
        # swap == limit means no swap on top, so the limit really triggers the OOM killer.
        out["memory"] = {"limit": r.memory_bytes, "swap": r.memory_bytes}
    if r.nano_cpus is not None:
        quota = max(MIN_CPU_QUOTA, r.nano_cpus * CPU_PERIOD // 1_000_000_000)
        out["cpu"] = {"quota": quota, "period": CPU_PERIOD}
    if r.pids_limit is not None:
        out["pids"] = {"limit": r.pids_limit}
    return out


def build_oci_spec(inp: OciInputs, machine: str | None = None) -> dict[str, Any]:
    """The config.json dict for runc. `machine` picks the seccomp arches (default: this host)."""
    _validate(inp)
    caps = capabilities(inp.privileged, inp.cap_add)
    nofile = inp.nofile if inp.nofile is not None else default_nofile()
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if inp.netns_path is not None:
        namespaces.append({"type": "network", "path": inp.netns_path})
    elif inp.network == "none":
        namespaces.append({"type": "network"})  # a new netns: runc brings up only lo
    linux: dict[str, Any] = {
        "cgroupsPath": inp.cgroups_path,
        "namespaces": namespaces,
        "resources": _resources(inp),
    }
    if not inp.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        linux["seccomp"] = default_profile(machine)
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": inp.uid, "gid": inp.gid, "additionalGids": list(inp.additional_gids)},
            "args": list(inp.args),
            "env": _with_defaults(inp.env, inp.hostname),
            "cwd": inp.cwd,
            # Not inheritable/ambient: a non-root user's execve then drops them (as Docker).
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": inp.no_new_privileges,
        },
        "root": {"path": str(inp.rootfs), "readonly": False},
        "mounts": _mounts(inp),
        "linux": linux,
    }
    if inp.hostname:
        spec["hostname"] = inp.hostname
    return spec


# ---- user resolution ------------------------------------------------------------------------

_MAX_DB = 4 * 1024 * 1024  # a passwd/group file larger than this is not a real one


def secure_join(root: Path, path: str) -> Path:
    """Resolve `path` inside `root`, following symlinks as if `root` were `/`.

    Image files are untrusted: /etc/passwd -> /etc/shadow must not read the host's file.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise invalid("path", path, "too many levels of symbolic links in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _read_db(rootfs: Path, name: str) -> list[list[str]]:
    path = secure_join(rootfs, name)
    try:
        with path.open("rb") as f:
            text = f.read(_MAX_DB).decode("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append(line.split(":"))
    return rows


def _id(text: str) -> int | None:
    if text.isdigit() and int(text) < 2**31:
        return int(text)
    return None


def resolve_user(rootfs: Path, user: str | None) -> tuple[int, int, list[int]]:
    """Docker's `--user` rules -> (uid, gid, additional gids).

    "" -> root. A name must exist in /etc/passwd; a numeric uid need not (gid 0 then).
    "user:group" overrides the primary group and drops supplementary groups.
    """
    spec = (user or "").strip()
    if not spec:
        spec = "0"
    name, sep, group = spec.partition(":")
    if not name or (sep and not group):
        raise invalid("--user", user, "expected name|uid[:group|gid]")
    passwd = [r for r in _read_db(rootfs, "/etc/passwd") if len(r) >= 4]
    uid_num = _id(name)
    entry = next((r for r in passwd if (r[2] == name if uid_num is not None else r[0] == name)), None)
    if entry is None and uid_num is None:
        raise invalid("--user", user, f"no user {name!r} in the image's /etc/passwd")
    if entry is not None:
        uid, gid, username = _id(entry[2]), _id(entry[3]), entry[0]
        if uid is None or gid is None:
            raise invalid("--user", user, "the image's /etc/passwd entry has a bad uid or gid")
    else:
        assert uid_num is not None
        uid, gid, username = uid_num, 0, ""
    groups = [r for r in _read_db(rootfs, "/etc/group") if len(r) >= 3]
    if sep:
        gid_num = _id(group)
        if gid_num is None:
            match = next((r for r in groups if r[0] == group), None)
            if match is None or _id(match[2]) is None:
                raise invalid("--user", user, f"no group {group!r} in the image's /etc/group")
            gid_num = _id(match[2])
            assert gid_num is not None
        return uid, gid_num, []
    extra: list[int] = []
    if username:
        for r in groups:
            members = r[3].split(",") if len(r) > 3 else []
            g = _id(r[2])
            if username in members and g is not None and g != gid and g not in extra:
                extra.append(g)
    return uid, gid, extra
