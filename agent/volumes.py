"""Named volumes, bind-mount policy and the OCI mounts a container gets for them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from agent.config import AgentConfig
from agent.errors import invalid
from agent.models import MountSpec
from agent.runtime.spec import OciMount

TMPFS_OPTIONS = ("nosuid", "nodev", "noexec", "mode=1777")


def check_mount_policy(mounts: list[MountSpec], config: AgentConfig) -> None:
    """Refuse binds outside the allow-list before anything is created."""
    targets: set[str] = set()
    for m in mounts:
        if m.target in targets:
            raise invalid("mount target", m.target, "each container path may be mounted only once")
        targets.add(m.target)
        if m.type != "bind":
            continue
        source = Path(m.source)
        if not any(_is_under(source, prefix) for prefix in config.bind_allow):
            allowed = ", ".join(str(p) for p in config.bind_allow) or "none configured"
            raise invalid("bind source", m.source, f"must be under an allowed prefix ({allowed})")
        if not source.exists():
            raise invalid("bind source", m.source, "the host path does not exist")


def _is_under(path: Path, prefix: Path) -> bool:
    # realpath defeats symlinks that point out of the allowed tree.
    real, base = os.path.realpath(path), os.path.realpath(prefix)
    return real == base or real.startswith(base.rstrip("/") + "/")


def volume_data_dir(config: AgentConfig, name: str) -> Path:
    return config.volumes_dir / name / "_data"


def ensure_volume(config: AgentConfig, name: str, image_rootfs: Path, target: str) -> Path:
    """Create a named volume on first use, copying the image's content at `target` into it (as Docker)."""
    data = volume_data_dir(config, name)
    if data.exists():
        return data
    staging = data.with_name("_data.new")
    shutil.rmtree(staging, ignore_errors=True)
    seed = image_rootfs / target.lstrip("/")
    if seed.is_dir() and not seed.is_symlink():
        shutil.copytree(seed, staging, symlinks=True)
    else:
        staging.mkdir(parents=True)
    staging.rename(data)  # atomic: a crash never leaves a half-copied volume in place
    return data


def oci_mounts(mounts: list[MountSpec], config: AgentConfig, image_rootfs: Path) -> list[OciMount]:
    out = []
    for m in mounts:
        if m.type == "tmpfs":
            out.append(OciMount(destination=m.target, type="tmpfs", source="tmpfs", options=TMPFS_OPTIONS))
            continue
        if m.type == "volume":
            source = str(ensure_volume(config, m.source, image_rootfs, m.target))
        else:
            source = m.source
        options = ("rbind", "ro" if m.read_only else "rw")
        out.append(OciMount(destination=m.target, type="bind", source=source, options=options))
    return out
